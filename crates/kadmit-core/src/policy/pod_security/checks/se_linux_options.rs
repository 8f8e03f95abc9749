//! `seLinuxOptions` (baseline, v1.0 and v1.31): custom SELinux labels may not be used to escape
//! the container domain.
//!
//! Fields: `spec.securityContext.seLinuxOptions` and every container's
//! `securityContext.seLinuxOptions`:
//! * `type`: unset, `""`, `container_t`, `container_init_t` or `container_kvm_t`; from v1.31 also
//!   `container_engine_t` (the type used by container engines running in a container);
//! * `user` and `role`: unset or `""`;
//! * `level`: unrestricted.
//!
//! Reason `seLinuxOptions`, detail
//! `<setters> set forbidden securityContext.seLinuxOptions: <parts>` where setters are `pod`
//! and/or `container(s) "…"` (visit order) and the parts, joined with `; `, are
//! `type(s) "…"` (sorted, de-duplicated), `user may not be set`, `role may not be set`, each only
//! when it applies to at least one setter.
//!
//! Fields: each offending `type`, `user` and `role` (in that order) of the pod's and then each
//! container's `seLinuxOptions`, such as `spec.securityContext.seLinuxOptions.user` or
//! `spec.containers[0].securityContext.seLinuxOptions.type`.

use k8s_openapi::api::core::v1::SELinuxOptions;

use super::{
    Check, Forbidden, Variant, containers, joined_quoted, pluralize, setters_phrase, sorted_unique,
};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "seLinuxOptions",
    level: Level::Baseline,
    variants: &[
        Variant {
            min_minor: 0,
            check: se_linux_options_v1_0,
        },
        Variant {
            min_minor: 31,
            check: se_linux_options_v1_31,
        },
    ],
    overrides: &[],
};

/// SELinux types allowed from v1.0 (the empty string means "not set").
const TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];

/// SELinux types allowed from v1.31.
const TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_options_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    check_se_linux_options(spec, TYPES_1_0)
}

fn se_linux_options_v1_31(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    check_se_linux_options(spec, TYPES_1_31)
}

/// What was wrong across all checked `seLinuxOptions`.
#[derive(Default)]
struct Findings<'a> {
    bad_types: Vec<&'a str>,
    set_user: bool,
    set_role: bool,
    /// Paths of the offending fields.
    fields: Vec<String>,
}

impl<'a> Findings<'a> {
    /// Records the problems of one `seLinuxOptions` found at `path`; returns whether it is valid.
    fn inspect(&mut self, opts: &'a SELinuxOptions, allowed_types: &[&str], path: &str) -> bool {
        let before = self.fields.len();
        let type_ = opts.type_.as_deref().unwrap_or_default();
        if !allowed_types.contains(&type_) {
            self.bad_types.push(type_);
            self.fields.push(format!("{path}.type"));
        }
        if opts.user.as_deref().is_some_and(|u| !u.is_empty()) {
            self.set_user = true;
            self.fields.push(format!("{path}.user"));
        }
        if opts.role.as_deref().is_some_and(|r| !r.is_empty()) {
            self.set_role = true;
            self.fields.push(format!("{path}.role"));
        }
        self.fields.len() == before
    }
}

fn check_se_linux_options(spec: &PodSpec, allowed_types: &[&str]) -> Option<Forbidden> {
    let mut findings = Findings::default();

    let pod_bad = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.se_linux_options.as_ref())
        .is_some_and(|opts| {
            !findings.inspect(opts, allowed_types, "spec.securityContext.seLinuxOptions")
        });

    let mut bad_containers: Vec<&str> = Vec::new();
    for c in containers(spec) {
        if let Some(opts) = c
            .security_context
            .and_then(|sc| sc.se_linux_options.as_ref())
            && !findings.inspect(
                opts,
                allowed_types,
                &c.field("securityContext.seLinuxOptions"),
            )
        {
            bad_containers.push(c.name);
        }
    }

    if !pod_bad && bad_containers.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    if !findings.bad_types.is_empty() {
        let types = sorted_unique(findings.bad_types);
        parts.push(format!(
            "{} {}",
            pluralize(types.len(), "type", "types"),
            joined_quoted(&types)
        ));
    }
    if findings.set_user {
        parts.push("user may not be set".to_owned());
    }
    if findings.set_role {
        parts.push("role may not be set".to_owned());
    }
    Some(
        Forbidden::new(
            "seLinuxOptions",
            format!(
                "{} set forbidden securityContext.seLinuxOptions: {}",
                setters_phrase(pod_bad, &bad_containers),
                parts.join("; "),
            ),
        )
        .with_fields(findings.fields),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;
    use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

    fn opts(type_: &str, user: &str, role: &str) -> Option<SELinuxOptions> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Some(SELinuxOptions {
            type_: non_empty(type_),
            user: non_empty(user),
            role: non_empty(role),
            level: Some("s0:c1,c2".into()),
        })
    }

    fn container(name: &str, type_: &str, user: &str, role: &str) -> Container {
        Container {
            name: name.into(),
            security_context: Some(SecurityContext {
                se_linux_options: opts(type_, user, role),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(type_: &str, user: &str, role: &str, containers: Vec<Container>) -> PodSpec {
        PodSpec {
            security_context: Some(PodSecurityContext {
                se_linux_options: opts(type_, user, role),
                ..Default::default()
            }),
            containers,
            ..Default::default()
        }
    }

    fn allowed_containers() -> Vec<Container> {
        vec![
            container("a", "container_t", "", ""),
            container("b", "container_init_t", "", ""),
            container("c", "container_kvm_t", "", ""),
            container("d", "container_engine_t", "", ""),
        ]
    }

    #[test]
    fn upstream_golden_pod_and_containers() {
        let mut containers = allowed_containers();
        containers.extend([
            container("e", "bar", "", ""),
            container("f", "", "bar", ""),
            container("g", "", "", "baz"),
        ]);
        let spec = pod("foo", "bar", "baz", containers);
        let f = se_linux_options_v1_31(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "seLinuxOptions");
        assert_eq!(
            f.detail,
            r#"pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.securityContext.seLinuxOptions.type",
                "spec.securityContext.seLinuxOptions.user",
                "spec.securityContext.seLinuxOptions.role",
                "spec.containers[4].securityContext.seLinuxOptions.type",
                "spec.containers[5].securityContext.seLinuxOptions.user",
                "spec.containers[6].securityContext.seLinuxOptions.role",
            ]
        );
    }

    #[test]
    fn upstream_golden_pod_user_only() {
        let spec = pod("", "bar", "", allowed_containers());
        let f = se_linux_options_v1_31(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "seLinuxOptions");
        assert_eq!(
            f.detail,
            "pod set forbidden securityContext.seLinuxOptions: user may not be set"
        );
        assert_eq!(f.fields, ["spec.securityContext.seLinuxOptions.user"]);
    }

    #[test]
    fn container_engine_t_from_v1_31() {
        let spec = pod("", "", "", allowed_containers());
        assert_eq!(se_linux_options_v1_31(&ObjectMeta::default(), &spec), None);
        let f = se_linux_options_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"container "d" set forbidden securityContext.seLinuxOptions: type "container_engine_t""#
        );
    }

    #[test]
    fn containers_only_and_duplicates() {
        let spec = PodSpec {
            init_containers: Some(vec![container("i", "x", "", "r")]),
            containers: vec![container("a", "x", "", ""), container("b", "", "", "")],
            ..Default::default()
        };
        let f = se_linux_options_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "i", "a" set forbidden securityContext.seLinuxOptions: type "x"; role may not be set"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.initContainers[0].securityContext.seLinuxOptions.type",
                "spec.initContainers[0].securityContext.seLinuxOptions.role",
                "spec.containers[0].securityContext.seLinuxOptions.type",
            ]
        );
        assert_eq!(
            se_linux_options_v1_0(&ObjectMeta::default(), &PodSpec::default()),
            None
        );
    }
}
