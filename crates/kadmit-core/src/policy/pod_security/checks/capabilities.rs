//! Linux capabilities: `capabilities_baseline` and `capabilities_restricted`.
//!
//! `capabilities_baseline` (baseline, v1.0): every container's
//! `securityContext.capabilities.add` may only contain capabilities of the container runtime's
//! default set: `AUDIT_WRITE`, `CHOWN`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`, `KILL`, `MKNOD`,
//! `NET_BIND_SERVICE`, `SETFCAP`, `SETGID`, `SETPCAP`, `SETUID`, `SYS_CHROOT`. The match is exact and
//! case-sensitive, so `chown` and `CAP_CHOWN` are forbidden. Reason `non-default capabilities`,
//! detail `container(s) "…" must not include "…" in securityContext.capabilities.add` (containers
//! in visit order, capabilities sorted and de-duplicated).
//!
//! `capabilities_restricted` (restricted, v1.22, overrides `capabilities_baseline`): every
//! container's `securityContext.capabilities.drop` must contain `ALL`, and `add` may only contain
//! `NET_BIND_SERVICE`. A container without a security context or capabilities is only reported as
//! missing `drop`. Reason `unrestricted capabilities`, detail up to two parts joined with `; `.
//! From v1.25 pods with `spec.os.name: windows` are skipped: capabilities are Linux-only and API
//! validation rejects them on Windows pods, so requiring `drop: ["ALL"]` there is impossible.
//!
//! Fields, containers in visit order: each forbidden entry of `add`, such as
//! `spec.containers[0].securityContext.capabilities.add[1]`, and (restricted) the
//! `securityContext.capabilities.drop` of a container that does not drop `ALL` (where `ALL` must
//! be added, even when the security context is missing), before that container's `add` entries.

use super::{
    Check, Forbidden, Variant, containers, containers_phrase, joined_quoted, sorted_unique,
};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const BASELINE: Check = Check {
    id: "capabilities_baseline",
    level: Level::Baseline,
    variants: &[Variant {
        min_minor: 0,
        check: baseline_v1_0,
    }],
    overrides: &[],
};

pub(super) const RESTRICTED: Check = Check {
    id: "capabilities_restricted",
    level: Level::Restricted,
    variants: &[
        Variant {
            min_minor: 22,
            check: restricted_v1_22,
        },
        Variant {
            min_minor: 25,
            check: restricted_v1_25,
        },
    ],
    overrides: &["capabilities_baseline"],
};

/// The capabilities baseline allows adding (the container runtimes' default set).
const BASELINE_ALLOWED_1_0: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The only capability restricted allows adding.
const RESTRICTED_ALLOWED_ADD: &str = "NET_BIND_SERVICE";

/// The capability restricted requires dropping.
const RESTRICTED_REQUIRED_DROP: &str = "ALL";

fn baseline_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let mut bad_containers: Vec<&str> = Vec::new();
    let mut bad_caps: Vec<&str> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for c in containers(spec) {
        let added = c
            .security_context
            .and_then(|sc| sc.capabilities.as_ref())
            .and_then(|caps| caps.add.as_deref())
            .unwrap_or_default();
        let before = bad_caps.len();
        for (i, cap) in added.iter().enumerate() {
            if !BASELINE_ALLOWED_1_0.contains(&cap.as_str()) {
                bad_caps.push(cap);
                fields.push(c.field(&format!("securityContext.capabilities.add[{i}]")));
            }
        }
        if bad_caps.len() > before {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "non-default capabilities",
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers_phrase(&bad_containers),
                joined_quoted(&sorted_unique(bad_caps)),
            ),
        )
        .with_fields(fields),
    )
}

fn restricted_v1_22(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let mut missing_drop_all: Vec<&str> = Vec::new();
    let mut adding_forbidden: Vec<&str> = Vec::new();
    let mut bad_caps: Vec<&str> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for c in containers(spec) {
        let caps = c.security_context.and_then(|sc| sc.capabilities.as_ref());
        let drops_all = caps
            .and_then(|caps| caps.drop.as_ref())
            .into_iter()
            .flatten()
            .any(|cap| cap == RESTRICTED_REQUIRED_DROP);
        if !drops_all {
            missing_drop_all.push(c.name);
            fields.push(c.field("securityContext.capabilities.drop"));
        }
        let before = bad_caps.len();
        let added = caps
            .and_then(|caps| caps.add.as_deref())
            .unwrap_or_default();
        for (i, cap) in added.iter().enumerate() {
            if cap != RESTRICTED_ALLOWED_ADD {
                bad_caps.push(cap);
                fields.push(c.field(&format!("securityContext.capabilities.add[{i}]")));
            }
        }
        if bad_caps.len() > before {
            adding_forbidden.push(c.name);
        }
    }

    let mut parts: Vec<String> = Vec::new();
    if !missing_drop_all.is_empty() {
        parts.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        parts.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            joined_quoted(&sorted_unique(bad_caps)),
        ));
    }
    if parts.is_empty() {
        return None;
    }
    Some(Forbidden::new("unrestricted capabilities", parts.join("; ")).with_fields(fields))
}

fn restricted_v1_25(meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    if spec.os.as_ref().is_some_and(|os| os.name == "windows") {
        return None;
    }
    restricted_v1_22(meta, spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{Container, EphemeralContainer};
    use k8s_openapi::api::core::v1::{Capabilities, PodOS, SecurityContext};

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn container(name: &str, add: &[&str], drop: &[&str]) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                capabilities: Some(Capabilities {
                    add: strings(add),
                    drop: strings(drop),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn bare(name: &str) -> Container {
        Container {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn baseline_upstream_golden() {
        let spec = PodSpec {
            containers: vec![
                container("a", &["FOO", "BAR"], &[]),
                container("b", &["BAR", "BAZ"], &[]),
            ],
            ..Default::default()
        };
        let f = baseline_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "non-default capabilities");
        assert_eq!(
            f.detail,
            r#"containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.containers[0].securityContext.capabilities.add[0]",
                "spec.containers[0].securityContext.capabilities.add[1]",
                "spec.containers[1].securityContext.capabilities.add[0]",
                "spec.containers[1].securityContext.capabilities.add[1]",
            ]
        );
    }

    #[test]
    fn baseline_allows_default_set_exactly() {
        let spec = PodSpec {
            containers: vec![container("a", BASELINE_ALLOWED_1_0, &[]), bare("b")],
            ..Default::default()
        };
        assert_eq!(baseline_v1_0(&ObjectMeta::default(), &spec), None);

        let spec = PodSpec {
            init_containers: Some(vec![container("i", &["chown"], &[])]),
            containers: vec![container("a", &["CAP_CHOWN", "CHOWN"], &["ALL"])],
            ..Default::default()
        };
        let f = baseline_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "i", "a" must not include "CAP_CHOWN", "chown" in securityContext.capabilities.add"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.initContainers[0].securityContext.capabilities.add[0]",
                "spec.containers[0].securityContext.capabilities.add[0]",
            ]
        );
    }

    #[test]
    fn restricted_upstream_golden() {
        let spec = PodSpec {
            containers: vec![
                container("a", &["FOO", "BAR"], &[]),
                container("b", &["BAR", "BAZ"], &[]),
                container("c", &["NET_BIND_SERVICE", "CHOWN"], &["ALL", "FOO"]),
            ],
            ..Default::default()
        };
        let f = restricted_v1_22(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "unrestricted capabilities");
        assert_eq!(
            f.detail,
            r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.containers[0].securityContext.capabilities.drop",
                "spec.containers[0].securityContext.capabilities.add[0]",
                "spec.containers[0].securityContext.capabilities.add[1]",
                "spec.containers[1].securityContext.capabilities.drop",
                "spec.containers[1].securityContext.capabilities.add[0]",
                "spec.containers[1].securityContext.capabilities.add[1]",
                "spec.containers[2].securityContext.capabilities.add[1]",
            ]
        );
    }

    #[test]
    fn restricted_missing_security_context_only_reports_drop() {
        let spec = PodSpec {
            containers: vec![
                bare("a"),
                Container {
                    name: "b".into(),
                    security_context: Some(SecurityContext::default()),
                    ..Default::default()
                },
                container("c", &["NET_BIND_SERVICE"], &["ALL"]),
            ],
            ephemeral_containers: Some(vec![EphemeralContainer {
                name: "e".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let f = restricted_v1_22(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "a", "b", "e" must set securityContext.capabilities.drop=["ALL"]"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.containers[0].securityContext.capabilities.drop",
                "spec.containers[1].securityContext.capabilities.drop",
                "spec.ephemeralContainers[0].securityContext.capabilities.drop",
            ]
        );

        let ok = PodSpec {
            containers: vec![
                container("c", &["NET_BIND_SERVICE"], &["ALL"]),
                container("d", &[], &["ALL"]),
            ],
            ..Default::default()
        };
        assert_eq!(restricted_v1_22(&ObjectMeta::default(), &ok), None);
        // `all` is not `ALL`.
        let lower = PodSpec {
            containers: vec![container("c", &[], &["all"])],
            ..Default::default()
        };
        assert_eq!(
            restricted_v1_22(&ObjectMeta::default(), &lower)
                .unwrap()
                .detail,
            r#"container "c" must set securityContext.capabilities.drop=["ALL"]"#
        );
    }

    #[test]
    fn restricted_windows_skip_from_v1_25() {
        let os = |name: &str| Some(PodOS { name: name.into() });
        let windows = PodSpec {
            os: os("windows"),
            containers: vec![bare("a")],
            ..Default::default()
        };
        assert!(restricted_v1_22(&ObjectMeta::default(), &windows).is_some());
        assert_eq!(restricted_v1_25(&ObjectMeta::default(), &windows), None);
        let linux = PodSpec {
            os: os("linux"),
            containers: vec![bare("a")],
            ..Default::default()
        };
        assert!(restricted_v1_25(&ObjectMeta::default(), &linux).is_some());
    }
}
