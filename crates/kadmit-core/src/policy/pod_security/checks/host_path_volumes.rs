//! `hostPathVolumes` (baseline, v1.0): no `spec.volumes[*]` may set `hostPath`.
//!
//! At restricted level this check is overridden by `restrictedVolumes`, which forbids hostPath
//! among every other non-allow-listed volume type.
//!
//! Reason `hostPath volumes`, detail `volume(s) "…"` with the names in spec order (not sorted,
//! not de-duplicated). Fields: `spec.volumes[<index>].hostPath` of each such volume.

use super::{Check, Forbidden, Variant, joined_quoted, pluralize};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec};

pub(super) const CHECK: Check = Check {
    id: "hostPathVolumes",
    level: Level::Baseline,
    variants: &[Variant {
        min_minor: 0,
        check: host_path_volumes_v1_0,
    }],
    overrides: &[],
};

fn host_path_volumes_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let mut bad: Vec<&str> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if v.host_path.is_some() {
            bad.push(&v.name);
            fields.push(format!("spec.volumes[{i}].hostPath"));
        }
    }
    if bad.is_empty() {
        return None;
    }
    Some(
        Forbidden::new(
            "hostPath volumes",
            format!(
                "{} {}",
                pluralize(bad.len(), "volume", "volumes"),
                joined_quoted(&bad)
            ),
        )
        .with_fields(fields),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{Source, Volume};

    fn host_path(name: &str) -> Volume {
        Volume {
            name: name.into(),
            host_path: Some(Source),
            ..Default::default()
        }
    }

    fn empty_dir(name: &str) -> Volume {
        Volume {
            name: name.into(),
            empty_dir: Some(Source),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_golden() {
        let spec = PodSpec {
            volumes: Some(vec![host_path("a"), host_path("b"), empty_dir("c")]),
            ..Default::default()
        };
        let f = host_path_volumes_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.reason, "hostPath volumes");
        assert_eq!(f.detail, r#"volumes "a", "b""#);
        assert_eq!(
            f.fields,
            ["spec.volumes[0].hostPath", "spec.volumes[1].hostPath"]
        );
    }

    #[test]
    fn singular_spec_order_and_allowed() {
        let spec = PodSpec {
            volumes: Some(vec![empty_dir("x"), host_path("z")]),
            ..Default::default()
        };
        let f = host_path_volumes_v1_0(&ObjectMeta::default(), &spec).unwrap();
        assert_eq!(f.detail, r#"volume "z""#);
        assert_eq!(f.fields, ["spec.volumes[1].hostPath"]);
        let spec = PodSpec {
            volumes: Some(vec![host_path("z"), host_path("a"), host_path("z")]),
            ..Default::default()
        };
        assert_eq!(
            host_path_volumes_v1_0(&ObjectMeta::default(), &spec)
                .unwrap()
                .detail,
            r#"volumes "z", "a", "z""#
        );
        let spec = PodSpec {
            volumes: Some(vec![empty_dir("x")]),
            ..Default::default()
        };
        assert_eq!(host_path_volumes_v1_0(&ObjectMeta::default(), &spec), None);
        assert_eq!(
            host_path_volumes_v1_0(&ObjectMeta::default(), &PodSpec::default()),
            None
        );
    }
}
