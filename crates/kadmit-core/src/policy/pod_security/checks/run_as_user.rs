//! `runAsUser` (restricted): neither the pod (`spec.securityContext.runAsUser`) nor any
//! container (`securityContext.runAsUser`) may set `runAsUser: 0`; unset and non-zero values are
//! allowed. Detail: `<setters> must not set runAsUser=0`. Fields:
//! `spec.securityContext.runAsUser` and each offending container's `securityContext.runAsUser`.
//!
//! Versions:
//! * v1.23: the check was added to the standard in 1.23 (earlier restricted versions rely on
//!   `runAsNonRoot` alone).
//! * v1.35: pods with `spec.hostUsers: false` are skipped: in a user namespace UID 0 in the
//!   container is an unprivileged user on the host (KEP-127). The relaxation is unconditional from
//!   v1.35 and never applies to older versions.

use super::{Check, Forbidden, Variant, containers, setters_phrase};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "runAsUser",
    level: Level::Restricted,
    variants: &[
        Variant {
            min_minor: 23,
            check: check_v1_23,
        },
        Variant {
            min_minor: 35,
            check: check_v1_35,
        },
    ],
    overrides: &[],
};

fn check_v1_23(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    not_root_uid(spec)
}

fn check_v1_35(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    if spec.host_users == Some(false) {
        return None;
    }
    not_root_uid(spec)
}

fn not_root_uid(spec: &PodSpec) -> Option<Forbidden> {
    let pod_bad = spec.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0);
    let mut fields: Vec<String> = Vec::new();
    if pod_bad {
        fields.push("spec.securityContext.runAsUser".to_owned());
    }
    let mut bad: Vec<&str> = Vec::new();
    for c in containers(spec) {
        if c.security_context.and_then(|sc| sc.run_as_user) == Some(0) {
            bad.push(c.name);
            fields.push(c.field("securityContext.runAsUser"));
        }
    }
    if !pod_bad && bad.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "runAsUser=0",
            format!("{} must not set runAsUser=0", setters_phrase(pod_bad, &bad)),
        )
        .with_fields(fields),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;
    use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

    fn container(name: &str, uid: Option<i64>) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                run_as_user: uid,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod_level(uid: i64) -> Option<PodSecurityContext> {
        Some(PodSecurityContext {
            run_as_user: Some(uid),
            ..Default::default()
        })
    }

    fn both(spec: &PodSpec) -> Option<Forbidden> {
        let meta = ObjectMeta::default();
        let old = check_v1_23(&meta, spec);
        assert_eq!(old, check_v1_35(&meta, spec));
        old
    }

    #[test]
    fn upstream_golden() {
        let f = both(&PodSpec {
            security_context: pod_level(0),
            containers: vec![Container {
                name: "a".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.reason, "runAsUser=0");
        assert_eq!(f.detail, "pod must not set runAsUser=0");
        assert_eq!(f.fields, ["spec.securityContext.runAsUser"]);

        let f = both(&PodSpec {
            security_context: pod_level(1),
            containers: vec![
                Container {
                    name: "a".into(),
                    ..Default::default()
                },
                container("b", None),
                container("c", Some(0)),
                container("d", Some(0)),
                container("e", Some(1)),
                container("f", Some(1)),
            ],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.reason, "runAsUser=0");
        assert_eq!(f.detail, r#"containers "c", "d" must not set runAsUser=0"#);
        assert_eq!(
            f.fields,
            [
                "spec.containers[2].securityContext.runAsUser",
                "spec.containers[3].securityContext.runAsUser",
            ]
        );
    }

    #[test]
    fn pod_and_container() {
        let f = both(&PodSpec {
            security_context: pod_level(0),
            init_containers: Some(vec![container("i", Some(0))]),
            containers: vec![container("a", Some(1000))],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            f.detail,
            r#"pod and container "i" must not set runAsUser=0"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.securityContext.runAsUser",
                "spec.initContainers[0].securityContext.runAsUser",
            ]
        );
        assert_eq!(both(&PodSpec::default()), None);
    }

    #[test]
    fn user_namespace_skip_from_1_35() {
        let spec = PodSpec {
            host_users: Some(false),
            security_context: pod_level(0),
            ..Default::default()
        };
        assert_eq!(check_v1_35(&ObjectMeta::default(), &spec), None);
        assert!(check_v1_23(&ObjectMeta::default(), &spec).is_some());
    }
}
