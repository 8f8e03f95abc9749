//! A cluster snapshot: Kubernetes objects read from YAML or JSON instead of a live API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::Deserialize;
use serde_json::Value;

use super::{ClusterError, ClusterView};

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
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    namespaces: HashMap<String, Arc<Namespace>>,
    /// Pods by namespace.
    pods: HashMap<String, Vec<Arc<Pod>>>,
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
    pub fn parse(text: &str) -> Result<Snapshot, SnapshotError> {
        let mut snapshot = Snapshot::default();
        for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let document_number = index + 1;
            let value = Value::deserialize(document).map_err(|e| SnapshotError {
                document: document_number,
                item: None,
                message: e.to_string(),
            })?;
            match value {
                Value::Null => continue,
                Value::Object(_) => {}
                other => {
                    return Err(SnapshotError {
                        document: document_number,
                        item: None,
                        message: format!(
                            "expected a Kubernetes object, found {}",
                            type_name(&other)
                        ),
                    });
                }
            }
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if kind.ends_with("List") {
                let Some(items) = value.get("items").and_then(Value::as_array) else {
                    return Err(SnapshotError {
                        document: document_number,
                        item: None,
                        message: format!("a {kind} needs an `items` array"),
                    });
                };
                for (i, item) in items.iter().enumerate() {
                    snapshot.add(item).map_err(|message| SnapshotError {
                        document: document_number,
                        item: Some(i),
                        message,
                    })?;
                }
            } else {
                snapshot.add(&value).map_err(|message| SnapshotError {
                    document: document_number,
                    item: None,
                    message,
                })?;
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
                let namespace: Namespace = serde_path_to_error::deserialize(object)
                    .map_err(|e| format!("not a valid Namespace: {}: {}", e.path(), e.inner()))?;
                self.insert_namespace(namespace);
            }
            "Pod" => {
                let mut pod: Pod = serde_path_to_error::deserialize(object)
                    .map_err(|e| format!("not a valid Pod: {}: {}", e.path(), e.inner()))?;
                if let Some(spec) = pod.spec.as_mut() {
                    crate::defaulting::default_pod_spec(spec);
                }
                self.insert_pod(pod);
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

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
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
}
