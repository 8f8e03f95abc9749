//! `hostPorts` (baseline, v1.0): no container may set `ports[*].hostPort` to anything but unset
//! or `0`.
//!
//! Reason `hostPort`, detail `container(s) "…" uses|use hostPort(s) <ports>`: containers in visit
//! order; ports distinct and sorted **as strings** (upstream keeps them in a string set), so
//! `8080` sorts before `9`; unquoted, joined with `, `. `uses`/`use` follows the container count,
//! `hostPort`/`hostPorts` the port count.
//!
//! Fields: every offending `ports[<index>].hostPort`, containers in visit order, such as
//! `spec.initContainers[1].ports[0].hostPort`.

use super::{Check, Forbidden, Variant, containers, containers_phrase, pluralize, sorted_unique};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "hostPorts",
    level: Level::Baseline,
    variants: &[Variant {
        min_minor: 0,
        check: host_ports_v1_0,
    }],
    overrides: &[],
};

fn host_ports_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let mut bad_containers: Vec<&str> = Vec::new();
    let mut bad_ports: Vec<String> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for c in containers(spec) {
        let before = bad_ports.len();
        for (i, port) in c.ports.unwrap_or_default().iter().enumerate() {
            if let Some(host_port) = port.host_port
                && host_port != 0
            {
                bad_ports.push(host_port.to_string());
                fields.push(c.field(&format!("ports[{i}].hostPort")));
            }
        }
        if bad_ports.len() > before {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let ports = sorted_unique(bad_ports);
    Some(
        Forbidden::new(
            "hostPort",
            format!(
                "{} {} {} {}",
                containers_phrase(&bad_containers),
                pluralize(bad_containers.len(), "uses", "use"),
                pluralize(ports.len(), "hostPort", "hostPorts"),
                ports.join(", "),
            ),
        )
        .with_fields(fields),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn container(name: &str, host_ports: &[Option<i32>]) -> Container {
        Container {
            name: name.into(),
            ports: Some(
                host_ports
                    .iter()
                    .map(|host_port| ContainerPort {
                        container_port: 80,
                        host_port: *host_port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_golden_one() {
        let spec = PodSpec {
            containers: vec![
                container("a", &[Some(0)]),
                container("b", &[Some(0), Some(20)]),
            ],
            ..Default::default()
        };
        let f = host_ports_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "hostPort");
        assert_eq!(f.detail, r#"container "b" uses hostPort 20"#);
        assert_eq!(f.fields, ["spec.containers[1].ports[1].hostPort"]);
    }

    #[test]
    fn upstream_golden_many() {
        let spec = PodSpec {
            containers: vec![
                container("a", &[Some(0)]),
                container("b", &[Some(0), Some(10), Some(20)]),
                container("c", &[Some(0), Some(10), Some(30)]),
            ],
            ..Default::default()
        };
        let f = host_ports_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "hostPort");
        assert_eq!(f.detail, r#"containers "b", "c" use hostPorts 10, 20, 30"#);
        assert_eq!(
            f.fields,
            [
                "spec.containers[1].ports[1].hostPort",
                "spec.containers[1].ports[2].hostPort",
                "spec.containers[2].ports[1].hostPort",
                "spec.containers[2].ports[2].hostPort",
            ]
        );
    }

    #[test]
    fn ports_sort_as_strings() {
        let spec = PodSpec {
            containers: vec![container("a", &[Some(9), Some(8080), None, Some(9)])],
            ..Default::default()
        };
        assert_eq!(
            host_ports_v1_0(&ObjectMeta::default(), &spec)
                .unwrap()
                .detail,
            r#"container "a" uses hostPorts 8080, 9"#
        );
        // One port used by two containers: `use` but singular `hostPort`.
        let spec = PodSpec {
            init_containers: Some(vec![container("i", &[Some(7)])]),
            containers: vec![container("a", &[Some(7)])],
            ..Default::default()
        };
        let f = host_ports_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.detail, r#"containers "i", "a" use hostPort 7"#);
        assert_eq!(
            f.fields,
            [
                "spec.initContainers[0].ports[0].hostPort",
                "spec.containers[0].ports[0].hostPort",
            ]
        );
    }

    #[test]
    fn unset_and_zero_allowed() {
        let spec = PodSpec {
            containers: vec![
                container("a", &[None, Some(0)]),
                Container {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(host_ports_v1_0(&ObjectMeta::default(), &spec), None);
    }
}
