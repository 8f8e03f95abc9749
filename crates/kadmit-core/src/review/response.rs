//! [`AdmissionResponse`] → the `AdmissionReview` JSON the API server expects.

use std::collections::BTreeMap;

use base64::Engine as _;
use json_patch::PatchOperation;
use serde::Serialize;

use super::ReviewVersion;

/// A denial's `status`: what the user reads, and the HTTP code the API server reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// HTTP status code, such as 403.
    pub code: u16,
    /// The message; the API server prefixes it with the webhook's name.
    pub message: String,
    /// A `metav1.StatusReason`, such as `Forbidden`, when one applies.
    pub reason: Option<String>,
    /// What the status is about, as `metav1.StatusDetails` (upstream sets it on Pod Security
    /// denials: kind `pods` and the pod's name).
    pub details: Option<StatusDetails>,
}

/// `metav1.StatusDetails`: the object a status is about. Empty parts are omitted, as Go does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    /// The object's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The resource's group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource, such as `pods`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// The `response` of an `AdmissionReview`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Why not, when `allowed` is false.
    pub status: Option<Status>,
    /// Changes to the object; sent as a base64 JSON Patch, omitted when empty.
    pub patch: Vec<PatchOperation>,
    /// Warnings shown to the client.
    pub warnings: Vec<String>,
    /// Written to the audit event; the API server prefixes the keys with the webhook's name.
    pub audit_annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: WireResponse<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<WireStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<Box<serde_json::value::RawValue>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct WireStatus<'a> {
    status: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a StatusDetails>,
    code: u16,
}

impl AdmissionResponse {
    /// An admission with nothing to say.
    pub fn allow(uid: impl Into<String>) -> Self {
        AdmissionResponse {
            uid: uid.into(),
            allowed: true,
            ..Default::default()
        }
    }

    /// A denial with `code` and `message`.
    pub fn deny(uid: impl Into<String>, code: u16, message: impl Into<String>) -> Self {
        AdmissionResponse {
            uid: uid.into(),
            allowed: false,
            status: Some(Status {
                code,
                message: message.into(),
                reason: None,
                details: None,
            }),
            ..Default::default()
        }
    }

    /// Serializes the response inside an `AdmissionReview` of `version`.
    ///
    /// The patch is a JSON Patch document encoded as standard base64 with
    /// `patchType: JSONPatch`, and both are omitted when there is no change, as the API requires.
    pub fn to_review_json(&self, version: ReviewVersion) -> Vec<u8> {
        let patch = if self.patch.is_empty() {
            None
        } else {
            // Serializing a Vec of serde-derived enums with string keys cannot fail.
            // Sized up front: growing the buffer by doubling copied the patch several times.
            let mut json = Vec::with_capacity(256 * self.patch.len());
            let _ = serde_json::to_writer(&mut json, &self.patch);
            // Base64 needs no escaping, so the quoted text is written as it is rather than
            // scanned byte by byte as a string (a patch is often the larger part of the answer).
            let mut quoted = String::with_capacity(json.len() * 4 / 3 + 6);
            quoted.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(json, &mut quoted);
            quoted.push('"');
            serde_json::value::RawValue::from_string(quoted).ok()
        };
        let wire = WireReview {
            api_version: version.api_version(),
            kind: "AdmissionReview",
            response: WireResponse {
                uid: &self.uid,
                allowed: self.allowed,
                status: self.status.as_ref().map(|s| WireStatus {
                    status: if self.allowed { "Success" } else { "Failure" },
                    message: &s.message,
                    reason: s.reason.as_deref(),
                    details: s.details.as_ref(),
                    code: s.code,
                }),
                patch_type: patch.as_ref().map(|_| "JSONPatch"),
                patch,
                warnings: &self.warnings,
                audit_annotations: &self.audit_annotations,
            },
        };
        // Plain structs of strings, numbers and maps with string keys always serialize. The
        // buffer is sized for what is known to go in, so it is not regrown and copied.
        let texts = wire.response.patch.as_ref().map_or(0, |p| p.get().len())
            + self.warnings.iter().map(String::len).sum::<usize>()
            + (self.audit_annotations.iter())
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>()
            + self.status.as_ref().map_or(0, |s| s.message.len());
        let mut out = Vec::with_capacity(256 + texts + texts / 8);
        let _ = serde_json::to_writer(&mut out, &wire);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn patch_is_base64_of_a_json_patch() {
        let mut response = AdmissionResponse::allow("u-1");
        response.patch = serde_json::from_value(json!([
            {"op": "add", "path": "/metadata/annotations/a~1b", "value": "x"}
        ]))
        .unwrap();
        let wire: Value =
            serde_json::from_slice(&response.to_review_json(ReviewVersion::V1Beta1)).unwrap();
        assert_eq!(wire["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(wire["response"]["uid"], "u-1");
        assert_eq!(wire["response"]["patchType"], "JSONPatch");
        let encoded = wire["response"]["patch"]
            .as_str()
            .expect("patch is a string");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let ops: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(
            ops,
            json!([{"op": "add", "path": "/metadata/annotations/a~1b", "value": "x"}])
        );
    }

    #[test]
    fn empty_parts_are_omitted() {
        let wire: Value = serde_json::from_slice(
            &AdmissionResponse::allow("u").to_review_json(ReviewVersion::V1),
        )
        .unwrap();
        assert_eq!(
            wire,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": "u", "allowed": true}})
        );
        let wire: Value = serde_json::from_slice(
            &AdmissionResponse::deny("u", 403, "no").to_review_json(ReviewVersion::V1),
        )
        .unwrap();
        assert_eq!(
            wire["response"],
            json!({"uid": "u", "allowed": false, "status": {"status": "Failure", "message": "no", "code": 403}})
        );
    }
}
