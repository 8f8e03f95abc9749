//! What every answer promises, whatever the input: the response carries the request's uid, a
//! denial says why, a patch applies to the object as sent and a second mutation of its result
//! changes nothing, and the answer on the wire reads back as the same decision.
//!
//! The fuzz targets (`fuzz/`), the property tests and the regression tests of inputs that
//! fuzzing found all call these, so that each checks the same promises.

use serde_json::Value;

use crate::cluster::ClusterView;
use crate::policy::Endpoint;
use crate::policy::pipeline::Pipeline;
use crate::review::Review;

/// A promise an answer broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: {message}")]
pub struct Violation {
    /// Which endpoint answered.
    pub endpoint: &'static str,
    /// What was wrong.
    pub message: String,
}

/// What a checked review exercised, so that callers can tell a vacuous check from a real one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exercised {
    /// The body decoded as a review (otherwise only reading it was checked).
    pub decoded: bool,
    /// `/validate` denied it.
    pub denied: bool,
    /// `/mutate` patched it (so the patch was applied and mutated again).
    pub patched: bool,
}

/// Decodes `body` as the server does and, when it is a review, evaluates it at both endpoints
/// and checks every promise. A body that is not a review is fine (the server answers 400): the
/// check is that reading it neither panics nor hangs.
pub fn check_review(
    pipeline: &Pipeline,
    cluster: &dyn ClusterView,
    body: &[u8],
) -> Result<Exercised, Violation> {
    let Ok(review) = Review::from_slice(body) else {
        return Ok(Exercised::default());
    };
    let mut exercised = Exercised {
        decoded: true,
        ..Exercised::default()
    };
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let violation = |message: String| Violation {
            endpoint: endpoint.as_str(),
            message,
        };
        let decision = pipeline.evaluate(endpoint, &review, cluster);
        let response = &decision.response;
        if response.uid != review.request.uid {
            return Err(violation(format!(
                "answered uid {:?} for request uid {:?}",
                response.uid, review.request.uid
            )));
        }
        if !response.allowed {
            let message = response.status.as_ref().map(|s| s.message.as_str());
            if message.is_none_or(|m| m.trim().is_empty()) {
                return Err(violation("denied without a message".to_owned()));
            }
            if !response.patch.is_empty() {
                return Err(violation("denied with a patch".to_owned()));
            }
        }
        let wire = response.to_review_json(review.version);
        let read: Value = serde_json::from_slice(&wire)
            .map_err(|e| violation(format!("the answer is not JSON: {e}")))?;
        if read.pointer("/response/uid").and_then(Value::as_str) != Some(&review.request.uid)
            || read.pointer("/response/allowed").and_then(Value::as_bool) != Some(response.allowed)
        {
            return Err(violation(format!(
                "the answer on the wire reads differently: {read}"
            )));
        }
        if endpoint == Endpoint::Validate && !response.allowed {
            exercised.denied = true;
        }
        if endpoint == Endpoint::Mutate && !response.patch.is_empty() {
            check_patch(pipeline, cluster, body, &response.patch).map_err(violation)?;
            exercised.patched = true;
        }
    }
    Ok(exercised)
}

/// The patch applies to the object as sent, and mutating the result again patches nothing.
fn check_patch(
    pipeline: &Pipeline,
    cluster: &dyn ClusterView,
    body: &[u8],
    patch: &[json_patch::PatchOperation],
) -> Result<(), String> {
    let mut sent: Value =
        serde_json::from_slice(body).map_err(|e| format!("a review that is not JSON: {e}"))?;
    let Some(object) = sent
        .get_mut("request")
        .and_then(|r| r.get_mut("object"))
        .filter(|o| o.is_object())
    else {
        return Err("patched a request without an object".to_owned());
    };
    json_patch::patch(object, patch).map_err(|e| format!("the patch does not apply: {e}"))?;
    let again = serde_json::to_vec(&sent).map_err(|e| e.to_string())?;
    let again = Review::from_slice(&again)
        .map_err(|e| format!("the patched review does not decode: {e}"))?;
    let second = pipeline.evaluate(Endpoint::Mutate, &again, cluster);
    if !second.response.patch.is_empty() {
        return Err(format!(
            "a second mutation patches again: {}",
            serde_json::to_string(&second.response.patch).unwrap_or_default()
        ));
    }
    if !second.response.allowed {
        return Err("the patched object is denied by the mutation that patched it".to_owned());
    }
    Ok(())
}

/// A Pod review in namespace `shop` (the bench cluster's) with `object` spliced in as given —
/// CREATE, or UPDATE with the same object as `oldObject` — for fuzzing pod shapes directly.
/// What is not one JSON value makes the review malformed, which must be answered too.
pub fn pod_review_body(object: &str, update: bool) -> String {
    let (operation, old) = if update {
        ("UPDATE", format!(r#", "oldObject": {object}"#))
    } else {
        ("CREATE", String::new())
    };
    format!(
        r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{"uid": "fuzz", "kind": {{"group": "", "version": "v1", "kind": "Pod"}}, "resource": {{"group": "", "version": "v1", "resource": "pods"}}, "namespace": "shop", "operation": "{operation}", "userInfo": {{"username": "system:serviceaccount:shop:web"}}, "object": {object}{old}}}}}"#
    )
}

/// Reads `text` as `kadmit check` reads a manifest file and evaluates each object at every
/// level: nothing may panic, and a verdict that forbids says why.
pub fn check_manifest(text: &str) -> Result<(), Violation> {
    use crate::config::{Level, PolicyVersion};
    for object in crate::manifest::read_manifest(text).into_iter().flatten() {
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            let Ok(Some(result)) =
                crate::manifest::check_pod_security(&object.value, level, PolicyVersion::Latest)
            else {
                continue;
            };
            let verdict = &result.verdict;
            let explained = verdict
                .message
                .as_deref()
                .is_some_and(|m| !m.trim().is_empty());
            if verdict.violations.is_empty() == explained {
                return Err(Violation {
                    endpoint: "check",
                    message: format!(
                        "document {}: {} violations but message {:?}",
                        object.document,
                        verdict.violations.len(),
                        verdict.message
                    ),
                });
            }
        }
    }
    Ok(())
}
