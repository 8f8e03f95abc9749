//! `hostProbesAndHostLifecycle` (baseline, v1.34): probes and lifecycle hooks may not target an
//! explicit host (which would let the kubelet reach arbitrary addresses from the node on the
//! pod's behalf).
//!
//! Fields, each must be unset or `""`, for every container (init, regular, ephemeral):
//! `{livenessProbe,readinessProbe,startupProbe}.{httpGet,tcpSocket}.host` and
//! `lifecycle.{postStart,preStop}.{httpGet,tcpSocket}.host` (`tcpSocket` in lifecycle handlers is
//! deprecated but still accepted by the API, so it is checked). `grpc` and `exec` handlers have no
//! host and are not inspected.
//!
//! The check first exists in v1.34: older policy versions allow such pods.
//!
//! Reason `probe or lifecycle host`, detail
//! `container(s) "…" uses|use probe or lifecycle host(s) "…"`: unlike most checks both the
//! container names and the hosts are sorted and de-duplicated (upstream keeps both in sets).
//!
//! Fields: every offending `host`, containers in visit order (not sorted like the names), and
//! within a container in the order liveness, readiness, startup probe, postStart, preStop hook,
//! `httpGet` before `tcpSocket`, such as `spec.containers[0].livenessProbe.httpGet.host` or
//! `spec.containers[1].lifecycle.preStop.tcpSocket.host`.

use k8s_openapi::api::core::v1::{HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction};

use super::{
    Check, Forbidden, Variant, containers, containers_phrase, joined_quoted, pluralize,
    sorted_unique,
};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "hostProbesAndHostLifecycle",
    level: Level::Baseline,
    variants: &[Variant {
        min_minor: 34,
        check: host_probes_and_host_lifecycle_v1_34,
    }],
    overrides: &[],
};

/// The non-empty hosts of an HTTP GET and a TCP socket action, each with its path relative to
/// the container (`at` is the probe's or hook's path, such as `lifecycle.postStart`).
fn hosts<'a>(
    at: &'static str,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
) -> impl Iterator<Item = (&'a str, String)> {
    let http = http_get
        .and_then(|a| a.host.as_deref())
        .map(|host| (host, format!("{at}.httpGet.host")));
    let tcp = tcp_socket
        .and_then(|a| a.host.as_deref())
        .map(|host| (host, format!("{at}.tcpSocket.host")));
    http.into_iter()
        .chain(tcp)
        .filter(|(host, _)| !host.is_empty())
}

fn probe_hosts<'a>(
    at: &'static str,
    probe: Option<&'a Probe>,
) -> impl Iterator<Item = (&'a str, String)> {
    probe
        .into_iter()
        .flat_map(move |p| hosts(at, p.http_get.as_ref(), p.tcp_socket.as_ref()))
}

fn handler_hosts<'a>(
    at: &'static str,
    handler: Option<&'a LifecycleHandler>,
) -> impl Iterator<Item = (&'a str, String)> {
    handler
        .into_iter()
        .flat_map(move |h| hosts(at, h.http_get.as_ref(), h.tcp_socket.as_ref()))
}

fn host_probes_and_host_lifecycle_v1_34(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let mut bad_containers: Vec<&str> = Vec::new();
    let mut bad_hosts: Vec<&str> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for c in containers(spec) {
        let found = probe_hosts("livenessProbe", c.liveness_probe)
            .chain(probe_hosts("readinessProbe", c.readiness_probe))
            .chain(probe_hosts("startupProbe", c.startup_probe))
            .chain(handler_hosts(
                "lifecycle.postStart",
                c.lifecycle.and_then(|l| l.post_start.as_ref()),
            ))
            .chain(handler_hosts(
                "lifecycle.preStop",
                c.lifecycle.and_then(|l| l.pre_stop.as_ref()),
            ));
        let before = bad_hosts.len();
        for (host, at) in found {
            bad_hosts.push(host);
            fields.push(c.field(&at));
        }
        if bad_hosts.len() > before {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let names = sorted_unique(bad_containers);
    let hosts = sorted_unique(bad_hosts);
    Some(
        Forbidden::new(
            "probe or lifecycle host",
            format!(
                "{} {} {} {}",
                containers_phrase(&names),
                pluralize(names.len(), "uses", "use"),
                pluralize(
                    hosts.len(),
                    "probe or lifecycle host",
                    "probe or lifecycle hosts"
                ),
                joined_quoted(&hosts),
            ),
        )
        .with_fields(fields),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;
    use k8s_openapi::api::core::v1::{GRPCAction, Lifecycle};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn http(host: Option<&str>) -> HTTPGetAction {
        HTTPGetAction {
            host: host.map(Into::into),
            port: IntOrString::Int(80),
            ..Default::default()
        }
    }

    fn tcp(host: Option<&str>) -> TCPSocketAction {
        TCPSocketAction {
            host: host.map(Into::into),
            port: IntOrString::Int(80),
        }
    }

    fn http_probe(host: &str) -> Option<Box<Probe>> {
        Some(Box::new(Probe {
            http_get: Some(http(Some(host))),
            ..Default::default()
        }))
    }

    fn tcp_probe(host: &str) -> Option<Box<Probe>> {
        Some(Box::new(Probe {
            tcp_socket: Some(tcp(Some(host))),
            ..Default::default()
        }))
    }

    fn named(name: &str) -> Container {
        Container {
            name: name.into(),
            ..Default::default()
        }
    }

    fn check(spec: &PodSpec) -> Option<Forbidden> {
        host_probes_and_host_lifecycle_v1_34(&ObjectMeta::default(), spec)
    }

    #[test]
    fn unset_hosts_allowed() {
        let spec = PodSpec {
            containers: vec![Container {
                liveness_probe: Some(Box::new(Probe {
                    http_get: Some(http(None)),
                    ..Default::default()
                })),
                readiness_probe: Some(Box::new(Probe {
                    tcp_socket: Some(tcp(Some(""))),
                    ..Default::default()
                })),
                startup_probe: Some(Box::new(Probe {
                    grpc: Some(GRPCAction {
                        port: 80,
                        service: Some("localhost".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                lifecycle: Some(Box::new(Lifecycle {
                    post_start: Some(LifecycleHandler {
                        http_get: Some(http(None)),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                ..named("a")
            }],
            ..Default::default()
        };
        assert_eq!(check(&spec), None);
    }

    #[test]
    fn upstream_golden_one_container() {
        let spec = PodSpec {
            containers: vec![Container {
                liveness_probe: http_probe("127.0.0.1"),
                readiness_probe: tcp_probe("::1"),
                startup_probe: http_probe("localhost"),
                ..named("a")
            }],
            ..Default::default()
        };
        let f = check(&spec).unwrap();
        assert_eq!(f.reason, "probe or lifecycle host");
        assert_eq!(
            f.detail,
            r#"container "a" uses probe or lifecycle hosts "127.0.0.1", "::1", "localhost""#
        );
        assert_eq!(
            f.fields,
            [
                "spec.containers[0].livenessProbe.httpGet.host",
                "spec.containers[0].readinessProbe.tcpSocket.host",
                "spec.containers[0].startupProbe.httpGet.host",
            ]
        );
    }

    #[test]
    fn upstream_golden_many_containers() {
        let spec = PodSpec {
            containers: vec![
                named("valid"),
                Container {
                    liveness_probe: http_probe("a.com"),
                    ..named("invalid1")
                },
                Container {
                    lifecycle: Some(Box::new(Lifecycle {
                        pre_stop: Some(LifecycleHandler {
                            tcp_socket: Some(tcp(Some("b.com"))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })),
                    startup_probe: http_probe("a.com"),
                    ..named("invalid2")
                },
            ],
            ..Default::default()
        };
        let f = check(&spec).unwrap();
        assert_eq!(f.reason, "probe or lifecycle host");
        assert_eq!(
            f.detail,
            r#"containers "invalid1", "invalid2" use probe or lifecycle hosts "a.com", "b.com""#
        );
        assert_eq!(
            f.fields,
            [
                "spec.containers[1].livenessProbe.httpGet.host",
                "spec.containers[2].startupProbe.httpGet.host",
                "spec.containers[2].lifecycle.preStop.tcpSocket.host",
            ]
        );
    }

    #[test]
    fn every_field_and_sorted_names() {
        let spec = PodSpec {
            init_containers: Some(vec![Container {
                liveness_probe: http_probe("invalid.init.host"),
                ..named("z-init")
            }]),
            containers: vec![
                Container {
                    readiness_probe: tcp_probe("r"),
                    ..named("b")
                },
                Container {
                    lifecycle: Some(Box::new(Lifecycle {
                        post_start: Some(LifecycleHandler {
                            tcp_socket: Some(tcp(Some("p"))),
                            http_get: Some(http(Some("p"))),
                            ..Default::default()
                        }),
                        pre_stop: Some(LifecycleHandler {
                            http_get: Some(http(Some("s"))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })),
                    ..named("a")
                },
            ],
            ..Default::default()
        };
        let f = check(&spec).unwrap();
        assert_eq!(
            f.detail,
            r#"containers "a", "b", "z-init" use probe or lifecycle hosts "invalid.init.host", "p", "r", "s""#
        );
        assert_eq!(
            f.fields,
            [
                "spec.initContainers[0].livenessProbe.httpGet.host",
                "spec.containers[0].readinessProbe.tcpSocket.host",
                "spec.containers[1].lifecycle.postStart.httpGet.host",
                "spec.containers[1].lifecycle.postStart.tcpSocket.host",
                "spec.containers[1].lifecycle.preStop.httpGet.host",
            ]
        );
        let spec = PodSpec {
            containers: vec![Container {
                startup_probe: http_probe("invalid.host"),
                ..named("c")
            }],
            ..Default::default()
        };
        assert_eq!(
            check(&spec).unwrap().detail,
            r#"container "c" uses probe or lifecycle host "invalid.host""#
        );
    }
}
