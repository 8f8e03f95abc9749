//! The API server's defaulting that changes policy verdicts, for objects that did not come
//! through an API server (manifests for `check`, snapshot objects).
//!
//! Admission reviews carry objects that are already defaulted, so the webhook path never needs
//! this; offline paths apply it so the same pod gets the same verdict.

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, LimitRange, Volume};

use crate::pod::{PodSpec, Source};

/// Applies the pod-spec defaulting that matters to kadmit's policies: a volume with no source is
/// an `emptyDir`, as the API server defaults it.
pub fn default_pod_spec(spec: &mut PodSpec) {
    for volume in spec.volumes.iter_mut().flatten() {
        if volume.has_no_source() {
            volume.empty_dir = Some(Source);
        }
    }
}

/// [`default_pod_spec`] for the volumes of a pod the cluster view holds.
pub fn default_volumes(volumes: &mut [Volume]) {
    for volume in volumes {
        let sourceless = Volume {
            name: volume.name.clone(),
            ..Default::default()
        };
        if *volume == sourceless {
            volume.empty_dir = Some(EmptyDirVolumeSource::default());
        }
    }
}

/// Applies the API server's object defaulting of a LimitRange to its `type: Container` items,
/// which objects read from the API already carry but a hand-written snapshot may not:
/// `max` fills missing `default`s, then `default` fills missing `defaultRequest`s, then `min`
/// fills the rest of `defaultRequest`.
pub fn default_limit_range(limit_range: &mut LimitRange) {
    let Some(spec) = limit_range.spec.as_mut() else {
        return;
    };
    for item in spec
        .limits
        .iter_mut()
        .filter(|item| item.type_ == "Container")
    {
        for (resource, max) in item.max.iter().flatten() {
            item.default
                .get_or_insert_default()
                .entry(resource.clone())
                .or_insert_with(|| max.clone());
        }
        for (resource, default) in item.default.iter().flatten() {
            item.default_request
                .get_or_insert_default()
                .entry(resource.clone())
                .or_insert_with(|| default.clone());
        }
        for (resource, min) in item.min.iter().flatten() {
            item.default_request
                .get_or_insert_default()
                .entry(resource.clone())
                .or_insert_with(|| min.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_range_defaulting_follows_the_api_server() {
        let mut range: LimitRange = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r"},
            "spec": {"limits": [
                {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "default": {"cpu": "1"},
                 "min": {"cpu": "100m", "ephemeral-storage": "1Gi"}},
                {"type": "Pod", "max": {"cpu": "4"}}
            ]}
        }))
        .unwrap();
        default_limit_range(&mut range);
        let limits = &range.spec.as_ref().unwrap().limits;
        let text = |map: &Option<
            std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >| {
            map.iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.0))
                .collect::<Vec<_>>()
                .join(",")
        };
        // max→default only where default is missing; default→defaultRequest; min→defaultRequest.
        assert_eq!(text(&limits[0].default), "cpu=1,memory=1Gi");
        assert_eq!(
            text(&limits[0].default_request),
            "cpu=1,ephemeral-storage=1Gi,memory=1Gi"
        );
        // Pod items are not defaulted.
        assert_eq!(text(&limits[1].default), "");
        assert!(limits[1].default_request.is_none());
    }

    #[test]
    fn sourceless_volume_becomes_empty_dir() {
        let mut spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [],
            "volumes": [{"name": "a"}, {"name": "b", "hostPath": {"path": "/"}}]
        }))
        .unwrap();
        default_pod_spec(&mut spec);
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes[0].empty_dir, Some(Source));
        assert!(volumes[1].empty_dir.is_none());
    }
}
