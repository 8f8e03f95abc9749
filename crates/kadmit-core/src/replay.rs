//! Offline replay: text → documents → [`Review`]s, the API server's mutate-then-validate
//! sequence, and the comparison with an answer recorded at the time.
//!
//! `kadmit replay` reads what operators have at hand: AdmissionReviews (v1, v1beta1, JSON or
//! YAML), bare AdmissionRequests (what `kwctl run -r` reads), plain manifests, and the capture
//! files `kadmit serve --capture-dir` writes. Everything here is pure, so the command, its tests
//! and the benchmark share it, and a review is decoded by the same [`Review`] decoder and
//! answered by the same [`Pipeline`] as in the server. A document that is not usable gets an
//! [`InputError`] that names the problem; nothing here panics on input.

use base64::Engine as _;
use json_patch::PatchOperation;
use serde_json::{Map, Value, json};

use crate::cluster::ClusterView;
use crate::manifest::gvk_of;
use crate::policy::Endpoint;
use crate::policy::pipeline::Pipeline;
use crate::review::{AdmissionResponse, DecodeError, Review, Status, WorkloadKind};
use crate::yaml::{self, ReadError, StrictValue};

/// The user name of requests made from plain manifests, so exemptions and logs can tell them
/// apart from real users.
pub const REPLAY_USERNAME: &str = "kadmit-replay";

/// What the caller expects the layout of a text to be, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// One or more JSON values separated by whitespace (`*.json`). After a syntax error the
    /// rest of the text cannot be resynchronised, so reading the text stops there.
    Json,
    /// One JSON value per line (`*.jsonl`, capture files). A bad line is one error and the next
    /// line is read: a capture cut short by a full disk loses one record, not the file.
    JsonLines,
    /// YAML, one or more documents separated by `---` (`*.yaml`, `*.yml`). Each document is
    /// parsed on its own, so a syntax error costs that document only.
    Yaml,
    /// Unknown (standard input, other file names): JSON when it starts like JSON and parses,
    /// else YAML.
    Detect,
}

impl TextFormat {
    /// The format a file name implies: by extension, else [`TextFormat::Detect`].
    pub fn from_file_name(name: &str) -> TextFormat {
        let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match extension.as_deref() {
            Some("json") => TextFormat::Json,
            Some("jsonl" | "ndjson") => TextFormat::JsonLines,
            Some("yaml" | "yml") => TextFormat::Yaml,
            _ => TextFormat::Detect,
        }
    }
}

/// One document of a text.
#[derive(Debug)]
pub struct Document {
    /// 0-based index of the document in the text: YAML documents as a YAML parser numbers them
    /// (an empty document between two `---` counts), JSON values and JSON lines in order.
    pub index: usize,
    /// 1-based line where the document starts, as editors number lines.
    pub line: usize,
    /// How many bytes of the text it spans (for progress reporting).
    pub len: usize,
    /// The parsed document, or why it could not be parsed.
    pub value: Result<Value, InputError>,
}

/// Splits `text` into documents, lazily, so a large file is never held parsed at once: each
/// document is parsed when the iterator reaches it, and can be dropped before the next.
///
/// Empty YAML documents (nothing but comments and markers) and blank lines are skipped. A
/// leading byte order mark is ignored. YAML merge keys are resolved, duplicate keys refused and
/// nesting limited as [`crate::yaml`] describes, in YAML and JSON alike.
pub fn documents(text: &str, format: TextFormat) -> Box<dyn Iterator<Item = Document> + '_> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        TextFormat::Json => Box::new(JsonDocuments::new(text)),
        TextFormat::JsonLines => Box::new(json_lines(text)),
        TextFormat::Yaml => Box::new(YamlDocuments::new(text)),
        TextFormat::Detect => {
            if !text.trim_start().starts_with(['{', '[']) {
                return Box::new(YamlDocuments::new(text));
            }
            let mut json = JsonDocuments::new(text).peekable();
            match json.peek() {
                Some(Document {
                    value: Err(InputError::NotJson(_)),
                    ..
                }) => {
                    // Flow-style YAML starts with `{` too; it is YAML if YAML reads it.
                    let mut yaml = YamlDocuments::new(text).peekable();
                    match yaml.peek() {
                        Some(Document { value: Ok(_), .. }) => Box::new(yaml),
                        _ => Box::new(json),
                    }
                }
                _ => Box::new(json),
            }
        }
    }
}

/// Counts lines up to a byte offset, incrementally (offsets only grow).
struct LineCounter<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset > self.offset {
            self.line += self.text.as_bytes()[self.offset..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = offset;
        }
        self.line
    }
}

/// Whitespace-separated JSON values, duplicate keys refused.
struct JsonDocuments<'a> {
    text: &'a str,
    stream: serde_json::StreamDeserializer<'a, serde_json::de::StrRead<'a>, StrictValue>,
    lines: LineCounter<'a>,
    index: usize,
    done: bool,
}

impl<'a> JsonDocuments<'a> {
    fn new(text: &'a str) -> Self {
        JsonDocuments {
            text,
            stream: serde_json::Deserializer::from_str(text).into_iter(),
            lines: LineCounter::new(text),
            index: 0,
            done: false,
        }
    }
}

impl Iterator for JsonDocuments<'_> {
    type Item = Document;

    fn next(&mut self) -> Option<Document> {
        if self.done {
            return None;
        }
        let before = self.stream.byte_offset();
        let rest = self.text.get(before..).unwrap_or("");
        let start = before + (rest.len() - rest.trim_start().len());
        let next = self.stream.next()?;
        let line = self.lines.line_at(start);
        let len = self.stream.byte_offset().saturating_sub(before);
        let value = next.map(|strict| strict.0).map_err(|err| {
            // The parser cannot find the start of the next value after an error.
            self.done = true;
            json_error(&err, None)
        });
        let index = self.index;
        self.index += 1;
        Some(Document {
            index,
            line,
            len,
            value,
        })
    }
}

/// A JSON error as an [`InputError`]. `line` is the file's line when serde_json was given one
/// line of the file (a capture record), whose line numbers are not the file's.
fn json_error(err: &serde_json::Error, line: Option<usize>) -> InputError {
    match yaml::from_json_error(err) {
        ReadError::Syntax(_) => match line {
            // serde_json counts from the start of the line it was given: only the column is
            // news.
            Some(_) => InputError::NotJson(format!(
                "{} at column {}",
                strip_position(err),
                err.column()
            )),
            None => InputError::NotJson(err.to_string()),
        },
        ReadError::TooDeep { .. } if line.is_some() => {
            InputError::Read(ReadError::TooDeep { line })
        }
        ReadError::DuplicateKey { key, within, .. } if line.is_some() => {
            InputError::Read(ReadError::DuplicateKey {
                key,
                within,
                at: format!(" at column {}", err.column()),
            })
        }
        other => InputError::Read(other),
    }
}

/// One JSON value per non-blank line.
fn json_lines(text: &str) -> impl Iterator<Item = Document> + '_ {
    text.split_inclusive('\n')
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .enumerate()
        .map(|(index, (number, line))| Document {
            index,
            line: number + 1,
            len: line.len(),
            value: serde_json::from_str::<StrictValue>(line.trim_end_matches(['\n', '\r']))
                .map(|strict| strict.0)
                .map_err(|err| json_error(&err, Some(number + 1))),
        })
}

/// YAML documents, split by [`yaml::split_documents`] and parsed one at a time, so a syntax
/// error costs that document only.
struct YamlDocuments<'a> {
    chunks: yaml::Documents<'a>,
}

impl<'a> YamlDocuments<'a> {
    fn new(text: &'a str) -> Self {
        YamlDocuments {
            chunks: yaml::split_documents(text),
        }
    }
}

impl Iterator for YamlDocuments<'_> {
    type Item = Document;

    fn next(&mut self) -> Option<Document> {
        let chunk = self.chunks.by_ref().find(|chunk| chunk.has_content)?;
        let value = yaml::parse_document(chunk.text, chunk.line).map_err(|err| match err {
            ReadError::Syntax(message) => InputError::NotYaml(message),
            other => InputError::Read(other),
        });
        Some(Document {
            index: chunk.index,
            line: chunk.line,
            len: chunk.text.len(),
            value,
        })
    }
}

/// Why a document cannot be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The text is not YAML.
    #[error("not YAML: {0}")]
    NotYaml(String),
    /// Nested too deeply, a duplicate key, a merge key that cannot be resolved.
    #[error(transparent)]
    Read(ReadError),
    /// The whole document is `null`.
    #[error(
        "the document is `null`: expected an AdmissionReview, an AdmissionRequest, a manifest or a capture record"
    )]
    Null,
    /// The document is a string, number, list or boolean.
    #[error(
        "the document is {0}: expected an AdmissionReview, an AdmissionRequest, a manifest or a capture record (an object)"
    )]
    NotAnObject(&'static str),
    /// An `AdmissionReview` the server would refuse; the message is the server's.
    #[error("{0}")]
    Review(DecodeError),
    /// The same, with a hint at a likely cause (a misspelt key).
    #[error("{error} ({hint})")]
    ReviewHint {
        /// The server's message.
        error: DecodeError,
        /// What probably went wrong.
        hint: String,
    },
    /// A bare `AdmissionRequest` that, wrapped in an `admission.k8s.io/v1` review, the server
    /// would refuse.
    #[error(
        "bare AdmissionRequest (replayed as the request of an admission.k8s.io/v1 review): {0}"
    )]
    BareRequest(DecodeError),
    /// An `AdmissionReview` holding only a `response`: an answer, not something to replay.
    #[error("the AdmissionReview has no request, only a response: it is an answer, not a review")]
    ResponseOnly,
    /// A string (such as Python's `"None"`), number, list or boolean where the request holds
    /// an object or null. The API server never sends that; replaying it would evaluate
    /// something no cluster produces.
    #[error("{found} where an object belongs at {path}{}", none_hint(found))]
    NotAnObjectAt {
        /// Dotted path, such as `request.oldObject`.
        path: String,
        /// What is there, such as `` `"None"` `` or `a list`.
        found: String,
    },
    /// A plain manifest that cannot be made into a request.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A capture record that is not well-formed.
    #[error("capture record: {0}")]
    Capture(String),
    /// The review inside a capture record is not usable.
    #[error("capture record: review: {0}")]
    CaptureReview(Box<InputError>),
    /// An object that is none of the shapes replay reads.
    #[error("not an AdmissionReview, an AdmissionRequest, a manifest or a capture record: {0}")]
    Unrecognised(String),
    /// A `List` inside a `List`'s items.
    #[error("a List inside a List's items is not replayed")]
    NestedList,
}

fn none_hint(found: &str) -> &'static str {
    if found == "`\"None\"`" {
        " (Python's None, printed where JSON has null)"
    } else {
        ""
    }
}

/// Where a document came from: what generated requests are named after.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The file's stem (`-` standard input: `stdin`), for generated uids.
    pub stem: &'a str,
    /// The document's 1-based position in its file.
    pub ordinal: usize,
    /// The namespace of manifests of namespaced kinds that do not name one (`--namespace`);
    /// without it, `default`, as kubectl does.
    pub namespace: Option<&'a str>,
}

/// What a document was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An `AdmissionReview` with a request.
    Review,
    /// A bare `AdmissionRequest`, wrapped as v1.
    BareRequest,
    /// A plain manifest, replayed as CREATE.
    Manifest,
    /// A record of a capture file.
    Capture,
}

/// A document ready to be replayed.
#[derive(Debug)]
pub struct Replayable {
    /// The review, decoded as the server decodes it.
    pub review: Review,
    /// What the document was.
    pub shape: Shape,
    /// The endpoint a capture record was answered on: it is replayed there only.
    pub endpoint: Option<Endpoint>,
    /// The answer given at the time, when the document carries one (a capture record, or an
    /// envelope with a `response`); `Err` says why it cannot be read.
    pub recorded: Option<Result<Recorded, String>>,
}

/// One result of decoding a document: a `List` of manifests gives one per item.
#[derive(Debug)]
pub struct Decoded {
    /// 0-based position in a `List`'s `items`.
    pub item: Option<usize>,
    /// The review, or why there is none.
    pub result: Result<Replayable, InputError>,
}

/// Turns one document into what to replay, or says precisely why it cannot be replayed.
pub fn decode_document(value: Value, origin: &Origin<'_>) -> Vec<Decoded> {
    match value {
        Value::Object(map) if is_list(&map) => match map.get("items") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| Decoded {
                    item: Some(index),
                    result: match item {
                        Value::Object(inner) if is_list(inner) => Err(InputError::NestedList),
                        _ => decode_one(item.clone(), origin, Some(index)),
                    },
                })
                .collect(),
            _ => vec![Decoded {
                item: None,
                result: Err(InputError::Manifest(
                    "`items` of a List must be a list of objects".to_owned(),
                )),
            }],
        },
        value => vec![Decoded {
            item: None,
            result: decode_one(value, origin, None),
        }],
    }
}

fn is_list(map: &Map<String, Value>) -> bool {
    map.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"))
        && map.contains_key("items")
}

fn decode_one(
    value: Value,
    origin: &Origin<'_>,
    item: Option<usize>,
) -> Result<Replayable, InputError> {
    let map = match value {
        Value::Object(map) => map,
        Value::Null => return Err(InputError::Null),
        other => return Err(InputError::NotAnObject(crate::manifest::json_type(&other))),
    };
    let has = |key: &str| map.contains_key(key);
    let kind = map.get("kind");
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    if has("review") && !has("request") && (has("endpoint") || has("time")) {
        return capture_record(map);
    }
    let kind_name = kind.and_then(Value::as_str);
    // An envelope says so by its kind or apiVersion; without both strings, a `request` or
    // `response` is enough. An object of another kind that happens to have such a field (a
    // custom resource, say) is a manifest.
    let typed = api_version.is_some() && kind_name.is_some();
    if kind_name == Some("AdmissionReview")
        || api_version.is_some_and(|v| v.starts_with("admission.k8s.io/"))
        || ((has("request") || has("response")) && !typed)
    {
        return envelope(map, true).map(|(review, recorded)| Replayable {
            review,
            shape: Shape::Review,
            endpoint: None,
            recorded,
        });
    }
    if kind.is_some_and(Value::is_object) || (api_version.is_none() && has("operation")) {
        return bare_request(map);
    }
    if let (Some(_), Some(Value::String(_))) = (api_version, kind) {
        return manifest(map, origin, item);
    }
    let mut keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
    if map.len() > keys.len() {
        keys.push("…");
    }
    Err(InputError::Unrecognised(if keys.is_empty() {
        "an empty object".to_owned()
    } else {
        format!(
            "no `apiVersion` and `kind` strings, no `request` (keys: {})",
            keys.join(", ")
        )
    }))
}

/// An `AdmissionReview` envelope: its review and, when it carries one, the recorded answer.
///
/// With `check_objects`, a string (such as a pasted Python `"None"`) where the request holds
/// an object is refused: no API server sends one, and evaluating it would answer something no
/// cluster produces. A capture record's review skips that check: the server received and
/// answered it, odd values included, and replay must answer it as the server would for
/// `--diff` to compare like with like.
fn envelope(
    map: Map<String, Value>,
    check_objects: bool,
) -> Result<(Review, Option<Result<Recorded, String>>), InputError> {
    let request = map.get("request").filter(|r| !r.is_null());
    if request.is_none() && map.get("response").is_some_and(|r| !r.is_null()) {
        return Err(InputError::ResponseOnly);
    }
    let misplaced = request
        .filter(|_| check_objects)
        .and_then(|r| misplaced_object(r, "request"));
    let recorded = map
        .get("response")
        .filter(|r| !r.is_null())
        .map(Recorded::from_response);
    let typo = if map.contains_key("apiVersion") {
        None
    } else {
        map.keys()
            .find(|k| k.to_ascii_lowercase().contains("apiversion"))
            .cloned()
    };
    let review = Review::from_value(Value::Object(map)).map_err(|error| match (&error, typo) {
        (DecodeError::MissingApiVersion, Some(key)) => InputError::ReviewHint {
            error,
            hint: format!("there is a key `{key}`: a misspelling of apiVersion?"),
        },
        _ => InputError::Review(error),
    })?;
    match misplaced {
        Some(err) => Err(err),
        None => Ok((review, recorded)),
    }
}

fn bare_request(map: Map<String, Value>) -> Result<Replayable, InputError> {
    let request = Value::Object(map);
    let misplaced = misplaced_object(&request, "request");
    let review = Review::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    }))
    .map_err(InputError::BareRequest)?;
    match misplaced {
        Some(err) => Err(err),
        None => Ok(Replayable {
            review,
            shape: Shape::BareRequest,
            endpoint: None,
            recorded: None,
        }),
    }
}

/// A string, number, list or boolean where the request holds an object or null.
fn misplaced_object(request: &Value, prefix: &str) -> Option<InputError> {
    ["object", "oldObject", "options"]
        .into_iter()
        .find_map(|field| {
            let found = match request.get(field)? {
                Value::Null | Value::Object(_) => return None,
                Value::String(text) => {
                    let shown: String = text.chars().take(40).collect();
                    let ellipsis = if shown.len() < text.len() { "…" } else { "" };
                    format!("`{}{ellipsis}`", Value::String(shown))
                }
                other => crate::manifest::json_type(other).to_owned(),
            };
            Some(InputError::NotAnObjectAt {
                path: format!("{prefix}.{field}"),
                found,
            })
        })
}

fn capture_record(mut map: Map<String, Value>) -> Result<Replayable, InputError> {
    let endpoint = match map.get("endpoint") {
        Some(Value::String(e)) if e == "mutate" => Endpoint::Mutate,
        Some(Value::String(e)) if e == "validate" => Endpoint::Validate,
        Some(other) => {
            return Err(InputError::Capture(format!(
                "`endpoint` is {other}, expected \"mutate\" or \"validate\""
            )));
        }
        None => {
            return Err(InputError::Capture(
                "`endpoint` is missing: expected \"mutate\" or \"validate\"".to_owned(),
            ));
        }
    };
    // The response is the AdmissionReview that was sent back; accept a bare response too.
    let recorded =
        map.get("response")
            .filter(|r| !r.is_null())
            .map(|sent| match sent.get("response") {
                Some(inner) => Recorded::from_response(inner),
                None => Recorded::from_response(sent),
            });
    let review = match map.remove("review") {
        Some(Value::Object(review)) => review,
        Some(Value::Null) | None => {
            return Err(InputError::Capture("`review` is missing".to_owned()));
        }
        Some(other) => {
            return Err(InputError::Capture(format!(
                "`review` is {}, expected an AdmissionReview object",
                crate::manifest::json_type(&other)
            )));
        }
    };
    let (review, _) =
        envelope(review, false).map_err(|e| InputError::CaptureReview(Box::new(e)))?;
    Ok(Replayable {
        review,
        shape: Shape::Capture,
        endpoint: Some(endpoint),
        recorded,
    })
}

/// The resource (lower-case plural) and scope of the kinds kadmit reads or a snapshot holds,
/// and of common cluster-scoped kinds. Other kinds are guessed (see [`resource_of`]).
const KNOWN_KINDS: &[(&str, &str, bool)] = &[
    // (kind, resource, namespaced)
    ("Pod", "pods", true),
    ("Namespace", "namespaces", false),
    ("ReplicationController", "replicationcontrollers", true),
    ("PodTemplate", "podtemplates", true),
    ("ReplicaSet", "replicasets", true),
    ("Deployment", "deployments", true),
    ("StatefulSet", "statefulsets", true),
    ("DaemonSet", "daemonsets", true),
    ("Job", "jobs", true),
    ("CronJob", "cronjobs", true),
    ("LimitRange", "limitranges", true),
    ("ServiceAccount", "serviceaccounts", true),
    ("Secret", "secrets", true),
    ("ConfigMap", "configmaps", true),
    ("Service", "services", true),
    ("Endpoints", "endpoints", true),
    ("Ingress", "ingresses", true),
    ("NetworkPolicy", "networkpolicies", true),
    ("PersistentVolumeClaim", "persistentvolumeclaims", true),
    ("ResourceQuota", "resourcequotas", true),
    ("Role", "roles", true),
    ("RoleBinding", "rolebindings", true),
    ("ClusterRole", "clusterroles", false),
    ("ClusterRoleBinding", "clusterrolebindings", false),
    ("GMSACredentialSpec", "gmsacredentialspecs", false),
    ("PersistentVolume", "persistentvolumes", false),
    ("Node", "nodes", false),
    ("StorageClass", "storageclasses", false),
    ("PriorityClass", "priorityclasses", false),
    ("RuntimeClass", "runtimeclasses", false),
    (
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    (
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
    ),
    (
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
    ),
];

/// The resource name and scope of `kind`: from [`KNOWN_KINDS`], else the lower-cased kind made
/// plural by the English rules the API machinery also guesses with, namespaced (as most custom
/// resources are).
pub fn resource_of(kind: &str) -> (String, bool) {
    if let Some((_, resource, namespaced)) = KNOWN_KINDS.iter().find(|(k, _, _)| *k == kind) {
        return ((*resource).to_owned(), *namespaced);
    }
    let lower = kind.to_ascii_lowercase();
    let plural = if lower.ends_with('s')
        || lower.ends_with('x')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    };
    (plural, true)
}

/// A plain manifest as the CREATE request the API server would send for it.
fn manifest(
    mut map: Map<String, Value>,
    origin: &Origin<'_>,
    item: Option<usize>,
) -> Result<Replayable, InputError> {
    let mut object = Value::Object(std::mem::take(&mut map));
    let gvk = gvk_of(&object);
    if gvk.kind.is_empty() || gvk.version.is_empty() {
        return Err(InputError::Manifest(
            "`apiVersion` and `kind` must not be empty".to_owned(),
        ));
    }
    let (resource, namespaced) = resource_of(&gvk.kind);
    match object.get("metadata") {
        None | Some(Value::Null) => object["metadata"] = json!({}),
        Some(Value::Object(_)) => {}
        Some(other) => {
            return Err(InputError::Manifest(format!(
                "`metadata` is {}, expected an object",
                crate::manifest::json_type(other)
            )));
        }
    }
    let metadata = &mut object["metadata"];
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let namespace = if namespaced {
        let own = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty());
        let namespace = own.or(origin.namespace).unwrap_or("default").to_owned();
        // The API server fills in the request's namespace before admission.
        metadata["namespace"] = Value::String(namespace.clone());
        Some(namespace)
    } else {
        None
    };
    default_sourceless_volumes(&mut object, &gvk);
    let uid = match item {
        Some(item) => format!("replay-{}-{}-{item}", origin.stem, origin.ordinal),
        None => format!("replay-{}-{}", origin.stem, origin.ordinal),
    };
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": gvk.group, "version": gvk.version, "kind": gvk.kind},
            "resource": {"group": gvk.group, "version": gvk.version, "resource": resource},
            "requestKind": {"group": gvk.group, "version": gvk.version, "kind": gvk.kind},
            "requestResource": {"group": gvk.group, "version": gvk.version, "resource": resource},
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": REPLAY_USERNAME},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    });
    let review = Review::from_value(review).map_err(|e| InputError::Manifest(e.to_string()))?;
    Ok(Replayable {
        review,
        shape: Shape::Manifest,
        endpoint: None,
        recorded: None,
    })
}

/// The API server's defaulting that changes verdicts (a volume with no source is an
/// `emptyDir`), applied to a manifest's pod spec, since a manifest has not been through an API
/// server and reviews always carry defaulted objects. `kadmit check` does the same.
fn default_sourceless_volumes(object: &mut Value, gvk: &crate::review::GroupVersionKind) {
    let pointer = if gvk.is_core_v1("Pod") {
        "/spec/volumes".to_owned()
    } else if let Some(kind) = WorkloadKind::from_gvk(gvk) {
        format!("/{}/spec/volumes", kind.template_path().replace('.', "/"))
    } else {
        return;
    };
    if let Some(Value::Array(volumes)) = object.pointer_mut(&pointer) {
        for volume in volumes {
            if let Value::Object(volume) = volume
                && volume.len() == 1
                && volume.contains_key("name")
            {
                volume.insert("emptyDir".to_owned(), json!({}));
            }
        }
    }
}

/// The endpoints a review is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/mutate` only.
    Mutate,
    /// `/validate` only.
    Validate,
    /// `/mutate`, then `/validate` on the mutated object, as the API server calls the two
    /// webhooks.
    Both,
}

impl Route {
    /// `mutate`, `validate` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Mutate => "mutate",
            Route::Validate => "validate",
            Route::Both => "both",
        }
    }
}

impl From<Endpoint> for Route {
    fn from(endpoint: Endpoint) -> Route {
        match endpoint {
            Endpoint::Mutate => Route::Mutate,
            Endpoint::Validate => Route::Validate,
        }
    }
}

/// The answer to a replayed review.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// What the client would see: for [`Route::Both`], validation's decision, mutation's patch,
    /// and both endpoints' warnings and audit annotations.
    pub response: AdmissionResponse,
    /// The policy that denied, if one did.
    pub denied_by: Option<String>,
    /// The endpoint that denied, if one did.
    pub denied_at: Option<Endpoint>,
    /// Policies that could not decide and were answered per `failure.onError`.
    pub errors: Vec<String>,
}

/// Evaluates `review` on `route`, as the server and the API server would.
pub fn replay(
    pipeline: &Pipeline,
    review: &Review,
    route: Route,
    cluster: &dyn ClusterView,
) -> Replayed {
    let single = |endpoint: Endpoint, review: &Review| {
        let decision = pipeline.evaluate(endpoint, review, cluster);
        Replayed {
            denied_at: (!decision.response.allowed).then_some(endpoint),
            response: decision.response,
            denied_by: decision.denied_by,
            errors: decision.errors,
        }
    };
    match route {
        Route::Mutate => single(Endpoint::Mutate, review),
        Route::Validate => single(Endpoint::Validate, review),
        Route::Both => {
            let mutated = single(Endpoint::Mutate, review);
            // A mutating webhook's denial ends the request: validation never runs.
            if !mutated.response.allowed {
                return mutated;
            }
            let validated = if mutated.response.patch.is_empty() {
                single(Endpoint::Validate, review)
            } else {
                match apply_patch(review, &mutated.response.patch) {
                    Ok(patched) => single(Endpoint::Validate, &patched),
                    Err(err) => {
                        // The API server fails the request when a webhook's patch does not
                        // apply; so does replay, rather than validate the unpatched object.
                        let mut response = AdmissionResponse::deny(
                            &review.request.uid,
                            500,
                            format!("the mutating patch does not apply: {err}"),
                        );
                        response.status = response.status.map(|status| Status {
                            reason: Some("InternalError".to_owned()),
                            ..status
                        });
                        Replayed {
                            response,
                            denied_by: None,
                            denied_at: Some(Endpoint::Mutate),
                            errors: Vec::new(),
                        }
                    }
                }
            };
            combine(mutated, validated)
        }
    }
}

/// Mutation's patch with validation's decision; warnings of both (once each, as the API
/// server shows them) and audit annotations of both.
fn combine(mutated: Replayed, validated: Replayed) -> Replayed {
    let Replayed {
        response: mut combined,
        denied_by,
        denied_at,
        mut errors,
    } = validated;
    let mut warnings = mutated.response.warnings;
    for warning in combined.warnings {
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    combined.warnings = warnings;
    let mut audit = mutated.response.audit_annotations;
    audit.extend(std::mem::take(&mut combined.audit_annotations));
    combined.audit_annotations = audit;
    if combined.allowed {
        combined.patch = mutated.response.patch;
    }
    let mut all_errors = mutated.errors;
    all_errors.append(&mut errors);
    Replayed {
        response: combined,
        denied_by,
        denied_at,
        errors: all_errors,
    }
}

/// Why a patch could not be applied to a review's object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The request has no object to patch.
    #[error("the request has no object")]
    NoObject,
    /// The object is not JSON (cannot happen for a decoded review; kept typed all the same).
    #[error("the object is not JSON: {0}")]
    Object(#[source] serde_json::Error),
    /// An operation failed.
    #[error("{0}")]
    Patch(#[from] json_patch::PatchError),
}

/// `review` with the JSON Patch applied to its object: what `/validate` receives after
/// `/mutate` answered with `patch`.
pub fn apply_patch(review: &Review, patch: &[PatchOperation]) -> Result<Review, PatchError> {
    let raw = review.request.object.as_ref().ok_or(PatchError::NoObject)?;
    let mut object: Value = serde_json::from_str(raw.get()).map_err(PatchError::Object)?;
    json_patch::patch(&mut object, patch)?;
    let raw = serde_json::value::to_raw_value(&object).map_err(PatchError::Object)?;
    let mut request = review.request.clone();
    request.object = Some(raw);
    Ok(Review {
        version: review.version,
        request,
        decoded: None,
        decoded_bytes: 0,
    })
}

/// The answer given at the time, as far as `--diff` compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `allowed`; `None` when the response does not say.
    pub allowed: Option<bool>,
    /// `status.code`.
    pub code: Option<u64>,
    /// `status.message`.
    pub message: Option<String>,
    /// `warnings`.
    pub warnings: Vec<String>,
    /// The decoded JSON Patch (empty without one), or why it cannot be decoded.
    pub patch: Result<Vec<Value>, String>,
}

impl Recorded {
    /// Reads an `AdmissionResponse` (the `response` of an AdmissionReview).
    pub fn from_response(response: &Value) -> Result<Recorded, String> {
        let Value::Object(map) = response else {
            return Err(format!(
                "the recorded response is {}, expected an object",
                crate::manifest::json_type(response)
            ));
        };
        let status = map.get("status");
        let warnings = match map.get("warnings") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|w| match w {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(other) => vec![other.to_string()],
        };
        Ok(Recorded {
            allowed: map.get("allowed").and_then(Value::as_bool),
            code: status.and_then(|s| s.get("code")).and_then(Value::as_u64),
            message: status
                .and_then(|s| s.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            warnings,
            patch: match map.get("patch") {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(encoded)) => decode_patch(encoded),
                Some(other) => Err(format!(
                    "the recorded patch is {}, expected a base64 string",
                    crate::manifest::json_type(other)
                )),
            },
        })
    }
}

/// A base64 JSON Patch, as the wire carries it.
fn decode_patch(encoded: &str) -> Result<Vec<Value>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("the recorded patch is not base64: {e}"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Array(ops)) => Ok(ops),
        Ok(other) => Err(format!(
            "the recorded patch is {}, expected a JSON Patch (a list)",
            crate::manifest::json_type(&other)
        )),
        Err(e) => Err(format!(
            "the recorded patch is not JSON: {}",
            strip_position(&e)
        )),
    }
}

/// A part of the answer that `--diff` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffField {
    /// Allowed or denied.
    Decision,
    /// The status message.
    Message,
    /// The warnings.
    Warnings,
    /// The JSON Patch.
    Patch,
    /// The recorded response as a whole (it could not be read).
    Response,
}

impl DiffField {
    /// `decision`, `message`, `warnings`, `patch` or `response`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffField::Decision => "decision",
            DiffField::Message => "message",
            DiffField::Warnings => "warnings",
            DiffField::Patch => "patch",
            DiffField::Response => "response",
        }
    }
}

/// One way the new answer differs from the recorded one; both sides as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// What differs.
    pub field: DiffField,
    /// The recorded value (`"allowed"`/`"denied"`, a string, a list, a patch; `null` when the
    /// record does not say; for an unreadable record, why).
    pub recorded: Value,
    /// The new value.
    pub now: Value,
}

/// How `now` differs from `recorded` in decision, message, warnings and patch.
pub fn differences(
    recorded: &Result<Recorded, String>,
    now: &AdmissionResponse,
) -> Vec<Difference> {
    let decision = |allowed: bool| Value::from(if allowed { "allowed" } else { "denied" });
    let now_patch = serde_json::to_value(&now.patch).unwrap_or(Value::Null);
    let recorded = match recorded {
        Ok(recorded) => recorded,
        Err(why) => {
            return vec![Difference {
                field: DiffField::Response,
                recorded: Value::from(why.as_str()),
                now: decision(now.allowed),
            }];
        }
    };
    let mut out = Vec::new();
    if recorded.allowed != Some(now.allowed) {
        out.push(Difference {
            field: DiffField::Decision,
            recorded: recorded.allowed.map(decision).unwrap_or(Value::Null),
            now: decision(now.allowed),
        });
    }
    let now_message = now.status.as_ref().map(|s| s.message.as_str());
    if recorded.message.as_deref() != now_message {
        out.push(Difference {
            field: DiffField::Message,
            recorded: recorded.message.clone().into(),
            now: now_message.into(),
        });
    }
    if recorded.warnings != now.warnings {
        out.push(Difference {
            field: DiffField::Warnings,
            recorded: recorded.warnings.clone().into(),
            now: now.warnings.clone().into(),
        });
    }
    let same_patch = match (&recorded.patch, &now_patch) {
        (Ok(ops), Value::Array(now_ops)) => ops == now_ops,
        _ => false,
    };
    if !same_patch {
        out.push(Difference {
            field: DiffField::Patch,
            recorded: match &recorded.patch {
                Ok(ops) => Value::Array(ops.clone()),
                Err(why) => Value::from(why.as_str()),
            },
            now: now_patch,
        });
    }
    out
}

/// A one-line summary of a JSON Patch: `+2 ops: add /metadata/annotations, replace /spec/x`,
/// listing at most `shown` operations.
pub fn patch_summary(ops: &[Value], shown: usize) -> String {
    if ops.is_empty() {
        return "no patch".to_owned();
    }
    let mut parts: Vec<String> = ops
        .iter()
        .take(shown)
        .map(|op| {
            let name = op.get("op").and_then(Value::as_str).unwrap_or("?");
            let path = op.get("path").and_then(Value::as_str).unwrap_or("?");
            format!("{name} {path}")
        })
        .collect();
    if ops.len() > shown {
        parts.push("…".to_owned());
    }
    let noun = if ops.len() == 1 { "op" } else { "ops" };
    format!("+{} {noun}: {}", ops.len(), parts.join(", "))
}

/// serde_json appends " at line L column C" to its messages; where the caller says where
/// instead, that part goes.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::Snapshot;
    use crate::config::OnError;
    use crate::policy::{Policy, PolicyError, PolicyOutcome, ReviewContext};

    fn origin() -> Origin<'static> {
        Origin {
            stem: "pods",
            ordinal: 3,
            namespace: None,
        }
    }

    fn one(value: Value) -> Result<Replayable, InputError> {
        let mut decoded = decode_document(value, &origin());
        assert_eq!(decoded.len(), 1);
        decoded.remove(0).result
    }

    fn error(value: Value) -> String {
        match one(value) {
            Ok(r) => panic!("decoded {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn texts(text: &str, format: TextFormat) -> Vec<(usize, Result<Value, String>)> {
        documents(text, format)
            .map(|d| (d.line, d.value.map_err(|e| e.to_string())))
            .collect()
    }

    #[test]
    fn splits_json_streams_lines_and_yaml_documents() {
        let json = texts(
            "{\"a\":1}\n\n  {\"b\":2} {\"c\":3}\n{bad\n{\"d\":4}",
            TextFormat::Json,
        );
        assert_eq!(json.len(), 4);
        assert_eq!(json[0], (1, Ok(json!({"a": 1}))));
        assert_eq!(json[1], (3, Ok(json!({"b": 2}))));
        assert_eq!(json[2], (3, Ok(json!({"c": 3}))));
        assert_eq!(json[3].0, 4);
        assert!(
            json[3]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("not JSON: key must be a string at line 4")
        );

        let lines = texts("{\"a\":1}\n\n{\"b\":\n{\"c\":3}\n", TextFormat::JsonLines);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], (1, Ok(json!({"a": 1}))));
        assert_eq!(
            lines[1].1,
            Err("not JSON: EOF while parsing a value at column 5".to_owned())
        );
        assert_eq!(lines[2], (4, Ok(json!({"c": 3}))));

        let yaml = texts(
            "# leading comment\n---\na: 1\n---\n# only a comment\n---\nb: [\n---\nc: 3\n...\n--- {d: 4}\n",
            TextFormat::Yaml,
        );
        assert_eq!(yaml.len(), 4, "{yaml:?}");
        assert_eq!(yaml[0], (2, Ok(json!({"a": 1}))));
        assert_eq!(yaml[1].0, 6);
        let message = yaml[1].1.as_ref().unwrap_err();
        assert!(
            message.starts_with("not YAML: ") && message.contains("line 8"),
            "{message}"
        );
        assert_eq!(yaml[2], (8, Ok(json!({"c": 3}))));
        assert_eq!(yaml[3], (11, Ok(json!({"d": 4}))));

        assert_eq!(
            texts("%YAML 1.2\n---\na: 1\n", TextFormat::Yaml),
            vec![(1, Ok(json!({"a": 1})))]
        );
        assert_eq!(texts("---\n---\n# nothing\n", TextFormat::Yaml), vec![]);
        assert_eq!(texts("~\n", TextFormat::Yaml), vec![(1, Ok(Value::Null))]);

        // Detection: JSON when it parses, flow YAML when only YAML reads it, YAML otherwise.
        assert_eq!(texts("{\"a\":1}\n{\"a\":2}", TextFormat::Detect).len(), 2);
        assert_eq!(
            texts("{a: 1}", TextFormat::Detect),
            vec![(1, Ok(json!({"a": 1})))]
        );
        assert_eq!(texts("a: 1\n---\nb: 2\n", TextFormat::Detect).len(), 2);
        assert!(
            texts("{// no\n", TextFormat::Detect)[0]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("not JSON")
        );
        assert_eq!(texts("\u{feff}{\"a\":1}", TextFormat::Json).len(), 1);
        assert_eq!(
            TextFormat::from_file_name("x/kadmit-capture-1.jsonl"),
            TextFormat::JsonLines
        );
    }

    #[test]
    fn names_what_is_wrong_with_a_document() {
        assert!(error(Value::Null).starts_with("the document is `null`"));
        assert!(error(json!([1])).starts_with("the document is a list"));
        assert_eq!(
            error(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "", "allowed": true}})
            ),
            "the AdmissionReview has no request, only a response: it is an answer, not a review"
        );
        assert_eq!(
            error(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"operation": "CREATE"}})
            ),
            "request: missing field `uid`"
        );
        assert_eq!(
            error(
                json!({"iapiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                "request": {"uid": "u", "kind": {}, "operation": "CREATE"}})
            ),
            "apiVersion is missing: expected admission.k8s.io/v1 or admission.k8s.io/v1beta1 (there is a key `iapiVersion`: a misspelling of apiVersion?)"
        );
        assert_eq!(
            error(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                            "operation": "CREATE", "object": {}, "oldObject": "None"}})
            ),
            "`\"None\"` where an object belongs at request.oldObject (Python's None, printed where JSON has null)"
        );
        assert_eq!(
            error(
                json!({"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CONNECT", "options": 3})
            ),
            "a number where an object belongs at request.options"
        );
        assert_eq!(
            error(
                json!({"kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE"})
            ),
            "bare AdmissionRequest (replayed as the request of an admission.k8s.io/v1 review): request: missing field `uid`"
        );
        assert_eq!(
            error(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "Other", "request": {"uid": "u", "kind": {}, "operation": "CREATE"}})
            ),
            "kind is `Other`, expected AdmissionReview"
        );
        assert_eq!(
            error(json!({"spec": {}})),
            "not an AdmissionReview, an AdmissionRequest, a manifest or a capture record: no `apiVersion` and `kind` strings, no `request` (keys: spec)"
        );
        assert_eq!(
            error(json!({"time": "t", "endpoint": "both", "review": {}})),
            "capture record: `endpoint` is \"both\", expected \"mutate\" or \"validate\""
        );
        assert_eq!(
            error(
                json!({"time": "t", "endpoint": "mutate", "review": {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}})
            ),
            "capture record: review: the AdmissionReview has no request"
        );
        assert_eq!(
            error(json!({"apiVersion": "v1", "kind": "Pod", "metadata": "x"})),
            "manifest: `metadata` is a string, expected an object"
        );
    }

    #[test]
    fn reads_bare_requests_envelopes_and_captures() {
        let request = json!({"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE", "namespace": "ns", "object": {"metadata": {"name": "p"}}});
        let bare = one(request.clone()).unwrap();
        assert_eq!(bare.shape, Shape::BareRequest);
        assert_eq!(bare.review.version, crate::ReviewVersion::V1);
        assert_eq!(bare.review.request.uid, "u1");

        let envelope = one(
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
            "request": request.clone(),
            "response": {"uid": "u1", "allowed": false, "status": {"code": 403, "message": "no"},
                         "warnings": ["w"], "patch": "W10="}}),
        )
        .unwrap();
        assert_eq!(envelope.review.version, crate::ReviewVersion::V1Beta1);
        let recorded = envelope.recorded.unwrap().unwrap();
        assert_eq!(recorded.allowed, Some(false));
        assert_eq!(recorded.code, Some(403));
        assert_eq!(recorded.message.as_deref(), Some("no"));
        assert_eq!(recorded.warnings, vec!["w".to_owned()]);
        assert_eq!(recorded.patch, Ok(vec![]));

        let capture = one(json!({"time": "2025-01-01T00:00:00Z", "endpoint": "validate", "dryRun": false,
            "review": {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request},
            "response": {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                         "response": {"uid": "u1", "allowed": true, "patch": "BA=="}}}))
        .unwrap();
        assert_eq!(capture.shape, Shape::Capture);
        // What the server answered is replayed as it was received, a stray "None" included.
        let odd = one(json!({"time": "t", "endpoint": "validate",
            "review": {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u2", "kind": {"group": "batch", "version": "v1", "kind": "CronJob"},
                                   "operation": "CREATE", "object": {}, "oldObject": "None"}}}))
        .unwrap();
        assert_eq!(odd.review.request.old_object.unwrap().get(), "\"None\"");
        assert_eq!(capture.endpoint, Some(Endpoint::Validate));
        let recorded = capture.recorded.unwrap().unwrap();
        assert_eq!(recorded.allowed, Some(true));
        assert!(
            recorded
                .patch
                .unwrap_err()
                .starts_with("the recorded patch is not JSON")
        );
    }

    #[test]
    fn manifests_become_create_requests() {
        let replayable = one(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [], "volumes": [{"name": "v"}]}}}}))
        .unwrap();
        let request = &replayable.review.request;
        assert_eq!(replayable.shape, Shape::Manifest);
        assert_eq!(request.uid, "replay-pods-3");
        assert_eq!(request.operation, crate::review::Operation::Create);
        assert_eq!(request.kind.kind, "Deployment");
        assert_eq!(request.resource.resource, "deployments");
        assert_eq!(request.resource.group, "apps");
        assert_eq!(request.namespace(), "default");
        assert_eq!(request.name(), "web");
        assert_eq!(request.user_info.username, REPLAY_USERNAME);
        let object: Value = serde_json::from_str(request.object.as_ref().unwrap().get()).unwrap();
        assert_eq!(object["metadata"]["namespace"], "default");
        assert_eq!(
            object["spec"]["template"]["spec"]["volumes"][0]["emptyDir"],
            json!({})
        );

        let with_ns = Origin {
            namespace: Some("team"),
            ..origin()
        };
        let list = decode_document(
            json!({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "own"}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"}},
                {"apiVersion": "v1", "kind": "List", "items": []},
            ]}),
            &with_ns,
        );
        assert_eq!(list.len(), 4);
        let request = |i: usize| &list[i].result.as_ref().unwrap().review.request;
        assert_eq!(request(0).namespace, None);
        assert_eq!(request(0).resource.resource, "namespaces");
        assert_eq!(request(1).namespace(), "own");
        assert_eq!(request(2).namespace(), "team");
        assert_eq!(request(2).uid, "replay-pods-3-2");
        assert_eq!(
            list[3].result.as_ref().unwrap_err().to_string(),
            "a List inside a List's items is not replayed"
        );
        let custom = one(json!({"apiVersion": "example.com/v1", "kind": "Probe",
            "metadata": {"name": "p"}, "request": {"path": "/"}}))
        .unwrap();
        assert_eq!(custom.shape, Shape::Manifest);
        assert_eq!(custom.review.request.resource.resource, "probes");
        assert_eq!(resource_of("NetworkPolicy").0, "networkpolicies");
        assert_eq!(resource_of("Gateway").0, "gateways");
        assert_eq!(resource_of("Policy"), ("policies".to_owned(), true));
        assert_eq!(resource_of("Ingress").0, "ingresses");
        assert_eq!(resource_of("Key").0, "keys");
    }

    /// Mutation adds an annotation; validation denies objects without it: so validation must
    /// see the patched object.
    struct Stamp;

    impl Policy for Stamp {
        fn name(&self) -> &str {
            "Stamp"
        }

        fn mutate(&self, _ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
            Ok(PolicyOutcome {
                patch: serde_json::from_value(json!([
                    {"op": "add", "path": "/metadata/annotations", "value": {"stamped": "yes"}}
                ]))
                .unwrap(),
                warnings: vec!["stamped".to_owned()],
                ..Default::default()
            })
        }

        fn validate(&self, ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
            let stamped = ctx
                .object
                .and_then(|o| o.as_pod())
                .and_then(|p| p.metadata.annotations.as_ref())
                .is_some_and(|a| a.contains_key("stamped"));
            Ok(PolicyOutcome {
                denial: (!stamped).then(|| Status {
                    code: 403,
                    message: "not stamped".to_owned(),
                    reason: None,
                    details: None,
                }),
                warnings: vec!["stamped".to_owned(), "validated".to_owned()],
                ..Default::default()
            })
        }
    }

    #[test]
    fn validation_sees_the_mutated_object() {
        let pipeline = Pipeline::new(vec![Arc::new(Stamp)], OnError::Deny);
        let cluster = Snapshot::dev();
        let review = one(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        )
        .unwrap()
        .review;

        let both = replay(&pipeline, &review, Route::Both, &cluster);
        assert!(both.response.allowed, "{both:?}");
        assert_eq!(both.response.patch.len(), 1);
        assert_eq!(both.response.warnings, vec!["stamped", "validated"]);

        let validate = replay(&pipeline, &review, Route::Validate, &cluster);
        assert!(!validate.response.allowed);
        assert_eq!(validate.denied_by.as_deref(), Some("Stamp"));
        assert_eq!(validate.denied_at, Some(Endpoint::Validate));

        let mutate = replay(&pipeline, &review, Route::Mutate, &cluster);
        assert!(mutate.response.allowed);
        assert_eq!(mutate.response.warnings, vec!["stamped"]);

        let patched = apply_patch(&review, &mutate.response.patch).unwrap();
        assert!(
            patched
                .request
                .object
                .unwrap()
                .get()
                .contains("\"stamped\":\"yes\"")
        );
    }

    #[test]
    fn differences_name_what_changed() {
        let mut now = AdmissionResponse::deny("u", 403, "no");
        now.warnings = vec!["w".to_owned()];
        let same = Ok(Recorded {
            allowed: Some(false),
            code: Some(403),
            message: Some("no".to_owned()),
            warnings: vec!["w".to_owned()],
            patch: Ok(vec![]),
        });
        assert_eq!(differences(&same, &now), vec![]);
        let was_allowed = Ok(Recorded {
            allowed: Some(true),
            code: None,
            message: None,
            warnings: vec![],
            patch: Ok(vec![json!({"op": "add", "path": "/x", "value": 1})]),
        });
        let fields: Vec<&str> = differences(&was_allowed, &now)
            .iter()
            .map(|d| d.field.as_str())
            .collect();
        assert_eq!(fields, vec!["decision", "message", "warnings", "patch"]);
        let unreadable = differences(&Err("bad".to_owned()), &now);
        assert_eq!(unreadable[0].field, DiffField::Response);
        assert_eq!(
            patch_summary(
                &[
                    json!({"op": "add", "path": "/a"}),
                    json!({"op": "replace", "path": "/b"}),
                    json!({"op": "remove", "path": "/c"}),
                ],
                2
            ),
            "+3 ops: add /a, replace /b, …"
        );
    }
}
