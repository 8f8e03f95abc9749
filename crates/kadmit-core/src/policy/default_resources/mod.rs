//! Default resource requests and limits: the namespace's LimitRanges (the built-in LimitRanger
//! plugin's semantics) and cluster-wide rules chosen by namespace selector.
//!
//! Only Pod CREATE is changed: a pod's resources cannot be edited afterwards (the `resize`
//! subresource is validated, not defaulted). Containers and init containers get defaults,
//! ephemeral containers never (they cannot have resources). Sources apply in order — each
//! LimitRange of the namespace by name, then the first matching rule — and the first to set a
//! resource wins: a namespace's own LimitRange overrides the cluster-wide rule, and a value the
//! pod sets is never changed.
//!
//! Unlike LimitRanger, a default that would make a request exceed its limit is skipped with a
//! warning: LimitRanger writes it and the API server then rejects the pod with a message that
//! does not mention the LimitRange.
//!
//! What was set is recorded on the pod, as LimitRanger does: LimitRange defaults in
//! `kubernetes.io/limit-ranger` (`LimitRanger plugin set: cpu, memory request for container web;
//! cpu limit for init container migrate`), rule defaults in `kadmit.io/defaulted-resources` in
//! the same sentence format. LimitRanger overwrites its annotation once per LimitRange, keeping
//! only the last one's record; kadmit's covers every LimitRange that set something.

mod record;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube_quantity::ParsedQuantity;

use self::record::{ContainerKind, Record};
use super::mutation::{mutate_copy, namespace_selected, summarize};
use super::{Defaulted, PodDefaulting, Policy, PolicyError, PolicyOutcome, ReviewContext};
use crate::config::{DefaultResourcesConfig, MutationSummary, ResourceRule};
use crate::pod::{Container, Pod};

/// The annotation LimitRanger writes, and kadmit too for LimitRange defaults.
pub const LIMIT_RANGER_ANNOTATION: &str = "kubernetes.io/limit-ranger";
/// The annotation recording what `defaultResources.rules` set.
pub const DEFAULTED_RESOURCES_ANNOTATION: &str = "kadmit.io/defaulted-resources";

const POLICY_NAME: &str = "default-resources";

/// The `default-resources` policy.
#[derive(Debug, Clone)]
pub struct DefaultResources {
    limit_ranges: bool,
    rules: Vec<(ResourceRule, Defaults)>,
    summary: MutationSummary,
}

/// One source's default limits and requests, parsed once.
#[derive(Debug, Clone, Default)]
struct Defaults {
    /// Says where the defaults come from, in warnings: `LimitRange team/limits`.
    source: String,
    limits: BTreeMap<String, Value>,
    requests: BTreeMap<String, Value>,
}

/// A quantity as written and its value.
#[derive(Debug, Clone)]
struct Value {
    quantity: Quantity,
    parsed: ParsedQuantity,
}

impl DefaultResources {
    /// The policy for `config`, summarizing its changes per `summary`.
    pub fn new(config: DefaultResourcesConfig, summary: MutationSummary) -> Self {
        let rules = config
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, rule)| {
                let value = |q: &crate::config::ResourceQuantity| Value {
                    quantity: q.0.clone(),
                    parsed: q.parsed().clone(),
                };
                let limits: BTreeMap<_, _> = rule
                    .default
                    .iter()
                    .map(|(r, q)| (r.clone(), value(q)))
                    .collect();
                let mut requests: BTreeMap<_, _> = rule
                    .default_request
                    .iter()
                    .map(|(r, q)| (r.clone(), value(q)))
                    .collect();
                // As in a LimitRange: a default limit without a default request defaults the
                // request too. The API server would do the same to the patched pod (request =
                // limit when only a limit is set), so the patch says what the pod will be.
                for (resource, limit) in &limits {
                    requests
                        .entry(resource.clone())
                        .or_insert_with(|| limit.clone());
                }
                let defaults = Defaults {
                    source: format!("defaultResources.rules[{i}]"),
                    limits,
                    requests,
                };
                (rule, defaults)
            })
            .collect();
        DefaultResources {
            limit_ranges: config.limit_ranges,
            rules,
            summary,
        }
    }
}

impl Policy for DefaultResources {
    fn name(&self) -> &str {
        POLICY_NAME
    }

    fn mutate(&self, ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        mutate_copy(self, ctx)
    }

    fn as_pod_defaulting(&self) -> Option<&dyn PodDefaulting> {
        Some(self)
    }
}

impl PodDefaulting for DefaultResources {
    fn default_pod(
        &self,
        ctx: &ReviewContext<'_>,
        pod: &mut Pod,
    ) -> Result<Defaulted, PolicyError> {
        let namespace = ctx.request.namespace();
        // Every lookup that can fail comes first, so an error leaves the pod as it was.
        let limit_ranges = if self.limit_ranges {
            ctx.cluster.limit_ranges(namespace)?
        } else {
            Vec::new()
        };
        let mut rule = None;
        for (candidate, defaults) in &self.rules {
            if namespace_selected(&candidate.namespace_selector, ctx)? {
                rule = Some(defaults);
                break;
            }
        }

        let mut outcome = PolicyOutcome::default();
        // Parsed first: the record borrows resource names from them.
        let limit_range_defaults: Vec<Defaults> = (limit_ranges.iter())
            .filter_map(|limit_range| limit_range_defaults(namespace, limit_range))
            .collect();
        let mut from_limit_ranges = Record::new(pod);
        for defaults in &limit_range_defaults {
            apply(pod, defaults, &mut from_limit_ranges, &mut outcome.warnings);
        }
        let mut from_rule = Record::new(pod);
        if let Some(defaults) = rule {
            apply(pod, defaults, &mut from_rule, &mut outcome.warnings);
        }

        let from_limit_ranges = from_limit_ranges.sentence(pod);
        let from_rule = rule.zip(from_rule.sentence(pod));
        if from_limit_ranges.is_none() && from_rule.is_none() {
            return Ok(Defaulted {
                changed: false,
                outcome,
            });
        }
        summarize(&mut outcome, self.summary, POLICY_NAME, || {
            let mut text = String::with_capacity(256);
            text.push_str("set ");
            if let Some(sentence) = &from_limit_ranges {
                text.push_str("from LimitRanges: ");
                text.push_str(sentence);
            }
            if let Some((defaults, sentence)) = &from_rule {
                if from_limit_ranges.is_some() {
                    text.push_str("; and ");
                }
                for part in ["from ", &defaults.source, ": ", sentence] {
                    text.push_str(part);
                }
            }
            text
        });
        if let Some(sentence) = &from_limit_ranges {
            annotate(
                pod,
                LIMIT_RANGER_ANNOTATION,
                &["LimitRanger plugin set"],
                sentence,
            );
        }
        if let Some((defaults, sentence)) = &from_rule {
            annotate(
                pod,
                DEFAULTED_RESOURCES_ANNOTATION,
                &["kadmit ", &defaults.source, " set"],
                sentence,
            );
        }
        Ok(Defaulted {
            changed: true,
            outcome,
        })
    }
}

/// The defaults of a LimitRange: its `type: Container` items merged in order (a later item's
/// value for a resource replaces an earlier one's, as LimitRanger merges them). `None` when it
/// has no Container defaults.
fn limit_range_defaults(namespace: &str, limit_range: &LimitRange) -> Option<Defaults> {
    let name = limit_range.metadata.name.as_deref().unwrap_or_default();
    let mut defaults = Defaults {
        source: format!("LimitRange {namespace}/{name}"),
        ..Defaults::default()
    };
    let items = limit_range.spec.as_ref().map(|s| s.limits.as_slice());
    for item in items.unwrap_or_default() {
        if item.type_ != "Container" {
            continue;
        }
        for (target, values) in [
            (&mut defaults.limits, &item.default),
            (&mut defaults.requests, &item.default_request),
        ] {
            for (resource, quantity) in values.iter().flatten() {
                // A stored LimitRange has valid quantities (the API server validates them); a
                // snapshot's may not, and an unparsable default cannot be compared, so it is
                // not used rather than written into pods.
                if let Ok(parsed) = ParsedQuantity::try_from(quantity) {
                    target.insert(
                        resource.clone(),
                        Value {
                            quantity: quantity.clone(),
                            parsed,
                        },
                    );
                }
            }
        }
    }
    (!defaults.limits.is_empty() || !defaults.requests.is_empty()).then_some(defaults)
}

/// Fills the missing limits, then requests, of every container and init container from
/// `defaults`, recording what was set and warning about what was skipped.
fn apply<'d>(
    pod: &mut Pod,
    defaults: &'d Defaults,
    record: &mut Record<'d>,
    warnings: &mut Vec<String>,
) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let lists = [
        (ContainerKind::Container, spec.containers.as_mut_slice()),
        (
            ContainerKind::InitContainer,
            spec.init_containers.as_deref_mut().unwrap_or_default(),
        ),
    ];
    for (kind, containers) in lists {
        for (index, container) in containers.iter_mut().enumerate() {
            apply_to_container(container, kind, index, defaults, record, warnings);
        }
    }
}

fn apply_to_container<'d>(
    container: &mut Container,
    kind: ContainerKind,
    index: usize,
    defaults: &'d Defaults,
    record: &mut Record<'d>,
    warnings: &mut Vec<String>,
) {
    let had_resources = container.resources.is_some();
    let resources = container
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    for (resource, limit) in &defaults.limits {
        if has(&resources.limits, resource) {
            continue;
        }
        if let Some(request) = resources.requests.as_ref().and_then(|r| r.get(resource))
            && let Some(problem) = exceeds(request, &limit.parsed)
        {
            warnings.push(skipped(
                kind,
                &container.name,
                resource,
                "limit",
                limit,
                defaults,
                &problem,
            ));
            continue;
        }
        resources
            .limits
            .get_or_insert_default()
            .insert(resource.clone(), limit.quantity.clone());
        record.set_limit(kind, index, resource);
    }
    for (resource, request) in &defaults.requests {
        if has(&resources.requests, resource) {
            continue;
        }
        if let Some(limit) = resources.limits.as_ref().and_then(|l| l.get(resource))
            && let Some(problem) = below(limit, defaults.limits.get(resource), &request.parsed)
        {
            warnings.push(skipped(
                kind,
                &container.name,
                resource,
                "request",
                request,
                defaults,
                &problem,
            ));
            continue;
        }
        resources
            .requests
            .get_or_insert_default()
            .insert(resource.clone(), request.quantity.clone());
        record.set_request(kind, index, resource);
    }
    // `resources` was created to look inside it; an untouched new one is no change.
    if !had_resources
        && container
            .resources
            .as_ref()
            .is_some_and(|r| *r == ResourceRequirements::default())
    {
        container.resources = None;
    }
}

fn has(map: &Option<BTreeMap<String, Quantity>>, resource: &str) -> bool {
    map.as_ref().is_some_and(|m| m.contains_key(resource))
}

/// Why the container's existing `request` rules out a default limit of `limit`, if it does.
fn exceeds(request: &Quantity, limit: &ParsedQuantity) -> Option<String> {
    match ParsedQuantity::try_from(request) {
        Ok(value) if value > *limit => Some(format!(
            "it is below the container's request {}, and a request above its limit makes the pod \
             invalid",
            request.0
        )),
        Ok(_) => None,
        Err(_) => Some(format!(
            "the container's request `{}` is not a valid quantity to compare it with",
            request.0
        )),
    }
}

/// Why the container's existing `limit` rules out a default request of `request`, if it does.
/// `default_limit` is the default for the same resource: when the limit is that (usually just
/// set from it), its value is known and not parsed again.
fn below(
    limit: &Quantity,
    default_limit: Option<&Value>,
    request: &ParsedQuantity,
) -> Option<String> {
    let parsed = match default_limit {
        Some(known) if known.quantity == *limit => Ok(known.parsed.clone()),
        _ => ParsedQuantity::try_from(limit),
    };
    match parsed {
        Ok(value) if value < *request => Some(format!(
            "it is above the container's limit {}, and a request above its limit makes the pod \
             invalid",
            limit.0
        )),
        Ok(_) => None,
        Err(_) => Some(format!(
            "the container's limit `{}` is not a valid quantity to compare it with",
            limit.0
        )),
    }
}

fn skipped(
    kind: ContainerKind,
    container: &str,
    resource: &str,
    what: &str,
    value: &Value,
    defaults: &Defaults,
    problem: &str,
) -> String {
    format!(
        "kadmit {POLICY_NAME}: {} {container}: the default {resource} {what} {} from {} was not \
         set: {problem}",
        kind.as_str(),
        value.quantity.0,
        defaults.source,
    )
}

/// Sets the annotation `key` to `<prefix>: <text>`, the prefix given in parts.
fn annotate(pod: &mut Pod, key: &str, prefix: &[&str], text: &str) {
    let length = prefix.iter().map(|p| p.len()).sum::<usize>() + 2 + text.len();
    let mut value = String::with_capacity(length);
    for part in prefix.iter().chain([&": ", &text]) {
        value.push_str(part);
    }
    pod.metadata
        .annotations
        .get_or_insert_default()
        .insert(key.to_owned(), value);
}

#[cfg(test)]
mod tests;
