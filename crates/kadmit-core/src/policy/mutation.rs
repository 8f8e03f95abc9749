//! What the pod-defaulting policies share: which requests they change, namespace selection, the
//! patch, and the summary of what they did.
//!
//! Each defaulting policy edits a copy of the typed pod and the patch is the difference between
//! the two, serialized the same way. That keeps every policy's patch minimal (only what changed),
//! creates parents before children (a missing object is added whole, with its new members in
//! it), escapes keys per RFC 6901 (`kubernetes.io~1limit-ranger`), and cannot touch fields
//! kadmit does not model: they are in neither side of the difference, so the API server keeps
//! them as sent.

use json_patch::PatchOperation;
use k8s_openapi::api::core::v1::Pod;

use super::{PolicyError, PolicyOutcome, ReviewContext};
use crate::cluster::ClusterError;
use crate::config::{MutationSummary, NamespaceSelector};
use crate::review::Operation;

/// The pod of a Pod CREATE (no subresource), the only request the defaulting policies change:
/// a pod's containers, resources and pull secrets are immutable once it exists.
pub(crate) fn created_pod<'a>(ctx: &ReviewContext<'a>) -> Option<&'a Pod> {
    let request = ctx.request;
    if request.operation != Operation::Create
        || request
            .sub_resource
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        || !request.kind.is_core_v1("Pod")
    {
        return None;
    }
    ctx.object.and_then(|object| object.as_pod())
}

/// Whether `selector` selects the request's namespace; an empty selector selects every one
/// without a lookup, so catch-all rules never wait on the cluster view. A namespace the cluster view does not
/// know is matched by its name alone (`kubernetes.io/metadata.name`), so offline replays of
/// reviews from namespaces missing in the snapshot still get the catch-all rules.
pub(crate) fn namespace_selected(
    selector: &NamespaceSelector,
    ctx: &ReviewContext<'_>,
) -> Result<bool, ClusterError> {
    if selector.selects_all() {
        return Ok(true);
    }
    let name = ctx.request.namespace();
    let namespace = ctx.cluster.namespace(name)?;
    let empty = Default::default();
    let labels = namespace
        .as_ref()
        .and_then(|ns| ns.metadata.labels.as_ref())
        .unwrap_or(&empty);
    Ok(selector.matches(name, labels))
}

/// The JSON Patch that turns `before` into `after`.
pub(crate) fn pod_patch(before: &Pod, after: &Pod) -> Result<Vec<PatchOperation>, PolicyError> {
    let encode = |pod: &Pod| {
        serde_json::to_value(pod)
            .map_err(|e| PolicyError::Other(format!("encoding the pod for its patch: {e}")))
    };
    Ok(json_patch::diff(&encode(before)?, &encode(after)?).0)
}

/// Adds `summary` (what `policy` changed) where the configuration asks for it: the audit
/// annotation `policy` (the API server prefixes it with the webhook's name) and/or a warning.
pub(crate) fn summarize(
    outcome: &mut PolicyOutcome,
    mode: MutationSummary,
    policy: &str,
    summary: String,
) {
    if matches!(mode, MutationSummary::Warnings | MutationSummary::Both) {
        outcome.warnings.push(format!("kadmit {policy}: {summary}"));
    }
    if matches!(
        mode,
        MutationSummary::AuditAnnotations | MutationSummary::Both
    ) {
        outcome.audit_annotations.insert(policy.to_owned(), summary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_minimal_escaped_and_create_parents() {
        let before: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b", "resources": {"limits": {"cpu": "1"}}}]}
        }))
        .unwrap();
        let mut after = before.clone();
        after
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("kubernetes.io/limit-ranger".to_owned(), "x".to_owned());
        let spec = after.spec.as_mut().unwrap();
        spec.containers[0].resources =
            Some(serde_json::from_value(serde_json::json!({"requests": {"cpu": "1"}})).unwrap());
        spec.containers[1]
            .resources
            .as_mut()
            .unwrap()
            .limits
            .as_mut()
            .unwrap()
            .insert(
                "memory".to_owned(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".to_owned()),
            );
        let patch = pod_patch(&before, &after).unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!([
                {"op": "add", "path": "/metadata/annotations", "value": {"kubernetes.io/limit-ranger": "x"}},
                {"op": "add", "path": "/spec/containers/0/resources", "value": {"requests": {"cpu": "1"}}},
                {"op": "add", "path": "/spec/containers/1/resources/limits/memory", "value": "1Gi"},
            ])
        );
        after
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("a/b~c".to_owned(), "y".to_owned());
        let with_annotations = {
            let mut pod = before.clone();
            pod.metadata.annotations = Some(Default::default());
            pod
        };
        let patch = pod_patch(&with_annotations, &after).unwrap();
        let paths: Vec<String> = patch
            .iter()
            .filter_map(|op| match op {
                PatchOperation::Add(add) => Some(add.path.to_string()),
                _ => None,
            })
            .collect();
        assert!(
            paths.contains(&"/metadata/annotations/a~1b~0c".to_owned()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"/metadata/annotations/kubernetes.io~1limit-ranger".to_owned()),
            "{paths:?}"
        );
    }
}
