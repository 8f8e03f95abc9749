//! kadmit's evaluation engine.
//!
//! Everything that decides an admission lives here and does no I/O: decoding an
//! `AdmissionReview`, the policy pipeline, the configuration, and the read-only view of the
//! cluster that policies consult. The server (`kadmit serve`), the offline commands and the
//! benchmarks all call the same [`Pipeline`], so a review gets the same answer wherever it is
//! evaluated. The crate has no async runtime, network or file access by construction: its
//! `Cargo.toml` does not depend on any.

pub mod cluster;
pub mod config;
pub mod defaulting;
pub mod image;
pub mod invariants;
pub mod manifest;
pub mod pod;
pub mod policy;
pub mod replay;
pub mod review;
pub mod yaml;

pub use cluster::{ClusterError, ClusterView};
pub use config::Config;
pub use policy::pipeline::{Decision, Pipeline};
pub use policy::{Endpoint, Policy, PolicyError, ReviewContext};
pub use review::{AdmissionRequest, Review, ReviewVersion};

#[cfg(test)]
pub(crate) mod test_support {
    //! What the crate's unit tests share.

    use std::path::PathBuf;

    /// `../shared` (or `$KADMIT_SHARED_DIR`), or `None` after printing that `test` is skipped.
    pub(crate) fn shared(test: &str) -> Option<PathBuf> {
        let dir = std::env::var_os("KADMIT_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
        if dir.is_dir() {
            Some(dir)
        } else {
            println!(
                "SKIPPED {test}: {} is absent (set KADMIT_SHARED_DIR)",
                dir.display()
            );
            None
        }
    }
}
