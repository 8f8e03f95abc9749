//! The read-only view of cluster state that policies consult.
//!
//! Two implementations stand behind [`ClusterView`]: the server's live view (watch-backed
//! caches, in the `kadmit` crate) and [`Snapshot`] (a file of objects, for offline use and for
//! serving without an API server). Policies cannot tell them apart, which is the point.

mod snapshot;

pub use snapshot::{Snapshot, SnapshotError};

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};

/// The cluster view cannot answer a question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cache for `resource` has not finished its initial list: answering from it could
    /// miss objects that exist.
    #[error("the {resource} cache is not synced with the API server yet")]
    NotSynced {
        /// Such as `namespaces`.
        resource: &'static str,
    },
    /// The question could not be answered for another reason.
    #[error("{0}")]
    Unavailable(String),
}

/// Read access to the cluster objects kadmit's policies need.
///
/// Lookups are synchronous and in-memory: the hot path never waits on the API server.
pub trait ClusterView: Send + Sync {
    /// The namespace called `name`, or `None` if the cluster has none by that name.
    fn namespace(&self, name: &str) -> Result<Option<Arc<Namespace>>, ClusterError>;

    /// The pods in `namespace`, in any order (for checking existing pods against a new Pod
    /// Security level when a namespace's labels change).
    fn pods(&self, namespace: &str) -> Result<Vec<Arc<Pod>>, ClusterError>;
}
