//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kadmit_core::{ClusterView, Pipeline};

use super::body::BodyBudget;
use super::capture::CaptureHandle;
use crate::telemetry::metrics::Metrics;

/// Shared, immutable-after-start state of the server.
pub struct AppState {
    /// The enabled policies.
    pub pipeline: Arc<Pipeline>,
    /// Cluster state for the policies.
    pub cluster: Arc<dyn ClusterView>,
    /// Instruments.
    pub metrics: Arc<Metrics>,
    /// Request limits.
    pub limits: Limits,
    /// Readiness inputs.
    pub readiness: Readiness,
    /// Where answered reviews are captured (`--capture-dir`); `None` when capture is off.
    pub capture: Option<CaptureHandle>,
}

/// Bounds on what one request may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send the body.
    pub body_read_timeout: Duration,
    /// The bytes of bodies all requests together may hold (see [`BodyBudget`]).
    pub body_budget: BodyBudget,
    /// The bytes that decoding the reviews being answered may build, all together: a second
    /// budget, so that a review waiting for its share of it (holding its body's share) can
    /// never keep the reviews that hold one from finishing.
    pub decoded_budget: BodyBudget,
    /// The most that decoding one review may build in memory; an object past it is denied.
    pub max_decoded_bytes: usize,
}

/// The default `--max-buffered-body-bytes`: a quarter of the chart's memory limit, room for
/// thousands of usual reviews (a pod review is a few KiB) or eight of the largest.
pub const DEFAULT_BODY_BUDGET: usize = 64 * 1024 * 1024;

/// The default `--max-buffered-decoded-bytes`: what decoding the reviews being answered may
/// build, all together. Two reviews at the default `--max-decoded-bytes` (large reviews take
/// that much before they are decoded), or thousands of usual ones (tens of KiB each).
pub const DEFAULT_DECODED_BUDGET: usize = 32 * 1024 * 1024;

/// The default `--body-read-timeout`: a stalled upload is cut off this soon. The API server
/// sends a review at once (at most 3 MiB, in-cluster), so this only ever cuts off stalled or
/// deliberately slow clients.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 * 1024 * 1024,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            body_budget: BodyBudget::new(DEFAULT_BODY_BUDGET),
            decoded_budget: BodyBudget::new(DEFAULT_DECODED_BUDGET),
            max_decoded_bytes: kadmit_core::review::DEFAULT_MAX_DECODED_BYTES,
        }
    }
}

/// The readiness reason while draining.
pub const SHUTTING_DOWN: &str = "shutting down";

/// Whether the server should receive traffic.
#[derive(Clone)]
pub struct Readiness {
    shutting_down: Arc<AtomicBool>,
    cluster_synced: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Readiness {
    /// Ready once `cluster_synced` says so, until shutdown starts.
    pub fn new(cluster_synced: Arc<dyn Fn() -> bool + Send + Sync>) -> Readiness {
        Readiness {
            shutting_down: Arc::new(AtomicBool::new(false)),
            cluster_synced,
        }
    }

    /// Always ready until shutdown (snapshots and `--dev` have nothing to sync).
    pub fn always() -> Readiness {
        Readiness::new(Arc::new(|| true))
    }

    /// From now on, report not ready.
    pub fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Why the server is not ready, or `None` when it is.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::SeqCst) {
            Some(SHUTTING_DOWN)
        } else if !(self.cluster_synced)() {
            Some("cluster caches are not synced yet")
        } else {
            None
        }
    }
}
