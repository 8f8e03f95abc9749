//! `privileged` (baseline, v1.0): no container may set `securityContext.privileged=true`.
//!
//! Fields: each offending container's `securityContext.privileged`, such as
//! `spec.containers[0].securityContext.privileged`.

use super::{Check, Forbidden, Variant, containers, containers_phrase};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

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
    let mut bad: Vec<&str> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for c in containers(spec) {
        if c.security_context.and_then(|sc| sc.privileged) == Some(true) {
            bad.push(c.name);
            fields.push(c.field("securityContext.privileged"));
        }
    }
    if bad.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "privileged",
            format!(
                "{} must not set securityContext.privileged=true",
                containers_phrase(&bad)
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
        assert_eq!(
            f.fields,
            [
                "spec.containers[3].securityContext.privileged",
                "spec.containers[4].securityContext.privileged",
            ]
        );
    }
}
