//! `restrictedVolumes` (restricted, v1.0, single variant): besides forbidding `hostPath`, the
//! restricted level allows only inline volume sources that do not reach node or external
//! storage directly. Every `spec.volumes[*]` must have one of `configMap`, `csi`, `downwardAPI`,
//! `emptyDir`, `ephemeral`, `image`, `persistentVolumeClaim`, `projected`, `secret` (any one of
//! them suffices). It overrides the baseline `hostPathVolumes` check at restricted level.
//!
//! The list has been extended retroactively upstream (no version bump): `image` volumes were
//! allowed for all versions in 2025; `csi` and `ephemeral` were allowed from the start.
//!
//! A bad volume is reported by name (spec order, not de-duplicated) and by type: the first set
//! source in the order `hostPath, gcePersistentDisk, awsElasticBlockStore, gitRepo, nfs, iscsi,
//! glusterfs, rbd, flexVolume, cinder, cephfs, flocker, fc, azureFile, vsphereVolume, quobyte,
//! azureDisk, photonPersistentDisk, portworxVolume, scaleIO, storageos`, otherwise `unknown`
//! (a source the API types here do not model, or no source at all: the API server defaults a
//! sourceless volume to `emptyDir` before admission, so only undefaulted input has none). Detail: `volume(s) Q(names) uses|use restricted volume
//! type(s) Q(sorted distinct types)`.
//!
//! Fields: the source of each bad volume that gives it its type, such as
//! `spec.volumes[2].hostPath` (the type names are the sources' field names); for an `unknown`
//! type, the volume itself, such as `spec.volumes[3]`.

use super::{Check, Forbidden, Variant, joined_quoted, pluralize, sorted_unique};
use crate::config::Level;
use crate::pod::{ObjectMeta, PodSpec, Volume};

pub(super) const CHECK: Check = Check {
    id: "restrictedVolumes",
    level: Level::Restricted,
    variants: &[Variant {
        min_minor: 0,
        check: check_v1_0,
    }],
    overrides: &["hostPathVolumes"],
};

fn check_v1_0(_meta: &ObjectMeta, spec: &PodSpec) -> Option<Forbidden> {
    let mut bad_names = Vec::new();
    let mut bad_types = Vec::new();
    let mut fields = Vec::new();
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        if allowed(volume) {
            continue;
        }
        let type_ = restricted_type(volume);
        bad_names.push(volume.name.as_str());
        bad_types.push(type_);
        fields.push(if type_ == UNKNOWN {
            format!("spec.volumes[{i}]")
        } else {
            format!("spec.volumes[{i}].{type_}")
        });
    }
    if bad_names.is_empty() {
        return None;
    }
    let bad_types = sorted_unique(bad_types);
    Some(
        Forbidden::new(
            "restricted volume types",
            format!(
                "{} {} {} {} {}",
                pluralize(bad_names.len(), "volume", "volumes"),
                joined_quoted(&bad_names),
                pluralize(bad_names.len(), "uses", "use"),
                pluralize(
                    bad_types.len(),
                    "restricted volume type",
                    "restricted volume types"
                ),
                joined_quoted(&bad_types)
            ),
        )
        .with_fields(fields),
    )
}

/// The type reported for a volume with no source this check knows.
const UNKNOWN: &str = "unknown";

/// The volume uses one of the allowed sources.
fn allowed(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some()
}

/// The name of a not-allowed volume's type, as upstream reports it: its source's field name, or
/// [`UNKNOWN`].
fn restricted_type(v: &Volume) -> &'static str {
    let known = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    known
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
        .unwrap_or(UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, f: impl FnOnce(&mut Volume)) -> Volume {
        let mut v = Volume {
            name: name.into(),
            ..Default::default()
        };
        f(&mut v);
        v
    }

    fn check(volumes: Vec<Volume>) -> Option<Forbidden> {
        let spec = PodSpec {
            volumes: Some(volumes),
            ..Default::default()
        };
        check_v1_0(&ObjectMeta::default(), &spec)
    }

    #[test]
    fn upstream_golden() {
        let volumes = vec![
            // Allowed.
            vol("a1", |v| v.empty_dir = Some(Default::default())),
            vol("a2", |v| v.secret = Some(Default::default())),
            vol("a3", |v| {
                v.persistent_volume_claim = Some(Default::default())
            }),
            vol("a4", |v| v.downward_api = Some(Default::default())),
            vol("a5", |v| v.config_map = Some(Default::default())),
            vol("a6", |v| v.projected = Some(Default::default())),
            vol("a7", |v| v.csi = Some(Default::default())),
            vol("a8", |v| v.ephemeral = Some(Default::default())),
            vol("a9", |v| v.image = Some(Default::default())),
            // Restricted.
            vol("b1", |v| v.host_path = Some(Default::default())),
            vol("b2", |v| v.gce_persistent_disk = Some(Default::default())),
            vol("b3", |v| {
                v.aws_elastic_block_store = Some(Default::default())
            }),
            vol("b4", |v| v.git_repo = Some(Default::default())),
            vol("b5", |v| v.nfs = Some(Default::default())),
            vol("b6", |v| v.iscsi = Some(Default::default())),
            vol("b7", |v| v.glusterfs = Some(Default::default())),
            vol("b8", |v| v.rbd = Some(Default::default())),
            vol("b9", |v| v.flex_volume = Some(Default::default())),
            vol("b10", |v| v.cinder = Some(Default::default())),
            vol("b11", |v| v.cephfs = Some(Default::default())),
            vol("b12", |v| v.flocker = Some(Default::default())),
            vol("b13", |v| v.fc = Some(Default::default())),
            vol("b14", |v| v.azure_file = Some(Default::default())),
            vol("b15", |v| v.vsphere_volume = Some(Default::default())),
            vol("b16", |v| v.quobyte = Some(Default::default())),
            vol("b17", |v| v.azure_disk = Some(Default::default())),
            vol("b18", |v| {
                v.photon_persistent_disk = Some(Default::default())
            }),
            vol("b19", |v| v.portworx_volume = Some(Default::default())),
            vol("b20", |v| v.scale_io = Some(Default::default())),
            vol("b21", |v| v.storageos = Some(Default::default())),
            // No source.
            vol("c1", |_| {}),
        ];
        let f = check(volumes).unwrap();
        assert_eq!(f.reason, "restricted volume types");
        assert_eq!(
            f.detail,
            concat!(
                r#"volumes "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10", "b11", "b12", "b13", "b14", "b15", "b16", "b17", "b18", "b19", "b20", "b21", "c1""#,
                r#" use restricted volume types "#,
                r#""awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs", "#,
                r#""hostPath", "iscsi", "nfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "unknown", "vsphereVolume""#
            )
        );
        assert_eq!(
            f.fields,
            [
                "spec.volumes[9].hostPath",
                "spec.volumes[10].gcePersistentDisk",
                "spec.volumes[11].awsElasticBlockStore",
                "spec.volumes[12].gitRepo",
                "spec.volumes[13].nfs",
                "spec.volumes[14].iscsi",
                "spec.volumes[15].glusterfs",
                "spec.volumes[16].rbd",
                "spec.volumes[17].flexVolume",
                "spec.volumes[18].cinder",
                "spec.volumes[19].cephfs",
                "spec.volumes[20].flocker",
                "spec.volumes[21].fc",
                "spec.volumes[22].azureFile",
                "spec.volumes[23].vsphereVolume",
                "spec.volumes[24].quobyte",
                "spec.volumes[25].azureDisk",
                "spec.volumes[26].photonPersistentDisk",
                "spec.volumes[27].portworxVolume",
                "spec.volumes[28].scaleIO",
                "spec.volumes[29].storageos",
                "spec.volumes[30]",
            ]
        );
    }

    #[test]
    fn singular_forms() {
        let f = check(vec![vol("h", |v| v.host_path = Some(Default::default()))]).unwrap();
        assert_eq!(
            f.detail,
            r#"volume "h" uses restricted volume type "hostPath""#
        );
        let f = check(vec![
            vol("x", |v| v.nfs = Some(Default::default())),
            vol("x", |v| v.nfs = Some(Default::default())),
        ])
        .unwrap();
        assert_eq!(
            f.detail,
            r#"volumes "x", "x" use restricted volume type "nfs""#
        );
    }

    #[test]
    fn any_allowed_source_wins_and_first_restricted_type_names_it() {
        assert_eq!(
            check(vec![vol("m", |v| {
                v.host_path = Some(Default::default());
                v.secret = Some(Default::default());
            })]),
            None
        );
        let f = check(vec![vol("m", |v| {
            v.storageos = Some(Default::default());
            v.nfs = Some(Default::default());
        })])
        .unwrap();
        assert_eq!(f.detail, r#"volume "m" uses restricted volume type "nfs""#);
        assert_eq!(f.fields, ["spec.volumes[0].nfs"]);
        assert_eq!(check(vec![]), None);
        assert_eq!(
            check_v1_0(&ObjectMeta::default(), &PodSpec::default()),
            None
        );
    }
}
