//! Answers for requests that are not admission reviews kadmit can evaluate.
//!
//! They carry a `metav1.Status`-shaped JSON body, the shape Kubernetes clients already parse,
//! whose message says exactly what is wrong.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An HTTP error answer instead of an `AdmissionReview`.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The HTTP status.
    pub code: StatusCode,
    /// What the client did wrong.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    code: u16,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let reason = match self.code {
            StatusCode::BAD_REQUEST => "BadRequest",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
            StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
            StatusCode::REQUEST_TIMEOUT => "Timeout",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
            _ => "InternalError",
        };
        let body = StatusBody {
            api_version: "v1",
            kind: "Status",
            status: "Failure",
            message: &self.message,
            reason,
            code: self.code.as_u16(),
        };
        // A struct of strings and an integer always serializes.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            self.code,
            [(header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response();
        if self.code == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        // The API server's webhook client retries an answer that carries Retry-After; a 503 is
        // kadmit saying "busy now", which a retry a second later should get past.
        if self.code == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
