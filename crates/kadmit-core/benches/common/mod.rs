//! What the benchmarks share.

use std::path::PathBuf;

/// `../shared` (or `$KADMIT_SHARED_DIR`), or `None` with a SKIPPED line when it is absent.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("KADMIT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: {} is absent", dir.display());
        None
    }
}

/// The review `body` with its containers' and init containers' `securityContext`s removed, so
/// that every defaulting policy has something to set.
#[allow(dead_code)] // Not every bench that includes this module uses it.
pub fn without_security_contexts(body: &[u8]) -> Vec<u8> {
    let mut review: serde_json::Value = serde_json::from_slice(body).unwrap();
    let spec = &mut review["request"]["object"]["spec"];
    for list in ["containers", "initContainers"] {
        for container in spec[list].as_array_mut().unwrap() {
            container.as_object_mut().unwrap().remove("securityContext");
        }
    }
    serde_json::to_vec(&review).unwrap()
}
