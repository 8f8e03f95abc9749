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
use json_patch::jsonptr::{PointerBuf, Token};
use k8s_openapi::api::core::v1::ResourceRequirements;

use super::{Defaulted, PodDefaulting, PolicyError, PolicyOutcome, ReviewContext};
use crate::cluster::ClusterError;
use crate::config::{MutationSummary, NamespaceSelector};
use crate::pod::{Container, Pod};
use crate::review::{AdmissionRequest, Operation, TypedObject};

/// Whether `request` is a Pod CREATE (no subresource), the only request the defaulting policies
/// change: a pod's containers, resources and pull secrets are immutable once it exists.
pub(crate) fn creates_pod(request: &AdmissionRequest) -> bool {
    request.operation == Operation::Create
        && request.sub_resource.as_deref().is_none_or(str::is_empty)
        && request.kind.is_core_v1("Pod")
}

/// The pod of a Pod CREATE (see [`creates_pod`]).
pub(crate) fn created_pod<'a>(ctx: &ReviewContext<'a>) -> Option<&'a Pod> {
    if !creates_pod(ctx.request) {
        return None;
    }
    ctx.object.and_then(|object| object.as_pod())
}

/// [`super::Policy::mutate`] of a defaulting policy run on its own: the policy fills in a copy
/// of the pod, and the patch is the difference.
pub(crate) fn mutate_copy(
    policy: &dyn PodDefaulting,
    ctx: &ReviewContext<'_>,
) -> Result<PolicyOutcome, PolicyError> {
    let Some(pod) = created_pod(ctx) else {
        return Ok(PolicyOutcome::default());
    };
    let mut after = pod.clone();
    let Defaulted {
        changed,
        mut outcome,
    } = policy.default_pod(ctx, &mut after)?;
    if changed {
        outcome.patch = pod_patch(pod, &after)?;
        outcome.mutated = Some(TypedObject::Pod(Box::new(after)));
    }
    Ok(outcome)
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

/// The JSON Patch that turns `before` into `after`, for a policy that changed only the parts
/// defaulting changes: annotations, the pod's security context and pull secrets, and the
/// resources and security contexts of containers.
///
/// Serializing and comparing whole pods costs tens of microseconds, so those parts are compared
/// as typed values and only the ones that differ are serialized and diffed. A container that
/// differs elsewhere too is diffed whole, so nothing it changed is missed. A policy that changes
/// anything outside these parts breaks the contract; debug builds (every test) check it on every
/// patch, release builds trust it.
pub(crate) fn pod_patch(before: &Pod, after: &Pod) -> Result<Vec<PatchOperation>, PolicyError> {
    let mut ops = Vec::new();
    match (
        before.metadata.annotations.as_ref(),
        after.metadata.annotations.as_ref(),
    ) {
        (Some(b), Some(a)) => map_part(&mut ops, &["metadata", "annotations"], b, a)?,
        (b, a) => part(&mut ops, &["metadata", "annotations"], b, a)?,
    }
    // In the order of the serialized keys, as a whole-pod diff would list them.
    if let (Some(b), Some(a)) = (before.spec.as_ref(), after.spec.as_ref()) {
        list(
            &mut ops,
            "containers",
            Some(&b.containers),
            Some(&a.containers),
        )?;
        list(
            &mut ops,
            "ephemeralContainers",
            b.ephemeral_containers.as_ref(),
            a.ephemeral_containers.as_ref(),
        )?;
        part(
            &mut ops,
            &["spec", "imagePullSecrets"],
            b.image_pull_secrets.as_ref(),
            a.image_pull_secrets.as_ref(),
        )?;
        list(
            &mut ops,
            "initContainers",
            b.init_containers.as_ref(),
            a.init_containers.as_ref(),
        )?;
        part(
            &mut ops,
            &["spec", "securityContext"],
            b.security_context.as_ref(),
            a.security_context.as_ref(),
        )?;
    }
    #[cfg(debug_assertions)]
    {
        let mut rest = after.clone();
        Parts::of(before).put(&mut rest);
        let unchanged = rest == *before;
        assert!(
            unchanged,
            "a defaulting policy changed a part of the pod that pod_patch does not diff"
        );
    }
    Ok(ops)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, PolicyError> {
    serde_json::to_value(value)
        .map_err(|e| PolicyError::Other(format!("encoding the pod for its patch: {e}")))
}

/// The JSON Pointer to `path` (unescaped tokens), and to `key` below it if given, each token
/// escaped by jsonptr's `Token` (`~` as `~0`, `/` as `~1`). Built in one allocation: jsonptr's
/// `from_tokens` grows its string token by token, which was a tenth of making a patch.
fn pointer(path: &[&str], key: Option<&str>) -> Result<PointerBuf, PolicyError> {
    let tokens = path.iter().copied().chain(key);
    let mut text = String::with_capacity(tokens.clone().map(|t| t.len() + 2).sum());
    for token in tokens {
        text.push('/');
        text.push_str(Token::new(token).encoded());
    }
    // What was just escaped always parses; the check is a scan of a short string.
    PointerBuf::parse(text).map_err(|e| PolicyError::Other(format!("patch path: {e}")))
}

/// Adds to `ops` what turns `before` into `after` at `path` (unescaped tokens): an absent value
/// is added whole, a present one diffed member by member.
fn part<T: serde::Serialize + PartialEq>(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    before: Option<&T>,
    after: Option<&T>,
) -> Result<(), PolicyError> {
    match (before, after) {
        (Some(b), Some(a)) if b != a => {
            let base = pointer(path, None)?;
            for mut op in json_patch::diff(&encode(b)?, &encode(a)?).0 {
                let path = match &mut op {
                    PatchOperation::Add(op) => &mut op.path,
                    PatchOperation::Remove(op) => &mut op.path,
                    PatchOperation::Replace(op) => &mut op.path,
                    PatchOperation::Move(op) => &mut op.path,
                    PatchOperation::Copy(op) => &mut op.path,
                    PatchOperation::Test(op) => &mut op.path,
                };
                let mut full = base.clone();
                full.append(&*path);
                *path = full;
                ops.push(op);
            }
        }
        (None, Some(a)) => ops.push(PatchOperation::Add(json_patch::AddOperation {
            path: pointer(path, None)?,
            value: encode(a)?,
        })),
        (Some(_), None) => ops.push(PatchOperation::Remove(json_patch::RemoveOperation {
            path: pointer(path, None)?,
        })),
        _ => {}
    }
    Ok(())
}

/// [`part`] for a container's resources, the part defaulting changes most: their `limits` and
/// `requests` are compared as the typed maps they are, without encoding both sides and diffing
/// the encodings. The result is the same list of operations (debug builds check it against
/// [`part`]); resources whose `claims` changed are left to [`part`].
fn resources_part(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    before: Option<&ResourceRequirements>,
    after: Option<&ResourceRequirements>,
) -> Result<(), PolicyError> {
    let (Some(b), Some(a)) = (before, after) else {
        return part(ops, path, before, after);
    };
    if b == a {
        return Ok(());
    }
    if b.claims != a.claims {
        return part(ops, path, before, after);
    }
    #[cfg(debug_assertions)]
    let first = ops.len();
    // Members present after, in key order (`limits` before `requests`), then those removed:
    // the order a diff of the encodings lists them in.
    let fields = [
        ("limits", b.limits.as_ref(), a.limits.as_ref()),
        ("requests", b.requests.as_ref(), a.requests.as_ref()),
    ];
    for (name, b, a) in fields {
        let path = [path, &[name]].concat();
        match (b, a) {
            (Some(b), Some(a)) => map_part(ops, &path, b, a)?,
            (None, Some(_)) => part(ops, &path, b, a)?,
            _ => {}
        }
    }
    for (name, b, a) in fields {
        if let (Some(_), None) = (b, a) {
            part(ops, &[path, &[name]].concat(), b, a)?;
        }
    }
    #[cfg(debug_assertions)]
    {
        let mut expected = Vec::new();
        part(&mut expected, path, before, after)?;
        assert_eq!(
            ops[first..],
            expected[..],
            "typed resources diff at {path:?}"
        );
    }
    Ok(())
}

/// [`part`] for two present maps of strings (annotations) or quantities (resources): key by
/// key, as a diff of their encodings would go, without encoding the maps.
fn map_part<V: serde::Serialize + PartialEq>(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    before: &std::collections::BTreeMap<String, V>,
    after: &std::collections::BTreeMap<String, V>,
) -> Result<(), PolicyError> {
    if before == after {
        return Ok(());
    }
    #[cfg(debug_assertions)]
    let first = ops.len();
    let at = |key: &str| pointer(path, Some(key));
    for (key, value) in after {
        match before.get(key) {
            Some(old) if old == value => {}
            Some(_) => ops.push(PatchOperation::Replace(json_patch::ReplaceOperation {
                path: at(key)?,
                value: encode(value)?,
            })),
            None => ops.push(PatchOperation::Add(json_patch::AddOperation {
                path: at(key)?,
                value: encode(value)?,
            })),
        }
    }
    for key in before.keys() {
        if !after.contains_key(key) {
            ops.push(PatchOperation::Remove(json_patch::RemoveOperation {
                path: at(key)?,
            }));
        }
    }
    #[cfg(debug_assertions)]
    {
        let mut expected = Vec::new();
        part(&mut expected, path, Some(before), Some(after))?;
        assert_eq!(ops[first..], expected[..], "typed map diff at {path:?}");
    }
    Ok(())
}

/// [`part`] for a container list: container by container when the list keeps its length, and
/// within a container its resources and security context, unless it changed elsewhere too.
fn list(
    ops: &mut Vec<PatchOperation>,
    name: &str,
    before: Option<&Vec<Container>>,
    after: Option<&Vec<Container>>,
) -> Result<(), PolicyError> {
    match (before, after) {
        (Some(b), Some(a)) if b.len() == a.len() => {
            for (i, (b, a)) in b.iter().zip(a).enumerate() {
                if b == a {
                    continue;
                }
                let index = i.to_string();
                if !differs_elsewhere(b, a) {
                    resources_part(
                        ops,
                        &["spec", name, &index, "resources"],
                        b.resources.as_ref(),
                        a.resources.as_ref(),
                    )?;
                    part(
                        ops,
                        &["spec", name, &index, "securityContext"],
                        b.security_context.as_ref(),
                        a.security_context.as_ref(),
                    )?;
                } else {
                    part(ops, &["spec", name, &index], Some(b), Some(a))?;
                }
            }
            Ok(())
        }
        (before, after) => part(ops, &["spec", name], before, after),
    }
}

/// Whether a container differs anywhere but the resources and security context that [`list`]
/// diffs one by one. Every member is named, so a member added to [`Container`] must be placed
/// on one side or the other here.
fn differs_elsewhere(before: &Container, after: &Container) -> bool {
    let Container {
        image,
        lifecycle,
        liveness_probe,
        name,
        ports,
        readiness_probe,
        resources: _,
        security_context: _,
        startup_probe,
    } = before;
    *image != after.image
        || *lifecycle != after.lifecycle
        || *liveness_probe != after.liveness_probe
        || *name != after.name
        || *ports != after.ports
        || *readiness_probe != after.readiness_probe
        || *startup_probe != after.startup_probe
}

/// The parts of a pod that [`pod_patch`] compares one by one (to check, in debug builds, that
/// nothing else changed).
#[cfg(debug_assertions)]
struct Parts {
    annotations: Option<std::collections::BTreeMap<String, String>>,
    spec: Option<SpecParts>,
}

#[cfg(debug_assertions)]
type SpecParts = (
    Option<k8s_openapi::api::core::v1::PodSecurityContext>,
    Option<Vec<k8s_openapi::api::core::v1::LocalObjectReference>>,
    Vec<Container>,
    Option<Vec<Container>>,
    Option<Vec<Container>>,
);

#[cfg(debug_assertions)]
impl Parts {
    fn of(pod: &Pod) -> Parts {
        Parts {
            annotations: pod.metadata.annotations.clone(),
            spec: pod.spec.as_ref().map(|s| {
                (
                    s.security_context.clone(),
                    s.image_pull_secrets.clone(),
                    s.containers.clone(),
                    s.init_containers.clone(),
                    s.ephemeral_containers.clone(),
                )
            }),
        }
    }

    fn put(self, pod: &mut Pod) {
        pod.metadata.annotations = self.annotations;
        if let (Some(spec), Some(parts)) = (pod.spec.as_mut(), self.spec) {
            (
                spec.security_context,
                spec.image_pull_secrets,
                spec.containers,
                spec.init_containers,
                spec.ephemeral_containers,
            ) = parts;
        }
    }
}

/// Adds the summary of what `policy` changed where the configuration asks for it: the audit
/// annotation `policy` (the API server prefixes it with the webhook's name) and/or a warning.
/// `summary` is called only then: with `mutationSummary: none` no text is built.
pub(crate) fn summarize(
    outcome: &mut PolicyOutcome,
    mode: MutationSummary,
    policy: &str,
    summary: impl FnOnce() -> String,
) {
    let (warn, annotate) = match mode {
        MutationSummary::None => return,
        MutationSummary::Warnings => (true, false),
        MutationSummary::AuditAnnotations => (false, true),
        MutationSummary::Both => (true, true),
    };
    let summary = summary();
    if warn {
        outcome.warnings.push(format!("kadmit {policy}: {summary}"));
    }
    if annotate {
        outcome.audit_annotations.insert(policy.to_owned(), summary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_built_only_where_it_is_wanted() {
        let mut outcome = PolicyOutcome::default();
        summarize(&mut outcome, MutationSummary::None, "p", || {
            panic!("built with mutationSummary: none")
        });
        assert_eq!(outcome, PolicyOutcome::default());
        for (mode, warned, annotated) in [
            (MutationSummary::Warnings, true, false),
            (MutationSummary::AuditAnnotations, false, true),
            (MutationSummary::Both, true, true),
        ] {
            let mut outcome = PolicyOutcome::default();
            summarize(&mut outcome, mode, "p", || "set x".to_owned());
            assert_eq!(outcome.warnings == ["kadmit p: set x"], warned, "{mode:?}");
            assert_eq!(
                outcome.audit_annotations.get("p").map(String::as_str) == Some("set x"),
                annotated,
                "{mode:?}"
            );
        }
    }

    #[test]
    fn pointers_are_escaped_as_jsonptr_escapes_tokens() {
        for (path, key) in [
            (&["spec", "containers", "0"][..], None),
            (
                &["metadata", "annotations"][..],
                Some("kubernetes.io/limit-ranger"),
            ),
            (&["a~b", "c/d~/é"][..], Some("~1/")),
            (&[][..], Some("")),
        ] {
            let tokens = path.iter().copied().chain(key);
            assert_eq!(
                pointer(path, key).unwrap(),
                PointerBuf::from_tokens(tokens),
                "{path:?} {key:?}"
            );
        }
    }

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
        // A container that changed elsewhere too is diffed whole, so nothing is missed; and
        // `after` is left as it was given (now a shared borrow, so the type ensures it).
        let mut elsewhere = before.clone();
        let container = &mut elsewhere.spec.as_mut().unwrap().containers[0];
        container.image = Some("nginx".to_owned());
        container.resources =
            Some(serde_json::from_value(serde_json::json!({"limits": {"cpu": "1"}})).unwrap());
        let given = elsewhere.clone();
        let patch = pod_patch(&before, &elsewhere).unwrap();
        assert_eq!(elsewhere, given);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!([
                {"op": "add", "path": "/spec/containers/0/image", "value": "nginx"},
                {"op": "add", "path": "/spec/containers/0/resources", "value": {"limits": {"cpu": "1"}}},
            ])
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a part of the pod that pod_patch does not diff")]
    fn a_change_outside_the_parts_is_a_bug_caught_in_debug_builds() {
        let before: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}
        }))
        .unwrap();
        let mut after = before.clone();
        after.spec.as_mut().unwrap().hostname = Some("h".to_owned());
        let _ = pod_patch(&before, &after);
    }
}
