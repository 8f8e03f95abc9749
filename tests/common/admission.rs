//! Reading admission answers as the API server does.

use base64::Engine as _;
use serde_json::Value;

/// The JSON Patch ops of an AdmissionReview `response`, decoded from base64; empty when it has
/// no patch. Checks what the API server relies on: `patchType: JSONPatch` exactly when there is
/// a patch, and an empty patch left out rather than sent.
#[track_caller]
pub fn patch_ops(response: &Value) -> Vec<Value> {
    match response.get("patch") {
        None => {
            assert!(response.get("patchType").is_none(), "{response}");
            Vec::new()
        }
        Some(patch) => {
            assert_eq!(response["patchType"], "JSONPatch", "{response}");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch.as_str().expect("patch is a base64 string"))
                .unwrap();
            let ops: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
            assert!(
                !ops.is_empty(),
                "an empty patch must be left out: {response}"
            );
            ops
        }
    }
}
