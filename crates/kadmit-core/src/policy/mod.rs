//! Policies and the pipeline that runs them.
//!
//! A policy is a pure function of the review, its configuration and the [`ClusterView`]: no
//! I/O, no clock, no async. That is what lets `serve`, `replay`, `check` and the benchmarks share
//! one code path and give the same answer for the same input.

pub mod default_resources;
pub mod gmsa;
pub mod image_pull_secrets;
mod mutation;
pub mod pipeline;
pub mod pod_security;
pub mod security_defaults;

use std::collections::BTreeMap;

use json_patch::PatchOperation;

use crate::cluster::{ClusterError, ClusterView};
use crate::review::{AdmissionRequest, Status, TypedObject};

/// Which webhook endpoint a review arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/mutate`: policies may change the object.
    Mutate,
    /// `/validate`: policies see the final object and only decide.
    Validate,
}

impl Endpoint {
    /// `mutate` or `validate`, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// What a policy is given to decide on.
pub struct ReviewContext<'a> {
    /// The admission request as sent.
    pub request: &'a AdmissionRequest,
    /// `object`, decoded as its kind, when kadmit reads that kind. During mutation it already
    /// carries the changes of the policies that ran before.
    pub object: Option<&'a TypedObject>,
    /// `oldObject`, decoded as its kind, when kadmit reads that kind.
    pub old_object: Option<&'a TypedObject>,
    /// The cluster state the policy may consult.
    pub cluster: &'a dyn ClusterView,
    /// When the answer is due, if there is a deadline (the server's request timeout). Policies
    /// with optional, open-ended work (such as checking a namespace's existing pods) bound it
    /// by this; offline evaluation has none.
    pub deadline: Option<std::time::Instant>,
}

/// What one policy says about one review.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyOutcome {
    /// `Some` to deny the request.
    pub denial: Option<Status>,
    /// JSON Patch operations (mutation only), relative to the object the policy was given.
    pub patch: Vec<PatchOperation>,
    /// The object with `patch` applied, when the policy built it as a typed value (mutation
    /// only), so the pipeline hands it to the next policy instead of re-applying the patch to a
    /// re-encoded copy.
    pub mutated: Option<TypedObject>,
    /// Warnings for the client.
    pub warnings: Vec<String>,
    /// Audit annotations (keys without the webhook-name prefix).
    pub audit_annotations: BTreeMap<String, String>,
    /// Facts for metrics, recorded by whoever runs the pipeline (the server), ignored offline.
    pub events: Vec<PolicyEvent>,
}

/// Something a policy reports for metrics; the core has no metrics library of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyEvent {
    /// A Pod Security evaluation, exemption or error, for upstream's metric names.
    PodSecurity(pod_security::MetricEvent),
}

/// A policy could not reach a decision; the pipeline answers per `failure.onError`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The cluster view could not answer.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

/// An admission policy.
///
/// Both methods default to "nothing to say", so a validating-only policy implements only
/// [`Policy::validate`].
pub trait Policy: Send + Sync {
    /// A stable, short name, used in messages, logs and metric labels.
    fn name(&self) -> &str;

    /// Whether evaluating `request` may wait on something outside the process (an authorizer
    /// call). Policies that only compute over the review and in-memory caches return `false`,
    /// and the server runs them inline; otherwise the pipeline runs where a hang costs a thread,
    /// not the answer. Asked per request, so a policy that blocks only for some objects (GMSA
    /// references) costs nothing for the others.
    ///
    /// `object` is the request's object when it was decoded along with the review; otherwise it
    /// is raw in `request.object`.
    fn may_block(&self, _request: &AdmissionRequest, _object: Option<&TypedObject>) -> bool {
        false
    }

    /// Contributes to the answer of `/mutate`.
    fn mutate(&self, _ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        Ok(PolicyOutcome::default())
    }

    /// Contributes to the answer of `/validate`.
    fn validate(&self, _ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        Ok(PolicyOutcome::default())
    }

    /// The policy as one that defaults created pods in place, if it is one; the pipeline then
    /// calls [`PodDefaulting::default_pod`] instead of [`Policy::mutate`].
    fn as_pod_defaulting(&self) -> Option<&dyn PodDefaulting> {
        None
    }
}

/// A policy that fills in fields of a pod being created, by changing it in place.
///
/// Copying the pod and diffing the copy was most of what mutation cost when each defaulting
/// policy did it for itself. The pipeline instead hands consecutive defaulting policies one
/// working copy and diffs it once, after the last of them, against the pod as it was before the
/// first. Such a policy's [`Policy::mutate`] is the same work on a copy of its own, for callers
/// that run it alone.
pub trait PodDefaulting {
    /// Fills in `pod`, the object of a Pod CREATE (no subresource) as the policies before this
    /// one left it; `ctx.object` is the pod before the current run of defaulting policies and is
    /// not to be read. The returned outcome carries no patch and no object: the pipeline makes
    /// the patch. It may change only what the patch is made from (see `mutation::pod_patch`).
    ///
    /// An error must leave `pod` exactly as it was, so every lookup that can fail comes before
    /// the first change (debug builds check it).
    fn default_pod(
        &self,
        ctx: &ReviewContext<'_>,
        pod: &mut crate::pod::Pod,
    ) -> Result<Defaulted, PolicyError>;
}

/// What [`PodDefaulting::default_pod`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaulted {
    /// Whether the pod was changed.
    pub changed: bool,
    /// Warnings, audit annotations and events; no patch, no object.
    pub outcome: PolicyOutcome,
}
