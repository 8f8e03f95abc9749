//! GMSA for Windows pods, with kubernetes-sigs/windows-gmsa's results and messages.
//!
//! A pod (or any of its containers) names a cluster-scoped GMSACredentialSpec in
//! `securityContext.windowsOptions.gmsaCredentialSpecName`. On `/mutate` the spec's contents
//! are written into `gmsaCredentialSpec`, serialized byte-for-byte as upstream does; on
//! `/validate` the pod's service account must be allowed to `use` the spec and any contents must
//! match it; on update the GMSA settings are immutable. Unlike upstream, specs come from the
//! cluster view's cache (no API call per reference), init and ephemeral containers are covered,
//! and only authorization may wait on the API server — bounded by the request's deadline.

pub mod canonical;

use k8s_openapi::api::core::v1::{SecurityContext, WindowsSecurityContextOptions};

use self::canonical::to_go_json;
use super::{Policy, PolicyError, PolicyOutcome, ReviewContext};
use crate::cluster::{AccessRequest, ClusterError};
use crate::config::GmsaConfig;
use crate::pod::{Pod, PodSpec};
use crate::review::{AdmissionRequest, Operation, Status, TypedObject};

/// The GMSA policy.
#[derive(Debug, Clone)]
pub struct Gmsa {
    config: GmsaConfig,
}

/// One `windowsOptions` of a pod: pod level or a container's.
struct Entry<'a> {
    /// `pod` or `container`, for messages.
    kind: &'static str,
    /// The pod's or the container's name.
    name: &'a str,
    /// Which list the container is in (`containers`, `initContainers`, `ephemeralContainers`),
    /// or `None` at pod level.
    list: Option<&'static str>,
    /// JSON Pointer of the `windowsOptions` object.
    pointer: String,
    options: &'a WindowsSecurityContextOptions,
}

/// A pod's containers by list, as (name, security context), in the order entries are visited.
type ContainerLists<'a> = [(&'static str, Vec<(&'a str, Option<&'a SecurityContext>)>); 3];

fn container_lists(spec: &PodSpec) -> ContainerLists<'_> {
    [
        (
            "containers",
            spec.containers
                .iter()
                .map(|c| (c.name.as_str(), c.security_context.as_ref()))
                .collect(),
        ),
        (
            "initContainers",
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| (c.name.as_str(), c.security_context.as_ref()))
                .collect(),
        ),
        (
            "ephemeralContainers",
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (c.name.as_str(), c.security_context.as_ref()))
                .collect(),
        ),
    ]
}

/// Every non-null `windowsOptions` of the pod: pod level, then containers, init containers and
/// ephemeral containers, each by index.
fn entries<'a>(pod_name: &'a str, spec: &'a PodSpec) -> Vec<Entry<'a>> {
    let mut out = Vec::new();
    if let Some(options) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.windows_options.as_ref())
    {
        out.push(Entry {
            kind: "pod",
            name: pod_name,
            list: None,
            pointer: "/spec/securityContext/windowsOptions".to_owned(),
            options,
        });
    }
    for (list, containers) in container_lists(spec) {
        for (i, (name, sc)) in containers.into_iter().enumerate() {
            if let Some(options) = sc.and_then(|sc| sc.windows_options.as_ref()) {
                out.push(Entry {
                    kind: "container",
                    name,
                    list: Some(list),
                    pointer: format!("/spec/{list}/{i}/securityContext/windowsOptions"),
                    options,
                });
            }
        }
    }
    out
}

/// The `windowsOptions` of the entry matching `entry` in `old` (pod level, or the container of
/// the same list and name).
fn old_options<'a>(
    entry: &Entry<'_>,
    old: &'a PodSpec,
) -> Option<&'a WindowsSecurityContextOptions> {
    let Some(list) = entry.list else {
        return old
            .security_context
            .as_ref()
            .and_then(|sc| sc.windows_options.as_ref());
    };
    container_lists(old)
        .into_iter()
        .find(|(l, _)| *l == list)
        .and_then(|(_, containers)| containers.into_iter().find(|(name, _)| *name == entry.name))
        .and_then(|(_, sc)| sc.and_then(|sc| sc.windows_options.as_ref()))
}

fn is_new_ephemeral(entry: &Entry<'_>, old: &PodSpec) -> bool {
    entry.list == Some("ephemeralContainers")
        && !old
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == entry.name)
}

/// Upstream's denial status: a code and a message, no reason string.
fn status(code: u16, message: String) -> Status {
    Status {
        code,
        message,
        reason: None,
        details: None,
    }
}

fn deny(code: u16, message: String) -> PolicyOutcome {
    PolicyOutcome {
        denial: Some(status(code, message)),
        ..Default::default()
    }
}

/// The named spec's contents as upstream inlines them, or the code and message of the denial
/// upstream gives.
fn contents(ctx: &ReviewContext<'_>, name: &str) -> Result<String, (u16, String)> {
    if name.is_empty() {
        // Upstream's GET fails before reaching the API server.
        return Err((
            500,
            "unable to retrieve the contents of cred spec : resource name may not be empty"
                .to_owned(),
        ));
    }
    match ctx.cluster.gmsa_credential_spec(name) {
        Ok(Some(spec)) => match &spec.credspec {
            None => Err((
                417,
                format!("cred spec {name} does not have a credspec key"),
            )),
            Some(serde_json::Value::String(s)) if s.is_empty() => Err((
                417,
                format!("cred spec {name} does not have a credspec key"),
            )),
            Some(value) => Ok(to_go_json(value)),
        },
        Ok(None) => Err((404, format!("cred spec {name} does not exist"))),
        Err(err) => Err((
            500,
            format!("unable to retrieve the contents of cred spec {name}: {err}"),
        )),
    }
}

impl Gmsa {
    /// The policy with `config`.
    pub fn new(config: GmsaConfig) -> Gmsa {
        Gmsa { config }
    }

    fn pod<'a>(ctx: &ReviewContext<'a>) -> Option<&'a Pod> {
        let request = ctx.request;
        let is_pod = request.kind.is_core_v1("Pod")
            && (request.resource.resource.is_empty() || request.resource.resource == "pods");
        if !is_pod {
            return None;
        }
        ctx.object.and_then(TypedObject::as_pod)
    }

    /// Expands names into contents. On CREATE every entry is considered; on an
    /// `ephemeralcontainers` UPDATE, only ephemeral containers that are new.
    fn expand(&self, ctx: &ReviewContext<'_>) -> PolicyOutcome {
        let Some(pod) = Self::pod(ctx) else {
            return PolicyOutcome::default();
        };
        let request = ctx.request;
        let old_spec = match (request.operation, request.sub_resource.as_deref()) {
            (Operation::Create, None | Some("")) => None,
            (Operation::Update, Some("ephemeralcontainers")) => {
                match ctx
                    .old_object
                    .and_then(TypedObject::as_pod)
                    .and_then(|p| p.spec.as_ref())
                {
                    Some(old) => Some(old),
                    None => return PolicyOutcome::default(),
                }
            }
            _ => return PolicyOutcome::default(),
        };
        let Some(spec) = pod.spec.as_ref() else {
            return PolicyOutcome::default();
        };
        let pod_name = pod.metadata.name.as_deref().unwrap_or(request.name());
        let mut outcome = PolicyOutcome::default();
        let mut references = false;
        for entry in entries(pod_name, spec) {
            if old_spec.is_some_and(|old| !is_new_ephemeral(&entry, old)) {
                continue;
            }
            let Some(name) = entry.options.gmsa_credential_spec_name.as_deref() else {
                continue;
            };
            references = true;
            if entry.options.gmsa_credential_spec.is_some() {
                // Contents given: left as they are; /validate checks them.
                continue;
            }
            match contents(ctx, name) {
                Ok(json) => outcome.patch.push(add_op(
                    &format!("{}/gmsaCredentialSpec", entry.pointer),
                    json,
                )),
                Err((code, message)) => return deny(code, message),
            }
        }
        if self.config.random_hostname && references && old_spec.is_none() {
            let has_hostname = spec.hostname.as_deref().is_some_and(|h| !h.is_empty());
            if !has_hostname {
                outcome
                    .patch
                    .push(add_op("/spec/hostname", random_hostname()));
            }
        }
        outcome
    }

    fn check(&self, ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        let Some(pod) = Self::pod(ctx) else {
            return Ok(PolicyOutcome::default());
        };
        let request = ctx.request;
        let Some(spec) = pod.spec.as_ref() else {
            return Ok(PolicyOutcome::default());
        };
        let pod_name = pod.metadata.name.as_deref().unwrap_or(request.name());
        let old_spec = match request.operation {
            Operation::Create => None,
            Operation::Update => match ctx.old_object.and_then(TypedObject::as_pod) {
                Some(old) => Some(old.spec.clone().unwrap_or_default()),
                None => return Ok(PolicyOutcome::default()),
            },
            Operation::Delete | Operation::Connect => return Ok(PolicyOutcome::default()),
        };
        for entry in entries(pod_name, spec) {
            // On update, existing entries are immutable; new ephemeral containers are checked
            // like a creation.
            if let Some(old) = old_spec
                .as_ref()
                .filter(|old| !is_new_ephemeral(&entry, old))
            {
                if let Some(denial) = immutable(&entry, old_options(&entry, old)) {
                    return Ok(denial);
                }
                continue;
            }
            if let Some(denial) = self.check_entry(ctx, spec, &entry)? {
                return Ok(denial);
            }
        }
        Ok(PolicyOutcome::default())
    }

    /// CREATE validation of one entry: authorization, then the contents against the spec.
    fn check_entry(
        &self,
        ctx: &ReviewContext<'_>,
        spec: &PodSpec,
        entry: &Entry<'_>,
    ) -> Result<Option<PolicyOutcome>, PolicyError> {
        let options = entry.options;
        let Some(name) = options.gmsa_credential_spec_name.as_deref() else {
            if options.gmsa_credential_spec.is_some() {
                return Ok(Some(deny(
                    422,
                    format!(
                        "{} \"{}\" has a GMSA cred spec set, but does not define the name of the corresponding resource",
                        entry.kind, entry.name
                    ),
                )));
            }
            return Ok(None);
        };
        let namespace = ctx.request.namespace();
        let service_account = spec
            .service_account_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let decision = ctx
            .cluster
            .authorize(
                &AccessRequest::use_gmsa(namespace, service_account, name),
                ctx.deadline,
            )
            .map_err(|err| match err {
                // Upstream's wording, once: the live view's errors already use it.
                ClusterError::Unavailable(text)
                    if text.starts_with("error when checking authz access:") =>
                {
                    PolicyError::Other(text)
                }
                ClusterError::Unavailable(text) => {
                    PolicyError::Other(format!("error when checking authz access: {text}"))
                }
                other => PolicyError::Cluster(other),
            })?;
        if !decision.allowed {
            let mut message = format!(
                "service account \"{service_account}\" is not authorized to `use` GMSA cred spec \"{name}\""
            );
            if !decision.reason.is_empty() {
                message.push_str(&format!(", reason: \"{}\"", decision.reason));
            }
            return Ok(Some(deny(403, message)));
        }
        let Some(given) = options.gmsa_credential_spec.as_deref() else {
            return Ok(None);
        };
        let expected = match contents(ctx, name) {
            Ok(expected) => expected,
            Err((code, message)) => return Ok(Some(deny(code, message))),
        };
        if given == expected {
            return Ok(None);
        }
        let mismatch = format!(
            "the GMSA cred spec contents for {} \"{}\" does not match the contents of GMSA resource \"{name}\"",
            entry.kind, entry.name
        );
        let given_value: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_str(given) {
                Ok(v) => v,
                Err(err) => {
                    return Ok(Some(deny(
                        422,
                        format!("{mismatch}: unable to parse \"{given}\" as a JSON object: {err}"),
                    )));
                }
            };
        let expected_value: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_str(&expected) {
                Ok(v) => v,
                Err(err) => {
                    return Ok(Some(deny(
                        422,
                        format!(
                            "{mismatch}: unable to parse CRD \"{expected}\" as a JSON object: {err}"
                        ),
                    )));
                }
            };
        if given_value == expected_value {
            Ok(None)
        } else {
            Ok(Some(deny(422, mismatch)))
        }
    }
}

/// Upstream's update rule: the GMSA name and contents of an existing entry never change.
fn immutable(
    entry: &Entry<'_>,
    old: Option<&WindowsSecurityContextOptions>,
) -> Option<PolicyOutcome> {
    let (old_name, old_contents) = match old {
        Some(o) => (
            o.gmsa_credential_spec_name.as_deref(),
            o.gmsa_credential_spec.as_deref(),
        ),
        None => (None, None),
    };
    let name_changed = entry.options.gmsa_credential_spec_name.as_deref() != old_name;
    let contents_changed = entry.options.gmsa_credential_spec.as_deref() != old_contents;
    let what = match (name_changed, contents_changed) {
        (false, false) => return None,
        (true, false) => "name",
        (false, true) => "contents",
        (true, true) => "name and contents",
    };
    Some(deny(
        403,
        format!(
            "cannot update an existing pod's GMSA settings (GMSA {what} modified on {} \"{}\")",
            entry.kind, entry.name
        ),
    ))
}

/// An `add` of a string at `path`, a `/`-separated pointer whose tokens need no escaping
/// (field names and indexes).
fn add_op(path: &str, value: String) -> json_patch::PatchOperation {
    json_patch::PatchOperation::Add(json_patch::AddOperation {
        path: json_patch::jsonptr::PointerBuf::from_tokens(path.split('/').skip(1)),
        value: serde_json::Value::String(value),
    })
}

/// A NetBIOS-length (15 characters) random hostname, as upstream: the start of a UUIDv4.
fn random_hostname() -> String {
    uuid::Uuid::new_v4().to_string()[..15].to_owned()
}

impl Policy for Gmsa {
    fn name(&self) -> &str {
        "gmsa"
    }

    fn may_block(&self, request: &AdmissionRequest, object: Option<&TypedObject>) -> bool {
        // Only pods that mention GMSA reach the authorizer; the rest are judged in memory.
        let raw_mentions = request
            .object
            .as_ref()
            .is_some_and(|o| o.get().contains("gmsaCredentialSpec"));
        let typed_mentions = object
            .and_then(TypedObject::as_pod)
            .and_then(|pod| pod.spec.as_ref())
            .is_some_and(|spec| {
                entries("", spec).iter().any(|entry| {
                    entry.options.gmsa_credential_spec_name.is_some()
                        || entry.options.gmsa_credential_spec.is_some()
                })
            });
        raw_mentions || typed_mentions
    }

    fn mutate(&self, ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        Ok(self.expand(ctx))
    }

    fn validate(&self, ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        self.check(ctx)
    }
}
