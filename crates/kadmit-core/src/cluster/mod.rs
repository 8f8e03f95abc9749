//! The read-only view of cluster state that policies consult.
//!
//! Two implementations stand behind [`ClusterView`]: the server's live view (watch-backed
//! caches, in the `kadmit` crate) and [`Snapshot`] (a file of objects, for offline use and for
//! serving without an API server). Policies cannot tell them apart, which is the point.

pub mod rbac;
mod snapshot;

pub use snapshot::{Snapshot, SnapshotError};

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod};

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

    /// The cluster-scoped `windows.k8s.io` GMSACredentialSpec called `name`, or `None`.
    fn gmsa_credential_spec(
        &self,
        name: &str,
    ) -> Result<Option<Arc<GmsaCredentialSpec>>, ClusterError>;

    /// The LimitRanges of `namespace`, ordered by name (the API server's LimitRanger takes them
    /// in its cache's order, which is unspecified; by name is the same on every replica and
    /// offline). Objects are already defaulted as the API server stores them. A view that does
    /// not track LimitRanges has none.
    fn limit_ranges(&self, _namespace: &str) -> Result<Vec<Arc<LimitRange>>, ClusterError> {
        Ok(Vec::new())
    }

    /// Whether the Secret `namespace/name` exists: `None` when the view does not know the
    /// namespace's Secrets (it does not watch them, or the snapshot has none), so callers do not
    /// report a secret as missing on no evidence.
    fn secret_exists(&self, _namespace: &str, _name: &str) -> Result<Option<bool>, ClusterError> {
        Ok(None)
    }

    /// Whether `request.user` may do `request.verb` on the resource, answered by the cluster's
    /// authorizer (live: a SubjectAccessReview, cached; snapshot: its RBAC objects). May wait
    /// for the API server, never past `deadline`.
    fn authorize(
        &self,
        request: &AccessRequest,
        deadline: Option<Instant>,
    ) -> Result<AccessDecision, ClusterError>;
}

/// A `windows.k8s.io` GMSACredentialSpec: its name and its top-level `credspec` (not `spec`).
#[derive(Debug, Clone, PartialEq)]
pub struct GmsaCredentialSpec {
    /// `metadata.name`.
    pub name: String,
    /// The `credspec` object, as stored; `None` when the object has none.
    pub credspec: Option<serde_json::Value>,
}

/// An authorization question, as a SubjectAccessReview asks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessRequest {
    /// The user, such as `system:serviceaccount:ns:sa`.
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// The namespace of the request (a LocalSubjectAccessReview's namespace).
    pub namespace: String,
    /// The verb, such as `use`.
    pub verb: String,
    /// The API group, such as `windows.k8s.io`.
    pub group: String,
    /// The API version, such as `v1` (RBAC ignores it; other authorizers may not).
    pub version: String,
    /// The resource, such as `gmsacredentialspecs`.
    pub resource: String,
    /// The object's name; empty for all objects.
    pub name: String,
}

impl AccessRequest {
    /// The question the GMSA webhook asks: may the pod's service account `use` the spec?
    pub fn use_gmsa(namespace: &str, service_account: &str, credspec: &str) -> AccessRequest {
        AccessRequest {
            user: format!("system:serviceaccount:{namespace}:{service_account}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
            ],
            namespace: namespace.to_owned(),
            verb: "use".to_owned(),
            group: "windows.k8s.io".to_owned(),
            version: "v1".to_owned(),
            resource: "gmsacredentialspecs".to_owned(),
            name: credspec.to_owned(),
        }
    }
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDecision {
    /// Allowed (and not explicitly denied).
    pub allowed: bool,
    /// Why, when the authorizer says (shown to users on denial).
    pub reason: String,
}
