//! `windowsHostProcess` (baseline, v1.0): Windows HostProcess containers (which run directly on
//! the node with host access) are forbidden.
//!
//! Fields: `spec.securityContext.windowsOptions.hostProcess` and every container's
//! `securityContext.windowsOptions.hostProcess` must be unset or false.
//!
//! Reason `hostProcess`, detail
//! `<setters> must not set securityContext.windowsOptions.hostProcess=true` with setters `pod`
//! and/or `container(s) "…"` (visit order).
//!
//! Fields: `spec.securityContext.windowsOptions.hostProcess` and each offending container's
//! `securityContext.windowsOptions.hostProcess`.

use k8s_openapi::api::core::v1::WindowsSecurityContextOptions;

use super::{Check, Forbidden, Variant, containers, setters_phrase};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "windowsHostProcess",
    level: Level::Baseline,
    variants: &[Variant {
        min_minor: 0,
        check: windows_host_process_v1_0,
    }],
    overrides: &[],
};

fn host_process(options: Option<&WindowsSecurityContextOptions>) -> bool {
    options.and_then(|o| o.host_process) == Some(true)
}

fn windows_host_process_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let pod = host_process(
        spec.security_context
            .as_ref()
            .and_then(|sc| sc.windows_options.as_ref()),
    );
    const FIELD: &str = "securityContext.windowsOptions.hostProcess";
    let mut fields: Vec<String> = Vec::new();
    if pod {
        fields.push(format!("spec.{FIELD}"));
    }
    let mut bad_containers: Vec<&str> = Vec::new();
    for c in containers(spec) {
        if host_process(
            c.security_context
                .and_then(|sc| sc.windows_options.as_ref()),
        ) {
            bad_containers.push(c.name);
            fields.push(c.field(FIELD));
        }
    }
    if !pod && bad_containers.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "hostProcess",
            format!(
                "{} must not set securityContext.windowsOptions.hostProcess=true",
                setters_phrase(pod, &bad_containers)
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

    fn windows(host_process: Option<bool>) -> Option<WindowsSecurityContextOptions> {
        Some(WindowsSecurityContextOptions {
            host_process,
            ..Default::default()
        })
    }

    fn container(name: &str, security_context: Option<SecurityContext>) -> Container {
        Container {
            name: name.into(),
            security_context,
            ..Default::default()
        }
    }

    fn with_host_process(name: &str, value: Option<bool>) -> Container {
        container(
            name,
            Some(SecurityContext {
                windows_options: windows(value),
                ..Default::default()
            }),
        )
    }

    fn containers_a_to_f() -> Vec<Container> {
        vec![
            container("a", None),
            container("b", Some(SecurityContext::default())),
            with_host_process("c", None),
            with_host_process("d", Some(false)),
            with_host_process("e", Some(true)),
            with_host_process("f", Some(true)),
        ]
    }

    #[test]
    fn upstream_golden() {
        let spec = PodSpec {
            security_context: Some(PodSecurityContext {
                windows_options: windows(Some(true)),
                ..Default::default()
            }),
            containers: containers_a_to_f(),
            ..Default::default()
        };
        let f = windows_host_process_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "hostProcess");
        assert_eq!(
            f.detail,
            r#"pod and containers "e", "f" must not set securityContext.windowsOptions.hostProcess=true"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.securityContext.windowsOptions.hostProcess",
                "spec.containers[4].securityContext.windowsOptions.hostProcess",
                "spec.containers[5].securityContext.windowsOptions.hostProcess",
            ]
        );
    }

    #[test]
    fn pod_or_containers_alone() {
        let spec = PodSpec {
            security_context: Some(PodSecurityContext {
                windows_options: windows(Some(false)),
                ..Default::default()
            }),
            init_containers: Some(vec![with_host_process("i", Some(true))]),
            containers: containers_a_to_f(),
            ..Default::default()
        };
        let f = windows_host_process_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "i", "e", "f" must not set securityContext.windowsOptions.hostProcess=true"#
        );
        assert_eq!(
            f.fields,
            [
                "spec.initContainers[0].securityContext.windowsOptions.hostProcess",
                "spec.containers[4].securityContext.windowsOptions.hostProcess",
                "spec.containers[5].securityContext.windowsOptions.hostProcess",
            ]
        );
        let spec = PodSpec {
            security_context: Some(PodSecurityContext {
                windows_options: windows(Some(true)),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            windows_host_process_v1_0(&ObjectMeta::default(), &spec)
                .unwrap()
                .detail,
            "pod must not set securityContext.windowsOptions.hostProcess=true"
        );
        assert_eq!(
            windows_host_process_v1_0(&ObjectMeta::default(), &PodSpec::default()),
            None
        );
    }
}
