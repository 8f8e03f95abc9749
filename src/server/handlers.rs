//! The webhook endpoints: read and check the request, evaluate it within its deadline, answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use kadmit_core::policy::pipeline::{Decision, Progress, on_error_outcome};
use kadmit_core::review::AdmissionResponse;
use kadmit_core::{Endpoint, Review};
use tracing::Instrument;

use super::body::{self, BodyError, BufferedBody};
use super::deadline;
use super::rejection::Rejection;
use super::state::AppState;
use crate::telemetry::fields::bounded;

/// `POST /mutate`.
pub async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    review(Endpoint::Mutate, state, request).await
}

/// `POST /validate`.
pub async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    review(Endpoint::Validate, state, request).await
}

async fn review(endpoint: Endpoint, state: Arc<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let name = endpoint.as_str();
    let _in_flight = state.metrics.in_flight(name);
    match answer(endpoint, &state, request, started).await {
        Ok(response) => response,
        Err(rejection) => {
            state.metrics.rejected(name, rejection.code.as_u16());
            state.metrics.observe(name, started.elapsed().as_secs_f64());
            // The message may quote the request and be megabytes long: bounded, as a string.
            tracing::info!(
                endpoint = name,
                code = rejection.code.as_u16(),
                reason = &*bounded(&rejection.message),
                "request rejected"
            );
            rejection.into_response()
        }
    }
}

async fn answer(
    endpoint: Endpoint,
    state: &Arc<AppState>,
    request: Request,
    started: Instant,
) -> Result<Response, Rejection> {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "method {} is not allowed: admission reviews are sent with POST",
                parts.method
            ),
        ));
    }
    check_content_type(&parts.headers)?;
    check_content_encoding(&parts.headers)?;
    let timeout = deadline::timeout_from_query(parts.uri.query())
        .map_err(|message| Rejection::new(StatusCode::BAD_REQUEST, message))?;
    let deadline = started + deadline::budget(timeout);
    // The body's share of the buffered-body budget is held until the review is answered.
    let BufferedBody {
        bytes: body,
        share: _budget_share,
    } = read_body(
        body,
        &parts.headers,
        parts.version,
        state,
        deadline.min(started + state.limits.body_read_timeout),
    )
    .await?;
    // Decoded for this endpoint only (`/mutate` skips what only Pod Security reads), within the
    // decoding limit; what it built is counted in a budget of its own, held until the answer,
    // so that concurrent large reviews queue rather than multiply.
    let large = body.len() > INLINE_BODY_BYTES;
    let budget = &state.limits.decoded_budget;
    let no_room = || {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Budget {
                budget: budget.bytes(),
            }
            .to_string(),
        )
    };
    let (review, _decoded_share) = if large {
        // Decoded on the blocking pool, where any number may run at once: each first takes
        // what it may build (waiting in turn), then gives back what it did not.
        let mut share = budget
            .reserve(state.limits.max_decoded_bytes, deadline)
            .await
            .ok_or_else(no_room)?;
        let review = decode(endpoint, state, &body, large).await?;
        share.shrink_to(review.decoded_bytes());
        (review, share)
    } else {
        // Decoded inline, at most one per I/O worker at a time; what it built is then counted.
        let review = decode(endpoint, state, &body, large).await?;
        match budget.try_reserve(review.decoded_bytes()) {
            Some(share) => (review, share),
            None => {
                // No room now: give back what decoding built, wait in turn for that much, and
                // decode again once it is counted.
                let bytes = review.decoded_bytes();
                drop(review);
                let share = budget.reserve(bytes, deadline).await.ok_or_else(no_room)?;
                (decode(endpoint, state, &body, large).await?, share)
            }
        }
    };
    // Capture (when on and this uid is sampled) keeps the body: a reference count, not a copy.
    let capture = state
        .capture
        .as_ref()
        .filter(|capture| capture.sampled(&review.request.uid))
        .map(|capture| (capture, body.clone()));
    drop(body);

    let request = &review.request;
    let dry_run = request.dry_run.unwrap_or(false);
    // What the client sent is recorded as bounded strings, never `%`: see telemetry::fields.
    let span = tracing::info_span!(
        "review",
        uid = &*bounded(&request.uid),
        endpoint = endpoint.as_str(),
        kind = &*bounded(&request.kind.kind),
        namespace = &*bounded(request.namespace()),
        // Not `name`: the JSON log writes the span's own name under that key, and a second
        // `name` in the same object is dropped or misread by log tooling.
        object_name = &*bounded(request.name()),
        operation = request.operation.as_str(),
    );
    let kind = request.kind.kind.clone();
    let operation = request.operation.as_str();
    let version = review.version;
    let decision = evaluate(endpoint, state, review, deadline, timeout, large)
        .instrument(span.clone())
        .await;
    let response = &decision.response;
    let _enter = span.enter();
    for policy in &decision.errors {
        state.metrics.policy_error(endpoint.as_str(), policy);
    }
    for event in &decision.events {
        state.metrics.policy_event(event);
    }
    state.metrics.request(
        endpoint.as_str(),
        &kind,
        operation,
        response.allowed,
        started.elapsed().as_secs_f64(),
    );
    if response.allowed {
        tracing::debug!(
            patch_ops = response.patch.len(),
            warnings = response.warnings.len(),
            "allowed"
        );
    } else {
        tracing::info!(
            code = response.status.as_ref().map(|s| s.code),
            policy = decision.denied_by.as_deref().unwrap_or(""),
            // Not `message`: that is the event's own text ("denied") in the log.
            // The answer keeps the whole message; the log a bounded prefix.
            status_message = &*bounded(
                response
                    .status
                    .as_ref()
                    .map(|s| s.message.as_str())
                    .unwrap_or("")
            ),
            "denied"
        );
    }
    let answer = Bytes::from(response.to_review_json(version));
    if let Some((capture, body)) = capture {
        capture.submit(endpoint, dry_run, body, answer.clone());
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}

/// Bodies larger than this are decoded and evaluated on the blocking pool: a usual review costs
/// microseconds, inline; a review of a few MiB costs tens of milliseconds, which on an I/O
/// worker would delay every other connection's handshakes, reads and probes.
const INLINE_BODY_BYTES: usize = 256 * 1024;

/// Decodes `body` for `endpoint` within the decoding limit, on the blocking pool when `large`.
async fn decode(
    endpoint: Endpoint,
    state: &AppState,
    body: &Bytes,
    large: bool,
) -> Result<Review, Rejection> {
    let limit = state.limits.max_decoded_bytes;
    let decoded = if large {
        let body = body.clone();
        tokio::task::spawn_blocking(move || Review::from_slice_within(&body, Some(endpoint), limit))
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "decoding a review panicked");
                Rejection::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "decoding the review failed (a bug; the server keeps running)".to_owned(),
                )
            })?
    } else {
        Review::from_slice_within(body, Some(endpoint), limit)
    };
    decoded.map_err(|err| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("not an admission review: {err}"),
        )
    })
}

/// Runs the pipeline, answering per `failure.onError` if it has not finished by `deadline`.
///
/// Policies are synchronous; when any may block, or the review is `large`, they run on the
/// blocking pool, so one that hangs (a stuck authorizer, a bug) or takes long costs a thread,
/// never the answer or the async workers.
async fn evaluate(
    endpoint: Endpoint,
    state: &Arc<AppState>,
    review: Review,
    deadline: Instant,
    timeout: Duration,
    large: bool,
) -> Decision {
    if !large && !state.pipeline.may_block(&review) {
        // Pure, in-memory policies finish in microseconds: no thread handoff. Their open-ended
        // work (a namespace's existing pods) is bounded by the deadline they are given.
        return state.pipeline.evaluate_tracked(
            endpoint,
            &review,
            state.cluster.as_ref(),
            Some(deadline),
            &Progress::default(),
        );
    }
    let uid = review.request.uid.clone();
    let progress = Arc::new(Progress::default());
    let task = {
        let state = Arc::clone(state);
        let progress = Arc::clone(&progress);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            state.pipeline.evaluate_tracked(
                endpoint,
                &review,
                state.cluster.as_ref(),
                Some(deadline),
                &progress,
            )
        })
    };
    let on_error = state.pipeline.on_error();
    let running = || {
        state
            .pipeline
            .running_policy(&progress)
            .unwrap_or("(decoding)")
            .to_owned()
    };
    let (policy, cause) = match tokio::time::timeout_at(deadline.into(), task).await {
        Ok(Ok(decision)) => return decision,
        Ok(Err(join_error)) => {
            tracing::error!(error = %join_error, "policy evaluation panicked");
            (
                running(),
                "it panicked (a bug; the server keeps running)".to_owned(),
            )
        }
        Err(_) => {
            state.metrics.deadline_expired(endpoint.as_str());
            let policy = running();
            tracing::warn!(policy = %policy, timeout = ?timeout, "policy evaluation did not finish before the deadline");
            (
                policy,
                format!(
                    "it did not finish before the request's deadline (timeout {})",
                    humantime::format_duration(timeout)
                ),
            )
        }
    };
    let outcome = on_error_outcome(on_error, &policy, &cause);
    let mut response = AdmissionResponse::allow(uid);
    response.warnings = outcome.warnings;
    if let Some(status) = outcome.denial {
        response.allowed = false;
        response.status = Some(status);
    }
    Decision {
        denied_by: (!response.allowed).then(|| policy.clone()),
        errors: vec![policy],
        events: Vec::new(),
        response,
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let essence = value
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(Rejection::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        match value {
            None => "content type is missing: send Content-Type: application/json".to_owned(),
            Some(v) => {
                format!("content type `{v}` is not supported: send Content-Type: application/json")
            }
        },
    ))
}

/// Refuses a body sent with a `Content-Encoding` other than `identity`, before reading it.
///
/// The API server never compresses a review, and kadmit does not decode one: a decompressor
/// would let a small body become a large one past `--max-body-bytes`. Without this check a
/// gzip body is read and refused as "not JSON"; with it the client learns why.
fn check_content_encoding(headers: &HeaderMap) -> Result<(), Rejection> {
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("(not text)");
        let compressed = text
            .split(',')
            .map(str::trim)
            .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"));
        if compressed {
            return Err(Rejection::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding `{text}` is not supported: send the AdmissionReview \
                     uncompressed, without Content-Encoding"
                ),
            ));
        }
    }
    Ok(())
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    version: Version,
    state: &AppState,
    deadline: Instant,
) -> Result<BufferedBody, Rejection> {
    let limit = state.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let result = match declared {
        Some(len) if len > limit as u64 => Err(BodyError::TooLarge { limit }),
        // At most `limit`, so it fits a usize.
        declared => {
            let declared = declared.and_then(|len| usize::try_from(len).ok());
            // See server::body: an HTTP/2 stream waiting for its share would stall the others.
            let wait = version != Version::HTTP_2;
            body::read(
                body,
                declared,
                limit,
                &state.limits.body_budget,
                wait,
                deadline,
            )
            .await
        }
    };
    result.map_err(|err| {
        let code = match err {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::Budget { .. } => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        };
        Rejection::new(code, err.to_string())
    })
}

/// Any other path on the webhook port.
pub async fn not_found(request: Request) -> Rejection {
    Rejection::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint {}: use POST /mutate or POST /validate",
            request.uri().path()
        ),
    )
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: certificates are loaded, cluster caches are synced and the server is not
/// shutting down.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness.not_ready_reason() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
