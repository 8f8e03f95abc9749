//! Runs the enabled policies in a fixed order and folds their outcomes into one response.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use json_patch::PatchOperation;

use super::default_resources::DefaultResources;
use super::gmsa::Gmsa;
use super::image_pull_secrets::ImagePullSecrets;
use super::mutation::{creates_pod, pod_patch};
use super::pod_security::PodSecurity;
use super::security_defaults::SecurityDefaults;
use super::{
    Defaulted, Endpoint, PodDefaulting, Policy, PolicyError, PolicyEvent, PolicyOutcome,
    ReviewContext,
};
use crate::cluster::ClusterView;
use crate::config::{Config, OnError};
use crate::pod::Pod;
use crate::review::{AdmissionResponse, DecodedObjects, Review, Status, TypedObject};

/// The answer to one review, with the facts the caller needs for metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The response to send.
    pub response: AdmissionResponse,
    /// The policy that denied, if one did.
    pub denied_by: Option<String>,
    /// Policies that could not decide and were answered per `failure.onError`.
    pub errors: Vec<String>,
    /// What the policies reported for metrics.
    pub events: Vec<PolicyEvent>,
}

/// The ordered set of enabled policies and the failure mode.
#[derive(Clone)]
pub struct Pipeline {
    policies: Vec<Arc<dyn Policy>>,
    on_error: OnError,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("policies", &self.policy_names())
            .field("on_error", &self.on_error)
            .finish()
    }
}

impl Pipeline {
    /// The pipeline the configuration asks for.
    pub fn from_config(config: &Config) -> Pipeline {
        let mut policies: Vec<Arc<dyn Policy>> = Vec::new();
        if config.pod_security.enabled {
            policies.push(Arc::new(PodSecurity::new(config.pod_security.clone())));
        }
        if config.gmsa.enabled {
            policies.push(Arc::new(Gmsa::new(config.gmsa.clone())));
        }
        // The defaulting policies, in the order their patches are combined: resources first
        // (they only touch `resources` and one annotation), then pull secrets, then security
        // settings. Each sees the pod as the ones before it left it.
        if config.default_resources.limit_ranges || !config.default_resources.rules.is_empty() {
            policies.push(Arc::new(DefaultResources::new(
                config.default_resources.clone(),
                config.mutation_summary,
            )));
        }
        if !config.image_pull_secrets.rules.is_empty() {
            policies.push(Arc::new(ImagePullSecrets::new(
                config.image_pull_secrets.clone(),
                config.mutation_summary,
            )));
        }
        if config.security_defaults.enabled {
            policies.push(Arc::new(SecurityDefaults::new(
                config.security_defaults.clone(),
                config.mutation_summary,
            )));
        }
        Pipeline {
            policies,
            on_error: config.failure.on_error,
        }
    }

    /// Whether any policy may block (wait on something outside the process) on `review`, so
    /// the server must run the pipeline where a stuck policy cannot hold up other requests.
    pub fn may_block(&self, review: &Review) -> bool {
        let object = review.decoded_objects().and_then(|d| d.object.as_ref());
        self.policies
            .iter()
            .any(|p| p.may_block(&review.request, object))
    }

    /// A pipeline of exactly these policies, in this order (for embedding and tests).
    pub fn new(policies: Vec<Arc<dyn Policy>>, on_error: OnError) -> Pipeline {
        Pipeline { policies, on_error }
    }

    /// Adds a policy after the configured ones.
    pub fn push(&mut self, policy: Arc<dyn Policy>) {
        self.policies.push(policy);
    }

    /// The names of the enabled policies, in evaluation order.
    pub fn policy_names(&self) -> Vec<&str> {
        self.policies.iter().map(|p| p.name()).collect()
    }

    /// What happens when a policy cannot decide in time or at all.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// Whether no policy is enabled.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Evaluates `review` as `endpoint` would.
    ///
    /// The object is decoded once, as the kind the request claims; an object that does not
    /// decode is denied with code 400 and the offending field, whatever the policies are.
    pub fn evaluate(
        &self,
        endpoint: Endpoint,
        review: &Review,
        cluster: &dyn ClusterView,
    ) -> Decision {
        self.evaluate_tracked(endpoint, review, cluster, None, &Progress::default())
    }

    /// [`Pipeline::evaluate`], recording in `progress` which policy is running, so a caller
    /// that gives up at a deadline can say which policy did not finish.
    pub fn evaluate_tracked(
        &self,
        endpoint: Endpoint,
        review: &Review,
        cluster: &dyn ClusterView,
        deadline: Option<std::time::Instant>,
        progress: &Progress,
    ) -> Decision {
        self.evaluate_inner(endpoint, review, cluster, deadline, progress, None)
    }

    /// [`Pipeline::evaluate`], recording in `timings` the wall time of decoding the object and
    /// of each policy, for `kadmit bench`. The answer is exactly `evaluate`'s; the clock is read
    /// only when timings are asked for, so `evaluate` pays an untaken branch per policy.
    pub fn evaluate_timed(
        &self,
        endpoint: Endpoint,
        review: &Review,
        cluster: &dyn ClusterView,
        timings: &mut PolicyTimings,
    ) -> Decision {
        timings.reset(self.policies.len());
        self.evaluate_inner(
            endpoint,
            review,
            cluster,
            None,
            &Progress::default(),
            Some(timings),
        )
    }

    /// The one evaluation behind [`Pipeline::evaluate_tracked`] and
    /// [`Pipeline::evaluate_timed`]; `timings`, when given, has been reset to this pipeline.
    fn evaluate_inner(
        &self,
        endpoint: Endpoint,
        review: &Review,
        cluster: &dyn ClusterView,
        deadline: Option<std::time::Instant>,
        progress: &Progress,
        mut timings: Option<&mut PolicyTimings>,
    ) -> Decision {
        let request = &review.request;
        // Borrowed when the review came with its objects decoded; owned once decoded here or
        // changed by a mutating policy.
        let decode = |raw: &Option<Box<serde_json::value::RawValue>>, field| match raw {
            Some(raw) => TypedObject::decode(&request.kind, raw, field).map(|o| o.map(Cow::Owned)),
            None => Ok(None),
        };
        let started = timings.as_ref().map(|_| Instant::now());
        // A review decoded for one endpoint lacks what only the other's policies read.
        debug_assert!(
            (review.decoded_objects().and_then(|d| d.only_for)).is_none_or(|e| e == endpoint),
            "a review decoded for the other endpoint evaluated at {endpoint:?}"
        );
        let decoded = match review.decoded_objects() {
            // Decoded with the review, and found wanting (too large to evaluate, malformed).
            Some(DecodedObjects {
                error: Some(err), ..
            }) => (Err(err.clone()), Ok(None)),
            // Decoded with the review.
            Some(objects) => (
                Ok(objects.object.as_ref().map(Cow::Borrowed)),
                Ok(objects.old_object.as_ref().map(Cow::Borrowed)),
            ),
            None => (
                decode(&request.object, "object"),
                decode(&request.old_object, "oldObject"),
            ),
        };
        if let (Some(timings), Some(started)) = (timings.as_deref_mut(), started) {
            timings.decode = started.elapsed();
        }
        let (mut object, old_object) = match decoded {
            (Ok(object), Ok(old)) => (object, old),
            (Err(err), _) | (_, Err(err)) => {
                return Decision {
                    response: AdmissionResponse::deny(&request.uid, 400, err.to_string()),
                    denied_by: None,
                    errors: Vec::new(),
                    events: Vec::new(),
                };
            }
        };

        // Policies see a typed pod, whose metadata is there even when the object sent has none;
        // their patches then need that object created first.
        let metadata_absent = endpoint == Endpoint::Mutate
            && object
                .as_deref()
                .and_then(TypedObject::as_pod)
                .is_some_and(|pod| pod.metadata == Default::default())
            && request.object.as_deref().is_some_and(lacks_metadata);

        // Defaulting policies change one working copy of a created pod in place; `defaulting`
        // holds the pod as it was before the current run of them, and the run's patch is made
        // once, when a policy of another kind comes or the last policy is done.
        let creates_pod = endpoint == Endpoint::Mutate
            && creates_pod(request)
            && object.as_deref().and_then(TypedObject::as_pod).is_some();
        let mut defaulting: Option<DefaultingRun<'_, '_>> = None;

        let mut response = AdmissionResponse::allow(&request.uid);
        let mut errors = Vec::new();
        let mut denied_by = None;
        let mut events = Vec::new();
        for (index, policy) in self.policies.iter().enumerate() {
            progress.0.store(index + 1, Ordering::Relaxed);
            let in_place = policy.as_pod_defaulting().filter(|_| creates_pod);
            if in_place.is_none()
                && let Some(run) = defaulting.take()
            {
                self.end_defaulting(run, request, &mut object, &mut response, &mut errors);
                if !response.allowed {
                    denied_by = errors.last().cloned();
                    break;
                }
            }
            let started = timings.as_ref().map(|_| Instant::now());
            let outcome = match in_place {
                Some(in_place) => {
                    let run = defaulting.get_or_insert_with(|| DefaultingRun {
                        before: object.clone(),
                        changed_by: None,
                    });
                    let ctx = ReviewContext {
                        request,
                        object: run.before.as_deref(),
                        old_object: old_object.as_deref(),
                        cluster,
                        deadline,
                    };
                    match object.as_mut().and_then(|o| o.to_mut().as_pod_mut()) {
                        Some(pod) => default_in_place(in_place, &ctx, pod).map(|done| {
                            if done.changed {
                                run.changed_by = Some(policy.name());
                            }
                            done.outcome
                        }),
                        None => Ok(PolicyOutcome::default()),
                    }
                }
                None => {
                    let ctx = ReviewContext {
                        request,
                        object: object.as_deref(),
                        old_object: old_object.as_deref(),
                        cluster,
                        deadline,
                    };
                    match endpoint {
                        Endpoint::Mutate => policy.mutate(&ctx),
                        Endpoint::Validate => policy.validate(&ctx),
                    }
                }
            };
            if let (Some(timings), Some(started)) = (timings.as_deref_mut(), started)
                && let Some(slot) = timings.policies.get_mut(index)
            {
                *slot = Some(started.elapsed());
            }
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(err) => {
                    errors.push(policy.name().to_owned());
                    self.on_policy_error(policy.name(), &err)
                }
            };
            let PolicyOutcome {
                denial,
                patch,
                mutated,
                warnings,
                audit_annotations,
                events: policy_events,
            } = outcome;
            events.extend(policy_events);
            response.warnings.extend(warnings);
            response.audit_annotations.extend(audit_annotations);
            if let Some(status) = denial {
                if denied_by.is_none() {
                    denied_by = Some(policy.name().to_owned());
                    response.allowed = false;
                    response.status = Some(status);
                }
                // A denied mutation changes nothing; validation goes on to collect warnings
                // and audit annotations from every policy, as the API server would show them.
                if endpoint == Endpoint::Mutate {
                    break;
                }
            }
            if endpoint == Endpoint::Mutate && !patch.is_empty() {
                let later_policies = index + 1 < self.policies.len();
                if let (true, Some(mutated)) = (later_policies, mutated) {
                    // The policy's own typed result must be what its patch produces; checked
                    // wherever tests run (debug builds), skipped where it would cost (release).
                    #[cfg(debug_assertions)]
                    if let Ok(expected) = reapply(request, object.as_deref(), &patch) {
                        debug_assert_eq!(
                            expected.as_ref(),
                            Some(&mutated),
                            "{} handed on an object its patch does not produce",
                            policy.name()
                        );
                    }
                    object = Some(Cow::Owned(mutated));
                } else if later_policies {
                    match reapply(request, object.as_deref(), &patch) {
                        Ok(next) => object = next.map(Cow::Owned),
                        Err(message) => {
                            errors.push(policy.name().to_owned());
                            let outcome =
                                self.on_policy_error(policy.name(), &PolicyError::Other(message));
                            response.warnings.extend(outcome.warnings);
                            if let Some(status) = outcome.denial {
                                denied_by = Some(policy.name().to_owned());
                                response.allowed = false;
                                response.status = Some(status);
                                break;
                            }
                            continue;
                        }
                    }
                }
                response.patch.extend(patch);
            }
        }
        if response.allowed
            && let Some(run) = defaulting.take()
        {
            self.end_defaulting(run, request, &mut object, &mut response, &mut errors);
            if !response.allowed {
                denied_by = errors.last().cloned();
            }
        }
        if !response.allowed {
            response.patch.clear();
        }
        if metadata_absent
            && response
                .patch
                .iter()
                .any(|op| op.path().as_str().starts_with("/metadata/"))
        {
            response.patch.insert(
                0,
                PatchOperation::Add(json_patch::AddOperation {
                    path: json_patch::jsonptr::PointerBuf::from_tokens(["metadata"]),
                    value: serde_json::Value::Object(Default::default()),
                }),
            );
        }
        Decision {
            response,
            denied_by,
            errors,
            events,
        }
    }

    /// Ends a run of defaulting policies: adds to the response the patch that turns the pod as
    /// it was before the run into the working copy. A patch that cannot be made is answered per
    /// `failure.onError`, on behalf of the last policy that changed the pod, and the working
    /// copy goes back to the pod before the run, so later policies see what the API server will.
    // `request` serves only the debug-build check that the patch makes the working copy.
    #[cfg_attr(not(debug_assertions), expect(unused_variables))]
    fn end_defaulting<'o>(
        &self,
        run: DefaultingRun<'o, '_>,
        request: &crate::review::AdmissionRequest,
        object: &mut Option<Cow<'o, TypedObject>>,
        response: &mut AdmissionResponse,
        errors: &mut Vec<String>,
    ) {
        let Some(policy) = run.changed_by else {
            return;
        };
        let before = run.before.as_deref().and_then(TypedObject::as_pod);
        let after = object.as_deref().and_then(TypedObject::as_pod);
        let (Some(before), Some(after)) = (before, after) else {
            return;
        };
        match pod_patch(before, after) {
            Ok(patch) => {
                // The working copy must be what the patch produces; checked wherever tests run
                // (debug builds), skipped where it would cost (release).
                #[cfg(debug_assertions)]
                if let Ok(expected) = reapply(request, run.before.as_deref(), &patch) {
                    debug_assert_eq!(
                        expected.as_ref(),
                        object.as_deref(),
                        "the defaulting policies up to {policy} left a pod their patch does not produce"
                    );
                }
                response.patch.extend(patch);
            }
            Err(err) => {
                errors.push(policy.to_owned());
                let outcome = self.on_policy_error(policy, &err);
                response.warnings.extend(outcome.warnings);
                if let Some(status) = outcome.denial {
                    response.allowed = false;
                    response.status = Some(status);
                }
                *object = run.before;
            }
        }
    }

    /// The name of the policy that `progress` says is running, if any.
    pub fn running_policy(&self, progress: &Progress) -> Option<&str> {
        match progress.0.load(Ordering::Relaxed) {
            0 => None,
            n => self.policies.get(n - 1).map(|p| p.name()),
        }
    }

    /// The outcome that stands in for a policy that could not decide.
    pub fn on_policy_error(&self, policy: &str, err: &PolicyError) -> PolicyOutcome {
        on_error_outcome(self.on_error, policy, &err.to_string())
    }
}

/// Wall times of one evaluation, filled in by [`Pipeline::evaluate_timed`].
///
/// Reused across evaluations so that timing a review allocates nothing after the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyTimings {
    /// Decoding `object` and `oldObject` as the kind the request claims.
    pub decode: Duration,
    /// One slot per policy, in the order of [`Pipeline::policy_names`]: how long the policy
    /// took, or `None` when it did not run (the object did not decode, or an earlier policy
    /// denied the mutation).
    pub policies: Vec<Option<Duration>>,
}

impl PolicyTimings {
    /// Clears the figures of the last evaluation, for a pipeline of `policies` policies.
    fn reset(&mut self, policies: usize) {
        self.decode = Duration::ZERO;
        self.policies.clear();
        self.policies.resize(policies, None);
    }
}

/// A run of consecutive defaulting policies working on one copy of a created pod.
struct DefaultingRun<'o, 'p> {
    /// The object before the run's first policy.
    before: Option<Cow<'o, TypedObject>>,
    /// The last policy of the run that changed the pod, if any did.
    changed_by: Option<&'p str>,
}

/// Runs one defaulting policy on the working copy of the pod. Debug builds check that an error
/// leaves the pod as it was, as [`PodDefaulting::default_pod`] promises.
fn default_in_place(
    policy: &dyn PodDefaulting,
    ctx: &ReviewContext<'_>,
    pod: &mut Pod,
) -> Result<Defaulted, PolicyError> {
    #[cfg(debug_assertions)]
    let before = pod.clone();
    let result = policy.default_pod(ctx, pod);
    #[cfg(debug_assertions)]
    if result.is_err() {
        assert_eq!(
            *pod, before,
            "a defaulting policy changed the pod and then failed"
        );
    }
    debug_assert!(
        result
            .as_ref()
            .map_or(true, |done| done.outcome.patch.is_empty()
                && done.outcome.mutated.is_none()),
        "a defaulting policy returned a patch of its own"
    );
    result
}

/// Which policy of a pipeline is being evaluated; see [`Pipeline::evaluate_tracked`].
#[derive(Debug, Default)]
pub struct Progress(AtomicUsize);

/// The outcome that stands in for `policy` when it could not decide because of `cause`.
pub fn on_error_outcome(on_error: OnError, policy: &str, cause: &str) -> PolicyOutcome {
    match on_error {
        OnError::Deny => PolicyOutcome {
            denial: Some(Status {
                code: 500,
                message: format!(
                    "kadmit policy {policy} could not decide: {cause} (failure.onError: deny)"
                ),
                reason: Some("InternalError".to_owned()),
                details: None,
            }),
            ..Default::default()
        },
        OnError::Allow => PolicyOutcome {
            warnings: vec![format!(
                "kadmit policy {policy} could not decide: {cause}; allowed (failure.onError: allow)"
            )],
            ..Default::default()
        },
    }
}

/// Whether the object as sent has no `metadata` (or a `null` one), which a typed pod cannot
/// tell from an empty one.
fn lacks_metadata(raw: &serde_json::value::RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Members {
        #[serde(default)]
        metadata: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Members>(raw.get()).is_ok_and(|members| members.metadata.is_none())
}

/// Applies a policy's patch to the object so the next policy sees the result.
fn reapply(
    request: &crate::review::AdmissionRequest,
    object: Option<&TypedObject>,
    patch: &[PatchOperation],
) -> Result<Option<TypedObject>, String> {
    let Some(object) = object else {
        return Err("a policy patched an object kadmit does not read".to_owned());
    };
    let mut value = match object {
        TypedObject::Pod(pod) => serde_json::to_value(pod),
        TypedObject::Namespace(ns) => serde_json::to_value(ns),
        TypedObject::Workload(_) => {
            return Err(
                "a policy patched a workload; kadmit mutates only pods and namespaces".to_owned(),
            );
        }
    }
    .map_err(|e| format!("re-encoding the object: {e}"))?;
    json_patch::patch(&mut value, patch).map_err(|e| format!("its patch does not apply: {e}"))?;
    let raw = serde_json::value::to_raw_value(&value)
        .map_err(|e| format!("re-encoding the patched object: {e}"))?;
    TypedObject::decode(&request.kind, &raw, "object").map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::cluster::Snapshot;

    #[test]
    fn timed_evaluation_answers_as_evaluate_and_times_each_policy() {
        let pipeline = Pipeline::from_config(&Config::default());
        let review = Review::from_slice(
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default", "name": "p", "operation": "CREATE",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}"#,
        )
        .unwrap();
        let cluster = Snapshot::dev();
        let mut timings = PolicyTimings::default();
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let timed = pipeline.evaluate_timed(endpoint, &review, &cluster, &mut timings);
            assert_eq!(timed, pipeline.evaluate(endpoint, &review, &cluster));
            assert_eq!(timings.policies.len(), pipeline.policy_names().len());
            assert!(timings.policies.iter().all(Option::is_some), "{timings:?}");
        }
    }

    /// The defaulting policies share one working copy of the pod and one patch; the pod that
    /// patch makes must be the one the policies make when each runs alone on the last one's
    /// result, as they would behind separate webhooks.
    #[test]
    fn one_patch_for_a_run_of_defaulting_policies_makes_the_pod_they_make_one_by_one() {
        let config = Config::from_yaml(
            "defaultResources:\n  rules:\n    - namespaceSelector: {}\n      default: {cpu: 500m}\n\
             imagePullSecrets:\n  rules:\n    - images: ['*']\n      secrets: [regcred]\n\
             securityDefaults:\n  enabled: true\n  dropAllCapabilities: true\n",
        )
        .unwrap();
        let pipeline = Pipeline::from_config(&config);
        let cluster = Snapshot::dev();
        let object = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"a/b": "c"}},
            "spec": {"containers": [{"name": "c", "image": "nginx",
                                     "resources": {"requests": {"cpu": "100m"}}}],
                     "initContainers": [{"name": "i", "image": "busybox"}]}});
        let review = |object: &serde_json::Value| {
            let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview", "request": {"uid": "u1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default", "operation": "CREATE", "object": object}});
            Review::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap()
        };

        let decision = pipeline.evaluate(Endpoint::Mutate, &review(&object), &cluster);
        assert!(decision.errors.is_empty(), "{decision:?}");
        let mut together = object.clone();
        json_patch::patch(&mut together, &decision.response.patch).unwrap();

        let mut one_by_one = object.clone();
        for name in [
            "default-resources",
            "image-pull-secrets",
            "security-defaults",
        ] {
            let policy = pipeline.policies.iter().find(|p| p.name() == name).unwrap();
            let review = review(&one_by_one);
            let object = review.decoded_objects().unwrap().object.as_ref();
            let outcome = policy
                .mutate(&ReviewContext {
                    request: &review.request,
                    object,
                    old_object: None,
                    cluster: &cluster,
                    deadline: None,
                })
                .unwrap();
            assert!(!outcome.patch.is_empty(), "{name} changed nothing");
            json_patch::patch(&mut one_by_one, &outcome.patch).unwrap();
        }
        assert_eq!(together, one_by_one);
        let summaries: Vec<&str> = decision
            .response
            .audit_annotations
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            summaries,
            [
                "default-resources",
                "image-pull-secrets",
                "security-defaults"
            ]
        );

        let again = pipeline.evaluate(Endpoint::Mutate, &review(&together), &cluster);
        assert!(again.response.patch.is_empty(), "{again:?}");
    }

    /// Policies see a typed pod, which has metadata whether or not the object sent had any;
    /// the patch must create `/metadata` exactly when the object lacks it.
    #[test]
    fn patches_create_metadata_only_when_the_object_has_none() {
        let config = Config::from_yaml(
            "defaultResources:\n  rules:\n    - namespaceSelector: {}\n      default: {cpu: 500m}\n",
        )
        .unwrap();
        let pipeline = Pipeline::from_config(&config);
        let cluster = Snapshot::dev();
        for (metadata, creates) in [
            ("", true),
            (r#""metadata": null,"#, true),
            (r#""metadata": {},"#, false),
            // Skipped by the one-pass decoder, so the typed metadata is empty here too.
            (r#""metadata": {"generateName": "web-"},"#, false),
            (r#""metadata": {"name": "p"},"#, false),
        ] {
            let object = format!(
                r#"{{"apiVersion": "v1", "kind": "Pod", {metadata}
                   "spec": {{"containers": [{{"name": "c", "image": "nginx"}}]}}}}"#
            );
            let body = format!(
                r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{
                    "uid": "u1", "kind": {{"group": "", "version": "v1", "kind": "Pod"}},
                    "resource": {{"group": "", "version": "v1", "resource": "pods"}},
                    "namespace": "default", "operation": "CREATE", "object": {object}}}}}"#
            );
            let review = Review::from_slice(body.as_bytes()).unwrap();
            let decision = pipeline.evaluate(Endpoint::Mutate, &review, &cluster);
            let patch = &decision.response.patch;
            assert!(!patch.is_empty(), "{metadata}: {decision:?}");
            let first = serde_json::to_value(&patch[0]).unwrap();
            assert_eq!(
                first == serde_json::json!({"op": "add", "path": "/metadata", "value": {}}),
                creates,
                "{metadata}: {patch:?}"
            );
            let mut patched: serde_json::Value = serde_json::from_str(&object).unwrap();
            json_patch::patch(&mut patched, patch).unwrap();
            if metadata.contains("generateName") {
                assert_eq!(patched["metadata"]["generateName"], "web-");
            }
            assert!(
                patched["metadata"]["annotations"].is_object(),
                "{metadata}: {patched}"
            );
        }
    }
}
