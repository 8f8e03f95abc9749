//! `privileged` (baseline, v1.0): no container may set `securityContext.privileged=true`.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Check, Forbidden, Variant, containers, containers_phrase};
use crate::config::Level;

pub(super) const CHECK: Check = Check {
    id: "privileged",
    level: Level::Baseline,
    variants: &[Variant {
        min_minor: 0,
        check: privileged_v1_0,
    }],
    overrides: &[],
};

fn privileged_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let bad: Vec<&str> = containers(spec)
        .filter(|c| c.security_context.and_then(|sc| sc.privileged) == Some(true))
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    Forbidden::new(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, SecurityContext};

    fn container(name: &str, privileged: Option<bool>) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_golden() {
        let spec = PodSpec {
            containers: vec![
                container("a", None),
                container("b", Some(false)),
                Container {
                    name: "c".into(),
                    ..Default::default()
                },
                container("d", Some(true)),
                container("e", Some(true)),
            ],
            ..Default::default()
        };
        let f = privileged_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "privileged");
        assert_eq!(
            f.detail,
            r#"containers "d", "e" must not set securityContext.privileged=true"#
        );
    }
}
