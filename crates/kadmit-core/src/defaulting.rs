//! The API server's defaulting that changes policy verdicts, for objects that did not come
//! through an API server (manifests for `check`, snapshot objects).
//!
//! Admission reviews carry objects that are already defaulted, so the webhook path never needs
//! this; offline paths apply it so the same pod gets the same verdict.

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, Volume};

/// Applies the pod-spec defaulting that matters to kadmit's policies: a volume with no source is
/// an `emptyDir`, as the API server defaults it.
pub fn default_pod_spec(spec: &mut PodSpec) {
    for volume in spec.volumes.iter_mut().flatten() {
        let sourceless = Volume {
            name: volume.name.clone(),
            ..Default::default()
        };
        if *volume == sourceless {
            volume.empty_dir = Some(EmptyDirVolumeSource::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sourceless_volume_becomes_empty_dir() {
        let mut spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [],
            "volumes": [{"name": "a"}, {"name": "b", "hostPath": {"path": "/"}}]
        }))
        .unwrap();
        default_pod_spec(&mut spec);
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes[0].empty_dir, Some(EmptyDirVolumeSource::default()));
        assert!(volumes[1].empty_dir.is_none());
    }
}
