//! The Pod Security Standards checks, as data.
//!
//! Each check is a list of versioned variants; for a policy version the variant with the
//! greatest minimum version not above it runs, and a check whose first variant is newer than the
//! version does not run at all. Restricted checks may override baseline checks (the stricter
//! replacement runs instead). Evaluation order, reasons and details are byte-identical to
//! upstream Pod Security Admission, because users and tools match those messages.

mod allow_privilege_escalation;
mod app_armor_profile;
mod capabilities;
mod host_namespaces;
mod host_path_volumes;
mod host_ports;
mod host_probes_and_host_lifecycle;
mod privileged;
mod proc_mount;
mod restricted_volumes;
mod run_as_non_root;
mod run_as_user;
mod se_linux_options;
mod seccomp_profile;
mod sysctls;
mod windows_host_process;

use k8s_openapi::api::core::v1::{ContainerPort, Lifecycle, Probe, SecurityContext};

use crate::config::{Level, PolicyVersion};
use crate::pod::{Container, ObjectMeta, PodSpec};

/// The newest policy revision kadmit knows: `latest` and newer versions evaluate as this minor.
pub const MAX_MINOR: u32 = 37;

/// A failed check: upstream's `forbiddenReason` and `forbiddenDetail`, plus the offending
/// fields (kadmit's addition, for `kadmit check` to point at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// Short reason, such as `host namespaces`.
    pub reason: String,
    /// What exactly, such as `hostNetwork=true`; may be empty.
    pub detail: String,
    /// Paths of the offending fields relative to the pod, such as
    /// `spec.containers[0].securityContext.privileged`; not part of upstream's messages.
    pub fields: Vec<String>,
}

impl Forbidden {
    /// A violation with no fields yet; add them with [`Forbidden::with_fields`].
    pub(crate) fn new(reason: impl Into<String>, detail: impl Into<String>) -> Forbidden {
        Forbidden {
            reason: reason.into(),
            detail: detail.into(),
            fields: Vec::new(),
        }
    }

    /// Sets the offending fields' paths (see [`Forbidden::fields`]).
    pub(crate) fn with_fields(mut self, fields: Vec<String>) -> Forbidden {
        self.fields = fields;
        self
    }
}

/// A check function: pod (or pod template) metadata and spec → a violation, if any.
pub type CheckFn = fn(&ObjectMeta, &PodSpec) -> Option<Forbidden>;

/// One versioned variant of a check.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// The first minor version (of 1.x) this variant applies to.
    pub min_minor: u32,
    /// The check itself.
    pub check: CheckFn,
}

/// A Pod Security Standards check.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Upstream's check ID, such as `hostNamespaces`.
    pub id: &'static str,
    /// The level that introduces it.
    pub level: Level,
    /// Variants by ascending `min_minor`.
    pub variants: &'static [Variant],
    /// Baseline check IDs this (restricted) check replaces while it is active.
    pub overrides: &'static [&'static str],
}

impl Check {
    /// The variant that applies at `minor`, if the check exists at that version.
    pub fn variant(&self, minor: u32) -> Option<&Variant> {
        self.variants.iter().rev().find(|v| v.min_minor <= minor)
    }
}

/// Every check, in upstream's evaluation order: baseline IDs sorted byte-wise, then restricted
/// IDs sorted byte-wise.
pub static CHECKS: &[Check] = &[
    app_armor_profile::CHECK,
    capabilities::BASELINE,
    host_namespaces::CHECK,
    host_path_volumes::CHECK,
    host_ports::CHECK,
    host_probes_and_host_lifecycle::CHECK,
    privileged::CHECK,
    proc_mount::BASELINE,
    se_linux_options::CHECK,
    seccomp_profile::BASELINE,
    sysctls::CHECK,
    windows_host_process::CHECK,
    allow_privilege_escalation::CHECK,
    capabilities::RESTRICTED,
    proc_mount::RESTRICTED,
    restricted_volumes::CHECK,
    run_as_non_root::CHECK,
    run_as_user::CHECK,
    seccomp_profile::RESTRICTED,
];

/// The minor version a policy version evaluates as.
pub fn effective_minor(version: PolicyVersion) -> u32 {
    match version {
        PolicyVersion::Latest => MAX_MINOR,
        PolicyVersion::Minor(minor) => minor.min(MAX_MINOR),
    }
}

/// One failed check of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The check's ID.
    pub check: &'static str,
    /// Its reason.
    pub reason: String,
    /// Its detail (may be empty).
    pub detail: String,
    /// The offending fields, relative to the pod (see [`Forbidden::fields`]).
    pub fields: Vec<String>,
}

/// The checks that run for `level` at `version`, in evaluation order.
pub fn active_checks(
    level: Level,
    version: PolicyVersion,
) -> impl Iterator<Item = (&'static Check, &'static Variant)> {
    let minor = effective_minor(version);
    let active = move |check: &'static Check| -> Option<(&'static Check, &'static Variant)> {
        if check.level > level {
            return None;
        }
        check.variant(minor).map(|variant| (check, variant))
    };
    // Baseline checks replaced by an active restricted check do not run.
    let overridden: Vec<&'static str> = if level == Level::Restricted {
        CHECKS
            .iter()
            .filter_map(active)
            .flat_map(|(check, _)| check.overrides.iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    CHECKS
        .iter()
        .filter_map(active)
        .filter(move |(check, _)| !overridden.contains(&check.id))
}

/// Evaluates a pod's (or pod template's) metadata and spec at `level` and `version`.
pub fn evaluate(
    level: Level,
    version: PolicyVersion,
    meta: &ObjectMeta,
    spec: &PodSpec,
) -> Vec<Violation> {
    if level == Level::Privileged {
        return Vec::new();
    }
    active_checks(level, version)
        .filter_map(|(check, variant)| {
            (variant.check)(meta, spec).map(|f| Violation {
                check: check.id,
                reason: f.reason,
                detail: f.detail,
                fields: f.fields,
            })
        })
        .collect()
}

/// Upstream's `ForbiddenDetail()`: `reason (detail)` per violation, joined with `, `.
pub fn forbidden_detail(violations: &[Violation]) -> String {
    let mut out = String::new();
    for (i, v) in violations.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(if v.reason.is_empty() {
            "unknown forbidden reason"
        } else {
            &v.reason
        });
        if !v.detail.is_empty() {
            out.push_str(" (");
            out.push_str(&v.detail);
            out.push(')');
        }
    }
    out
}

/// Upstream's `ForbiddenReason()`: the reasons joined with `, `.
pub fn forbidden_reason(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.reason.is_empty() {
                "unknown forbidden reason"
            } else {
                v.reason.as_str()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fields of a container the checks read, with where it is in the pod (for messages and
/// field paths).
#[derive(Debug, Clone, Copy)]
pub struct ContainerView<'a> {
    /// Which list it is in: `initContainers`, `containers` or `ephemeralContainers`.
    pub list: &'static str,
    /// Its index in that list.
    pub index: usize,
    /// The container's name.
    pub name: &'a str,
    /// Its security context.
    pub security_context: Option<&'a SecurityContext>,
    /// Its ports.
    pub ports: Option<&'a [ContainerPort]>,
    /// Its liveness probe.
    pub liveness_probe: Option<&'a Probe>,
    /// Its readiness probe.
    pub readiness_probe: Option<&'a Probe>,
    /// Its startup probe.
    pub startup_probe: Option<&'a Probe>,
    /// Its lifecycle hooks.
    pub lifecycle: Option<&'a Lifecycle>,
}

impl<'a> ContainerView<'a> {
    /// The container's path in the pod, such as `spec.containers[0]`.
    pub fn path(&self) -> String {
        format!("spec.{}[{}]", self.list, self.index)
    }

    /// The path of one of the container's fields, such as
    /// `spec.containers[0].securityContext.privileged` for `securityContext.privileged`.
    pub(crate) fn field(&self, relative: &str) -> String {
        format!("{}.{relative}", self.path())
    }

    fn from_container(list: &'static str, index: usize, c: &'a Container) -> Self {
        ContainerView {
            list,
            index,
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: c.ports.as_deref(),
            liveness_probe: c.liveness_probe.as_deref(),
            readiness_probe: c.readiness_probe.as_deref(),
            startup_probe: c.startup_probe.as_deref(),
            lifecycle: c.lifecycle.as_deref(),
        }
    }
}

/// Every container of the pod in upstream's visit order: init containers, containers,
/// ephemeral containers.
pub fn containers(spec: &PodSpec) -> impl Iterator<Item = ContainerView<'_>> {
    spec.init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ContainerView::from_container("initContainers", i, c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| ContainerView::from_container("containers", i, c)),
        )
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| ContainerView::from_container("ephemeralContainers", i, c)),
        )
}

/// `singular` when `n == 1`, else `plural`.
pub(crate) fn pluralize<'s>(n: usize, singular: &'s str, plural: &'s str) -> &'s str {
    if n == 1 { singular } else { plural }
}

/// Upstream's quoted list: each item in double quotes, joined with `, ` (no escaping).
pub(crate) fn joined_quoted<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        out.push_str(item.as_ref());
        out.push('"');
    }
    out
}

/// `container "a"` / `containers "a", "b"`.
pub(crate) fn containers_phrase<S: AsRef<str>>(names: &[S]) -> String {
    format!(
        "{} {}",
        pluralize(names.len(), "container", "containers"),
        joined_quoted(names)
    )
}

/// Who set a bad value: `pod`, `container "a"`, `pod and containers "a", "b"`.
pub(crate) fn setters_phrase<S: AsRef<str>>(pod: bool, containers: &[S]) -> String {
    match (pod, containers.is_empty()) {
        (true, true) => "pod".to_owned(),
        (true, false) => format!("pod and {}", containers_phrase(containers)),
        (false, _) => containers_phrase(containers),
    }
}

/// Sorted, de-duplicated copy (byte-wise, as Go's `sort.Strings` on a set).
pub(crate) fn sorted_unique<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::EphemeralContainer;

    #[test]
    fn order_and_overrides() {
        let ids = |level, version| -> Vec<&str> {
            active_checks(level, version).map(|(c, _)| c.id).collect()
        };
        assert_eq!(
            ids(Level::Baseline, PolicyVersion::Minor(0)),
            [
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPathVolumes",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess"
            ]
        );
        assert_eq!(ids(Level::Restricted, PolicyVersion::Minor(0)).len(), 12);
        assert_eq!(ids(Level::Restricted, PolicyVersion::Minor(8)).len(), 13);
        assert_eq!(ids(Level::Restricted, PolicyVersion::Minor(19)).len(), 13);
        assert_eq!(ids(Level::Restricted, PolicyVersion::Minor(23)).len(), 14);
        assert_eq!(ids(Level::Baseline, PolicyVersion::Minor(34)).len(), 12);
        assert_eq!(ids(Level::Restricted, PolicyVersion::Latest).len(), 15);
        assert_eq!(
            ids(Level::Restricted, PolicyVersion::Minor(99)),
            ids(Level::Restricted, PolicyVersion::Latest)
        );
        let restricted = ids(Level::Restricted, PolicyVersion::Latest);
        for gone in [
            "hostPathVolumes",
            "seccompProfile_baseline",
            "capabilities_baseline",
            "procMount",
        ] {
            assert!(!restricted.contains(&gone), "{gone}");
        }
    }

    #[test]
    fn container_paths_and_fields_reach_violations() {
        use k8s_openapi::api::core::v1::SecurityContext;
        let named = |name: &str| Container {
            name: name.into(),
            ..Default::default()
        };
        let spec = PodSpec {
            init_containers: Some(vec![named("i0"), named("i1")]),
            containers: vec![Container {
                security_context: Some(SecurityContext {
                    privileged: Some(true),
                    ..Default::default()
                }),
                ..named("c0")
            }],
            ephemeral_containers: Some(vec![EphemeralContainer {
                name: "e0".into(),
                ..Default::default()
            }]),
            host_network: Some(true),
            ..Default::default()
        };
        let paths: Vec<String> = containers(&spec).map(|c| c.path()).collect();
        assert_eq!(
            paths,
            [
                "spec.initContainers[0]",
                "spec.initContainers[1]",
                "spec.containers[0]",
                "spec.ephemeralContainers[0]",
            ]
        );
        let violations = evaluate(
            Level::Baseline,
            PolicyVersion::Latest,
            &ObjectMeta::default(),
            &spec,
        );
        let fields: Vec<(&str, &[String])> = violations
            .iter()
            .map(|v| (v.check, v.fields.as_slice()))
            .collect();
        assert_eq!(
            fields,
            [
                ("hostNamespaces", &["spec.hostNetwork".to_owned()][..]),
                (
                    "privileged",
                    &["spec.containers[0].securityContext.privileged".to_owned()][..]
                ),
            ]
        );
    }

    #[test]
    fn phrases() {
        assert_eq!(
            setters_phrase(true, &["e", "f"]),
            r#"pod and containers "e", "f""#
        );
        assert_eq!(setters_phrase(false, &["a"]), r#"container "a""#);
        assert_eq!(setters_phrase::<&str>(true, &[]), "pod");
        assert_eq!(sorted_unique(["b", "a", "b"]), ["a", "b"]);
    }
}
