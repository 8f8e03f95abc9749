//! `procMount` (baseline) and `procMount_restricted` (restricted): the default `/proc` masks
//! reduce the attack surface, so no container may set `securityContext.procMount` to anything
//! but unset or `Default` (an empty string is not `Default` and is denied too).
//!
//! Versions:
//! * `procMount` v1.0: strict, for every pod.
//! * `procMount` v1.35: pods with `spec.hostUsers: false` (in a user namespace, where an unmasked
//!   `/proc` cannot reach the host) are allowed whatever they set; API validation already checks
//!   the value is well-formed. The relaxation is unconditional from v1.35 and never applies to
//!   older versions (it used to sit behind a feature gate).
//! * `procMount_restricted` v1.35: the strict v1.0 rule, with no user-namespace relaxation; it
//!   overrides `procMount` at restricted level, so restricted keeps the strict behaviour.
//!
//! Detail: `container(s) Q(containers in visit order) must not set securityContext.procMount to
//! Q(sorted distinct values)`.
//!
//! Fields: each offending container's `securityContext.procMount`, such as
//! `spec.containers[0].securityContext.procMount`.

use super::{
    Check, Forbidden, Variant, containers, containers_phrase, joined_quoted, sorted_unique,
};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

/// The only explicit value allowed.
const DEFAULT_PROC_MOUNT: &str = "Default";

pub(super) const BASELINE: Check = Check {
    id: "procMount",
    level: Level::Baseline,
    variants: &[
        Variant {
            min_minor: 0,
            check: baseline_v1_0,
        },
        Variant {
            min_minor: 35,
            check: baseline_v1_35,
        },
    ],
    overrides: &[],
};

pub(super) const RESTRICTED: Check = Check {
    id: "procMount_restricted",
    level: Level::Restricted,
    variants: &[Variant {
        min_minor: 35,
        check: restricted_v1_35,
    }],
    overrides: &["procMount"],
};

fn baseline_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    strict(spec)
}

fn baseline_v1_35(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    if spec.host_users == Some(false) {
        return None;
    }
    strict(spec)
}

fn restricted_v1_35(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    strict(spec)
}

/// Every container's `procMount` must be unset or `Default`.
fn strict(spec: &PodSpec) -> Option<Forbidden> {
    let mut bad_containers = Vec::new();
    let mut bad_values = Vec::new();
    let mut fields = Vec::new();
    for c in containers(spec) {
        if let Some(value) = c.security_context.and_then(|sc| sc.proc_mount.as_deref())
            && value != DEFAULT_PROC_MOUNT
        {
            bad_containers.push(c.name);
            bad_values.push(value);
            fields.push(c.field("securityContext.procMount"));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "procMount",
            format!(
                "{} must not set securityContext.procMount to {}",
                containers_phrase(&bad_containers),
                joined_quoted(&sorted_unique(bad_values))
            ),
        )
        .with_fields(fields),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;
    use k8s_openapi::api::core::v1::SecurityContext;

    fn container(name: &str, proc_mount: Option<&str>) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                proc_mount: proc_mount.map(Into::into),
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
                container("c", Some("Default")),
                container("d", Some("Unmasked")),
                container("e", Some("other")),
            ],
            ..Default::default()
        }
    }

    const GOLDEN: &str =
        r#"containers "d", "e" must not set securityContext.procMount to "Unmasked", "other""#;

    #[test]
    fn upstream_golden() {
        let meta = ObjectMeta::default();
        for check in [baseline_v1_0, baseline_v1_35, restricted_v1_35] {
            let f = check(&meta, &golden_spec()).unwrap();
            assert_eq!(f.reason, "procMount");
            assert_eq!(f.detail, GOLDEN);
            assert_eq!(
                f.fields,
                [
                    "spec.containers[3].securityContext.procMount",
                    "spec.containers[4].securityContext.procMount",
                ]
            );
        }
    }

    #[test]
    fn values_sorted_and_deduplicated_containers_in_visit_order() {
        let spec = PodSpec {
            init_containers: Some(vec![container("z", Some("Unmasked"))]),
            containers: vec![container("a", Some("Unmasked")), container("b", Some(""))],
            ..Default::default()
        };
        let f = baseline_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "z", "a", "b" must not set securityContext.procMount to "", "Unmasked""#
        );
        assert_eq!(
            f.fields,
            [
                "spec.initContainers[0].securityContext.procMount",
                "spec.containers[0].securityContext.procMount",
                "spec.containers[1].securityContext.procMount",
            ]
        );
    }

    #[test]
    fn user_namespace_relaxation_only_for_baseline_from_1_35() {
        let meta = ObjectMeta::default();
        let mut spec = golden_spec();
        spec.host_users = Some(false);
        assert_eq!(baseline_v1_35(&meta, &spec), None);
        assert!(baseline_v1_0(&meta, &spec).is_some());
        assert!(restricted_v1_35(&meta, &spec).is_some());
        spec.host_users = Some(true);
        assert!(baseline_v1_35(&meta, &spec).is_some());
    }

    #[test]
    fn allows_unset_and_default() {
        let spec = PodSpec {
            containers: vec![container("a", None), container("b", Some("Default"))],
            ..Default::default()
        };
        assert_eq!(baseline_v1_0(&ObjectMeta::default(), &spec), None);
        assert_eq!(
            baseline_v1_0(&ObjectMeta::default(), &PodSpec::default()),
            None
        );
    }
}
