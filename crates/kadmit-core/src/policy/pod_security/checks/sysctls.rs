//! `sysctls` (baseline; v1.0, v1.27, v1.29, v1.32, v1.37): only "safe" sysctls, namespaced and
//! isolated from other pods, may be set in `spec.securityContext.sysctls[*].name`. Values are
//! never inspected.
//!
//! Allowed names, cumulative:
//! * v1.0: `kernel.shm_rmid_forced`, `net.ipv4.ip_local_port_range`, `net.ipv4.tcp_syncookies`,
//!   `net.ipv4.ping_group_range`, `net.ipv4.ip_unprivileged_port_start`;
//! * v1.27: `net.ipv4.ip_local_reserved_ports`;
//! * v1.29: `net.ipv4.tcp_keepalive_time`, `net.ipv4.tcp_fin_timeout`,
//!   `net.ipv4.tcp_keepalive_intvl`, `net.ipv4.tcp_keepalive_probes`;
//! * v1.32: `net.ipv4.tcp_rmem`, `net.ipv4.tcp_wmem`;
//! * v1.37: `net.ipv4.tcp_slow_start_after_idle`, `net.ipv4.tcp_notsent_lowat`.
//!
//! Each list joins when the kubelet started treating those sysctls as safe, so older policy
//! versions keep rejecting them.
//!
//! Reason `forbidden sysctls`, detail the forbidden names in spec order, unquoted, neither sorted
//! nor de-duplicated, joined with `, `.
//! Fields: `spec.securityContext.sysctls[<index>].name` of each forbidden entry.

use super::{Check, Forbidden, Variant};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "sysctls",
    level: Level::Baseline,
    variants: &[
        Variant {
            min_minor: 0,
            check: sysctls_v1_0,
        },
        Variant {
            min_minor: 27,
            check: sysctls_v1_27,
        },
        Variant {
            min_minor: 29,
            check: sysctls_v1_29,
        },
        Variant {
            min_minor: 32,
            check: sysctls_v1_32,
        },
        Variant {
            min_minor: 37,
            check: sysctls_v1_37,
        },
    ],
    overrides: &[],
};

const ALLOWED_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];

const ADDED_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];

const ADDED_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

const ADDED_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

const ADDED_1_37: &[&str] = &[
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

fn sysctls_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    forbidden_sysctls(spec, &[ALLOWED_1_0])
}

fn sysctls_v1_27(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    forbidden_sysctls(spec, &[ALLOWED_1_0, ADDED_1_27])
}

fn sysctls_v1_29(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    forbidden_sysctls(spec, &[ALLOWED_1_0, ADDED_1_27, ADDED_1_29])
}

fn sysctls_v1_32(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    forbidden_sysctls(spec, &[ALLOWED_1_0, ADDED_1_27, ADDED_1_29, ADDED_1_32])
}

fn sysctls_v1_37(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    forbidden_sysctls(
        spec,
        &[ALLOWED_1_0, ADDED_1_27, ADDED_1_29, ADDED_1_32, ADDED_1_37],
    )
}

/// Denies the pod's sysctls that are in none of the `allowed` lists.
fn forbidden_sysctls(spec: &PodSpec, allowed: &[&[&str]]) -> Option<Forbidden> {
    let sysctls = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_deref())
        .unwrap_or_default();
    let mut bad: Vec<&str> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for (i, sysctl) in sysctls.iter().enumerate() {
        let name = sysctl.name.as_str();
        if !allowed.iter().any(|list| list.contains(&name)) {
            bad.push(name);
            fields.push(format!("spec.securityContext.sysctls[{i}].name"));
        }
    }
    if bad.is_empty() {
        return None;
    }
    Some(Forbidden::new("forbidden sysctls", bad.join(", ")).with_fields(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, Sysctl};

    fn pod(names: &[&str]) -> PodSpec {
        PodSpec {
            security_context: Some(PodSecurityContext {
                sysctls: Some(
                    names
                        .iter()
                        .map(|name| Sysctl {
                            name: (*name).to_owned(),
                            value: "1".into(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_golden() {
        let f = sysctls_v1_0(&ObjectMeta::default(), &pod(&["a", "b"])).unwrap();
        assert_eq!(f.reason, "forbidden sysctls");
        assert_eq!(f.detail, "a, b");
        assert_eq!(
            f.fields,
            [
                "spec.securityContext.sysctls[0].name",
                "spec.securityContext.sysctls[1].name",
            ]
        );
    }

    #[test]
    fn spec_order_with_duplicates() {
        let spec = pod(&["z", "kernel.shm_rmid_forced", "a", "z"]);
        let f = sysctls_v1_37(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.detail, "z, a, z");
        assert_eq!(
            f.fields,
            [
                "spec.securityContext.sysctls[0].name",
                "spec.securityContext.sysctls[2].name",
                "spec.securityContext.sysctls[3].name",
            ]
        );
        assert_eq!(
            sysctls_v1_0(&ObjectMeta::default(), &PodSpec::default()),
            None
        );
        assert_eq!(sysctls_v1_0(&ObjectMeta::default(), &pod(&[])), None);
    }

    #[test]
    fn each_version_adds_its_names() {
        type CheckFn = fn(&ObjectMeta, &PodSpec) -> Option<Forbidden>;
        let versions: [(CheckFn, &[&str]); 5] = [
            (sysctls_v1_0, ALLOWED_1_0),
            (sysctls_v1_27, ADDED_1_27),
            (sysctls_v1_29, ADDED_1_29),
            (sysctls_v1_32, ADDED_1_32),
            (sysctls_v1_37, ADDED_1_37),
        ];
        for (i, (check, _)) in versions.iter().enumerate() {
            for (j, (_, names)) in versions.iter().enumerate() {
                let result = check(&ObjectMeta::default(), &pod(names));
                if j <= i {
                    assert_eq!(result, None, "variant {i} should allow list {j}");
                } else {
                    assert_eq!(
                        result.unwrap().detail,
                        names.join(", "),
                        "variant {i} should deny list {j}"
                    );
                }
            }
        }
    }
}
