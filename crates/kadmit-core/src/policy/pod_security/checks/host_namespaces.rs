//! `hostNamespaces` (baseline, v1.0): `spec.hostNetwork`, `spec.hostPID` and `spec.hostIPC` must
//! be unset or false.
//!
//! Fields: each of `spec.hostNetwork`, `spec.hostPID` and `spec.hostIPC` that is true, in that
//! order.

use super::{Check, Forbidden, Variant};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "hostNamespaces",
    level: Level::Baseline,
    variants: &[Variant {
        min_minor: 0,
        check: host_namespaces_v1_0,
    }],
    overrides: &[],
};

fn host_namespaces_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let set: Vec<&str> = [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ]
    .into_iter()
    .filter_map(|(value, field)| (value == Some(true)).then_some(field))
    .collect();
    if set.is_empty() {
        return None;
    }
    let detail: Vec<String> = set.iter().map(|field| format!("{field}=true")).collect();
    let fields = set.iter().map(|field| format!("spec.{field}")).collect();
    Some(Forbidden::new("host namespaces", detail.join(", ")).with_fields(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_namespace_in_order() {
        let spec = PodSpec {
            host_network: Some(true),
            host_pid: Some(true),
            host_ipc: Some(true),
            ..Default::default()
        };
        let f = host_namespaces_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "host namespaces");
        assert_eq!(f.detail, "hostNetwork=true, hostPID=true, hostIPC=true");
        assert_eq!(
            f.fields,
            ["spec.hostNetwork", "spec.hostPID", "spec.hostIPC"]
        );
        let spec = PodSpec {
            host_pid: Some(true),
            host_ipc: Some(false),
            ..Default::default()
        };
        let f = host_namespaces_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.detail, "hostPID=true");
        assert_eq!(f.fields, ["spec.hostPID"]);
        assert_eq!(
            host_namespaces_v1_0(&ObjectMeta::default(), &PodSpec::default()),
            None
        );
    }
}
