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
