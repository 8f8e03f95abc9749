//! Kubernetes manifests as people write them (YAML, several documents, `List`s, or JSON), read
//! into the objects kadmit evaluates offline, with the API server's defaulting applied.

use serde_json::Value;

use crate::config::{Level, PolicyVersion};
use crate::defaulting::default_pod_spec;
use crate::policy::pod_security::{CheckVerdict, check_manifest, template_of};
use crate::replay::{InputError, TextFormat, documents};
use crate::review::{GroupVersionKind, TypedObject};

/// One object of a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObject {
    /// 0-based index of the document in the file (YAML documents as a YAML parser numbers
    /// them, JSON values in order).
    pub document: usize,
    /// 0-based index in a `List`'s `items`, when the object came from one.
    pub item: Option<usize>,
    /// The object.
    pub value: Value,
}

/// A document (or `List` item) that is not a usable object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}{}: {message}", item.map(|i| format!(", item {i}")).unwrap_or_default())]
pub struct ManifestError {
    /// 0-based index of the YAML document in the file.
    pub document: usize,
    /// 0-based index in a `List`'s `items`.
    pub item: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Reads every object of a manifest file, in order, as YAML (which reads JSON too). See
/// [`objects`], which reads lazily and in the format a file name says.
pub fn read_manifest(text: &str) -> Vec<Result<ManifestObject, ManifestError>> {
    objects(text, TextFormat::Yaml).collect()
}

/// The objects of a manifest file, in order, read lazily: one document is parsed when the
/// iterator reaches it, so a file of many documents takes the memory of one document (and of
/// the text) at a time, not of all of them.
///
/// Empty documents are skipped; a document that is not a Kubernetes object is an error for
/// that document, and reading goes on. A YAML syntax error costs its document; a JSON one ends
/// the file (the parser cannot resynchronise). YAML merge keys are resolved, duplicate keys
/// refused and nesting limited as [`crate::yaml`] describes.
pub fn objects(
    text: &str,
    format: TextFormat,
) -> impl Iterator<Item = Result<ManifestObject, ManifestError>> + '_ {
    documents(text, format).flat_map(|document| document_objects(document.index, document.value))
}

/// The objects of one document: itself, or a `List`'s items.
fn document_objects(
    document: usize,
    value: Result<Value, InputError>,
) -> Vec<Result<ManifestObject, ManifestError>> {
    let error = |message: String| {
        vec![Err(ManifestError {
            document,
            item: None,
            message,
        })]
    };
    let value = match value {
        Ok(value) => value,
        Err(InputError::NotYaml(message)) => {
            return error(format!("not valid YAML: {message}"));
        }
        Err(InputError::NotJson(message)) => {
            return error(format!("not valid JSON: {message}"));
        }
        Err(other) => return error(other.to_string()),
    };
    match value {
        Value::Null => Vec::new(),
        Value::Object(mut map) => {
            let is_list = map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && map.contains_key("items");
            if !is_list {
                return vec![object(document, None, Value::Object(map))];
            }
            match map.remove("items") {
                Some(Value::Array(items)) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| object(document, Some(i), item))
                    .collect(),
                _ => error("`items` of a List must be a list of objects".to_owned()),
            }
        }
        other => error(format!(
            "expected a Kubernetes object, found {}",
            json_type(&other)
        )),
    }
}

fn object(
    document: usize,
    item: Option<usize>,
    value: Value,
) -> Result<ManifestObject, ManifestError> {
    let error = |message: String| ManifestError {
        document,
        item,
        message,
    };
    if !value.is_object() {
        return Err(error(format!(
            "expected a Kubernetes object, found {}",
            json_type(&value)
        )));
    }
    match (value.get("apiVersion"), value.get("kind")) {
        (Some(Value::String(_)), Some(Value::String(_))) => Ok(ManifestObject {
            document,
            item,
            value,
        }),
        (None, _) | (_, None) => Err(error(
            "the object needs both `apiVersion` and `kind`".to_owned(),
        )),
        _ => Err(error("`apiVersion` and `kind` must be strings".to_owned())),
    }
}

/// How a JSON value is named in error messages ("found a list").
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The group, version and kind an object declares.
pub fn gvk_of(value: &Value) -> GroupVersionKind {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    GroupVersionKind {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }
}

/// A Pod Security verdict for one manifest object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSecurityResult {
    /// The object's kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its namespace, if the manifest says.
    pub namespace: Option<String>,
    /// Where its pod spec is (`""` for a Pod, `spec.template` for a Deployment, ...), to make
    /// the violations' field paths point into the manifest.
    pub template_path: &'static str,
    /// The verdict.
    pub verdict: CheckVerdict,
}

impl PodSecurityResult {
    /// A violation's field path as it is in this manifest.
    pub fn field_path(&self, field: &str) -> String {
        if self.template_path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.template_path)
        }
    }
}

/// Evaluates a Pod or a workload's pod template at `level:version`, after the API server's
/// defaulting; `Ok(None)` for kinds without a pod spec. The verdict and message are the
/// webhook's, from the same checks.
pub fn check_pod_security(
    object: &Value,
    level: Level,
    version: PolicyVersion,
) -> Result<Option<PodSecurityResult>, String> {
    let gvk = gvk_of(object);
    let raw = serde_json::value::to_raw_value(object).map_err(|e| e.to_string())?;
    let typed = TypedObject::decode(&gvk, &raw, "object").map_err(|e| {
        // "object does not decode as a v1 Pod: ..." reads oddly for a file; drop the field.
        e.to_string().trim_start_matches("object ").to_owned()
    })?;
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (template_path, meta, mut spec) = match typed {
        Some(TypedObject::Pod(pod)) => ("", pod.metadata, pod.spec.unwrap_or_default()),
        Some(TypedObject::Workload(workload)) => match template_of(&workload) {
            Some((meta, spec)) => (workload.kind.template_path(), meta, spec.clone()),
            None => return Ok(None),
        },
        Some(TypedObject::Namespace(_)) | None => return Ok(None),
    };
    default_pod_spec(&mut spec);
    let verdict = check_manifest(level, version, &gvk.kind, &name, &meta, &spec);
    Ok(Some(PodSecurityResult {
        kind: gvk.kind,
        name,
        namespace,
        template_path,
        verdict,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documents_lists_and_json() {
        let objects = read_manifest(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n---\nkind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n- {kind: Pod}\n---\n[1]\n---\n{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"c\"}}\n",
        );
        assert_eq!(objects.len(), 5);
        assert_eq!(objects[0].as_ref().unwrap().document, 0);
        assert_eq!(objects[1].as_ref().unwrap().item, Some(0));
        assert_eq!(
            objects[2].as_ref().unwrap_err().to_string(),
            "document 2, item 1: the object needs both `apiVersion` and `kind`"
        );
        assert_eq!(
            objects[3].as_ref().unwrap_err().to_string(),
            "document 3: expected a Kubernetes object, found a list"
        );
        assert_eq!(objects[4].as_ref().unwrap().value["metadata"]["name"], "c");
        let broken = read_manifest("a: [\n");
        assert!(
            broken[0]
                .as_ref()
                .unwrap_err()
                .message
                .starts_with("not valid YAML: ")
        );
    }

    #[test]
    fn checks_pods_and_templates_with_defaulting() {
        let deployment = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {}, "template": {"spec": {
                "hostNetwork": true,
                "containers": [{"name": "app", "image": "nginx"}],
                "volumes": [{"name": "scratch"}]
            }}}
        });
        let result = check_pod_security(&deployment, Level::Baseline, PolicyVersion::Latest)
            .unwrap()
            .unwrap();
        assert_eq!(result.template_path, "spec.template");
        assert_eq!(
            result.verdict.message.as_deref(),
            Some(
                "Deployment \"web\" is forbidden: the pods it would create violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
            )
        );
        // The sourceless volume is an emptyDir, allowed by restricted.
        let restricted = check_pod_security(&deployment, Level::Restricted, PolicyVersion::Latest)
            .unwrap()
            .unwrap();
        assert!(
            restricted
                .verdict
                .violations
                .iter()
                .all(|v| v.check != "restrictedVolumes")
        );
        let service =
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
        assert_eq!(
            check_pod_security(&service, Level::Restricted, PolicyVersion::Latest),
            Ok(None)
        );
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "x"}});
        assert_eq!(
            check_pod_security(&bad, Level::Restricted, PolicyVersion::Latest).unwrap_err(),
            "does not decode as a v1 Pod: spec.containers: invalid type: string, expected a sequence"
        );
    }
}
