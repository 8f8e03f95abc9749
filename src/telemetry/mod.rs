//! Logs and metrics.

pub mod fields;
pub mod logging;
pub mod metrics;
