//! A cluster snapshot: Kubernetes objects read from YAML or JSON instead of a live API server.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::Resource;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use serde::de::{DeserializeOwned, DeserializeSeed, Error as _};
use serde_json::Value;

use super::rbac::Rbac;
use super::{AccessDecision, AccessRequest, ClusterError, ClusterView, GmsaCredentialSpec};
use crate::yaml::{ReadError, StrictValue};

/// The `apiVersion`s a GMSACredentialSpec may have (the CRD serves both; `v1` is stored).
const GMSA_API_VERSIONS: &[&str] = &["windows.k8s.io/v1", "windows.k8s.io/v1alpha1"];

/// The reason a snapshot without RBAC objects gives for denying every authorization question.
const NO_RBAC_REASON: &str = "the cluster snapshot has no RBAC objects (Role, ClusterRole, \
                              RoleBinding, ClusterRoleBinding), so nothing grants this";

/// Kinds the snapshot format accepts because a policy reads (or will read) them.
const KNOWN_KINDS: &[&str] = &[
    "Namespace",
    "LimitRange",
    "ServiceAccount",
    "Secret",
    "GMSACredentialSpec",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "Pod",
];

/// A snapshot document or object that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}{}: {message}", item.map(|i| format!(", item {i}")).unwrap_or_default())]
pub struct SnapshotError {
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    /// 0-based index in a `List`'s `items`, when the object is inside one.
    pub item: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Cluster state loaded from a file of Kubernetes objects.
///
/// Authorization questions are answered by evaluating the snapshot's Roles, ClusterRoles,
/// RoleBindings and ClusterRoleBindings (see [`Rbac`]). A snapshot with none of them — such as
/// [`Snapshot::dev`] — denies every question, with a reason saying it has no RBAC objects.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    namespaces: HashMap<String, Arc<Namespace>>,
    /// Pods by namespace.
    pods: HashMap<String, Vec<Arc<Pod>>>,
    /// GMSACredentialSpecs (cluster-scoped) by name.
    gmsa_credential_specs: HashMap<String, Arc<GmsaCredentialSpec>>,
    /// ServiceAccount names by namespace.
    service_accounts: HashMap<String, BTreeSet<String>>,
    /// LimitRanges by namespace, ordered by name, defaulted as the API server stores them.
    limit_ranges: HashMap<String, Vec<Arc<LimitRange>>>,
    /// Secret names by namespace; `None` when the snapshot has no Secret at all, so it says
    /// nothing about which exist.
    secrets: Option<HashMap<String, BTreeSet<String>>>,
    /// The RBAC objects.
    rbac: Rbac,
    /// Objects of kinds no enabled policy reads, by kind, so callers can say what was not used.
    pub unused: BTreeMap<String, usize>,
    /// Answer lookups of unknown namespaces with an unlabelled namespace (see [`Snapshot::dev`]).
    implicit_namespaces: bool,
}

impl Snapshot {
    /// An empty cluster: no namespaces, nothing else.
    pub fn empty() -> Snapshot {
        Snapshot::default()
    }

    /// Parses YAML (one or more documents) or JSON: plain objects, `List`s of them, or both.
    ///
    /// A `List`'s items are added one at a time as they are read, never all held as JSON values
    /// at once: a dump of a large cluster (`kubectl get -A -o json`, tens of megabytes) would
    /// otherwise take several hundred megabytes while it is read. A single JSON document is read
    /// by serde_json, streaming; anything else (YAML, several documents) by serde_yaml_ng, one
    /// document at a time. YAML merge keys (`<<`) are resolved as kubectl's YAML library resolves
    /// them; duplicate keys and nesting deeper than [`crate::yaml::MAX_DEPTH`] are errors.
    pub fn parse(text: &str) -> Result<Snapshot, SnapshotError> {
        let mut snapshot = Snapshot::default();
        if text.trim_start().starts_with('{') {
            let mut failure = None;
            let mut json = serde_json::Deserializer::from_str(text);
            let seed = DocumentSeed {
                snapshot: &mut snapshot,
                document: 1,
                failure: &mut failure,
            };
            let read = DeserializeSeed::deserialize(seed, &mut json).and_then(|()| json.end());
            match (read, failure) {
                (_, Some(failure)) => return Err(failure),
                (Ok(()), None) => return Ok(snapshot),
                // Not one JSON document (several, or YAML that starts like JSON): read it as YAML.
                (Err(_), None) => snapshot = Snapshot::default(),
            }
        }
        // YAML: one document at a time. A document with a merge key goes through a YAML value
        // to resolve it (see `crate::yaml`); the others stream, as JSON does.
        for chunk in crate::yaml::split_documents(text) {
            if !chunk.has_content {
                continue;
            }
            let document = chunk.index + 1;
            let read_error = |err: ReadError| SnapshotError {
                document,
                item: None,
                message: err.to_string(),
            };
            if let Some(line) = crate::yaml::flow_too_deep(chunk.text) {
                return Err(read_error(ReadError::TooDeep {
                    line: Some(line + chunk.line - 1),
                }));
            }
            let mut failure = None;
            let seed = DocumentSeed {
                snapshot: &mut snapshot,
                document,
                failure: &mut failure,
            };
            let read = if chunk.text.contains("<<") {
                let value =
                    crate::yaml::merged_value(chunk.text, chunk.line).map_err(read_error)?;
                DeserializeSeed::deserialize(seed, value)
            } else {
                DeserializeSeed::deserialize(
                    seed,
                    serde_yaml_ng::Deserializer::from_str(chunk.text),
                )
            };
            match (read, failure) {
                (_, Some(failure)) => return Err(failure),
                (Ok(()), None) => {}
                (Err(e), None) => {
                    return Err(read_error(crate::yaml::from_yaml_error(&e, chunk.line)));
                }
            }
        }
        Ok(snapshot)
    }

    /// Adds a namespace (for building snapshots in code).
    pub fn insert_namespace(&mut self, namespace: Namespace) {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        self.namespaces.insert(name, Arc::new(namespace));
    }

    /// The namespaces a new cluster has, unlabelled: what `serve --dev` starts with.
    pub fn fresh_cluster() -> Snapshot {
        let mut snapshot = Snapshot::default();
        for name in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            let mut namespace = Namespace::default();
            namespace.metadata.name = Some(name.to_owned());
            snapshot.insert_namespace(namespace);
        }
        snapshot
    }

    /// A cluster where every namespace exists, unlabelled, so the configured defaults apply to
    /// any review: what `serve --dev` uses, since a made-up review's namespace is not in an
    /// empty snapshot and Pod Security denies pods whose namespace cannot be found.
    pub fn dev() -> Snapshot {
        Snapshot {
            implicit_namespaces: true,
            ..Snapshot::fresh_cluster()
        }
    }

    /// Adds a pod (for building snapshots in code).
    pub fn insert_pod(&mut self, pod: Pod) {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        self.pods.entry(namespace).or_default().push(Arc::new(pod));
    }

    /// How many namespaces the snapshot holds.
    pub fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }

    /// Adds a GMSACredentialSpec (for building snapshots in code), replacing any of that name.
    pub fn insert_gmsa_credential_spec(&mut self, spec: GmsaCredentialSpec) {
        self.gmsa_credential_specs
            .insert(spec.name.clone(), Arc::new(spec));
    }

    /// Adds a ServiceAccount's name (for building snapshots in code).
    pub fn insert_service_account(&mut self, namespace: &str, name: &str) {
        self.service_accounts
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned());
    }

    /// Whether the snapshot lists the ServiceAccount `namespace/name`. Only listed ones exist:
    /// not even `default` is implied (in a cluster, a controller creates it in each namespace).
    pub fn service_account_exists(&self, namespace: &str, name: &str) -> bool {
        self.service_accounts
            .get(namespace)
            .is_some_and(|names| names.contains(name))
    }

    /// Adds a LimitRange (for building snapshots in code), applying the API server's object
    /// defaulting, and keeps the namespace's LimitRanges ordered by name.
    pub fn insert_limit_range(&mut self, mut limit_range: LimitRange) {
        crate::defaulting::default_limit_range(&mut limit_range);
        let namespace = limit_range
            .metadata
            .namespace
            .clone()
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let ranges = self.limit_ranges.entry(namespace).or_default();
        let name = limit_range.metadata.name.clone();
        ranges.retain(|r| r.metadata.name != name);
        ranges.push(Arc::new(limit_range));
        ranges.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }

    /// Records that the Secret `namespace/name` exists (for building snapshots in code). Once a
    /// snapshot has any Secret, it is taken to list every Secret of every namespace, as
    /// `kubectl get secrets -A` prints them.
    pub fn insert_secret(&mut self, namespace: &str, name: &str) {
        self.secrets
            .get_or_insert_default()
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned());
    }

    /// The snapshot's RBAC objects.
    pub fn rbac(&self) -> &Rbac {
        &self.rbac
    }

    /// The snapshot's RBAC objects, to add to (for building snapshots in code).
    pub fn rbac_mut(&mut self) -> &mut Rbac {
        &mut self.rbac
    }

    fn add(&mut self, object: &Value) -> Result<(), String> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("the object has no `kind`")?;
        if object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("the {kind} has no metadata.name"));
        }
        match kind {
            "Namespace" => {
                let namespace: Namespace = decode(object)?;
                self.insert_namespace(namespace);
            }
            "Pod" => {
                let mut pod: Pod = decode(object)?;
                if let Some(volumes) = pod.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
                    crate::defaulting::default_volumes(volumes);
                }
                self.insert_pod(pod);
            }
            "GMSACredentialSpec" => {
                let spec = gmsa_credential_spec(object)?;
                self.insert_gmsa_credential_spec(spec);
            }
            "ServiceAccount" => {
                let account: ServiceAccount = decode(object)?;
                let namespace = account
                    .metadata
                    .namespace
                    .filter(|namespace| !namespace.is_empty())
                    .unwrap_or_else(|| "default".to_owned());
                let name = account.metadata.name.unwrap_or_default();
                self.insert_service_account(&namespace, &name);
            }
            "LimitRange" => {
                let limit_range: LimitRange = decode(object)?;
                self.insert_limit_range(limit_range);
            }
            "Secret" => {
                // Only the name matters; the data is never read (nor kept).
                let metadata = object.get("metadata").cloned().unwrap_or_default();
                let metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
                    serde_path_to_error::deserialize(metadata).map_err(|e| {
                        format!("not a valid Secret: metadata.{}: {}", e.path(), e.inner())
                    })?;
                let namespace = metadata
                    .namespace
                    .filter(|namespace| !namespace.is_empty())
                    .unwrap_or_else(|| "default".to_owned());
                self.insert_secret(&namespace, &metadata.name.unwrap_or_default());
            }
            "Role" => self.rbac.insert_role(decode(object)?),
            "ClusterRole" => self.rbac.insert_cluster_role(decode(object)?),
            "RoleBinding" => {
                let binding: RoleBinding = decode(object)?;
                check_role_ref(kind, object, &["Role", "ClusterRole"])?;
                self.rbac.insert_role_binding(binding);
            }
            "ClusterRoleBinding" => {
                let binding: ClusterRoleBinding = decode(object)?;
                check_role_ref(kind, object, &["ClusterRole"])?;
                self.rbac.insert_cluster_role_binding(binding);
            }
            other => {
                let key = if KNOWN_KINDS.contains(&other) {
                    other.to_owned()
                } else {
                    format!("{other} (not a kind kadmit reads)")
                };
                *self.unused.entry(key).or_default() += 1;
            }
        }
        Ok(())
    }
}

/// Reads one document into the snapshot: a plain object is added whole; a `List`'s `items` are
/// added one by one as they are read. A problem found in the objects is put in `failure` (and
/// reading stops with a placeholder error), so it keeps its document and item numbers.
struct DocumentSeed<'s> {
    snapshot: &'s mut Snapshot,
    document: usize,
    failure: &'s mut Option<SnapshotError>,
}

impl DocumentSeed<'_> {
    fn fail<E: serde::de::Error>(&mut self, item: Option<usize>, message: String) -> E {
        *self.failure = Some(SnapshotError {
            document: self.document,
            item,
            message,
        });
        E::custom("the snapshot has an unusable object")
    }

    fn not_an_object<E: serde::de::Error>(mut self, found: &str) -> Result<(), E> {
        Err(self.fail(None, format!("expected a Kubernetes object, found {found}")))
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DocumentSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_object("a boolean")
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_object("a string")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_an_object("a list")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut object = serde_json::Map::new();
        let mut items: Option<Result<usize, &'static str>> = None;
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) || (key == "items" && items.is_some()) {
                return Err(A::Error::custom(format!("duplicate key `{key}`")));
            }
            if key == "items" {
                items = Some(map.next_value_seed(ItemsSeed {
                    document: &mut self,
                })?);
            } else {
                let StrictValue(value) = map.next_value()?;
                object.insert(key, value);
            }
        }
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match (kind.ends_with("List"), items) {
            (true, Some(Ok(_))) => Ok(()),
            (true, _) => Err(self.fail(None, format!("a {kind} needs an `items` array"))),
            (false, None) => match self.snapshot.add(&Value::Object(object)) {
                Ok(()) => Ok(()),
                Err(message) => Err(self.fail(None, message)),
            },
            (false, Some(_)) => {
                let kind = if kind.is_empty() {
                    "object without `kind`"
                } else {
                    &kind
                };
                Err(self.fail(
                    None,
                    format!("a {kind} has `items`; only a List (a kind ending in List) may"),
                ))
            }
        }
    }
}

/// A document's `items`: each is added to the snapshot as soon as it is read. Its value is the
/// number of items, or what `items` was instead of a list.
struct ItemsSeed<'a, 's> {
    document: &'a mut DocumentSeed<'s>,
}

impl<'de> serde::de::DeserializeSeed<'de> for ItemsSeed<'_, '_> {
    type Value = Result<usize, &'static str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ItemsSeed<'_, '_> {
    type Value = Result<usize, &'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut count = 0;
        while let Some(StrictValue(item)) = seq.next_element()? {
            if let Err(message) = self.document.snapshot.add(&item) {
                return Err(self.document.fail(Some(count), message));
            }
            count += 1;
        }
        Ok(Ok(count))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Err("an object"))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err("null"))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err("null"))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err("a boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err("a string"))
    }
}

/// An object of a built-in kind. A wrong `apiVersion` gets its own message (the generated
/// deserializers report it at the path `.`); other errors name the field's path.
fn decode<T>(object: &Value) -> Result<T, String>
where
    T: Resource + DeserializeOwned,
{
    match object.get("apiVersion") {
        None => {}
        Some(Value::String(version)) if version == T::API_VERSION => {}
        Some(other) => {
            return Err(format!(
                "a {}'s apiVersion must be {}, not {other}",
                T::KIND,
                T::API_VERSION
            ));
        }
    }
    serde_path_to_error::deserialize(object)
        .map_err(|e| format!("not a valid {}: {}: {}", T::KIND, e.path(), e.inner()))
}

/// A GMSACredentialSpec from its object: `credspec` is top-level (not under `spec`) and kept as
/// given; missing or null is `None`. `metadata.namespace` is ignored (the kind is
/// cluster-scoped, and the API server ignores it too).
fn gmsa_credential_spec(object: &Value) -> Result<GmsaCredentialSpec, String> {
    match object.get("apiVersion") {
        None => {}
        Some(Value::String(version)) if GMSA_API_VERSIONS.contains(&version.as_str()) => {}
        Some(other) => {
            return Err(format!(
                "a GMSACredentialSpec's apiVersion must be {}, not {other}",
                GMSA_API_VERSIONS.join(" or ")
            ));
        }
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let credspec = object.get("credspec").filter(|v| !v.is_null()).cloned();
    Ok(GmsaCredentialSpec { name, credspec })
}

/// A binding's roleRef must name one of `kinds` (as the API server validates it), by name.
fn check_role_ref(binding_kind: &str, object: &Value, kinds: &[&str]) -> Result<(), String> {
    let Some(role_ref) = object.get("roleRef") else {
        return Err(format!("the {binding_kind} has no roleRef"));
    };
    let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    if !kinds.contains(&kind) {
        return Err(format!(
            "the {binding_kind}'s roleRef.kind must be {}, not {kind:?}",
            kinds.join(" or ")
        ));
    }
    if role_ref
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(format!("the {binding_kind} has no roleRef.name"));
    }
    Ok(())
}

impl ClusterView for Snapshot {
    fn namespace(&self, name: &str) -> Result<Option<Arc<Namespace>>, ClusterError> {
        match self.namespaces.get(name) {
            Some(namespace) => Ok(Some(Arc::clone(namespace))),
            None if self.implicit_namespaces && !name.is_empty() => {
                let mut namespace = Namespace::default();
                namespace.metadata.name = Some(name.to_owned());
                Ok(Some(Arc::new(namespace)))
            }
            None => Ok(None),
        }
    }

    fn pods(&self, namespace: &str) -> Result<Vec<Arc<Pod>>, ClusterError> {
        Ok(self.pods.get(namespace).cloned().unwrap_or_default())
    }

    fn gmsa_credential_spec(
        &self,
        name: &str,
    ) -> Result<Option<Arc<GmsaCredentialSpec>>, ClusterError> {
        Ok(self.gmsa_credential_specs.get(name).cloned())
    }

    fn limit_ranges(&self, namespace: &str) -> Result<Vec<Arc<LimitRange>>, ClusterError> {
        Ok(self
            .limit_ranges
            .get(namespace)
            .cloned()
            .unwrap_or_default())
    }

    fn secret_exists(&self, namespace: &str, name: &str) -> Result<Option<bool>, ClusterError> {
        Ok(self.secrets.as_ref().map(|secrets| {
            secrets
                .get(namespace)
                .is_some_and(|names| names.contains(name))
        }))
    }

    /// Evaluates the snapshot's RBAC objects (in memory: the deadline is not needed). With no
    /// RBAC objects at all, denies with a reason saying so, rather than upstream's empty one.
    fn authorize(
        &self,
        request: &AccessRequest,
        _deadline: Option<Instant>,
    ) -> Result<AccessDecision, ClusterError> {
        if self.rbac.is_empty() {
            return Ok(AccessDecision {
                allowed: false,
                reason: NO_RBAC_REASON.to_owned(),
            });
        }
        Ok(self.rbac.authorize(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_and_documents() {
        let snapshot = Snapshot::parse(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a, labels: {x: y}}\n---\n{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"b\"}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        )
        .unwrap();
        assert_eq!(snapshot.namespace_count(), 2);
        let a = snapshot.namespace("a").unwrap().unwrap();
        assert_eq!(a.metadata.labels.as_ref().unwrap()["x"], "y");
        assert!(snapshot.namespace("zzz").unwrap().is_none());
        assert_eq!(
            snapshot.unused.get("ConfigMap (not a kind kadmit reads)"),
            Some(&1)
        );
    }

    #[test]
    fn merge_keys_resolve_and_duplicates_are_errors() {
        let snapshot = Snapshot::parse(
            "kind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n  labels:\n    <<: {pod-security.kubernetes.io/enforce: restricted}\n",
        )
        .unwrap();
        let b = snapshot.namespace("b").unwrap().unwrap();
        assert_eq!(
            b.metadata.labels.as_ref().unwrap()["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        let err = Snapshot::parse(
            "kind: Namespace\nmetadata: {name: a}\n---\nkind: Namespace\nmetadata: {name: b, name: c}\n",
        )
        .unwrap_err();
        assert_eq!(err.document, 2);
        assert!(err.message.starts_with("duplicate key `name`"), "{err}");
        let err = Snapshot::parse(
            r#"{"kind":"List","items":[{"kind":"Namespace","metadata":{"name":"a","name":"b"}}]}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("duplicate key `name`"), "{err}");
        let err = Snapshot::parse(r#"{"kind":"Namespace","kind":"Pod"}"#).unwrap_err();
        assert!(err.message.contains("duplicate key `kind`"), "{err}");
        let deep = format!(
            "kind: Namespace\nx: {}{}\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let err = Snapshot::parse(&deep).unwrap_err();
        assert_eq!(err.message, "nested more than 128 levels deep (at line 2)");
    }

    #[test]
    fn lists_are_read_item_by_item_in_json_and_yaml() {
        // kubectl's order: items before kind.
        let json = r#"{"apiVersion":"v1","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}},{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"a"}}],"kind":"List","metadata":{}}"#;
        let snapshot = Snapshot::parse(json).unwrap();
        assert!(snapshot.namespace("a").unwrap().is_some());
        assert_eq!(snapshot.secret_exists("a", "s").unwrap(), Some(true));
        let err = Snapshot::parse(r#"{"items":[{"kind":"Namespace","metadata":{"name":"a"}},{"metadata":{"name":"b"}}],"kind":"List"}"#)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1, item 1: the object has no `kind`"
        );
        let err = Snapshot::parse(r#"{"kind":"NamespaceList","items":{"a":1}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: a NamespaceList needs an `items` array"
        );
        let err = Snapshot::parse("kind: List\n").unwrap_err();
        assert_eq!(err.to_string(), "document 1: a List needs an `items` array");
        let err = Snapshot::parse("kind: Widget\nmetadata: {name: w}\nitems: []\n").unwrap_err();
        assert!(err.message.starts_with("a Widget has `items`"), "{err}");
        // Several JSON documents separated by `---` are YAML documents.
        let several = "{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\"}}\n---\n{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"b\"}}\n";
        assert_eq!(Snapshot::parse(several).unwrap().namespace_count(), 2);
        let err = Snapshot::parse("{\"kind\": 3").unwrap_err();
        assert_eq!(err.document, 1);
    }

    #[test]
    fn reads_limit_ranges_and_secret_names() {
        let without = Snapshot::parse("kind: Namespace\nmetadata: {name: a}\n").unwrap();
        assert_eq!(without.secret_exists("a", "regcred").unwrap(), None);
        assert!(without.limit_ranges("a").unwrap().is_empty());
        let snapshot = Snapshot::parse(
            "kind: LimitRange\napiVersion: v1\nmetadata: {name: z, namespace: a}\nspec: {limits: [{type: Container, max: {cpu: '2'}}]}\n---\nkind: LimitRange\nmetadata: {name: b, namespace: a}\nspec: {limits: []}\n---\nkind: Secret\napiVersion: v1\nmetadata: {name: regcred, namespace: a}\ntype: kubernetes.io/dockerconfigjson\ndata: {.dockerconfigjson: e30=}\n",
        )
        .unwrap();
        assert!(snapshot.unused.is_empty(), "{:?}", snapshot.unused);
        let ranges = snapshot.limit_ranges("a").unwrap();
        let names: Vec<_> = ranges
            .iter()
            .map(|r| r.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["b", "z"]);
        // Stored defaulted: max became default, default became defaultRequest.
        let item = &ranges[1].spec.as_ref().unwrap().limits[0];
        assert_eq!(item.default.as_ref().unwrap()["cpu"].0, "2");
        assert_eq!(item.default_request.as_ref().unwrap()["cpu"].0, "2");
        assert_eq!(snapshot.secret_exists("a", "regcred").unwrap(), Some(true));
        assert_eq!(snapshot.secret_exists("a", "other").unwrap(), Some(false));
        assert_eq!(snapshot.secret_exists("b", "regcred").unwrap(), Some(false));
        let err = Snapshot::parse("kind: Secret\nmetadata: {name: s, labels: [1]}\n").unwrap_err();
        assert!(
            err.message
                .starts_with("not a valid Secret: metadata.labels"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_document_and_item() {
        let err = Snapshot::parse(
            "kind: List\nitems:\n- kind: Namespace\n  metadata: {name: a}\n- metadata: {name: b}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1, item 1: the object has no `kind`"
        );
        let err =
            Snapshot::parse("---\nkind: Namespace\nmetadata: {name: a}\n---\n- 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 2: expected a Kubernetes object, found a list"
        );
        let err = Snapshot::parse("kind: Namespace\nmetadata: {labels: {a: b}}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: the Namespace has no metadata.name"
        );
    }

    /// `credspec-0.yml` of the upstream integration tests, rendered.
    const CREDSPEC_0: &str = r#"# a sample cred spec

apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata:
  name: web-cred-spec-0
credspec:
  ActiveDirectoryConfig:
    GroupManagedServiceAccounts:
    - Name: WebApplication0
      Scope: CONTOSO
    - Name: WebApplication0
      Scope: contoso.com
  CmsPlugins:
  - ActiveDirectory
  DomainJoinConfig:
    DnsName: contoso.com
    DnsTreeName: contoso.com
    Guid: 244818ae-87ca-4fcd-92ec-e79e5252348a
    MachineAccountName: WebApplication0
    NetBiosName: CONTOSO
    Sid: S-1-5-21-2126729477-2524075714-3094792973
"#;

    /// A service account, a ClusterRole granting `use` of two specs and a RoleBinding of it
    /// to the service account, as the upstream integration templates render.
    const GRANT: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web-service-account
  namespace: gmsa-test
---
# an RBAC role to grant `use` access to some credspecs

kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: web-credspecs-users
rules:
- apiGroups: ["windows.k8s.io"]
  resources: ["gmsacredentialspecs"]
  verbs: ["use"]
  resourceNames:
    - web-cred-spec-0
    - web-cred-spec-1
---
kind: RoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: web-use-credspecs
  namespace: gmsa-test
subjects:
- kind: ServiceAccount
  name: web-service-account
  namespace: gmsa-test
roleRef:
  kind: ClusterRole
  name: web-credspecs-users
  apiGroup: rbac.authorization.k8s.io
"#;

    #[test]
    fn reads_gmsa_credential_specs() {
        let snapshot = Snapshot::parse(CREDSPEC_0).unwrap();
        let spec = snapshot
            .gmsa_credential_spec("web-cred-spec-0")
            .unwrap()
            .unwrap();
        assert_eq!(spec.name, "web-cred-spec-0");
        let credspec = spec.credspec.as_ref().unwrap();
        assert_eq!(
            credspec.pointer("/ActiveDirectoryConfig/GroupManagedServiceAccounts/1/Scope"),
            Some(&Value::from("contoso.com"))
        );
        assert_eq!(
            credspec.pointer("/DomainJoinConfig/Sid"),
            Some(&Value::from("S-1-5-21-2126729477-2524075714-3094792973"))
        );
        assert_eq!(
            credspec["CmsPlugins"],
            serde_json::json!(["ActiveDirectory"])
        );
        assert!(
            snapshot
                .gmsa_credential_spec("web-cred-spec-1")
                .unwrap()
                .is_none()
        );
        // Names are exact.
        assert!(
            snapshot
                .gmsa_credential_spec("Web-Cred-Spec-0")
                .unwrap()
                .is_none()
        );
        assert!(snapshot.unused.is_empty(), "{:?}", snapshot.unused);
    }

    #[test]
    fn gmsa_versions_credspec_and_scope() {
        let snapshot = Snapshot::parse(
            "apiVersion: windows.k8s.io/v1alpha1\nkind: GMSACredentialSpec\nmetadata: {name: old}\ncredspec: {CmsPlugins: [ActiveDirectory]}\n---\napiVersion: windows.k8s.io/v1\nkind: GMSACredentialSpec\nmetadata: {name: empty, namespace: ignored}\n---\napiVersion: windows.k8s.io/v1\nkind: GMSACredentialSpec\nmetadata: {name: null-credspec}\ncredspec: null\n---\nkind: List\nitems:\n- apiVersion: windows.k8s.io/v1\n  kind: GMSACredentialSpec\n  metadata: {name: listed}\n  credspec: {}\n",
        )
        .unwrap();
        let get = |name: &str| snapshot.gmsa_credential_spec(name).unwrap().unwrap();
        assert_eq!(
            get("old").credspec,
            Some(serde_json::json!({"CmsPlugins": ["ActiveDirectory"]}))
        );
        assert_eq!(get("empty").credspec, None);
        assert_eq!(get("null-credspec").credspec, None);
        assert_eq!(get("listed").credspec, Some(serde_json::json!({})));

        let err = Snapshot::parse(
            "---\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: windows.k8s.io/v2\nkind: GMSACredentialSpec\nmetadata: {name: x}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 2: a GMSACredentialSpec's apiVersion must be windows.k8s.io/v1 or windows.k8s.io/v1alpha1, not \"windows.k8s.io/v2\""
        );
        let err =
            Snapshot::parse("kind: List\nitems:\n- kind: GMSACredentialSpec\n  credspec: {}\n")
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1, item 0: the GMSACredentialSpec has no metadata.name"
        );
    }

    #[test]
    fn reads_service_accounts() {
        let snapshot = Snapshot::parse(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: ns}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: no-ns}\n",
        )
        .unwrap();
        assert!(snapshot.service_account_exists("ns", "sa"));
        assert!(snapshot.service_account_exists("default", "no-ns"));
        assert!(!snapshot.service_account_exists("ns", "default"));
        assert!(!snapshot.service_account_exists("other", "sa"));
        assert!(snapshot.unused.is_empty(), "{:?}", snapshot.unused);

        let err = Snapshot::parse("apiVersion: v2\nkind: ServiceAccount\nmetadata: {name: sa}\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: a ServiceAccount's apiVersion must be v1, not \"v2\""
        );
    }

    #[test]
    fn authorizes_from_rbac_objects() {
        let snapshot = Snapshot::parse(&format!("{CREDSPEC_0}---\n{GRANT}")).unwrap();
        assert!(snapshot.unused.is_empty(), "{:?}", snapshot.unused);
        assert!(snapshot.service_account_exists("gmsa-test", "web-service-account"));
        let ask = |ns: &str, sa: &str, spec: &str| {
            snapshot
                .authorize(&AccessRequest::use_gmsa(ns, sa, spec), None)
                .unwrap()
        };
        let decision = ask("gmsa-test", "web-service-account", "web-cred-spec-0");
        assert_eq!(
            decision,
            AccessDecision {
                allowed: true,
                reason: r#"RBAC: allowed by RoleBinding "web-use-credspecs/gmsa-test" of ClusterRole "web-credspecs-users" to ServiceAccount "web-service-account/gmsa-test""#.to_owned(),
            }
        );
        // Granted by name, whether or not the spec exists.
        assert!(ask("gmsa-test", "web-service-account", "web-cred-spec-1").allowed);
        assert_eq!(
            ask("gmsa-test", "web-service-account", "web-cred-spec-2"),
            AccessDecision {
                allowed: false,
                reason: String::new()
            }
        );
        assert!(!ask("gmsa-test", "default", "web-cred-spec-0").allowed);
        assert!(!ask("elsewhere", "web-service-account", "web-cred-spec-0").allowed);
        // The deadline plays no part.
        let past = Instant::now();
        assert!(
            snapshot
                .authorize(
                    &AccessRequest::use_gmsa("gmsa-test", "web-service-account", "web-cred-spec-0"),
                    Some(past)
                )
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn roles_and_cluster_role_bindings() {
        let snapshot = Snapshot::parse(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: users, namespace: a}
  rules: [{apiGroups: [windows.k8s.io], resources: [gmsacredentialspecs], verbs: [use]}]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: b, namespace: a}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: users}
  subjects: [{kind: ServiceAccount, name: sa}]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: all}
  rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: admins}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: all}
  subjects: [{kind: Group, name: "system:serviceaccounts:admin", apiGroup: rbac.authorization.k8s.io}]
"#,
        )
        .unwrap();
        assert!(snapshot.unused.is_empty(), "{:?}", snapshot.unused);
        assert!(!snapshot.rbac().is_empty());
        let ask = |ns: &str, sa: &str| {
            snapshot
                .authorize(&AccessRequest::use_gmsa(ns, sa, "spec"), None)
                .unwrap()
                .allowed
        };
        assert!(ask("a", "sa"));
        assert!(!ask("b", "sa"));
        assert!(ask("admin", "anyone"));
    }

    #[test]
    fn rbac_errors_name_the_document_and_item() {
        let err = Snapshot::parse(
            "kind: List\nitems:\n- apiVersion: rbac.authorization.k8s.io/v1\n  kind: ClusterRoleBinding\n  metadata: {name: x}\n  roleRef: {kind: Role, name: r}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1, item 0: the ClusterRoleBinding's roleRef.kind must be ClusterRole, not \"Role\""
        );
        let err = Snapshot::parse(
            "---\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: x, namespace: a}\nsubjects: []\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 2: the RoleBinding has no roleRef"
        );
        let err = Snapshot::parse(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: x}\nroleRef: {kind: ClusterRole}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: the RoleBinding has no roleRef.name"
        );
        let err = Snapshot::parse(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: x}\nroleRef: {kind: Group, name: g}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: the RoleBinding's roleRef.kind must be Role or ClusterRole, not \"Group\""
        );
        let err = Snapshot::parse(
            "apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: Role\nmetadata: {name: x}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: a Role's apiVersion must be rbac.authorization.k8s.io/v1, not \"rbac.authorization.k8s.io/v1beta1\""
        );
        let err = Snapshot::parse(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\nrules: [{verbs: use}]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("document 1: not a valid ClusterRole: rules[0].verbs: "),
            "{err}"
        );
    }

    #[test]
    fn without_rbac_objects_nothing_is_granted() {
        for snapshot in [
            Snapshot::dev(),
            Snapshot::empty(),
            Snapshot::parse(CREDSPEC_0).unwrap(),
        ] {
            let decision = snapshot
                .authorize(
                    &AccessRequest::use_gmsa("default", "default", "web-cred-spec-0"),
                    None,
                )
                .unwrap();
            assert_eq!(
                decision,
                AccessDecision {
                    allowed: false,
                    reason: NO_RBAC_REASON.to_owned()
                }
            );
        }
        assert_eq!(
            NO_RBAC_REASON,
            "the cluster snapshot has no RBAC objects (Role, ClusterRole, RoleBinding, ClusterRoleBinding), so nothing grants this"
        );
        // dev() still answers every namespace, and has no GMSA specs.
        let dev = Snapshot::dev();
        assert!(dev.namespace("anything").unwrap().is_some());
        assert!(
            dev.gmsa_credential_spec("web-cred-spec-0")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn builds_in_code() {
        let mut snapshot = Snapshot::dev();
        snapshot.insert_gmsa_credential_spec(GmsaCredentialSpec {
            name: "spec".to_owned(),
            credspec: Some(serde_json::json!({"CmsPlugins": []})),
        });
        snapshot.insert_service_account("ns", "sa");
        let rules = Snapshot::parse(GRANT).unwrap().rbac().clone();
        *snapshot.rbac_mut() = rules;
        assert!(snapshot.gmsa_credential_spec("spec").unwrap().is_some());
        assert!(snapshot.service_account_exists("ns", "sa"));
        assert!(
            snapshot
                .authorize(
                    &AccessRequest::use_gmsa("gmsa-test", "web-service-account", "web-cred-spec-1"),
                    None
                )
                .unwrap()
                .allowed
        );
    }
}
