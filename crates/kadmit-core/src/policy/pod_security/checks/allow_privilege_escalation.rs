//! `allowPrivilegeEscalation` (restricted): privilege escalation (set-user-ID / set-group-ID
//! binaries, file capabilities) must be switched off explicitly, so every container must set
//! `securityContext.allowPrivilegeEscalation: false`. Unset (including a missing security
//! context) fails, because the runtime default is to allow escalation.
//!
//! Versions:
//! * v1.8: the field appeared in Kubernetes 1.8, so the check starts there.
//! * v1.25: pods with `spec.os.name: windows` are skipped (the field has no meaning on Windows;
//!   `spec.os` became usable in 1.25).
//!
//! Detail: `container(s) Q(containers in visit order) must set
//! securityContext.allowPrivilegeEscalation=false`.
//!
//! Fields: each failing container's `securityContext.allowPrivilegeEscalation`, whether it is
//! `true` or unset (where it must be set), such as
//! `spec.containers[0].securityContext.allowPrivilegeEscalation`.

use super::{Check, Forbidden, Variant, containers, containers_phrase};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "allowPrivilegeEscalation",
    level: Level::Restricted,
    variants: &[
        Variant {
            min_minor: 8,
            check: check_v1_8,
        },
        Variant {
            min_minor: 25,
            check: check_v1_25,
        },
    ],
    overrides: &[],
};

fn check_v1_8(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    must_be_false(spec)
}

fn check_v1_25(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    if spec.os.as_ref().is_some_and(|os| os.name == "windows") {
        return None;
    }
    must_be_false(spec)
}

/// Every container must set `allowPrivilegeEscalation` to exactly `false`.
fn must_be_false(spec: &PodSpec) -> Option<Forbidden> {
    let mut bad: Vec<&str> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for c in containers(spec) {
        if c.security_context
            .and_then(|sc| sc.allow_privilege_escalation)
            != Some(false)
        {
            bad.push(c.name);
            fields.push(c.field("securityContext.allowPrivilegeEscalation"));
        }
    }
    if bad.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "allowPrivilegeEscalation != false",
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                containers_phrase(&bad)
            ),
        )
        .with_fields(fields),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{Container, EphemeralContainer};
    use k8s_openapi::api::core::v1::{PodOS, SecurityContext};

    fn container(name: &str, value: Option<bool>) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: value,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn golden_spec() -> PodSpec {
        PodSpec {
            containers: vec![
                Container {
                    name: "a".into(),
                    ..Default::default()
                },
                container("b", None),
                container("c", Some(true)),
                container("d", Some(false)),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn upstream_golden() {
        for check in [check_v1_8, check_v1_25] {
            let f = check(&ObjectMeta::default(), &golden_spec()).unwrap();
            assert_eq!(f.reason, "allowPrivilegeEscalation != false");
            assert_eq!(
                f.detail,
                r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#
            );
            assert_eq!(
                f.fields,
                [
                    "spec.containers[0].securityContext.allowPrivilegeEscalation",
                    "spec.containers[1].securityContext.allowPrivilegeEscalation",
                    "spec.containers[2].securityContext.allowPrivilegeEscalation",
                ]
            );
        }
    }

    #[test]
    fn visits_init_regular_and_ephemeral_containers() {
        let spec = PodSpec {
            init_containers: Some(vec![container("init", None)]),
            containers: vec![container("app", Some(false))],
            ephemeral_containers: Some(vec![EphemeralContainer {
                name: "debug".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let f = check_v1_8(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "init", "debug" must set securityContext.allowPrivilegeEscalation=false"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.initContainers[0].securityContext.allowPrivilegeEscalation",
                "spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation",
            ]
        );
        let ok = PodSpec {
            containers: vec![container("app", Some(false))],
            ..Default::default()
        };
        assert_eq!(check_v1_8(&ObjectMeta::default(), &ok), None);
    }

    #[test]
    fn windows_skip_from_1_25() {
        let mut spec = golden_spec();
        spec.os = Some(PodOS {
            name: "windows".into(),
        });
        assert_eq!(check_v1_25(&ObjectMeta::default(), &spec), None);
        assert!(check_v1_8(&ObjectMeta::default(), &spec).is_some());
        spec.os = Some(PodOS {
            name: "linux".into(),
        });
        let f = check_v1_25(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#
        );
    }
}
