//! `appArmorProfile` (baseline, v1.0, a single variant): the default AppArmor profile may not be
//! overridden or disabled.
//!
//! Fields and allowed values:
//! * `spec.securityContext.appArmorProfile.type` and
//!   `spec.{initContainers,containers,ephemeralContainers}[*].securityContext.appArmorProfile.type`:
//!   unset, `RuntimeDefault` or `Localhost` (anything else, such as `Unconfined`, is forbidden).
//! * `metadata.annotations["container.apparmor.security.beta.kubernetes.io/*"]` (any suffix, not
//!   only real container names, even an empty one): `""`, `runtime/default` or a `localhost/`
//!   prefix.
//!
//! The field checks were added upstream in 2024 into the existing v1.0 variant rather than as a
//! new version, so they apply at every policy version.
//!
//! Message: reason `forbidden AppArmor profile` when exactly one bad value was found, else
//! `forbidden AppArmor profiles`. Detail `<setters> must not set AppArmor profile type to <values>`
//! where setters are `pod`, `container(s) "…"` (visit order) and `annotation(s)`, joined with
//! ` and `; values are the sorted, de-duplicated bad types followed by the sorted bad annotations
//! rendered as `key="value"` (value quoted like Go's `%q`), each item then wrapped in quotes.
//!
//! Fields, in the order of the setters: `spec.securityContext.appArmorProfile.type`, each bad
//! container's `securityContext.appArmorProfile.type` (visit order), then each bad annotation as
//! `metadata.annotations[<key>]` (key order).

use k8s_openapi::api::core::v1::AppArmorProfile;

use crate::pod::{ObjectMeta, PodSpec};
use crate::policy::pod_security::go_quote::go_quote;

use super::{
    Check, Forbidden, Variant, containers, containers_phrase, joined_quoted, pluralize,
    sorted_unique,
};
use crate::config::Level;

pub(super) const CHECK: Check = Check {
    id: "appArmorProfile",
    level: Level::Baseline,
    variants: &[Variant {
        min_minor: 0,
        check: app_armor_profile_v1_0,
    }],
    overrides: &[],
};

/// The deprecated per-container annotation key prefix.
const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Whether an `appArmorProfile` field is acceptable (unset is handled by the caller).
fn allowed_type(profile: &AppArmorProfile) -> bool {
    matches!(profile.type_.as_str(), "RuntimeDefault" | "Localhost")
}

/// Whether a deprecated annotation value is acceptable.
fn allowed_annotation_value(value: &str) -> bool {
    value.is_empty() || value == "runtime/default" || value.starts_with("localhost/")
}

fn app_armor_profile_v1_0(meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let mut setters: Vec<String> = Vec::new();
    let mut bad_types: Vec<&str> = Vec::new();
    let mut fields: Vec<String> = Vec::new();

    if let Some(profile) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.as_ref())
        && !allowed_type(profile)
    {
        setters.push("pod".to_owned());
        bad_types.push(&profile.type_);
        fields.push("spec.securityContext.appArmorProfile.type".to_owned());
    }

    let mut bad_containers: Vec<&str> = Vec::new();
    for c in containers(spec) {
        if let Some(profile) = c
            .security_context
            .and_then(|sc| sc.app_armor_profile.as_ref())
            && !allowed_type(profile)
        {
            bad_containers.push(c.name);
            bad_types.push(&profile.type_);
            fields.push(c.field("securityContext.appArmorProfile.type"));
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }

    let mut bad_annotations: Vec<String> = Vec::new();
    for (key, value) in meta.annotations.iter().flatten() {
        if key.starts_with(ANNOTATION_PREFIX) && !allowed_annotation_value(value) {
            bad_annotations.push(format!("{key}={}", go_quote(value)));
            fields.push(format!("metadata.annotations[{key}]"));
        }
    }
    bad_annotations.sort();
    if !bad_annotations.is_empty() {
        setters.push(pluralize(bad_annotations.len(), "annotation", "annotations").to_owned());
    }

    if setters.is_empty() {
        return None;
    }
    let mut values = sorted_unique(bad_types);
    values.extend(bad_annotations);
    Some(
        Forbidden::new(
            pluralize(
                values.len(),
                "forbidden AppArmor profile",
                "forbidden AppArmor profiles",
            ),
            format!(
                "{} must not set AppArmor profile type to {}",
                setters.join(" and "),
                joined_quoted(&values)
            ),
        )
        .with_fields(fields),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;
    use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};
    use std::collections::BTreeMap;

    fn profile(type_: &str) -> Option<AppArmorProfile> {
        Some(AppArmorProfile {
            type_: type_.into(),
            ..Default::default()
        })
    }

    fn container(name: &str, type_: Option<&str>) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                app_armor_profile: type_.and_then(profile),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod_profile(type_: &str) -> Option<PodSecurityContext> {
        Some(PodSecurityContext {
            app_armor_profile: profile(type_),
            ..Default::default()
        })
    }

    fn annotations(pairs: &[(&str, &str)]) -> ObjectMeta {
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

    fn check(meta: &ObjectMeta, spec: &PodSpec) -> Forbidden {
        app_armor_profile_v1_0(meta, spec).unwrap()
    }

    #[test]
    fn allowed() {
        let meta = annotations(&[
            (
                "container.apparmor.security.beta.kubernetes.io/test",
                "runtime/default",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/x",
                "localhost/sec-profile01",
            ),
            ("container.apparmor.security.beta.kubernetes.io/y", ""),
            ("env", "prod"),
        ]);
        let spec = PodSpec {
            security_context: pod_profile("RuntimeDefault"),
            containers: vec![
                container("a", Some("Localhost")),
                container("b", Some("RuntimeDefault")),
                container("c", None),
                Container {
                    name: "d".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(app_armor_profile_v1_0(&meta, &spec), None);
        assert_eq!(
            app_armor_profile_v1_0(&ObjectMeta::default(), &PodSpec::default()),
            None
        );
    }

    #[test]
    fn upstream_golden_unconfined_pod() {
        let spec = PodSpec {
            security_context: pod_profile("Unconfined"),
            ..Default::default()
        };
        let f = check(&ObjectMeta::default(), &spec);
        assert_eq!(f.reason, "forbidden AppArmor profile");
        assert_eq!(
            f.detail,
            r#"pod must not set AppArmor profile type to "Unconfined""#
        );
        assert_eq!(f.fields, ["spec.securityContext.appArmorProfile.type"]);
    }

    #[test]
    fn upstream_golden_unconfined_container() {
        let spec = PodSpec {
            security_context: pod_profile("RuntimeDefault"),
            containers: vec![container("foo", Some("Unconfined"))],
            ..Default::default()
        };
        let f = check(&ObjectMeta::default(), &spec);
        assert_eq!(f.reason, "forbidden AppArmor profile");
        assert_eq!(
            f.detail,
            r#"container "foo" must not set AppArmor profile type to "Unconfined""#
        );
        assert_eq!(
            f.fields,
            ["spec.containers[0].securityContext.appArmorProfile.type"]
        );
    }

    #[test]
    fn upstream_golden_unconfined_init_container() {
        let spec = PodSpec {
            security_context: pod_profile("RuntimeDefault"),
            containers: vec![Container {
                name: "foo".into(),
                ..Default::default()
            }],
            init_containers: Some(vec![container("bar", Some("Unconfined"))]),
            ..Default::default()
        };
        let f = check(&ObjectMeta::default(), &spec);
        assert_eq!(f.reason, "forbidden AppArmor profile");
        assert_eq!(
            f.detail,
            r#"container "bar" must not set AppArmor profile type to "Unconfined""#
        );
        assert_eq!(
            f.fields,
            ["spec.initContainers[0].securityContext.appArmorProfile.type"]
        );
    }

    #[test]
    fn upstream_golden_annotations() {
        let meta = annotations(&[
            ("container.apparmor.security.beta.kubernetes.io/", "bogus"),
            ("container.apparmor.security.beta.kubernetes.io/a", ""),
            (
                "container.apparmor.security.beta.kubernetes.io/b",
                "runtime/default",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/c",
                "localhost/",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/d",
                "localhost/foo",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/e",
                "unconfined",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/f",
                "unknown",
            ),
        ]);
        let f = check(&meta, &PodSpec::default());
        assert_eq!(f.reason, "forbidden AppArmor profiles");
        assert_eq!(
            f.detail,
            r#"annotations must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/="bogus"", "container.apparmor.security.beta.kubernetes.io/e="unconfined"", "container.apparmor.security.beta.kubernetes.io/f="unknown"""#
        );
        assert_eq!(
            f.fields,
            [
                "metadata.annotations[container.apparmor.security.beta.kubernetes.io/]",
                "metadata.annotations[container.apparmor.security.beta.kubernetes.io/e]",
                "metadata.annotations[container.apparmor.security.beta.kubernetes.io/f]",
            ]
        );
    }

    #[test]
    fn every_setter_and_value() {
        let meta = annotations(&[(
            "container.apparmor.security.beta.kubernetes.io/container1",
            "unconfined",
        )]);
        let spec = PodSpec {
            security_context: pod_profile("Unconfined"),
            init_containers: Some(vec![container("i", Some("Bogus"))]),
            containers: vec![container("a", Some("Unconfined")), container("b", Some(""))],
            ..Default::default()
        };
        let f = check(&meta, &spec);
        assert_eq!(f.reason, "forbidden AppArmor profiles");
        assert_eq!(
            f.detail,
            r#"pod and containers "i", "a", "b" and annotation must not set AppArmor profile type to "", "Bogus", "Unconfined", "container.apparmor.security.beta.kubernetes.io/container1="unconfined"""#
        );
        assert_eq!(
            f.fields,
            [
                "spec.securityContext.appArmorProfile.type",
                "spec.initContainers[0].securityContext.appArmorProfile.type",
                "spec.containers[0].securityContext.appArmorProfile.type",
                "spec.containers[1].securityContext.appArmorProfile.type",
                "metadata.annotations[container.apparmor.security.beta.kubernetes.io/container1]",
            ]
        );
    }

    #[test]
    fn one_annotation_is_singular() {
        let meta = annotations(&[(
            "container.apparmor.security.beta.kubernetes.io/container1",
            "unconfined",
        )]);
        let f = check(&meta, &PodSpec::default());
        assert_eq!(f.reason, "forbidden AppArmor profile");
        assert_eq!(
            f.detail,
            r#"annotation must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/container1="unconfined"""#
        );
    }
}
