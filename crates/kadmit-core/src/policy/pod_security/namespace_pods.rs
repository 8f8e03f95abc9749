//! When a namespace's enforce level is tightened: which existing pods would the new level deny?
//!
//! Upstream's answer, reproduced: at most 3000 pods and one second (or half of what is left of
//! the request's deadline), one pod per controller first, grouped warnings per distinct list of
//! reasons. This is what `kubectl label --dry-run=server` shows before a change.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod as ClusterPod;

use crate::pod::{Pod, PodSpec};

use super::checks::{evaluate, forbidden_reason};
use super::labels::LevelVersion;
use crate::policy::ReviewContext;

/// Most pods evaluated per namespace update.
pub const MAX_PODS: usize = 3000;
/// Longest time spent evaluating them.
pub const MAX_TIME: Duration = Duration::from_secs(1);

/// The warnings for the existing pods of `namespace` under `enforce`.
pub(super) fn check_existing_pods(
    ctx: &ReviewContext<'_>,
    namespace: &str,
    enforce: &LevelVersion,
    exempt_runtime_class: impl Fn(Option<&str>) -> bool,
) -> Vec<String> {
    let budget = match ctx.deadline {
        Some(deadline) => MAX_TIME.min(deadline.saturating_duration_since(Instant::now()) / 2),
        None => MAX_TIME,
    };
    let stop_at = Instant::now() + budget;
    let pods = match ctx.cluster.pods(namespace) {
        Ok(pods) => pods,
        Err(_) => {
            return vec![
                "failed to list pods while checking new PodSecurity enforce level".to_owned(),
            ];
        }
    };
    let mut pods = prioritize(pods, &exempt_runtime_class);
    let total = pods.len();
    pods.truncate(MAX_PODS);
    let mut checked = pods.len();

    // reasons → (lexically first pod name, count), in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let empty = PodSpec::default();
    for (i, pod) in pods.iter().enumerate() {
        // The cluster view holds pods as the watch delivers them; this path is bounded (see
        // MAX_PODS and MAX_TIME) and off the hot path, so each is converted as it is checked.
        let pod = Pod::from(&**pod);
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let violations = evaluate(enforce.level, enforce.version, &pod.metadata, spec);
        if !violations.is_empty() {
            let reasons = forbidden_reason(&violations);
            let name = pod.metadata.name.clone().unwrap_or_default();
            match groups.get_mut(&reasons) {
                Some((first, count)) => {
                    if name < *first {
                        *first = name;
                    }
                    *count += 1;
                }
                None => {
                    order.push(reasons.clone());
                    groups.insert(reasons, (name, 1));
                }
            }
        }
        if Instant::now() >= stop_at {
            checked = i + 1;
            break;
        }
    }

    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace \"{namespace}\" violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut pod_warnings: Vec<String> = order
        .iter()
        .filter_map(|reasons| {
            let (name, count) = groups.get(reasons)?;
            Some(match count {
                1 => format!("{name}: {reasons}"),
                2 => format!("{name} (and 1 other pod): {reasons}"),
                n => format!("{name} (and {} other pods): {reasons}", n - 1),
            })
        })
        .collect();
    pod_warnings.sort();
    warnings.extend(pod_warnings);
    warnings
}

/// Pods of exempt runtime classes are dropped; of the rest, the first pod of each controller
/// comes first, then the pods without a controller in their order, then the other replicas.
fn prioritize(
    pods: Vec<Arc<ClusterPod>>,
    exempt_runtime_class: &impl Fn(Option<&str>) -> bool,
) -> Vec<Arc<ClusterPod>> {
    let mut seen_controllers = HashSet::new();
    let mut first = Vec::with_capacity(pods.len());
    let mut replicas = Vec::new();
    for pod in pods {
        if exempt_runtime_class(
            pod.spec
                .as_ref()
                .and_then(|s| s.runtime_class_name.as_deref()),
        ) {
            continue;
        }
        let controller = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        match controller {
            Some(uid) if seen_controllers.contains(&uid) => replicas.push(pod),
            Some(uid) => {
                seen_controllers.insert(uid);
                first.push(pod);
            }
            None => first.push(pod),
        }
    }
    first.extend(replicas);
    first
}
