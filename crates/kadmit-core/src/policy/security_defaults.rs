//! `security-defaults`: the PSP-style defaulting that Pod Security Admission does not do.
//!
//! Pod Security Admission only judges pods; PodSecurityPolicy used to also *default* them. This
//! policy fills in the three settings `restricted` asks for that have a safe, workload-neutral
//! value, wherever the pod leaves them unset:
//!
//! * `seccompProfile` (`securityDefaults.seccompProfile: RuntimeDefault`): set at pod level when
//!   the pod sets no profile and at least one container (regular, init or ephemeral) has none of
//!   its own. A pod-level profile covers exactly the containers without one, so one field is the
//!   fewest change that leaves no container unconfined, and containers with their own keep it.
//! * `allowPrivilegeEscalation` (`securityDefaults.allowPrivilegeEscalation: false`): set to
//!   `false` on each container that leaves it unset, except privileged containers and containers
//!   adding `SYS_ADMIN`: the API server rejects `allowPrivilegeEscalation: false` together with
//!   either, so defaulting it there would turn an admissible pod into a rejected one.
//! * `capabilities.drop` (`securityDefaults.dropAllCapabilities: true`): set to `["ALL"]` on each
//!   container whose `drop` is unset or empty; `add` is kept, so containers that need a
//!   capability still get it back.
//!
//! Explicit values are never changed: a set profile (even `Unconfined`), a set
//! `allowPrivilegeEscalation` (even `true`) or a non-empty `drop` (even without `ALL`) is the
//! pod author's decision, and overriding it could break the workload. Such pods may still fail
//! `restricted`; that is for Pod Security to say, not for a default to hide.
//!
//! Only Pod CREATE is changed (a pod's security settings are immutable afterwards), only in the
//! namespaces `securityDefaults.namespaceSelector` selects. Windows pods are left alone (see
//! [`is_windows`]). The patch is the difference between the pod before and after (see
//! `mutation::pod_patch`), so a pod that already has every default gets no patch, and a second
//! pass over a patched pod changes nothing.
//!
//! # Summary
//!
//! When something changed, the summary (audit annotation `security-defaults` and/or warning, per
//! `mutationSummary`) is `set ` followed by up to three parts joined with `; `, in this order:
//!
//! * `seccompProfile RuntimeDefault for the pod`
//! * `allowPrivilegeEscalation false for <targets>`
//! * `capabilities.drop [ALL] for <targets>`
//!
//! where `<targets>` lists the changed containers joined with `, `, each as `container <name>`,
//! `init container <name>` or `ephemeral container <name>`, in the order `containers`,
//! `initContainers`, `ephemeralContainers` and by index within each list. For example:
//! `set seccompProfile RuntimeDefault for the pod; allowPrivilegeEscalation false for container
//! app, init container setup; capabilities.drop [ALL] for container app`. Container names are
//! DNS labels, so they need no quoting.

use k8s_openapi::api::core::v1::{SeccompProfile, SecurityContext};

use super::mutation::{mutate_copy, namespace_selected, summarize};
use super::{Defaulted, PodDefaulting, Policy, PolicyError, PolicyOutcome, ReviewContext};
use crate::config::{MutationSummary, SecurityDefaultsConfig};
use crate::pod::{ObjectMeta, Pod, PodSpec};

/// The policy's name, in messages, metrics and the summary's annotation key.
const NAME: &str = "security-defaults";

/// The legacy pod-level seccomp annotation. The API server copies it into the field when the
/// field is unset and rejects a pod whose field and annotation disagree, so a pod carrying it
/// already has a profile, and setting a different field would get the pod rejected.
const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";

/// The legacy per-container seccomp annotation, followed by the container's name. A container
/// with it counts as having its own profile, for the same reason as [`SECCOMP_POD_ANNOTATION`].
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// The capability whose addition makes the API server reject `allowPrivilegeEscalation: false`
/// (the container can regain privileges anyway). Compared without the `CAP_` prefix and without
/// regard to case, as container runtimes normalize capability names that way: the policy would
/// rather leave a field unset than set one that makes the pod invalid.
const SYS_ADMIN: &str = "SYS_ADMIN";

/// The `security-defaults` policy.
#[derive(Debug, Clone)]
pub struct SecurityDefaults {
    config: SecurityDefaultsConfig,
    summary: MutationSummary,
}

impl SecurityDefaults {
    /// The policy for `config`, summarizing its changes per `summary`.
    pub fn new(config: SecurityDefaultsConfig, summary: MutationSummary) -> Self {
        SecurityDefaults { config, summary }
    }
}

impl Policy for SecurityDefaults {
    fn name(&self) -> &str {
        NAME
    }

    fn mutate(&self, ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        mutate_copy(self, ctx)
    }

    fn as_pod_defaulting(&self) -> Option<&dyn PodDefaulting> {
        Some(self)
    }
}

impl PodDefaulting for SecurityDefaults {
    fn default_pod(
        &self,
        ctx: &ReviewContext<'_>,
        pod: &mut Pod,
    ) -> Result<Defaulted, PolicyError> {
        let mut outcome = PolicyOutcome::default();
        if !namespace_selected(&self.config.namespace_selector, ctx)? {
            return Ok(Defaulted {
                changed: false,
                outcome,
            });
        }
        let changes = apply_defaults(&self.config, pod);
        let changed = !changes.is_empty();
        if changed {
            summarize(&mut outcome, self.summary, NAME, || changes.describe());
        }
        Ok(Defaulted { changed, outcome })
    }
}

/// Which list a container is in, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContainerKind {
    Container,
    Init,
    Ephemeral,
}

impl ContainerKind {
    fn label(self) -> &'static str {
        match self {
            ContainerKind::Container => "container",
            ContainerKind::Init => "init container",
            ContainerKind::Ephemeral => "ephemeral container",
        }
    }
}

/// A changed container: its list and name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    kind: ContainerKind,
    name: String,
}

/// What [`apply_defaults`] changed, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Changes {
    /// The pod-level seccomp profile type set, if one was.
    seccomp: Option<&'static str>,
    /// Containers given `allowPrivilegeEscalation: false`.
    no_escalation: Vec<Target>,
    /// Containers given `capabilities.drop: ["ALL"]`.
    drop_all: Vec<Target>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.seccomp.is_none() && self.no_escalation.is_empty() && self.drop_all.is_empty()
    }

    /// The summary text; its format is documented at the top of this module. Written into one
    /// string: formatting each part into its own and joining them was most of the policy's cost.
    fn describe(&self) -> String {
        fn targets(text: &mut String, list: &[Target]) {
            for (i, target) in list.iter().enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                text.push_str(target.kind.label());
                text.push(' ');
                text.push_str(&target.name);
            }
        }
        let mut text =
            String::with_capacity(96 + 32 * (self.no_escalation.len() + self.drop_all.len()));
        text.push_str("set ");
        if let Some(profile) = self.seccomp {
            text.push_str("seccompProfile ");
            text.push_str(profile);
            text.push_str(" for the pod");
        }
        for (list, what) in [
            (&self.no_escalation, "allowPrivilegeEscalation false for "),
            (&self.drop_all, "capabilities.drop [ALL] for "),
        ] {
            if list.is_empty() {
                continue;
            }
            if text.len() > "set ".len() {
                text.push_str("; ");
            }
            text.push_str(what);
            targets(&mut text, list);
        }
        text
    }
}

/// Whether the pod runs on Windows, where none of the defaults applies: seccomp, privilege
/// escalation and Linux capabilities do not exist there, and the API server rejects all three
/// fields on pods with `spec.os.name: windows`. A pod with a `hostProcess` container (pod level
/// or any container) is a Windows pod even without `spec.os`: host process containers exist only
/// on Windows nodes, so the Linux settings would be meaningless on it, and would make it invalid
/// the moment its author adds the `os` field it should have.
fn is_windows(spec: &PodSpec) -> bool {
    if spec.os.as_ref().is_some_and(|os| os.name == "windows") {
        return true;
    }
    let pod_host_process = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true);
    let mut container_host_process = false;
    visit(spec, |_, _, sc| {
        container_host_process |= sc
            .and_then(|sc| sc.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true);
    });
    pod_host_process || container_host_process
}

/// Calls `f` with every container's list, name and security context: containers, init
/// containers, ephemeral containers, in that order.
fn visit<'a>(
    spec: &'a PodSpec,
    mut f: impl FnMut(ContainerKind, &'a str, Option<&'a SecurityContext>),
) {
    for c in &spec.containers {
        f(
            ContainerKind::Container,
            &c.name,
            c.security_context.as_ref(),
        );
    }
    for c in spec.init_containers.iter().flatten() {
        f(ContainerKind::Init, &c.name, c.security_context.as_ref());
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        f(
            ContainerKind::Ephemeral,
            &c.name,
            c.security_context.as_ref(),
        );
    }
}

/// [`visit`], with the security contexts open for change.
fn visit_mut(
    spec: &mut PodSpec,
    mut f: impl FnMut(ContainerKind, &str, &mut Option<SecurityContext>),
) {
    for c in &mut spec.containers {
        f(ContainerKind::Container, &c.name, &mut c.security_context);
    }
    for c in spec.init_containers.iter_mut().flatten() {
        f(ContainerKind::Init, &c.name, &mut c.security_context);
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        f(ContainerKind::Ephemeral, &c.name, &mut c.security_context);
    }
}

/// Applies the configured defaults to `pod` in place and says what changed.
fn apply_defaults(config: &SecurityDefaultsConfig, pod: &mut Pod) -> Changes {
    let mut changes = Changes::default();
    let Some(spec) = pod.spec.as_mut() else {
        return changes;
    };
    if is_windows(spec) {
        return changes;
    }
    if let Some(profile) = config.seccomp_profile
        && needs_pod_seccomp(&pod.metadata, spec)
    {
        spec.security_context
            .get_or_insert_default()
            .seccomp_profile = Some(SeccompProfile {
            type_: profile.as_str().to_owned(),
            localhost_profile: None,
        });
        changes.seccomp = Some(profile.as_str());
    }
    let no_escalation = config.allow_privilege_escalation == Some(false);
    let drop_all = config.drop_all_capabilities;
    visit_mut(spec, |kind, name, sc| {
        let target = || Target {
            kind,
            name: name.to_owned(),
        };
        if no_escalation && may_default_escalation(sc.as_ref()) {
            sc.get_or_insert_default().allow_privilege_escalation = Some(false);
            changes.no_escalation.push(target());
        }
        let drops_nothing = sc
            .as_ref()
            .and_then(|sc| sc.capabilities.as_ref())
            .and_then(|caps| caps.drop.as_ref())
            .is_none_or(Vec::is_empty);
        if drop_all && drops_nothing {
            sc.get_or_insert_default()
                .capabilities
                .get_or_insert_default()
                .drop = Some(vec!["ALL".to_owned()]);
            changes.drop_all.push(target());
        }
    });
    changes
}

/// Whether the pod needs a pod-level seccomp profile: it has none (field or legacy annotation)
/// and some container has none of its own (field or legacy annotation) either.
fn needs_pod_seccomp(meta: &ObjectMeta, spec: &PodSpec) -> bool {
    let annotations = meta.annotations.as_ref();
    let has_annotation = |key: &str| annotations.is_some_and(|a| a.contains_key(key));
    let pod_has_profile = spec
        .security_context
        .as_ref()
        .is_some_and(|sc| sc.seccomp_profile.is_some());
    if pod_has_profile || has_annotation(SECCOMP_POD_ANNOTATION) {
        return false;
    }
    let mut unconfined_container = false;
    visit(spec, |_, name, sc| {
        let own_field = sc.is_some_and(|sc| sc.seccomp_profile.is_some());
        let own_annotation =
            has_annotation(&format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{name}"));
        unconfined_container |= !own_field && !own_annotation;
    });
    unconfined_container
}

/// Whether `allowPrivilegeEscalation: false` may be set on a container with this security
/// context: it is unset, and the container is neither privileged nor adding `SYS_ADMIN` (with
/// either, the API server rejects `false`).
fn may_default_escalation(sc: Option<&SecurityContext>) -> bool {
    let Some(sc) = sc else {
        return true;
    };
    if sc.allow_privilege_escalation.is_some() || sc.privileged == Some(true) {
        return false;
    }
    let adds_sys_admin = sc
        .capabilities
        .as_ref()
        .and_then(|caps| caps.add.as_ref())
        .into_iter()
        .flatten()
        .any(|cap| is_sys_admin(cap));
    !adds_sys_admin
}

/// `SYS_ADMIN`, `CAP_SYS_ADMIN`, in any case.
fn is_sys_admin(cap: &str) -> bool {
    let upper = cap.to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper) == SYS_ADMIN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{
        AccessDecision, AccessRequest, ClusterError, ClusterView, GmsaCredentialSpec, Snapshot,
    };
    use crate::config::{NamespaceSelector, SeccompDefault};
    use crate::review::{AdmissionRequest, TypedObject};
    use k8s_openapi::api::core::v1::Namespace;
    use serde_json::{Value, json};
    use std::sync::Arc;

    /// Every default on, every namespace selected.
    fn all_on() -> SecurityDefaultsConfig {
        SecurityDefaultsConfig {
            enabled: true,
            seccomp_profile: Some(SeccompDefault::RuntimeDefault),
            allow_privilege_escalation: Some(false),
            drop_all_capabilities: true,
            namespace_selector: NamespaceSelector::default(),
        }
    }

    fn pod(spec: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": spec
        })
    }

    fn request(operation: &str, object: &Value, sub_resource: Option<&str>) -> AdmissionRequest {
        serde_json::from_value(json!({
            "uid": "u",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": sub_resource,
            "namespace": "apps",
            "name": "web",
            "operation": operation,
            "object": object,
        }))
        .unwrap()
    }

    /// A snapshot with the namespace `apps` labelled `team=a`.
    fn cluster() -> Snapshot {
        let mut snapshot = Snapshot::default();
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "apps", "labels": {"team": "a", "kubernetes.io/metadata.name": "apps"}}
        }))
        .unwrap();
        snapshot.insert_namespace(ns);
        snapshot
    }

    fn run_full(
        config: SecurityDefaultsConfig,
        summary: MutationSummary,
        operation: &str,
        sub_resource: Option<&str>,
        object: &Value,
        cluster: &dyn ClusterView,
    ) -> Result<PolicyOutcome, PolicyError> {
        let request = request(operation, object, sub_resource);
        let raw = serde_json::value::to_raw_value(object).unwrap();
        let typed = TypedObject::decode(&request.kind, &raw, "object").unwrap();
        let ctx = ReviewContext {
            request: &request,
            object: typed.as_ref(),
            old_object: None,
            cluster,
            deadline: None,
        };
        SecurityDefaults::new(config, summary).mutate(&ctx)
    }

    /// The CREATE outcome for `spec` with `config`: the patch as JSON and the summary annotation.
    fn run(config: SecurityDefaultsConfig, object: &Value) -> (Value, Option<String>) {
        let outcome = run_full(
            config,
            MutationSummary::AuditAnnotations,
            "CREATE",
            None,
            object,
            &cluster(),
        )
        .unwrap();
        assert!(outcome.denial.is_none());
        assert!(outcome.warnings.is_empty());
        let summary = outcome.audit_annotations.get(NAME).cloned();
        assert_eq!(summary.is_some(), !outcome.patch.is_empty());
        (serde_json::to_value(&outcome.patch).unwrap(), summary)
    }

    /// Applies `config` to `object`, checks a second pass changes nothing, and returns the patch.
    fn run_twice(config: SecurityDefaultsConfig, object: &Value) -> (Value, Option<String>) {
        let (patch, summary) = run(config.clone(), object);
        let ops: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &ops).unwrap();
        let (again, _) = run(config, &patched);
        assert_eq!(again, json!([]), "second pass over {patched}");
        (patch, summary)
    }

    #[test]
    fn every_default_on_a_bare_pod() {
        let (patch, summary) = run_twice(
            all_on(),
            &pod(json!({"containers": [{"name": "app", "image": "nginx"}]})),
        );
        assert_eq!(
            patch,
            json!([
                {"op": "add", "path": "/spec/containers/0/securityContext", "value": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}},
                {"op": "add", "path": "/spec/securityContext", "value": {
                    "seccompProfile": {"type": "RuntimeDefault"}}},
            ])
        );
        assert_eq!(
            summary.unwrap(),
            "set seccompProfile RuntimeDefault for the pod; allowPrivilegeEscalation false for container app; capabilities.drop [ALL] for container app"
        );
    }

    #[test]
    fn summary_lists_containers_by_list_then_index() {
        let (_, summary) = run_twice(
            all_on(),
            &pod(json!({
                "initContainers": [{"name": "setup"}],
                "containers": [{"name": "app"}, {"name": "sidecar", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}],
                "ephemeralContainers": [{"name": "debug"}]
            })),
        );
        assert_eq!(
            summary.unwrap(),
            "set seccompProfile RuntimeDefault for the pod; \
             allowPrivilegeEscalation false for container app, container sidecar, init container setup, ephemeral container debug; \
             capabilities.drop [ALL] for container app, init container setup, ephemeral container debug"
        );
    }

    #[test]
    fn defaults_are_configurable_one_by_one() {
        let bare = pod(json!({"containers": [{"name": "app"}]}));
        let only = |seccomp: bool, escalation: bool, drop: bool| SecurityDefaultsConfig {
            seccomp_profile: seccomp.then_some(SeccompDefault::RuntimeDefault),
            allow_privilege_escalation: escalation.then_some(false),
            drop_all_capabilities: drop,
            ..all_on()
        };
        let (patch, summary) = run_twice(only(true, false, false), &bare);
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/spec/securityContext", "value": {"seccompProfile": {"type": "RuntimeDefault"}}}])
        );
        assert_eq!(
            summary.unwrap(),
            "set seccompProfile RuntimeDefault for the pod"
        );
        let (patch, summary) = run_twice(only(false, true, false), &bare);
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/spec/containers/0/securityContext", "value": {"allowPrivilegeEscalation": false}}])
        );
        assert_eq!(
            summary.unwrap(),
            "set allowPrivilegeEscalation false for container app"
        );
        let (patch, summary) = run_twice(only(false, false, true), &bare);
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/spec/containers/0/securityContext", "value": {"capabilities": {"drop": ["ALL"]}}}])
        );
        assert_eq!(
            summary.unwrap(),
            "set capabilities.drop [ALL] for container app"
        );
        assert_eq!(run(only(false, false, false), &bare), (json!([]), None));
        // The contract's default: dropping capabilities is opt-in.
        let (_, summary) = run(
            SecurityDefaultsConfig {
                enabled: true,
                ..SecurityDefaultsConfig::default()
            },
            &bare,
        );
        assert_eq!(
            summary.unwrap(),
            "set seccompProfile RuntimeDefault for the pod; allowPrivilegeEscalation false for container app"
        );
    }

    #[test]
    fn seccomp_is_not_set_when_every_container_has_its_own() {
        let object = pod(json!({"containers": [
            {"name": "a", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}},
            {"name": "b", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}
        ]}));
        let config = SecurityDefaultsConfig {
            allow_privilege_escalation: None,
            ..all_on()
        };
        let (patch, summary) = run_twice(config.clone(), &object);
        assert!(!patch.to_string().contains("seccomp"), "{patch}");
        assert!(!summary.unwrap().contains("seccomp"));
        // One container without: the pod level covers it, the others keep their own.
        let object = pod(json!({"containers": [
            {"name": "a", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {"name": "b"}
        ]}));
        let (patch, _) = run_twice(
            SecurityDefaultsConfig {
                drop_all_capabilities: false,
                ..config
            },
            &object,
        );
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/spec/securityContext", "value": {"seccompProfile": {"type": "RuntimeDefault"}}}])
        );
    }

    #[test]
    fn explicit_pod_profile_is_kept_and_other_pod_fields_untouched() {
        for profile in ["Unconfined", "Localhost", "RuntimeDefault"] {
            let object = pod(json!({
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": profile}},
                "containers": [{"name": "app"}]
            }));
            let config = SecurityDefaultsConfig {
                allow_privilege_escalation: None,
                drop_all_capabilities: false,
                ..all_on()
            };
            assert_eq!(run(config, &object), (json!([]), None), "{profile}");
        }
        // A pod security context without a profile gains only the profile.
        let object = pod(
            json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "app"}]}),
        );
        let config = SecurityDefaultsConfig {
            allow_privilege_escalation: None,
            drop_all_capabilities: false,
            ..all_on()
        };
        let (patch, _) = run_twice(config, &object);
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/spec/securityContext/seccompProfile", "value": {"type": "RuntimeDefault"}}])
        );
    }

    #[test]
    fn legacy_seccomp_annotations_count_as_profiles() {
        let config = SecurityDefaultsConfig {
            allow_privilege_escalation: None,
            drop_all_capabilities: false,
            ..all_on()
        };
        let mut object = pod(json!({"containers": [{"name": "app"}]}));
        object["metadata"]["annotations"] =
            json!({"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"});
        assert_eq!(run(config.clone(), &object), (json!([]), None));
        object["metadata"]["annotations"] =
            json!({"container.seccomp.security.alpha.kubernetes.io/app": "unconfined"});
        assert_eq!(run(config.clone(), &object), (json!([]), None));
        // An annotation for another container covers only that one.
        object["metadata"]["annotations"] =
            json!({"container.seccomp.security.alpha.kubernetes.io/other": "unconfined"});
        let (_, summary) = run(config, &object);
        assert_eq!(
            summary.unwrap(),
            "set seccompProfile RuntimeDefault for the pod"
        );
    }

    #[test]
    fn explicit_allow_privilege_escalation_is_kept() {
        for value in [true, false] {
            let object = pod(json!({"containers": [
                {"name": "app", "securityContext": {"allowPrivilegeEscalation": value}}
            ]}));
            let config = SecurityDefaultsConfig {
                seccomp_profile: None,
                drop_all_capabilities: false,
                ..all_on()
            };
            assert_eq!(run(config, &object), (json!([]), None), "{value}");
        }
    }

    #[test]
    fn privileged_and_sys_admin_containers_keep_escalation_unset() {
        let config = SecurityDefaultsConfig {
            seccomp_profile: None,
            drop_all_capabilities: false,
            ..all_on()
        };
        let contexts = [
            json!({"privileged": true}),
            json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
            json!({"capabilities": {"add": ["NET_ADMIN", "CAP_SYS_ADMIN"]}}),
            json!({"capabilities": {"add": ["cap_sys_admin"]}}),
        ];
        for sc in contexts {
            let object = pod(json!({"containers": [{"name": "app", "securityContext": sc}]}));
            assert_eq!(run(config.clone(), &object), (json!([]), None), "{sc}");
        }
        // `privileged: false` and other capabilities do not stop it.
        let object = pod(json!({"containers": [
            {"name": "a", "securityContext": {"privileged": false}},
            {"name": "b", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_ADMINISTRATOR"]}}},
            {"name": "c", "securityContext": {"privileged": true}}
        ]}));
        let (patch, summary) = run_twice(config, &object);
        assert_eq!(
            patch,
            json!([
                {"op": "add", "path": "/spec/containers/0/securityContext/allowPrivilegeEscalation", "value": false},
                {"op": "add", "path": "/spec/containers/1/securityContext/allowPrivilegeEscalation", "value": false},
            ])
        );
        assert_eq!(
            summary.unwrap(),
            "set allowPrivilegeEscalation false for container a, container b"
        );
    }

    #[test]
    fn drop_all_only_where_drop_is_empty_and_add_is_kept() {
        let config = SecurityDefaultsConfig {
            seccomp_profile: None,
            allow_privilege_escalation: None,
            ..all_on()
        };
        let object = pod(json!({"containers": [
            {"name": "explicit", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
            {"name": "all", "securityContext": {"capabilities": {"drop": ["ALL"]}}},
            {"name": "empty", "securityContext": {"capabilities": {"drop": []}}},
            {"name": "adds", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}},
            {"name": "bare-context", "securityContext": {}}
        ]}));
        let (patch, summary) = run_twice(config, &object);
        assert_eq!(
            patch,
            json!([
                {"op": "add", "path": "/spec/containers/2/securityContext/capabilities/drop/0", "value": "ALL"},
                {"op": "add", "path": "/spec/containers/3/securityContext/capabilities/drop", "value": ["ALL"]},
                {"op": "add", "path": "/spec/containers/4/securityContext/capabilities", "value": {"drop": ["ALL"]}},
            ])
        );
        assert_eq!(
            summary.unwrap(),
            "set capabilities.drop [ALL] for container empty, container adds, container bare-context"
        );
    }

    #[test]
    fn windows_pods_get_nothing() {
        let windows = pod(json!({"os": {"name": "windows"}, "containers": [{"name": "app"}]}));
        assert_eq!(run(all_on(), &windows), (json!([]), None));
        let pod_host_process = pod(json!({
            "securityContext": {"windowsOptions": {"hostProcess": true}},
            "hostNetwork": true,
            "containers": [{"name": "app"}]
        }));
        assert_eq!(run(all_on(), &pod_host_process), (json!([]), None));
        let container_host_process = pod(json!({
            "hostNetwork": true,
            "containers": [{"name": "app", "securityContext": {"windowsOptions": {"hostProcess": true}}}]
        }));
        assert_eq!(run(all_on(), &container_host_process), (json!([]), None));
        // `hostProcess: false` and Linux pods are defaulted.
        let linux = pod(json!({
            "os": {"name": "linux"},
            "containers": [{"name": "app", "securityContext": {"windowsOptions": {"hostProcess": false}}}]
        }));
        assert_ne!(run(all_on(), &linux).0, json!([]));
    }

    #[test]
    fn only_pod_creates_are_changed() {
        let object = pod(json!({"containers": [{"name": "app"}]}));
        let cluster = cluster();
        let outcome = |operation, sub_resource| {
            run_full(
                all_on(),
                MutationSummary::Both,
                operation,
                sub_resource,
                &object,
                &cluster,
            )
            .unwrap()
        };
        assert_eq!(outcome("UPDATE", None), PolicyOutcome::default());
        assert_eq!(
            outcome("CREATE", Some("ephemeralcontainers")),
            PolicyOutcome::default()
        );
        let created = outcome("CREATE", None);
        assert!(!created.patch.is_empty());
        // `Both`: the same text as a warning and as the audit annotation.
        assert_eq!(
            created.warnings,
            [format!(
                "kadmit security-defaults: {}",
                created.audit_annotations[NAME]
            )]
        );
    }

    #[test]
    fn namespace_selector_limits_the_defaults() {
        let object = pod(json!({"containers": [{"name": "app"}]}));
        let selecting = |selector: Value| SecurityDefaultsConfig {
            namespace_selector: serde_json::from_value(selector).unwrap(),
            ..all_on()
        };
        assert_eq!(
            run(selecting(json!({"matchLabels": {"team": "b"}})), &object),
            (json!([]), None)
        );
        assert!(
            run(selecting(json!({"matchLabels": {"team": "a"}})), &object)
                .1
                .is_some()
        );
        // A namespace the view does not know is matched by its name.
        let outcome = run_full(
            selecting(json!({"matchLabels": {"kubernetes.io/metadata.name": "apps"}})),
            MutationSummary::None,
            "CREATE",
            None,
            &object,
            &Snapshot::default(),
        )
        .unwrap();
        assert!(!outcome.patch.is_empty());
        assert!(outcome.warnings.is_empty() && outcome.audit_annotations.is_empty());
    }

    /// A cluster view that cannot answer.
    struct Broken;

    impl ClusterView for Broken {
        fn namespace(&self, _: &str) -> Result<Option<Arc<Namespace>>, ClusterError> {
            Err(ClusterError::NotSynced {
                resource: "namespaces",
            })
        }
        fn pods(&self, _: &str) -> Result<Vec<Arc<k8s_openapi::api::core::v1::Pod>>, ClusterError> {
            Ok(Vec::new())
        }
        fn gmsa_credential_spec(
            &self,
            _: &str,
        ) -> Result<Option<Arc<GmsaCredentialSpec>>, ClusterError> {
            Ok(None)
        }
        fn authorize(
            &self,
            _: &AccessRequest,
            _: Option<std::time::Instant>,
        ) -> Result<AccessDecision, ClusterError> {
            Err(ClusterError::Unavailable("no".to_owned()))
        }
    }

    #[test]
    fn cluster_errors_are_policy_errors() {
        let object = pod(json!({"containers": [{"name": "app"}]}));
        // An empty selector needs no lookup (and so no cluster); a real one does.
        let selective = SecurityDefaultsConfig {
            namespace_selector: serde_json::from_value(json!({"matchLabels": {"team": "a"}}))
                .unwrap(),
            ..all_on()
        };
        assert!(
            run_full(
                all_on(),
                MutationSummary::Both,
                "CREATE",
                None,
                &object,
                &Broken
            )
            .is_ok()
        );
        let err = run_full(
            selective,
            MutationSummary::Both,
            "CREATE",
            None,
            &object,
            &Broken,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                PolicyError::Cluster(ClusterError::NotSynced {
                    resource: "namespaces"
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn is_sys_admin_spellings() {
        for cap in ["SYS_ADMIN", "CAP_SYS_ADMIN", "sys_admin", "Cap_Sys_Admin"] {
            assert!(is_sys_admin(cap), "{cap}");
        }
        for cap in ["SYS_ADMINX", "CAP_", "NET_ADMIN", "CAP_CAP_SYS_ADMIN", ""] {
            assert!(!is_sys_admin(cap), "{cap}");
        }
    }
}
