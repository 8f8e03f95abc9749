//! `runAsNonRoot` (restricted): containers must be required to run as a non-root user.
//!
//! Fields: `spec.securityContext.runAsNonRoot` and every container's
//! `securityContext.runAsNonRoot`. Allowed: `true`; a container may leave it unset when the pod
//! sets `true`. An explicit `false` anywhere fails, and so does a container that leaves it unset
//! without a pod-level `true`. A non-zero `runAsUser` does not satisfy the check, and Windows pods
//! are not exempt (`runAsNonRoot` is honoured on Windows).
//!
//! Explicit bad values win: if the pod or any container sets `false`, the detail is `<setters>
//! must not set securityContext.runAsNonRoot=false`; otherwise the containers left unset are
//! reported as `pod or container(s) Q(names) must set securityContext.runAsNonRoot=true`.
//!
//! Fields follow the detail: for explicit falses, `spec.securityContext.runAsNonRoot` (if the pod
//! sets `false`) and each such container's `securityContext.runAsNonRoot`; otherwise each unset
//! container's `securityContext.runAsNonRoot`, such as
//! `spec.containers[0].securityContext.runAsNonRoot`, where it must be set to `true`. Setting
//! `spec.securityContext.runAsNonRoot: true` at pod level instead also satisfies those
//! containers.
//!
//! Versions:
//! * v1.0.
//! * v1.35: pods with `spec.hostUsers: false` are allowed whatever they set: in a user namespace
//!   root in the container is an unprivileged user on the host (KEP-127). The relaxation is
//!   unconditional from v1.35 and never applies to older versions.

use super::{Check, Forbidden, Variant, containers, containers_phrase, setters_phrase};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "runAsNonRoot",
    level: Level::Restricted,
    variants: &[
        Variant {
            min_minor: 0,
            check: check_v1_0,
        },
        Variant {
            min_minor: 35,
            check: check_v1_35,
        },
    ],
    overrides: &[],
};

fn check_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    must_run_as_non_root(spec)
}

fn check_v1_35(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    if spec.host_users == Some(false) {
        return None;
    }
    must_run_as_non_root(spec)
}

const REASON: &str = "runAsNonRoot != true";

fn must_run_as_non_root(spec: &PodSpec) -> Option<Forbidden> {
    let pod_value = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_non_root);
    let pod_bad = pod_value == Some(false);
    let pod_true = pod_value == Some(true);

    const FIELD: &str = "securityContext.runAsNonRoot";
    let mut explicitly_bad = Vec::new();
    let mut explicit_fields = Vec::new();
    let mut implicitly_bad = Vec::new();
    let mut implicit_fields = Vec::new();
    if pod_bad {
        explicit_fields.push(format!("spec.{FIELD}"));
    }
    for c in containers(spec) {
        match c.security_context.and_then(|sc| sc.run_as_non_root) {
            Some(false) => {
                explicitly_bad.push(c.name);
                explicit_fields.push(c.field(FIELD));
            }
            Some(true) => {}
            None if !pod_true => {
                implicitly_bad.push(c.name);
                implicit_fields.push(c.field(FIELD));
            }
            None => {}
        }
    }

    if pod_bad || !explicitly_bad.is_empty() {
        return Some(
            Forbidden::new(
                REASON,
                format!(
                    "{} must not set securityContext.runAsNonRoot=false",
                    setters_phrase(pod_bad, &explicitly_bad)
                ),
            )
            .with_fields(explicit_fields),
        );
    }
    if !implicitly_bad.is_empty() {
        return Some(
            Forbidden::new(
                REASON,
                format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    containers_phrase(&implicitly_bad)
                ),
            )
            .with_fields(implicit_fields),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;
    use k8s_openapi::api::core::v1::{PodOS, PodSecurityContext, SecurityContext};

    fn container(name: &str, value: Option<bool>) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                run_as_non_root: value,
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

    fn pod_level(value: bool) -> Option<PodSecurityContext> {
        Some(PodSecurityContext {
            run_as_non_root: Some(value),
            ..Default::default()
        })
    }

    fn both(spec: &PodSpec) -> Option<Forbidden> {
        let meta = ObjectMeta::default();
        let old = check_v1_0(&meta, spec);
        assert_eq!(old, check_v1_35(&meta, spec));
        old
    }

    #[test]
    fn upstream_golden() {
        let f = both(&PodSpec {
            containers: vec![bare("a")],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.reason, "runAsNonRoot != true");
        assert_eq!(
            f.detail,
            r#"pod or container "a" must set securityContext.runAsNonRoot=true"#
        );
        assert_eq!(
            f.fields,
            ["spec.containers[0].securityContext.runAsNonRoot"]
        );

        let f = both(&PodSpec {
            security_context: pod_level(false),
            containers: vec![bare("a")],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.reason, "runAsNonRoot != true");
        assert_eq!(
            f.detail,
            "pod must not set securityContext.runAsNonRoot=false"
        );
        assert_eq!(f.fields, ["spec.securityContext.runAsNonRoot"]);

        let f = both(&PodSpec {
            security_context: pod_level(true),
            containers: vec![
                bare("a"),
                container("b", None),
                container("c", Some(false)),
                container("d", Some(false)),
                container("e", Some(true)),
                container("f", Some(true)),
            ],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.reason, "runAsNonRoot != true");
        assert_eq!(
            f.detail,
            r#"containers "c", "d" must not set securityContext.runAsNonRoot=false"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.containers[2].securityContext.runAsNonRoot",
                "spec.containers[3].securityContext.runAsNonRoot",
            ]
        );

        let f = both(&PodSpec {
            containers: vec![
                bare("a"),
                container("b", None),
                container("d", Some(true)),
                container("e", Some(true)),
            ],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.reason, "runAsNonRoot != true");
        assert_eq!(
            f.detail,
            r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.containers[0].securityContext.runAsNonRoot",
                "spec.containers[1].securityContext.runAsNonRoot",
            ]
        );
    }

    #[test]
    fn explicit_falses_win_and_combine() {
        let f = both(&PodSpec {
            security_context: pod_level(false),
            containers: vec![bare("a"), container("b", Some(false))],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            f.detail,
            r#"pod and container "b" must not set securityContext.runAsNonRoot=false"#
        );
        // Container "a" is left unset, but the pod-level fix covers it: not reported.
        assert_eq!(
            f.fields,
            [
                "spec.securityContext.runAsNonRoot",
                "spec.containers[1].securityContext.runAsNonRoot",
            ]
        );
    }

    #[test]
    fn pod_true_covers_containers_and_run_as_user_does_not_count() {
        assert_eq!(
            both(&PodSpec {
                security_context: pod_level(true),
                init_containers: Some(vec![bare("i")]),
                containers: vec![bare("a"), container("b", Some(true))],
                ..Default::default()
            }),
            None
        );
        let spec = PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_user: Some(1000),
                ..Default::default()
            }),
            containers: vec![bare("a")],
            os: Some(PodOS {
                name: "windows".into(),
            }),
            ..Default::default()
        };
        assert!(both(&spec).is_some());
    }

    #[test]
    fn user_namespace_skip_from_1_35() {
        let spec = PodSpec {
            host_users: Some(false),
            security_context: pod_level(false),
            containers: vec![bare("a")],
            ..Default::default()
        };
        assert_eq!(check_v1_35(&ObjectMeta::default(), &spec), None);
        assert!(check_v1_0(&ObjectMeta::default(), &spec).is_some());
        let spec = PodSpec {
            host_users: Some(true),
            ..spec
        };
        assert!(check_v1_35(&ObjectMeta::default(), &spec).is_some());
    }
}
