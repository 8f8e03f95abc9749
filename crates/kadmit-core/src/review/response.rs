//! [`AdmissionResponse`] → the `AdmissionReview` JSON the API server expects.

use std::collections::BTreeMap;

use json_patch::PatchOperation;
use serde::Serialize;

use super::{ReviewVersion, json_text};

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
    /// Written by hand (see [`json_text`]): members in a fixed order, empty ones omitted as Go
    /// omits them; the tests check it byte for byte against serde's encoding of the same answer.
    pub fn to_review_json(&self, version: ReviewVersion) -> Vec<u8> {
        // Sized for what is known to go in, so the buffer is not regrown and copied.
        let patch_len = self.patch.len() * 256;
        let texts = patch_len * 4 / 3
            + self.warnings.iter().map(|w| w.len() + 3).sum::<usize>()
            + (self.audit_annotations.iter())
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>()
            + self.status.as_ref().map_or(0, |s| s.message.len() + 128);
        let mut out = Vec::with_capacity(128 + texts + texts / 8);
        out.extend_from_slice(b"{\"apiVersion\":\"");
        out.extend_from_slice(version.api_version().as_bytes());
        out.extend_from_slice(b"\",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
        json_text::write_str(&mut out, &self.uid);
        out.extend_from_slice(if self.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false"
        });
        if let Some(status) = &self.status {
            self.write_status(&mut out, status);
        }
        if !self.patch.is_empty() {
            let mut json = Vec::with_capacity(patch_len);
            json_text::write_patch(&mut json, &self.patch);
            // Base64 needs no escaping: written as it is, not scanned as a string.
            out.extend_from_slice(b",\"patchType\":\"JSONPatch\",\"patch\":\"");
            // base64-simd: the `base64` crate encodes at ~7 instructions a byte, a tenth of
            // a mutating request's cost for a typical patch.
            base64_simd::STANDARD.encode_append(&json, &mut out);
            out.push(b'"');
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":[");
            for (i, warning) in self.warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_text::write_str(&mut out, warning);
            }
            out.push(b']');
        }
        if !self.audit_annotations.is_empty() {
            out.extend_from_slice(b",\"auditAnnotations\":{");
            for (i, (key, value)) in self.audit_annotations.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_text::write_str(&mut out, key);
                out.push(b':');
                json_text::write_str(&mut out, value);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}}");
        out
    }

    fn write_status(&self, out: &mut Vec<u8>, status: &Status) {
        out.extend_from_slice(if self.allowed {
            b",\"status\":{\"status\":\"Success\",\"message\":"
        } else {
            b",\"status\":{\"status\":\"Failure\",\"message\":"
        });
        json_text::write_str(out, &status.message);
        if let Some(reason) = &status.reason {
            out.extend_from_slice(b",\"reason\":");
            json_text::write_str(out, reason);
        }
        if let Some(details) = &status.details {
            out.extend_from_slice(b",\"details\":{");
            let mut first = true;
            for (name, value) in [
                ("name", &details.name),
                ("group", &details.group),
                ("kind", &details.kind),
            ] {
                if value.is_empty() {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                json_text::write_str(out, name);
                out.push(b':');
                json_text::write_str(out, value);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b",\"code\":");
        out.extend_from_slice(status.code.to_string().as_bytes());
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::{Value, json};

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

    /// The answer as serde encodes it: the reference [`AdmissionResponse::to_review_json`]
    /// must write byte for byte.
    fn serde_encoding(response: &AdmissionResponse, version: ReviewVersion) -> Vec<u8> {
        let patch = (!response.patch.is_empty()).then(|| {
            let json = serde_json::to_vec(&response.patch).unwrap();
            let text = base64::engine::general_purpose::STANDARD.encode(json);
            serde_json::value::RawValue::from_string(format!("\"{text}\"")).unwrap()
        });
        let wire = WireReview {
            api_version: version.api_version(),
            kind: "AdmissionReview",
            response: WireResponse {
                uid: &response.uid,
                allowed: response.allowed,
                status: response.status.as_ref().map(|s| WireStatus {
                    status: if response.allowed {
                        "Success"
                    } else {
                        "Failure"
                    },
                    message: &s.message,
                    reason: s.reason.as_deref(),
                    details: s.details.as_ref(),
                    code: s.code,
                }),
                patch_type: patch.as_ref().map(|_| "JSONPatch"),
                patch,
                warnings: &response.warnings,
                audit_annotations: &response.audit_annotations,
            },
        };
        serde_json::to_vec(&wire).unwrap()
    }

    #[test]
    fn written_by_hand_as_serde_encodes_it() {
        let mut responses = vec![
            AdmissionResponse::allow("u"),
            AdmissionResponse::deny("u\"1", 403, "no \"way\"\n"),
        ];
        let mut full = AdmissionResponse::allow("u-2");
        full.patch = serde_json::from_value(json!([
            {"op": "add", "path": "/metadata/annotations/a~1b", "value": "x"},
            {"op": "replace", "path": "/spec/containers/0/resources",
             "value": {"limits": {"cpu": "1"}, "n": [1, 2.5, null]}}
        ]))
        .unwrap();
        full.warnings = vec!["w1".into(), "tab\there".into()];
        full.audit_annotations.insert("k/1".into(), "v\u{1}".into());
        full.audit_annotations.insert("k2".into(), String::new());
        responses.push(full.clone());
        full.status = Some(Status {
            code: 200,
            message: "allowed with a status".into(),
            reason: Some("Why".into()),
            details: Some(StatusDetails {
                name: "p".into(),
                group: String::new(),
                kind: "pods".into(),
            }),
        });
        responses.push(full.clone());
        full.allowed = false;
        full.status = Some(Status {
            code: 403,
            message: "denied".into(),
            reason: None,
            details: Some(StatusDetails::default()),
        });
        responses.push(full);
        // Patches of every length modulo 3, so every base64 padding is compared.
        for n in 0..6 {
            let mut response = AdmissionResponse::allow("u");
            response.patch = serde_json::from_value(json!([
                {"op": "add", "path": "/a", "value": "x".repeat(n)}
            ]))
            .unwrap();
            responses.push(response);
        }
        for response in &responses {
            for version in [ReviewVersion::V1, ReviewVersion::V1Beta1] {
                assert_eq!(
                    String::from_utf8(response.to_review_json(version)).unwrap(),
                    String::from_utf8(serde_encoding(response, version)).unwrap(),
                );
            }
        }
    }

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
