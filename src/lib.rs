//! kadmit: a Kubernetes admission webhook server.
//!
//! The binary's pieces, in the order a review flows through them: [`server`] (TLS, HTTP,
//! deadlines) → `kadmit_core::review` (decode) → `kadmit_core::Pipeline` (policies) →
//! [`cluster`] (the live, watch-backed cluster view; `kadmit_core::cluster::Snapshot` offline).
//! [`cli`] wires them into subcommands.

pub mod certs;
pub mod cli;
pub mod cluster;
pub mod error;
pub mod server;
pub mod telemetry;

pub use kadmit_core as core;
