//! Pod Security Standards, with upstream Pod Security Admission's semantics and messages.
//!
//! [`checks`] holds the checks as data; [`labels`] turns namespace labels into the policy to
//! evaluate; this module is the admission behaviour around them: which requests are evaluated
//! (pods, pod-template workloads, namespaces), exemptions, the significant-update filter, the
//! enforce / audit / warn modes, and the exact response, warning and audit-annotation texts that
//! users and tools match.

pub mod checks;
mod go_quote;
pub mod labels;
mod namespace_pods;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;

use self::checks::{Violation, effective_minor, evaluate, forbidden_detail};
use self::labels::{LevelVersion, NamespacePolicy, aggregate, policy_from_labels};
use super::{Policy, PolicyError, PolicyEvent, PolicyOutcome, ReviewContext};
use crate::config::{Level, PodSecurityConfig, PolicyVersion, WorkloadMode};
use crate::pod::{Container, ObjectMeta, Pod, PodSpec};
use crate::review::{Operation, Status, StatusDetails, TypedObject, Workload, WorkloadKind};

/// Audit annotation: the enforce policy a pod was checked against.
pub const ENFORCE_POLICY_ANNOTATION: &str = "enforce-policy";
/// Audit annotation: what the audit level would deny.
pub const AUDIT_VIOLATIONS_ANNOTATION: &str = "audit-violations";
/// Audit annotation: why the request was exempt.
pub const EXEMPT_ANNOTATION: &str = "exempt";
/// Audit annotation: what went wrong.
pub const ERROR_ANNOTATION: &str = "error";

/// Pod subresources that carry no pod spec to judge; every other subresource (such as
/// `ephemeralcontainers` or `resize`) evaluates the whole pod.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// What was evaluated, for upstream's `pod_security_*` metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricEvent {
    /// `pod_security_evaluations_total`.
    Evaluation {
        /// `allow` or `deny`.
        decision: &'static str,
        /// The level evaluated.
        level: Level,
        /// `latest`, `v1.N`, or `future` for versions newer than kadmit knows.
        version: String,
        /// `enforce`, `audit` or `warn`.
        mode: &'static str,
        /// The request's context.
        request: MetricRequest,
    },
    /// `pod_security_exemptions_total`.
    Exemption(MetricRequest),
    /// `pod_security_errors_total`.
    Error {
        /// Whether the request could not be evaluated at all.
        fatal: bool,
        /// The request's context.
        request: MetricRequest,
    },
}

/// The request labels of the Pod Security metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRequest {
    /// The operation, lower-cased.
    pub operation: &'static str,
    /// `pod`, `namespace` or `controller`.
    pub resource: &'static str,
    /// The subresource, or empty.
    pub subresource: String,
}

/// The Pod Security policy.
#[derive(Debug, Clone)]
pub struct PodSecurity {
    config: PodSecurityConfig,
}

/// Words an enforce denial from the policy and the violations' detail.
type DenyFn<'a> = &'a dyn Fn(&LevelVersion, &str) -> Status;

/// What a request is, to Pod Security.
enum Target {
    Pod,
    Workload,
    Namespace,
}

impl PodSecurity {
    /// The policy with `config`.
    pub fn new(config: PodSecurityConfig) -> PodSecurity {
        PodSecurity { config }
    }

    /// The namespace policy its labels ask for, and any label errors.
    pub fn namespace_policy(
        &self,
        labels: Option<&BTreeMap<String, String>>,
    ) -> (NamespacePolicy, Vec<labels::LabelError>) {
        policy_from_labels(labels, &self.config.defaults)
    }

    fn exempt_namespace(&self, namespace: &str) -> bool {
        self.config
            .exemptions
            .namespaces
            .iter()
            .any(|n| n == namespace)
    }

    fn exempt_user(&self, username: &str) -> bool {
        self.config
            .exemptions
            .usernames
            .iter()
            .any(|u| u == username)
    }

    /// Why a pod or workload request is exempt before anything is looked up: its namespace, then
    /// its user, as upstream checks them.
    fn exempt_request(&self, req: &crate::review::AdmissionRequest) -> Option<&'static str> {
        if self.exempt_namespace(req.namespace()) {
            Some("namespace")
        } else if self.exempt_user(&req.user_info.username) {
            Some("user")
        } else {
            None
        }
    }

    fn exempt_runtime_class(&self, spec: &PodSpec) -> bool {
        self.exempt_runtime_class_name(spec.runtime_class_name.as_deref())
    }

    fn exempt_runtime_class_name(&self, runtime_class: Option<&str>) -> bool {
        runtime_class.is_some_and(|rc| {
            self.config
                .exemptions
                .runtime_classes
                .iter()
                .any(|c| c == rc)
        })
    }

    fn target(request: &crate::review::AdmissionRequest) -> Option<Target> {
        let (group, resource) = (&request.resource.group, &request.resource.resource);
        if resource.is_empty() {
            // No resource in the request: go by the kind (hand-written reviews).
            return if request.kind.is_core_v1("Pod") {
                Some(Target::Pod)
            } else if request.kind.is_core_v1("Namespace") {
                Some(Target::Namespace)
            } else {
                WorkloadKind::from_gvk(&request.kind).map(|_| Target::Workload)
            };
        }
        match (group.as_str(), resource.as_str()) {
            ("", "pods") => Some(Target::Pod),
            ("", "namespaces") => Some(Target::Namespace),
            ("", "replicationcontrollers" | "podtemplates")
            | ("apps", "replicasets" | "deployments" | "statefulsets" | "daemonsets")
            | ("batch", "jobs" | "cronjobs") => Some(Target::Workload),
            _ => None,
        }
    }

    /// Evaluates `meta` and `spec` against the modes of `policy`, as upstream's `EvaluatePod`:
    /// `enforce` is applied only when `enforce` is given (pods, or workloads in enforce mode),
    /// whose `denial` builds the message from the detail.
    fn evaluate_pod(
        &self,
        policy: &NamespacePolicy,
        policy_errors: &[labels::LabelError],
        meta: &ObjectMeta,
        spec: &PodSpec,
        enforce: Option<DenyFn<'_>>,
        request: &MetricRequest,
    ) -> PolicyOutcome {
        let mut outcome = PolicyOutcome::default();
        if self.exempt_runtime_class(spec) {
            return exempt_outcome("runtimeClass", request.clone());
        }
        if !policy_errors.is_empty() {
            outcome.audit_annotations.insert(
                ERROR_ANNOTATION.to_owned(),
                format!("Failed to parse policy: {}", aggregate(policy_errors)),
            );
            outcome.events.push(error_event(false, request.clone()));
        }
        let mut cache = Cache::default();
        if let Some(deny) = enforce {
            let mut run = |mv: &LevelVersion| cache.get(mv, meta, spec);
            let violations = run(&policy.enforce);
            if request.resource == "pod" {
                outcome.audit_annotations.insert(
                    ENFORCE_POLICY_ANNOTATION.to_owned(),
                    policy.enforce.to_string(),
                );
            }
            let decision = if violations.is_empty() {
                "allow"
            } else {
                outcome.denial = Some(deny(&policy.enforce, &forbidden_detail(&violations)));
                "deny"
            };
            outcome
                .events
                .push(evaluation(decision, &policy.enforce, "enforce", request));
        }
        let audit = cache.get(&policy.audit, meta, spec);
        if !audit.is_empty() {
            outcome.audit_annotations.insert(
                AUDIT_VIOLATIONS_ANNOTATION.to_owned(),
                format!(
                    "would violate PodSecurity \"{}\": {}",
                    policy.audit,
                    forbidden_detail(&audit)
                ),
            );
            outcome
                .events
                .push(evaluation("deny", &policy.audit, "audit", request));
        }
        // No warnings on a request that is denied anyway.
        if outcome.denial.is_none() {
            let warn = cache.get(&policy.warn, meta, spec);
            if !warn.is_empty() {
                outcome.warnings.push(format!(
                    "would violate PodSecurity \"{}\": {}",
                    policy.warn,
                    forbidden_detail(&warn)
                ));
                outcome
                    .events
                    .push(evaluation("deny", &policy.warn, "warn", request));
            }
        }
        outcome
    }

    fn validate_pod(&self, ctx: &ReviewContext<'_>, request: MetricRequest) -> PolicyOutcome {
        let req = ctx.request;
        let subresource = req.sub_resource.as_deref().unwrap_or("");
        if IGNORED_POD_SUBRESOURCES.contains(&subresource) {
            return PolicyOutcome::default();
        }
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return PolicyOutcome::default();
        }
        if let Some(why) = self.exempt_request(req) {
            return exempt_outcome(why, request);
        }
        let namespace = match lookup_namespace(ctx) {
            Ok(namespace) => namespace,
            Err(cause) => {
                let mut outcome = deny_outcome(
                    500,
                    "InternalError",
                    format!(
                        "Internal error occurred: failed to lookup namespace \"{}\"",
                        req.namespace()
                    ),
                );
                outcome
                    .audit_annotations
                    .insert(ERROR_ANNOTATION.to_owned(), cause);
                outcome.events.push(error_event(true, request));
                return outcome;
            }
        };
        let (policy, errors) = self.namespace_policy(namespace.metadata.labels.as_ref());
        if errors.is_empty() && policy.fully_privileged() {
            let mut outcome = PolicyOutcome::default();
            outcome.audit_annotations.insert(
                ENFORCE_POLICY_ANNOTATION.to_owned(),
                "privileged:latest".to_owned(),
            );
            outcome
                .events
                .push(evaluation("allow", &policy.enforce, "enforce", &request));
            return outcome;
        }
        let Some(pod) = ctx.object.and_then(TypedObject::as_pod) else {
            let mut outcome = deny_outcome(400, "BadRequest", "failed to decode object".to_owned());
            outcome.events.push(error_event(true, request));
            return outcome;
        };
        if req.operation == Operation::Update {
            let Some(old) = ctx.old_object.and_then(TypedObject::as_pod) else {
                let mut outcome =
                    deny_outcome(400, "BadRequest", "failed to decode old object".to_owned());
                outcome.events.push(error_event(true, request));
                return outcome;
            };
            if !is_significant_pod_update(pod, old) {
                return PolicyOutcome::default();
            }
        }
        let empty = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let name = req.name().to_owned();
        let deny = move |policy: &LevelVersion, detail: &str| Status {
            code: 403,
            message: if name.is_empty() {
                format!("pods is forbidden: violates PodSecurity \"{policy}\": {detail}")
            } else {
                format!("pods \"{name}\" is forbidden: violates PodSecurity \"{policy}\": {detail}")
            },
            reason: Some("Forbidden".to_owned()),
            details: Some(StatusDetails {
                name: name.clone(),
                group: String::new(),
                kind: "pods".to_owned(),
            }),
        };
        self.evaluate_pod(&policy, &errors, &pod.metadata, spec, Some(&deny), &request)
    }

    fn validate_workload(&self, ctx: &ReviewContext<'_>, request: MetricRequest) -> PolicyOutcome {
        let req = ctx.request;
        if self.config.workloads == WorkloadMode::Ignore
            || req.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
            || !matches!(req.operation, Operation::Create | Operation::Update)
        {
            return PolicyOutcome::default();
        }
        if let Some(why) = self.exempt_request(req) {
            return exempt_outcome(why, request);
        }
        let enforce = self.config.workloads == WorkloadMode::Enforce;
        let namespace = match lookup_namespace(ctx) {
            Ok(namespace) => namespace,
            Err(cause) => {
                // Workloads fail open: their pods are checked again when they are created.
                let mut outcome = PolicyOutcome::default();
                outcome.audit_annotations.insert(
                    ERROR_ANNOTATION.to_owned(),
                    format!(
                        "failed to lookup namespace \"{}\": {cause}",
                        req.namespace()
                    ),
                );
                outcome.events.push(error_event(true, request));
                return outcome;
            }
        };
        let (policy, errors) = self.namespace_policy(namespace.metadata.labels.as_ref());
        let nothing_to_do = policy.warn.level == Level::Privileged
            && policy.audit.level == Level::Privileged
            && (!enforce || policy.enforce.level == Level::Privileged);
        if errors.is_empty() && nothing_to_do {
            return PolicyOutcome::default();
        }
        let Some(workload) = ctx.object.and_then(TypedObject::as_workload) else {
            let mut outcome = PolicyOutcome::default();
            outcome.audit_annotations.insert(
                ERROR_ANNOTATION.to_owned(),
                "failed to decode object".to_owned(),
            );
            outcome.events.push(error_event(true, request));
            return outcome;
        };
        let Some((meta, spec)) = template_of(workload) else {
            return PolicyOutcome::default();
        };
        let kind = workload.kind.kind();
        let name = req.name().to_owned();
        let deny = move |policy: &LevelVersion, detail: &str| Status {
            code: 403,
            message: format!(
                "{kind} \"{name}\" is forbidden: the pods it would create violate PodSecurity \"{policy}\": {detail}"
            ),
            reason: Some("Forbidden".to_owned()),
            details: None,
        };
        let enforce: Option<DenyFn<'_>> = if enforce { Some(&deny) } else { None };
        self.evaluate_pod(&policy, &errors, &meta, spec, enforce, &request)
    }

    fn validate_namespace(&self, ctx: &ReviewContext<'_>) -> PolicyOutcome {
        let req = ctx.request;
        if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
            return PolicyOutcome::default();
        }
        let Some(namespace) = ctx.object.and_then(TypedObject::as_namespace) else {
            return PolicyOutcome::default();
        };
        let name = namespace
            .metadata
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(req.name());
        let labels = namespace.metadata.labels.as_ref();
        let (new_policy, new_errors) = self.namespace_policy(labels);
        match req.operation {
            Operation::Create => {
                if !new_errors.is_empty() {
                    return invalid_namespace(name, &new_errors);
                }
                let mut outcome = PolicyOutcome::default();
                if self.exempt_namespace(name) {
                    outcome.warnings.extend(self.exempt_namespace_warning(
                        name,
                        &new_policy,
                        labels,
                    ));
                }
                outcome
            }
            Operation::Update => {
                let old_labels = ctx
                    .old_object
                    .and_then(TypedObject::as_namespace)
                    .and_then(|ns| ns.metadata.labels.as_ref());
                let (old_policy, old_errors) = self.namespace_policy(old_labels);
                if !new_errors.is_empty() && (old_errors.is_empty() || new_errors != old_errors) {
                    return invalid_namespace(name, &new_errors);
                }
                let unchanged = new_policy.enforce == old_policy.enforce;
                let relaxed = new_policy.enforce.version == old_policy.enforce.version
                    && new_policy.enforce.level <= old_policy.enforce.level;
                if unchanged || new_policy.enforce.level == Level::Privileged || relaxed {
                    return PolicyOutcome::default();
                }
                let mut outcome = PolicyOutcome::default();
                if self.exempt_namespace(name) {
                    outcome.warnings.extend(self.exempt_namespace_warning(
                        name,
                        &new_policy,
                        labels,
                    ));
                    return outcome;
                }
                outcome.warnings =
                    namespace_pods::check_existing_pods(ctx, name, &new_policy.enforce, |class| {
                        self.exempt_runtime_class_name(class)
                    });
                outcome
            }
            Operation::Delete | Operation::Connect => PolicyOutcome::default(),
        }
    }

    /// Upstream's warning when an exempt namespace carries a policy that will be ignored.
    fn exempt_namespace_warning(
        &self,
        namespace: &str,
        policy: &NamespacePolicy,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Option<String> {
        let defaults = NamespacePolicy::from_defaults(&self.config.defaults);
        if policy.fully_privileged() || policy.equivalent(&defaults) {
            return None;
        }
        let has = |key: &str| labels.is_some_and(|l| l.contains_key(key));
        let mut parts = Vec::new();
        for (mode, level_label, version_label, lv) in [
            (
                "enforce",
                labels::ENFORCE,
                labels::ENFORCE_VERSION,
                policy.enforce,
            ),
            ("audit", labels::AUDIT, labels::AUDIT_VERSION, policy.audit),
            ("warn", labels::WARN, labels::WARN_VERSION, policy.warn),
        ] {
            if lv.level != Level::Privileged && (has(level_label) || has(version_label)) {
                parts.push(format!("{mode}={lv}"));
            }
        }
        Some(format!(
            "namespace \"{namespace}\" is exempt from Pod Security, and the policy ({}) will be ignored",
            parts.join(", ")
        ))
    }
}

impl Policy for PodSecurity {
    fn name(&self) -> &str {
        "pod-security"
    }

    fn validate(&self, ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        let Some(target) = Self::target(ctx.request) else {
            return Ok(PolicyOutcome::default());
        };
        let request = |resource| MetricRequest {
            operation: operation_label(ctx.request.operation),
            resource,
            subresource: ctx.request.sub_resource.clone().unwrap_or_default(),
        };
        Ok(match target {
            Target::Pod => self.validate_pod(ctx, request("pod")),
            Target::Workload => self.validate_workload(ctx, request("controller")),
            Target::Namespace => self.validate_namespace(ctx),
        })
    }
}

/// The verdict of `kadmit check` for one pod or pod template: the enforce evaluation at an
/// explicit level and version, with the same checks and message as the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckVerdict {
    /// The failed checks, in evaluation order (empty when allowed).
    pub violations: Vec<Violation>,
    /// The denial message, as the webhook would word it, when denied.
    pub message: Option<String>,
}

/// Evaluates a pod (kind `Pod`) or a workload's pod template at `level:version`, wording a
/// denial as the webhook does for a pod, or for a workload in `workloads: enforce` mode.
pub fn check_manifest(
    level: Level,
    version: PolicyVersion,
    kind: &str,
    name: &str,
    meta: &ObjectMeta,
    spec: &PodSpec,
) -> CheckVerdict {
    let policy = LevelVersion { level, version };
    let violations = evaluate(level, version, meta, spec);
    let message = (!violations.is_empty()).then(|| {
        let detail = forbidden_detail(&violations);
        match (kind, name.is_empty()) {
            ("Pod", true) => format!("pods is forbidden: violates PodSecurity \"{policy}\": {detail}"),
            ("Pod", false) => format!("pods \"{name}\" is forbidden: violates PodSecurity \"{policy}\": {detail}"),
            (kind, _) => format!(
                "{kind} \"{name}\" is forbidden: the pods it would create violate PodSecurity \"{policy}\": {detail}"
            ),
        }
    });
    CheckVerdict {
        violations,
        message,
    }
}

/// The pod template of a workload, as (metadata, spec); `None` when it has no pod spec.
pub fn template_of(workload: &Workload) -> Option<(ObjectMeta, &PodSpec)> {
    let template = workload.template.as_ref()?;
    let spec = template.spec.as_ref()?;
    Some((template.metadata.clone().unwrap_or_default(), spec))
}

/// Memoizes evaluations within one request: audit and warn usually repeat enforce's level.
#[derive(Default)]
struct Cache {
    results: Vec<((Level, u32), Vec<Violation>)>,
}

impl Cache {
    fn get(&mut self, mv: &LevelVersion, meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
        let key = (mv.level, effective_minor(mv.version));
        if let Some((_, v)) = self.results.iter().find(|(k, _)| *k == key) {
            return v.clone();
        }
        let v = evaluate(mv.level, mv.version, meta, spec);
        self.results.push((key, v.clone()));
        v
    }
}

/// The namespace, or why it could not be looked up.
fn lookup_namespace(ctx: &ReviewContext<'_>) -> Result<Arc<Namespace>, String> {
    let name = ctx.request.namespace();
    match ctx.cluster.namespace(name) {
        Ok(Some(namespace)) => Ok(namespace),
        Ok(None) => Err(format!("namespaces \"{name}\" not found")),
        Err(err) => Err(err.to_string()),
    }
}

/// The `pod_security_errors_total` event.
fn error_event(fatal: bool, request: MetricRequest) -> PolicyEvent {
    PolicyEvent::PodSecurity(MetricEvent::Error { fatal, request })
}

fn exempt_outcome(why: &str, request: MetricRequest) -> PolicyOutcome {
    let mut outcome = PolicyOutcome::default();
    outcome
        .audit_annotations
        .insert(EXEMPT_ANNOTATION.to_owned(), why.to_owned());
    outcome
        .events
        .push(PolicyEvent::PodSecurity(MetricEvent::Exemption(request)));
    outcome
}

fn deny_outcome(code: u16, reason: &str, message: String) -> PolicyOutcome {
    PolicyOutcome {
        denial: Some(Status {
            code,
            message,
            reason: Some(reason.to_owned()),
            details: None,
        }),
        ..Default::default()
    }
}

fn invalid_namespace(name: &str, errors: &[labels::LabelError]) -> PolicyOutcome {
    deny_outcome(
        422,
        "Invalid",
        format!("Namespace \"{name}\" is invalid: {}", aggregate(errors)),
    )
}

fn evaluation(
    decision: &'static str,
    lv: &LevelVersion,
    mode: &'static str,
    request: &MetricRequest,
) -> PolicyEvent {
    PolicyEvent::PodSecurity(MetricEvent::Evaluation {
        decision,
        level: lv.level,
        version: metric_version(lv),
        mode,
        request: request.clone(),
    })
}

/// Upstream's `policy_version` label: `latest` for latest or privileged, `v1.N` up to the
/// newest version kadmit knows, `future` beyond it (bounded label values).
fn metric_version(lv: &LevelVersion) -> String {
    match lv.version {
        _ if lv.level == Level::Privileged => "latest".to_owned(),
        PolicyVersion::Latest => "latest".to_owned(),
        PolicyVersion::Minor(n) if n <= checks::MAX_MINOR => format!("v1.{n}"),
        PolicyVersion::Minor(_) => "future".to_owned(),
    }
}

fn operation_label(operation: Operation) -> &'static str {
    match operation {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Connect => "connect",
    }
}

/// Whether a pod update changes what Pod Security judges: containers added or removed, an
/// image changed, or an ephemeral container added or changed. Other updates (labels,
/// annotations, tolerations, resources) are allowed without evaluation, as upstream does.
pub fn is_significant_pod_update(pod: &Pod, old: &Pod) -> bool {
    let empty = PodSpec::default();
    let new = pod.spec.as_ref().unwrap_or(&empty);
    let old = old.spec.as_ref().unwrap_or(&empty);
    let images_differ = |a: &[Container], b: &[Container]| {
        a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.image != y.image)
    };
    if images_differ(&new.containers, &old.containers)
        || images_differ(
            new.init_containers.as_deref().unwrap_or_default(),
            old.init_containers.as_deref().unwrap_or_default(),
        )
    {
        return true;
    }
    let old_ephemeral = old.ephemeral_containers.as_deref().unwrap_or_default();
    new.ephemeral_containers.iter().flatten().any(|c| {
        match old_ephemeral.iter().find(|o| o.name == c.name) {
            None => true,
            Some(o) => o.image != c.image,
        }
    })
}
