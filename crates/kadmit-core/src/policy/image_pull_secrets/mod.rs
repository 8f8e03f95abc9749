//! `image-pull-secrets`: adds the pull secrets that configuration rules give for a new pod's
//! images to its `spec.imagePullSecrets`.
//!
//! Why a webhook: the ServiceAccount admission plugin copies the service account's
//! `imagePullSecrets` into a pod only when the pod lists none, so one secret of the pod's own
//! silently loses all of its service account's. Rules here map images (patterns on the
//! *normalized* reference, so `nginx` and `docker.io/library/nginx:latest` are one image) and
//! namespaces (label selectors) to secrets, and the secrets are merged in whatever the pod
//! already lists.
//!
//! Mutating webhooks run after the built-in admission plugins, so when this policy sees a pod
//! that listed no secrets, the ServiceAccount plugin has already copied its service account's
//! secrets in: they are kept like any other existing entry, and a rule only appends.
//!
//! What it does, on Pod CREATE only (pull secrets cannot change once the pod exists):
//! - Every container, init container and ephemeral container image, in that order, is
//!   normalized. An image that is empty or does not parse can match no rule; it is reported in
//!   a warning naming the container and why, never skipped silently. The pod is not denied for
//!   it: the API server's validation or the kubelet refuses it anyway, and the warning says why.
//! - Rules are taken in configuration order. A rule applies when one of its patterns matches
//!   one of the pod's images and its `namespaceSelector` selects the pod's namespace; it then
//!   contributes its secrets in the order it lists them. The order of the added secrets
//!   therefore depends only on the configuration, not on the order of the pod's containers.
//! - Existing entries stay as they are, in their order, even odd ones (empty names,
//!   duplicates): the patch only appends. A secret already listed (by name), or contributed by
//!   an earlier rule, is not added again. When nothing is new there is no patch at all, which
//!   makes the policy idempotent under reinvocation.
//! - For each secret added, a cluster view that knows the namespace's Secrets and lacks it
//!   earns a warning: the pod is admitted, but its private image pulls will fail until the
//!   secret exists. A view that does not know (no Secrets watched or in the snapshot) or
//!   cannot answer says nothing: the check is advisory and must not fail a pod that may well
//!   pull fine. Whether the view knows Secrets is `imagePullSecrets.watchSecrets` (live) or
//!   whether the snapshot holds any Secret; the policy itself only asks.
//!
//! Texts (deterministic: they follow the pod's container order and the configuration's rule
//! order):
//! - summary (per `mutationSummary`, under the key `image-pull-secrets`):
//!   `added imagePullSecrets regcred, other for images registry.example.com/team/app:v1
//!   (container web), docker.io/library/busybox:1.36 (init container setup)` — the added
//!   secrets in the order they were appended, then every container (in visiting order) whose
//!   normalized image is matched by an applied rule that contributed one of them;
//! - `kadmit image-pull-secrets: container web: `Bad` is not a valid image reference: <reason>;
//!   no imagePullSecrets rule can match it, and the kubelet cannot pull it`;
//! - `kadmit image-pull-secrets: container web has no image; no imagePullSecrets rule can
//!   match it`;
//! - `kadmit image-pull-secrets: added pull secret regcred does not exist in namespace team-a;
//!   the pod's private image pulls will fail (ImagePullBackOff) until it exists`.
//!
//! Warnings come in that order: image problems (container order), the summary when it is a
//! warning, then missing secrets (in the order they were added).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::LocalObjectReference;

use super::mutation::{mutate_copy, namespace_selected, summarize};
use super::{Defaulted, PodDefaulting, Policy, PolicyError, PolicyOutcome, ReviewContext};
use crate::config::{ImagePullSecretsConfig, MutationSummary, NamespaceSelector};
use crate::image::{ImagePattern, ImageReference};
use crate::pod::{Pod, PodSpec};

/// The policy's name, in messages, summaries and metric labels.
const NAME: &str = "image-pull-secrets";

/// The `image-pull-secrets` policy.
#[derive(Debug, Clone)]
pub struct ImagePullSecrets {
    rules: Vec<Rule>,
    summary: MutationSummary,
}

/// A configuration rule, prepared once so a review does no more than match.
#[derive(Debug, Clone)]
struct Rule {
    images: Vec<ImagePattern>,
    /// The rule's secrets, in its order, each once.
    secrets: Vec<String>,
    namespace_selector: NamespaceSelector,
    /// The selector selects every namespace: the rule needs no namespace lookup, so a cluster
    /// view that cannot answer (a namespace cache not synced yet) does not stop it.
    all_namespaces: bool,
}

impl Rule {
    fn new(rule: &crate::config::PullSecretRule) -> Rule {
        let mut secrets: Vec<String> = Vec::with_capacity(rule.secrets.len());
        for secret in &rule.secrets {
            if !secrets.iter().any(|s| s == secret.as_str()) {
                secrets.push(secret.as_str().to_owned());
            }
        }
        let selector = &rule.namespace_selector.selector;
        let all_namespaces = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        Rule {
            images: rule.images.clone(),
            secrets,
            namespace_selector: rule.namespace_selector.clone(),
            all_namespaces,
        }
    }

    fn matches(&self, image: &ImageReference) -> bool {
        self.images.iter().any(|pattern| pattern.matches(image))
    }
}

/// One container of the pod, as messages name it.
#[derive(Debug, Clone, Copy)]
struct Container<'a> {
    /// `container`, `init container` or `ephemeral container`.
    kind: &'static str,
    name: &'a str,
    image: Option<&'a str>,
}

impl std::fmt::Display for Container<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// Every container of `spec`: containers, init containers, ephemeral containers, each in order.
fn containers(spec: &PodSpec) -> Vec<Container<'_>> {
    let regular = spec.containers.iter().map(|c| Container {
        kind: "container",
        name: &c.name,
        image: c.image.as_deref(),
    });
    let init = spec.init_containers.iter().flatten().map(|c| Container {
        kind: "init container",
        name: &c.name,
        image: c.image.as_deref(),
    });
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| Container {
            kind: "ephemeral container",
            name: &c.name,
            image: c.image.as_deref(),
        });
    regular.chain(init).chain(ephemeral).collect()
}

impl ImagePullSecrets {
    /// The policy for `config`, summarizing its changes per `summary`.
    pub fn new(config: ImagePullSecretsConfig, summary: MutationSummary) -> Self {
        ImagePullSecrets {
            rules: config.rules.iter().map(Rule::new).collect(),
            summary,
        }
    }
}

impl Policy for ImagePullSecrets {
    fn name(&self) -> &str {
        NAME
    }

    fn mutate(&self, ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        mutate_copy(self, ctx)
    }

    fn as_pod_defaulting(&self) -> Option<&dyn PodDefaulting> {
        Some(self)
    }
}

impl PodDefaulting for ImagePullSecrets {
    fn default_pod(
        &self,
        ctx: &ReviewContext<'_>,
        pod: &mut Pod,
    ) -> Result<Defaulted, PolicyError> {
        let mut outcome = PolicyOutcome::default();
        let unchanged = |outcome| {
            Ok(Defaulted {
                changed: false,
                outcome,
            })
        };
        let Some(spec) = pod.spec.as_ref() else {
            return unchanged(outcome);
        };

        // The pod's images, normalized; the ones that cannot be are reported.
        let mut images: Vec<(Container<'_>, ImageReference)> = Vec::new();
        for container in containers(spec) {
            let Some(image) = container.image.filter(|image| !image.is_empty()) else {
                outcome.warnings.push(format!(
                    "kadmit {NAME}: {container} has no image; no imagePullSecrets rule can match it"
                ));
                continue;
            };
            match ImageReference::parse_memoized(image) {
                Ok(reference) => images.push((container, reference)),
                Err(err) => outcome.warnings.push(format!(
                    "kadmit {NAME}: {container}: {err}; no imagePullSecrets rule can match it, \
                     and the kubelet cannot pull it"
                )),
            }
        }

        // The rules that apply, in configuration order, with the images each matches. The
        // namespace is looked up only for rules that match an image, so pods no rule is about
        // never depend on the cluster view.
        let mut applied: Vec<(&Rule, Vec<usize>)> = Vec::new();
        for rule in &self.rules {
            let matching: Vec<usize> = images
                .iter()
                .enumerate()
                .filter(|(_, (_, image))| rule.matches(image))
                .map(|(i, _)| i)
                .collect();
            if matching.is_empty() {
                continue;
            }
            if rule.all_namespaces || namespace_selected(&rule.namespace_selector, ctx)? {
                applied.push((rule, matching));
            }
        }

        let existing = spec.image_pull_secrets.as_deref().unwrap_or_default();
        let present: HashSet<&str> = existing.iter().map(|r| r.name.as_str()).collect();
        let mut added: Vec<&str> = Vec::new();
        let mut because = vec![false; images.len()];
        for (rule, matching) in &applied {
            let mut contributed = false;
            for secret in &rule.secrets {
                let secret = secret.as_str();
                if !present.contains(secret) && !added.contains(&secret) {
                    added.push(secret);
                }
                // A rule whose secret another rule added first still explains it.
                contributed |= added.contains(&secret);
            }
            if contributed {
                for &i in matching {
                    because[i] = true;
                }
            }
        }
        if added.is_empty() {
            return unchanged(outcome);
        }
        // Said before the pod changes: the images are borrowed from it.
        summarize(&mut outcome, self.summary, NAME, || {
            use std::fmt::Write as _;
            let mut text = String::with_capacity(128);
            text.push_str("added imagePullSecrets ");
            text.push_str(&added.join(", "));
            text.push_str(" for images ");
            let mut first = true;
            for ((container, image), _) in images.iter().zip(&because).filter(|(_, b)| **b) {
                if !first {
                    text.push_str(", ");
                }
                first = false;
                // Writing to a String cannot fail.
                let _ = write!(text, "{image} ({container})");
            }
            text
        });

        if let Some(spec) = pod.spec.as_mut() {
            spec.image_pull_secrets
                .get_or_insert_default()
                .extend(added.iter().map(|name| LocalObjectReference {
                    name: (*name).to_owned(),
                }));
        }

        let namespace = ctx.request.namespace();
        for secret in &added {
            // Advisory: `None` (the view does not know this namespace's Secrets) and errors say
            // nothing, so a pod is never warned about, let alone refused for, a secret that may
            // well exist.
            if let Ok(Some(false)) = ctx.cluster.secret_exists(namespace, secret) {
                outcome.warnings.push(format!(
                    "kadmit {NAME}: added pull secret {secret} does not exist in namespace \
                     {namespace}; the pod's private image pulls will fail (ImagePullBackOff) \
                     until it exists"
                ));
            }
        }
        Ok(Defaulted {
            changed: true,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests;
