//! `seccompProfile_baseline` (baseline) and `seccompProfile_restricted` (restricted): seccomp
//! must not be switched off.
//!
//! `seccompProfile_baseline`, if a profile is given it must be the runtime default or a local one:
//! * v1.0–v1.18 (before the `seccompProfile` field existed): the annotations
//!   `seccomp.security.alpha.kubernetes.io/pod` and
//!   `container.seccomp.security.alpha.kubernetes.io/<name>` for the pod's real container names
//!   (annotations for other names are ignored) must be `runtime/default`, `docker/default` or
//!   start with `localhost/` (an empty value is denied). Detail: `forbidden annotation(s)` and the
//!   sorted distinct `key="value"` strings joined with `, `, the value quoted like Go's `%q`.
//! * v1.19+: `spec.securityContext.seccompProfile.type` and every container's
//!   `securityContext.seccompProfile.type` must be unset, `RuntimeDefault` or `Localhost`;
//!   annotations are no longer read. Detail: `<setters> must not set
//!   securityContext.seccompProfile.type to Q(sorted distinct bad types)`.
//!
//! `seccompProfile_restricted` (overrides the baseline check), a profile is required:
//! * v1.19: the pod-level type must be `RuntimeDefault` or `Localhost`, or else every container
//!   must set one of those itself (a container may leave it unset when the pod sets a good one).
//!   Explicit bad values win: they are reported as in baseline v1.19; only when there are none
//!   are the containers left without a profile reported, as `pod or container(s) Q(names) must
//!   set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"`.
//! * v1.25: the same, except that pods with `spec.os.name: windows` are skipped (seccomp is a
//!   Linux feature; `spec.os` became usable in 1.25).
//!
//! Fields (paths reported with a violation) follow the detail:
//! * v1.0 annotations: `metadata.annotations[<key>]` of each bad annotation, the pod's first,
//!   then the containers' in visit order.
//! * v1.19+ bad types: `spec.securityContext.seccompProfile.type` and each bad container's
//!   `securityContext.seccompProfile.type`.
//! * v1.19+ missing profiles (restricted): each such container's
//!   `securityContext.seccompProfile.type`, such as
//!   `spec.containers[0].securityContext.seccompProfile.type`, where it must be set. Setting
//!   `spec.securityContext.seccompProfile.type` at pod level instead also satisfies those
//!   containers.

use crate::pod::{ObjectMeta, PodSpec};
use crate::policy::pod_security::go_quote::go_quote;

use super::{
    Check, Forbidden, Variant, containers, joined_quoted, pluralize, setters_phrase, sorted_unique,
};
use crate::config::Level;

/// The pod-wide seccomp annotation (before v1.19).
const ANNOTATION_POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
/// The per-container seccomp annotation prefix, followed by the container name.
const ANNOTATION_CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

pub(super) const BASELINE: Check = Check {
    id: "seccompProfile_baseline",
    level: Level::Baseline,
    variants: &[
        Variant {
            min_minor: 0,
            check: baseline_v1_0,
        },
        Variant {
            min_minor: 19,
            check: baseline_v1_19,
        },
    ],
    overrides: &[],
};

pub(super) const RESTRICTED: Check = Check {
    id: "seccompProfile_restricted",
    level: Level::Restricted,
    variants: &[
        Variant {
            min_minor: 19,
            check: restricted_v1_19,
        },
        Variant {
            min_minor: 25,
            check: restricted_v1_25,
        },
    ],
    overrides: &["seccompProfile_baseline"],
};

/// An allowed `seccompProfile.type`.
fn valid_type(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// An allowed seccomp annotation value.
fn valid_annotation_value(v: &str) -> bool {
    v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
}

fn baseline_v1_0(meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let annotations = meta.annotations.as_ref()?;
    let mut forbidden = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut inspect = |key: &str| {
        if let Some(value) = annotations.get(key)
            && !valid_annotation_value(value)
        {
            forbidden.push(format!("{key}={}", go_quote(value)));
            let field = format!("metadata.annotations[{key}]");
            // Containers sharing a name share the annotation.
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
    };
    inspect(ANNOTATION_POD);
    for c in containers(spec) {
        inspect(&format!("{ANNOTATION_CONTAINER_PREFIX}{}", c.name));
    }
    let forbidden = sorted_unique(forbidden);
    if forbidden.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "seccompProfile",
            format!(
                "forbidden {} {}",
                pluralize(forbidden.len(), "annotation", "annotations"),
                forbidden.join(", ")
            ),
        )
        .with_fields(fields),
    )
}

fn baseline_v1_19(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let fields = Fields::of(spec);
    fields.explicitly_bad()
}

fn restricted_v1_19(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    required(spec)
}

fn restricted_v1_25(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    if spec.os.as_ref().is_some_and(|os| os.name == "windows") {
        return None;
    }
    required(spec)
}

/// The restricted rule: explicit bad values first, then containers left without a profile.
fn required(spec: &PodSpec) -> Option<Forbidden> {
    let fields = Fields::of(spec);
    if let Some(f) = fields.explicitly_bad() {
        return Some(f);
    }
    if fields.implicit.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "seccompProfile",
            format!(
                r#"pod or {} {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
                pluralize(fields.implicit.len(), "container", "containers"),
                joined_quoted(&fields.implicit)
            ),
        )
        .with_fields(fields.implicit_paths),
    )
}

/// What the pod and its containers set in `seccompProfile.type`.
struct Fields<'a> {
    /// The pod-level type is set to a bad value.
    pod_bad: bool,
    /// Containers (visit order) that set a bad type.
    bad_containers: Vec<&'a str>,
    /// Every bad type, pod and containers.
    bad_values: Vec<&'a str>,
    /// Containers (visit order) with no profile of their own and no good pod-level one.
    implicit: Vec<&'a str>,
    /// Paths of the bad types, pod and containers.
    bad_paths: Vec<String>,
    /// Paths where the `implicit` containers must set a type.
    implicit_paths: Vec<String>,
}

impl<'a> Fields<'a> {
    fn of(spec: &'a PodSpec) -> Self {
        const FIELD: &str = "securityContext.seccompProfile.type";
        let mut bad_values = Vec::new();
        let mut bad_paths = Vec::new();
        let pod_type = spec
            .security_context
            .as_ref()
            .and_then(|sc| sc.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str());
        let pod_bad = pod_type.is_some_and(|t| !valid_type(t));
        if let Some(t) = pod_type.filter(|_| pod_bad) {
            bad_values.push(t);
            bad_paths.push(format!("spec.{FIELD}"));
        }
        let pod_good = pod_type.is_some_and(valid_type);
        let mut bad_containers = Vec::new();
        let mut implicit = Vec::new();
        let mut implicit_paths = Vec::new();
        for c in containers(spec) {
            match c
                .security_context
                .and_then(|sc| sc.seccomp_profile.as_ref())
            {
                Some(profile) if !valid_type(&profile.type_) => {
                    bad_containers.push(c.name);
                    bad_values.push(profile.type_.as_str());
                    bad_paths.push(c.field(FIELD));
                }
                Some(_) => {}
                None if !pod_good => {
                    implicit.push(c.name);
                    implicit_paths.push(c.field(FIELD));
                }
                None => {}
            }
        }
        Fields {
            pod_bad,
            bad_containers,
            bad_values,
            implicit,
            bad_paths,
            implicit_paths,
        }
    }

    /// The violation for explicitly bad types, if any.
    fn explicitly_bad(&self) -> Option<Forbidden> {
        if !self.pod_bad && self.bad_containers.is_empty() {
            return None;
        }
        Some(
            Forbidden::new(
                "seccompProfile",
                format!(
                    "{} must not set securityContext.seccompProfile.type to {}",
                    setters_phrase(self.pod_bad, &self.bad_containers),
                    joined_quoted(&sorted_unique(&self.bad_values))
                ),
            )
            .with_fields(self.bad_paths.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;
    use k8s_openapi::api::core::v1::{PodOS, PodSecurityContext, SeccompProfile, SecurityContext};
    use std::collections::BTreeMap;

    fn profile(t: &str) -> Option<SeccompProfile> {
        Some(SeccompProfile {
            type_: t.into(),
            ..Default::default()
        })
    }

    fn container(name: &str, t: Option<&str>) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                seccomp_profile: t.and_then(profile),
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

    fn pod_level(t: &str) -> Option<PodSecurityContext> {
        Some(PodSecurityContext {
            seccomp_profile: profile(t),
            ..Default::default()
        })
    }

    fn annotated(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn abc() -> PodSpec {
        PodSpec {
            containers: vec![bare("a"), bare("b"), bare("c")],
            ..Default::default()
        }
    }

    #[test]
    fn baseline_v1_0_upstream_golden() {
        let meta = annotated(&[(ANNOTATION_POD, "unconfined")]);
        let f = baseline_v1_0(&meta, &PodSpec::default()).unwrap();
        assert_eq!(f.reason, "seccompProfile");
        assert_eq!(
            f.detail,
            r#"forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined""#
        );
        assert_eq!(
            f.fields,
            ["metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]"]
        );

        let meta = annotated(&[
            (
                "container.seccomp.security.alpha.kubernetes.io/a",
                "unconfined",
            ),
            (
                "container.seccomp.security.alpha.kubernetes.io/b",
                "unknown",
            ),
        ]);
        let f = baseline_v1_0(&meta, &abc()).unwrap();
        assert_eq!(
            f.detail,
            r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/a="unconfined", container.seccomp.security.alpha.kubernetes.io/b="unknown""#
        );

        let meta = annotated(&[
            (ANNOTATION_POD, "unconfined"),
            (
                "container.seccomp.security.alpha.kubernetes.io/a",
                "unconfined",
            ),
            (
                "container.seccomp.security.alpha.kubernetes.io/b",
                "unknown",
            ),
        ]);
        let f = baseline_v1_0(&meta, &abc()).unwrap();
        assert_eq!(f.reason, "seccompProfile");
        assert_eq!(
            f.detail,
            r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/a="unconfined", container.seccomp.security.alpha.kubernetes.io/b="unknown", seccomp.security.alpha.kubernetes.io/pod="unconfined""#
        );
        assert_eq!(
            f.fields,
            [
                "metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]",
                "metadata.annotations[container.seccomp.security.alpha.kubernetes.io/a]",
                "metadata.annotations[container.seccomp.security.alpha.kubernetes.io/b]",
            ]
        );
    }

    #[test]
    fn baseline_v1_0_allowed_values_and_unknown_containers() {
        let meta = annotated(&[
            (ANNOTATION_POD, "runtime/default"),
            (
                "container.seccomp.security.alpha.kubernetes.io/a",
                "docker/default",
            ),
            (
                "container.seccomp.security.alpha.kubernetes.io/b",
                "localhost/profile.json",
            ),
            // Not a container of the pod: ignored.
            (
                "container.seccomp.security.alpha.kubernetes.io/zzz",
                "unconfined",
            ),
        ]);
        assert_eq!(baseline_v1_0(&meta, &abc()), None);
        assert_eq!(baseline_v1_0(&ObjectMeta::default(), &abc()), None);
        // Empty is not allowed; fields are not read before v1.19.
        let meta = annotated(&[("container.seccomp.security.alpha.kubernetes.io/c", "")]);
        let f = baseline_v1_0(&meta, &abc()).unwrap();
        assert_eq!(
            f.detail,
            r#"forbidden annotation container.seccomp.security.alpha.kubernetes.io/c="""#
        );
        let spec = PodSpec {
            security_context: pod_level("Unconfined"),
            ..abc()
        };
        assert_eq!(baseline_v1_0(&ObjectMeta::default(), &spec), None);
    }

    #[test]
    fn baseline_v1_0_duplicate_container_names_counted_once() {
        let meta = annotated(&[(
            "container.seccomp.security.alpha.kubernetes.io/a",
            "unconfined",
        )]);
        let spec = PodSpec {
            init_containers: Some(vec![bare("a")]),
            containers: vec![bare("a")],
            ..Default::default()
        };
        let f = baseline_v1_0(&meta, &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"forbidden annotation container.seccomp.security.alpha.kubernetes.io/a="unconfined""#
        );
        assert_eq!(
            f.fields,
            ["metadata.annotations[container.seccomp.security.alpha.kubernetes.io/a]"]
        );
    }

    #[test]
    fn annotation_values_are_go_quoted() {
        let meta = annotated(&[(ANNOTATION_POD, "bad\"value\n")]);
        let f = baseline_v1_0(&meta, &PodSpec::default()).unwrap();
        assert_eq!(
            f.detail,
            r#"forbidden annotation seccomp.security.alpha.kubernetes.io/pod="bad\"value\n""#
        );
    }

    fn c_to_f(pod: Option<&str>) -> PodSpec {
        PodSpec {
            security_context: pod.and_then(pod_level),
            containers: vec![
                Container {
                    name: "a".into(),
                    security_context: None,
                    ..Default::default()
                },
                container("b", None),
                container("c", Some("Unconfined")),
                container("d", Some("Unconfined")),
                container("e", Some("RuntimeDefault")),
                container("f", Some("RuntimeDefault")),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn baseline_v1_19_upstream_golden() {
        let meta = ObjectMeta::default();
        let spec = PodSpec {
            security_context: pod_level("Unconfined"),
            containers: vec![bare("a")],
            ..Default::default()
        };
        let f = baseline_v1_19(&meta, &spec).unwrap();
        assert_eq!(f.reason, "seccompProfile");
        assert_eq!(
            f.detail,
            r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#
        );

        let f = baseline_v1_19(&meta, &c_to_f(Some("RuntimeDefault"))).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#
        );

        let f = baseline_v1_19(&meta, &c_to_f(Some("Unconfined"))).unwrap();
        assert_eq!(f.reason, "seccompProfile");
        assert_eq!(
            f.detail,
            r#"pod and containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#
        );
        assert_eq!(
            f.fields,
            [
                "spec.securityContext.seccompProfile.type",
                "spec.containers[2].securityContext.seccompProfile.type",
                "spec.containers[3].securityContext.seccompProfile.type",
            ]
        );
    }

    #[test]
    fn baseline_v1_19_allows_unset_and_good_types() {
        let meta = ObjectMeta::default();
        assert_eq!(baseline_v1_19(&meta, &abc()), None);
        let spec = PodSpec {
            security_context: pod_level("Localhost"),
            containers: vec![
                container("a", Some("RuntimeDefault")),
                container("b", Some("Localhost")),
            ],
            ..Default::default()
        };
        assert_eq!(baseline_v1_19(&meta, &spec), None);
    }

    #[test]
    fn baseline_v1_19_reports_empty_and_bad_types_sorted() {
        let meta = ObjectMeta::default();
        let spec = PodSpec {
            containers: vec![container("a", Some("Unconfined")), container("b", Some(""))],
            ..Default::default()
        };
        let f = baseline_v1_19(&meta, &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "a", "b" must not set securityContext.seccompProfile.type to "", "Unconfined""#
        );
    }

    #[test]
    fn restricted_upstream_golden() {
        let meta = ObjectMeta::default();
        for check in [restricted_v1_19, restricted_v1_25] {
            let spec = PodSpec {
                containers: vec![bare("a")],
                ..Default::default()
            };
            let f = check(&meta, &spec).unwrap();
            assert_eq!(f.reason, "seccompProfile");
            assert_eq!(
                f.detail,
                r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#
            );
            assert_eq!(
                f.fields,
                ["spec.containers[0].securityContext.seccompProfile.type"]
            );

            let spec = PodSpec {
                security_context: pod_level("Unconfined"),
                containers: vec![bare("a")],
                ..Default::default()
            };
            let f = check(&meta, &spec).unwrap();
            assert_eq!(f.reason, "seccompProfile");
            assert_eq!(
                f.detail,
                r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#
            );
            assert_eq!(f.fields, ["spec.securityContext.seccompProfile.type"]);

            let f = check(&meta, &c_to_f(Some("RuntimeDefault"))).unwrap();
            assert_eq!(f.reason, "seccompProfile");
            assert_eq!(
                f.detail,
                r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#
            );

            let spec = PodSpec {
                containers: vec![
                    bare("a"),
                    container("b", None),
                    container("d", Some("RuntimeDefault")),
                    container("e", Some("RuntimeDefault")),
                ],
                ..Default::default()
            };
            let f = check(&meta, &spec).unwrap();
            assert_eq!(f.reason, "seccompProfile");
            assert_eq!(
                f.detail,
                r#"pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#
            );
            assert_eq!(
                f.fields,
                [
                    "spec.containers[0].securityContext.seccompProfile.type",
                    "spec.containers[1].securityContext.seccompProfile.type",
                ]
            );

            // Explicit bad values win over missing ones.
            let f = check(&meta, &c_to_f(None)).unwrap();
            assert_eq!(
                f.detail,
                r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#
            );
            // Only the explicit bad values' fields, like the detail.
            assert_eq!(
                f.fields,
                [
                    "spec.containers[2].securityContext.seccompProfile.type",
                    "spec.containers[3].securityContext.seccompProfile.type",
                ]
            );
        }
    }

    #[test]
    fn restricted_pod_level_covers_containers() {
        let meta = ObjectMeta::default();
        let spec = PodSpec {
            security_context: pod_level("RuntimeDefault"),
            init_containers: Some(vec![bare("i")]),
            containers: vec![bare("a"), container("b", Some("Localhost"))],
            ..Default::default()
        };
        assert_eq!(restricted_v1_19(&meta, &spec), None);
        assert_eq!(restricted_v1_25(&meta, &spec), None);
    }

    #[test]
    fn restricted_windows_skip_from_1_25() {
        let meta = ObjectMeta::default();
        let mut spec = c_to_f(Some("Unconfined"));
        spec.os = Some(PodOS {
            name: "windows".into(),
        });
        assert_eq!(restricted_v1_25(&meta, &spec), None);
        assert!(restricted_v1_19(&meta, &spec).is_some());
        spec.os = Some(PodOS {
            name: "linux".into(),
        });
        assert!(restricted_v1_25(&meta, &spec).is_some());
    }
}
