//! YAML and JSON text as the offline tools (`check`, `replay`, `bench`, `--cluster`, `--config`)
//! read it: as the YAML library in front of a cluster reads it, and without letting a hostile
//! file hang or exhaust the process.
//!
//! - **Merge keys** (`<<: *defaults`) are resolved, as go-yaml (behind kubectl and
//!   sigs.k8s.io/yaml) resolves them: a merged key never replaces one written in the mapping, and
//!   in a list (`<<: [*a, *b]`) the earlier mapping wins. Reading `<<` as an ordinary key would
//!   let `securityContext: {<<: *privileged}` pass `kadmit check` and still create a privileged
//!   pod. Where go-yaml's versions disagree (a key written *before* `<<` and merged with another
//!   value: v2, used by kubectl, keeps the merged value; v3 and the YAML merge spec keep the
//!   written one) the document is refused rather than guessed.
//! - **Duplicate keys** are refused, in YAML and in JSON: tools disagree on which of the two
//!   values counts (the first, the last, or an error), so a gate must not pick one silently.
//! - **Nesting** deeper than [`MAX_DEPTH`] is refused. libyaml's scanner does work proportional
//!   to the flow nesting (`[[[[…`) for every token, so a document nested 100 000 levels deep
//!   takes tens of seconds before any depth limit of the deserializer is reached;
//!   [`flow_too_deep`] finds such a document in one linear pass, before the parser sees it.
//!
//! JSON is read as JSON (serde_json): there `"<<"` is an ordinary key, as it is for kubectl.

use serde::Deserialize as _;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_yaml_ng::Value as YamlValue;

/// How deeply objects and lists may nest in a document. Kubernetes objects nest a few dozen
/// levels at most; it is also the recursion limit of serde_json and serde_yaml_ng, so JSON and
/// YAML documents are held to the same limit with the same message.
pub const MAX_DEPTH: usize = 128;

/// Why a document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Objects and lists nest deeper than [`MAX_DEPTH`].
    #[error("nested more than {MAX_DEPTH} levels deep{}", at_line(*line))]
    TooDeep {
        /// 1-based line in the file, when known.
        line: Option<usize>,
    },
    /// A mapping has the same key twice.
    #[error("duplicate key `{key}`{}{at}", within.as_ref().map(|path| format!(" in `{path}`")).unwrap_or_default())]
    DuplicateKey {
        /// The key.
        key: String,
        /// Dotted path of the mapping that has it, when the parser says.
        within: Option<String>,
        /// Where, when the parser says: ` at line 3 column 7`, or the mapping's start.
        at: String,
    },
    /// A merge key (`<<`) that cannot be resolved, or not the same way by every YAML library.
    #[error("merge key `<<`: {0}")]
    Merge(String),
    /// Not well-formed, or not representable as JSON; the parser's message, with the line and
    /// column counted from the start of the file.
    #[error("{0}")]
    Syntax(String),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" (at line {line})"))
        .unwrap_or_default()
}

/// A YAML error, its position counted from the start of the file (`first_line` is the 1-based
/// line where the parsed text starts), classified.
pub fn from_yaml_error(err: &serde_yaml_ng::Error, first_line: usize) -> ReadError {
    let text = err.to_string();
    let line = err.location().map(|l| l.line() + first_line - 1);
    if text.starts_with("recursion limit exceeded") {
        return ReadError::TooDeep { line };
    }
    let message = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    let position = err
        .location()
        .map(|location| (location.line() + first_line - 1, location.column()));
    // Duplicates found by [`StrictValue`] (`duplicate key `k``) or by serde_yaml_ng's own
    // mappings (`duplicate entry with key "k"`), said the same way.
    let duplicate = message
        .find("duplicate key `")
        .map(|at| {
            let key = &message[at + "duplicate key `".len()..];
            (at, key.strip_suffix('`').unwrap_or(key))
        })
        .or_else(|| {
            let at = message.find("duplicate entry with key ")?;
            let key = &message[at + "duplicate entry with key ".len()..];
            Some((at, key.trim_matches('"')))
        });
    if let Some((at, key)) = duplicate {
        // serde_yaml_ng puts the path of the mapping first and the mapping's start last.
        let path = message[..at].trim_end_matches(": ");
        return ReadError::DuplicateKey {
            key: key.to_owned(),
            within: (!path.is_empty() && path != ".").then(|| path.to_owned()),
            at: position
                .map(|(line, column)| {
                    format!(" (the mapping starting at line {line} column {column})")
                })
                .unwrap_or_default(),
        };
    }
    match position {
        Some((line, column)) => {
            ReadError::Syntax(format!("{message} at line {line} column {column}"))
        }
        None => ReadError::Syntax(text),
    }
}

/// A JSON error, classified; serde_json counts lines from the start of the text it was given.
pub fn from_json_error(err: &serde_json::Error) -> ReadError {
    let text = err.to_string();
    if text.starts_with("recursion limit exceeded") {
        ReadError::TooDeep {
            line: Some(err.line()),
        }
    } else if let Some(key) = text
        .strip_prefix("duplicate key `")
        .and_then(|rest| rest.split_once('`'))
    {
        ReadError::DuplicateKey {
            key: key.0.to_owned(),
            within: None,
            at: key.1.to_owned(),
        }
    } else {
        ReadError::Syntax(text)
    }
}

/// Reads one YAML document (the text of one document, starting at 1-based line `first_line`
/// of its file) into JSON, with merge keys resolved, duplicates refused and the nesting limit
/// enforced before parsing.
pub fn parse_document(text: &str, first_line: usize) -> Result<Value, ReadError> {
    if let Some(line) = flow_too_deep(text) {
        return Err(ReadError::TooDeep {
            line: Some(line + first_line - 1),
        });
    }
    if !text.contains("<<") {
        // The common case, in one pass and with positions in the errors.
        return with_node_budget(node_budget(text), || {
            StrictValue::deserialize(serde_yaml_ng::Deserializer::from_str(text))
        })
        .map(|strict| strict.0)
        .map_err(|err| from_yaml_error(&err, first_line));
    }
    let value = merged_value(text, first_line)?;
    StrictValue::deserialize(value)
        .map(|strict| strict.0)
        .map_err(|err| from_yaml_error(&err, first_line))
}

/// Reads one YAML document into a [`YamlValue`] with its merge keys resolved (serde_yaml_ng's
/// mappings refuse duplicate keys themselves). Used where a document has a `<<`; typed
/// readers then deserialize from the value, keeping the key path of errors but not their line.
pub fn merged_value(text: &str, first_line: usize) -> Result<YamlValue, ReadError> {
    if let Some(line) = flow_too_deep(text) {
        return Err(ReadError::TooDeep {
            line: Some(line + first_line - 1),
        });
    }
    // First a pass that counts the values aliases expand to, and stops early: serde_yaml_ng's
    // own value would expand an alias bomb in full before anything could look at it.
    with_node_budget(node_budget(text), || {
        StrictValue::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map(|_| ())
    })
    .map_err(|err| from_yaml_error(&err, first_line))?;
    let mut value = YamlValue::deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .map_err(|err| from_yaml_error(&err, first_line))?;
    if let Some(line) = quoted_merge_key(text) {
        return Err(ReadError::Merge(format!(
            "a quoted `\"<<\"` key (at line {}) is an ordinary key to go-yaml but a merge to \
             other YAML libraries; write `<<` unquoted to merge, or use another key",
            line + first_line - 1
        )));
    }
    resolve_merges(&mut value)?;
    Ok(value)
}

/// The 1-based line of a quoted `"<<"` or `'<<'` used as a mapping key, if any: serde_yaml_ng's
/// values do not say whether a key was quoted, and go-yaml merges only the plain `<<`.
fn quoted_merge_key(text: &str) -> Option<usize> {
    for (index, line) in text.lines().enumerate() {
        for quoted in ["\"<<\"", "'<<'"] {
            let mut rest = line;
            while let Some(at) = rest.find(quoted) {
                rest = &rest[at + quoted.len()..];
                if rest.trim_start().starts_with(':') {
                    return Some(index + 1);
                }
            }
        }
    }
    None
}

/// Resolves the merge keys of a YAML value in place, innermost first, so a merged mapping's
/// own merges are resolved before it is merged (as go-yaml decodes an alias before merging it).
pub fn resolve_merges(value: &mut YamlValue) -> Result<(), ReadError> {
    match value {
        YamlValue::Mapping(mapping) => {
            for child in mapping.values_mut() {
                resolve_merges(child)?;
            }
            let Some(position) = mapping.keys().position(is_merge_key) else {
                return Ok(());
            };
            // A set, not a scan per merged key: a mapping of many keys merging many keys
            // would otherwise take their product.
            let written_before: std::collections::HashSet<YamlValue> =
                mapping.keys().take(position).cloned().collect();
            let sources = match mapping.shift_remove("<<") {
                Some(YamlValue::Mapping(source)) => vec![source],
                Some(YamlValue::Sequence(list)) => list
                    .into_iter()
                    .map(|item| match item {
                        YamlValue::Mapping(source) => Ok(source),
                        other => Err(ReadError::Merge(format!(
                            "a list of mappings to merge holds {}",
                            yaml_type(&other)
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(other) => {
                    return Err(ReadError::Merge(format!(
                        "the value must be a mapping or a list of mappings, not {}",
                        yaml_type(&other)
                    )));
                }
                None => return Ok(()),
            };
            // Keys an earlier mapping of the list gave: it wins, for every library.
            let mut merged_already = std::collections::HashSet::new();
            for source in sources {
                for (key, merged) in source {
                    if !merged_already.insert(key.clone()) {
                        continue;
                    }
                    match mapping.get(&key) {
                        // Written before `<<`: go-yaml v2 (kubectl) lets the merge replace it,
                        // v3 and the spec keep it. Refused when that changes the value.
                        Some(written) if *written != merged && written_before.contains(&key) => {
                            return Err(ReadError::Merge(format!(
                                "key {} is written before `<<` and merged with another value: \
                                 go-yaml v2 (kubectl) keeps the merged value, go-yaml v3 and \
                                 the YAML merge spec the written one; write it after `<<`",
                                key_text(&key)
                            )));
                        }
                        // Written after `<<`: it wins, for every library.
                        Some(_) => {}
                        None => {
                            mapping.insert(key, merged);
                        }
                    }
                }
            }
            Ok(())
        }
        YamlValue::Sequence(list) => list.iter_mut().try_for_each(resolve_merges),
        YamlValue::Tagged(tagged) => resolve_merges(&mut tagged.value),
        _ => Ok(()),
    }
}

fn is_merge_key(key: &YamlValue) -> bool {
    key.as_str() == Some("<<")
}

fn key_text(key: &YamlValue) -> String {
    match key {
        YamlValue::String(text) => format!("`{text}`"),
        other => format!("{other:?}"),
    }
}

fn yaml_type(value: &YamlValue) -> &'static str {
    match value {
        YamlValue::Null => "null",
        YamlValue::Bool(_) => "a boolean",
        YamlValue::Number(_) => "a number",
        YamlValue::String(_) => "a string",
        YamlValue::Sequence(_) => "a list",
        YamlValue::Mapping(_) => "a mapping",
        YamlValue::Tagged(_) => "a tagged value",
    }
}

thread_local! {
    /// How many more values [`StrictValue`] may build on this thread, when limited.
    static VALUES_LEFT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// How many values a YAML document may expand to: aliases (`*name`) repeat what their anchor
/// holds, so a few kilobytes of nested aliases can stand for billions of values. A document
/// without aliases has fewer values than bytes; this allows twice that, and a million more.
pub fn node_budget(text: &str) -> usize {
    1_000_000 + 2 * text.len()
}

/// Runs `read` with at most `values` values built by [`StrictValue`] on this thread, so an
/// alias bomb is refused as soon as it exceeds them rather than after it fills memory.
pub fn with_node_budget<T>(values: usize, read: impl FnOnce() -> T) -> T {
    let previous = VALUES_LEFT.with(|left| left.replace(Some(values)));
    let result = read();
    VALUES_LEFT.with(|left| left.set(previous));
    result
}

/// Counts one value against the budget of [`with_node_budget`].
fn spend_value<E: serde::de::Error>() -> Result<(), E> {
    VALUES_LEFT.with(|left| match left.get() {
        None => Ok(()),
        Some(0) => Err(E::custom(
            "the document's aliases expand to too many values (more than twice its size \
             plus a million): refused as an alias bomb",
        )),
        Some(n) => {
            left.set(Some(n - 1));
            Ok(())
        }
    })
}

/// A JSON value deserialized from YAML or JSON that refuses duplicate keys (serde_json's own
/// `Value` keeps the last one silently). Non-string scalar keys (`80: http`) become their text,
/// as YAML-to-JSON conversion makes them.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        spend_value()?;
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(deserializer).map(|strict| strict.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(item)) = seq.next_element()? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key `{key}`")));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A mapping key as JSON has it: a string, or a scalar's text.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string, number, boolean or null key")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<String, E> {
        Ok(value)
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }
}

/// The 1-based line where the flow nesting (`[`, `{`) of a YAML text first exceeds
/// [`MAX_DEPTH`], if it does.
///
/// One linear pass that follows just enough of YAML's syntax to find flow collections where
/// the parser would: it skips comments, quoted scalars and block scalars (`|`, `>`), and counts
/// `[` and `{` only where a node starts (or anywhere inside a flow collection), not inside
/// plain scalars such as `image: registry/app[1]`. Where it cannot tell, it counts: a
/// miscount can only refuse a document, never let a deep one through to the parser. Block
/// nesting (indentation) is not counted here: libyaml handles it in linear time, and the
/// deserializer's own limit of [`MAX_DEPTH`] then refuses it.
pub fn flow_too_deep(text: &str) -> Option<usize> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Quote {
        Single,
        Double,
    }
    /// A block scalar being skipped: lines indented more than `parent` (once the first one
    /// sets `content`, at least `content`) are its text.
    struct Block {
        parent: usize,
        content: Option<usize>,
    }
    let mut depth = 0usize;
    let mut quote: Option<Quote> = None;
    let mut block: Option<Block> = None;
    for (index, line) in text.split('\n').enumerate() {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        if let Some(scalar) = &mut block {
            if line.trim().is_empty() {
                continue;
            }
            match scalar.content {
                None if indent > scalar.parent => {
                    scalar.content = Some(indent);
                    continue;
                }
                Some(content) if indent >= content => continue,
                _ => block = None,
            }
        }
        let mut i = 0;
        // A node may start at the start of a line (a continuation line of a plain scalar too:
        // counting there can only over-count).
        let mut node_start = quote.is_none();
        // Column where the current key (or `-` entry) began: a block scalar's text must be
        // indented more than it.
        let mut token_column = indent;
        if quote.is_none()
            && depth == 0
            && (line.starts_with("---") || line.starts_with("..."))
            && bytes.get(3).is_none_or(|b| b.is_ascii_whitespace())
        {
            i = 3;
        }
        while i < bytes.len() {
            let c = bytes[i];
            match quote {
                Some(Quote::Double) => {
                    match c {
                        b'\\' => i += 1,
                        b'"' => quote = None,
                        _ => {}
                    }
                    i += 1;
                    continue;
                }
                Some(Quote::Single) => {
                    if c == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            quote = None;
                        }
                    }
                    i += 1;
                    continue;
                }
                None => {}
            }
            let followed_by_space = bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace());
            match c {
                b' ' | b'\t' | b'\r' => {}
                b'#' if i == 0 || bytes[i - 1].is_ascii_whitespace() => break,
                b'[' | b'{' if depth > 0 || node_start => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(index + 1);
                    }
                    node_start = true;
                }
                b']' | b'}' if depth > 0 => {
                    depth -= 1;
                    node_start = false;
                }
                b',' if depth > 0 => node_start = true,
                b'"' if node_start => {
                    quote = Some(Quote::Double);
                    node_start = false;
                    token_column = token_column.max(i);
                }
                b'\'' if node_start => {
                    quote = Some(Quote::Single);
                    node_start = false;
                    token_column = token_column.max(i);
                }
                b'|' | b'>' if depth == 0 && node_start => {
                    block = Some(Block {
                        parent: token_column,
                        content: None,
                    });
                    break;
                }
                b'-' | b'?' if followed_by_space && (node_start || depth > 0) => {
                    if depth == 0 {
                        token_column = i;
                    }
                    node_start = true;
                }
                b':' if followed_by_space || depth > 0 => node_start = true,
                b'&' | b'!' if node_start => {
                    // An anchor or a tag: the node starts after it.
                    while i + 1 < bytes.len()
                        && !bytes[i + 1].is_ascii_whitespace()
                        && !(depth > 0 && matches!(bytes[i + 1], b',' | b'[' | b']' | b'{' | b'}'))
                    {
                        i += 1;
                    }
                }
                _ => {
                    if node_start && depth == 0 {
                        token_column = i;
                    }
                    node_start = false;
                }
            }
            i += 1;
        }
    }
    None
}

/// One YAML document of a text: documents are split at `---` and `...` markers at the start
/// of a line (the YAML spec forbids both at column 0 inside a document), so each is parsed on
/// its own, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// 0-based index of the document in the text, as a YAML parser numbers documents (an empty
    /// document between two `---` counts).
    pub index: usize,
    /// 1-based line where it starts.
    pub line: usize,
    /// Its text, markers included.
    pub text: &'a str,
    /// Whether it has content (not only blank lines, comments, markers and directives).
    pub has_content: bool,
}

/// The YAML documents of a text, lazily. Texts between a `...` and the next `---` that hold
/// only comments are not documents, as for a YAML parser.
pub fn split_documents(text: &str) -> Documents<'_> {
    Documents {
        text,
        offset: 0,
        line: 1,
        index: 0,
    }
}

/// Iterator of [`split_documents`].
#[derive(Debug, Clone)]
pub struct Documents<'a> {
    text: &'a str,
    /// Byte offset of the next unread line.
    offset: usize,
    /// Line number of the next unread line.
    line: usize,
    /// Index of the next document.
    index: usize,
}

/// Whether `line` is a document marker (`---` or `...`, alone or followed by a space).
fn marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Whether a YAML line carries content (not blank, not a comment, not a bare marker, not a
/// directive such as `%YAML 1.2`).
fn yaml_content(line: &str) -> bool {
    let trimmed = line.trim();
    let after_marker = if marker(line, "---") {
        line.get(3..).unwrap_or("").trim()
    } else {
        trimmed
    };
    !(after_marker.is_empty()
        || after_marker.starts_with('#')
        || line.starts_with('%')
        || marker(line, "..."))
}

impl<'a> Iterator for Documents<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        loop {
            if self.offset >= self.text.len() {
                return None;
            }
            let start = self.offset;
            let start_line = self.line;
            let mut end = start;
            let mut has_content = false;
            let mut explicit = false;
            // Whether every line so far is blank, a comment or a directive (`%YAML 1.2`), and
            // whether there was a directive: then the `---` ends the prologue, not a document.
            let mut prologue_only = true;
            let mut directive = false;
            let mut first = true;
            for line in self.text[start..].split_inclusive('\n') {
                // A `---` opens the next document; `...` closes this one.
                if !first && marker(line, "---") && !(prologue_only && directive) {
                    break;
                }
                first = false;
                explicit |= marker(line, "---");
                end += line.len();
                self.line += 1;
                if marker(line, "...") {
                    break;
                }
                let trimmed = line.trim();
                if line.starts_with('%') {
                    directive = true;
                } else if !(trimmed.is_empty() || trimmed.starts_with('#')) {
                    prologue_only = false;
                }
                has_content |= yaml_content(line);
            }
            self.offset = end;
            if !(has_content || explicit) {
                continue;
            }
            let index = self.index;
            self.index += 1;
            return Some(Chunk {
                index,
                line: start_line,
                text: &self.text[start..end],
                has_content,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(text: &str) -> Result<Value, ReadError> {
        parse_document(text, 1)
    }

    #[test]
    fn merge_keys_resolve_as_go_yaml_does() {
        let value = yaml("d: &d {privileged: true, runAsUser: 1}\nsc:\n  <<: *d\n  runAsUser: 2\n")
            .unwrap();
        assert_eq!(value["sc"], json!({"privileged": true, "runAsUser": 2}));
        // Earlier mappings of a list win; nested merges are resolved first.
        let value = yaml(
            "a: &a {x: a}\nb: &b {<<: *a, y: b}\nc: &c {x: c, y: c, z: c}\nm: {<<: [*b, *c]}\n",
        )
        .unwrap();
        assert_eq!(value["m"], json!({"x": "a", "y": "b", "z": "c"}));
        assert_eq!(value["b"], json!({"x": "a", "y": "b"}));
        // An inline mapping merges too.
        let value = yaml("sc: {<<: {privileged: true}}\n").unwrap();
        assert_eq!(value["sc"], json!({"privileged": true}));
    }

    #[test]
    fn ambiguous_or_malformed_merges_are_refused() {
        let err = yaml("d: &d {privileged: true}\nsc: {privileged: false, <<: *d}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("key `privileged` is written before `<<`"),
            "{err}"
        );
        // The same value either way is not ambiguous; nor is a later mapping of a list that
        // the earlier one overrides.
        assert!(yaml("d: &d {a: 1}\nsc: {a: 1, <<: *d}\n").is_ok());
        assert_eq!(
            yaml("sc: {a: 1, <<: [{a: 1}, {a: 2}]}\n").unwrap()["sc"],
            json!({"a": 1})
        );
        let err = yaml("sc: {<<: 1}\n").unwrap_err();
        assert!(matches!(err, ReadError::Merge(_)), "{err}");
        let err = yaml("sc: {<<: [{a: 1}, 2]}\n").unwrap_err();
        assert!(matches!(err, ReadError::Merge(_)), "{err}");
        let err = yaml("sc: {\"<<\": {a: 1}}\n").unwrap_err();
        assert!(err.to_string().contains("quoted"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_position() {
        let err = yaml("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert_eq!(
            err,
            ReadError::DuplicateKey {
                key: "c".to_owned(),
                within: Some("b".to_owned()),
                at: " (the mapping starting at line 3 column 3)".to_owned()
            }
        );
        let err = parse_document("x: 0\nsc: {<<: {a: 1}, b: 1, b: 2}\n", 10).unwrap_err();
        assert!(
            matches!(&err, ReadError::DuplicateKey { at, .. } if at.contains("line 11")),
            "{err}"
        );
        let json = serde_json::from_str::<StrictValue>("{\"a\": {\"b\": 1, \"b\": 2}}")
            .map_err(|e| from_json_error(&e))
            .unwrap_err();
        assert_eq!(
            json,
            ReadError::DuplicateKey {
                key: "b".to_owned(),
                within: None,
                at: " at line 1 column 18".to_owned()
            }
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            yaml(&deep).unwrap_err(),
            ReadError::TooDeep { line: Some(1) }
        );
        // Block nesting: the deserializer's limit, with the same error.
        let block: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(matches!(yaml(&block), Err(ReadError::TooDeep { .. })));
        let json = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = serde_json::from_str::<StrictValue>(&json)
            .map_err(|e| from_json_error(&e))
            .unwrap_err();
        assert!(matches!(err, ReadError::TooDeep { line: Some(1) }));
    }

    #[test]
    fn alias_bombs_are_refused_early() {
        // Few jumps to a large anchor: under serde_yaml_ng's own repetition limit.
        let keys: String = (0..2000).map(|i| format!("  k{i}: {i}\n")).collect();
        let uses: String = (0..1000).map(|i| format!("u{i}: *a\n")).collect();
        let err = yaml(&format!("a: &a\n{keys}{uses}")).unwrap_err();
        assert!(err.to_string().contains("alias bomb"), "{err}");
        let merges: String = (0..1000).map(|i| format!("m{i}: {{<<: *a}}\n")).collect();
        let err = yaml(&format!("a: &a\n{keys}{merges}")).unwrap_err();
        assert!(err.to_string().contains("alias bomb"), "{err}");
        // A few uses of a small anchor are what anchors are for.
        let uses: String = (0..100).map(|i| format!("u{i}: {{<<: *a}}\n")).collect();
        assert!(yaml(&format!("a: &a {{x: 1, y: 2}}\n{uses}")).is_ok());
    }

    #[test]
    fn the_depth_scan_skips_what_is_not_flow() {
        let many = "[".repeat(200);
        for text in [
            format!("a: '{many}'\n"),
            format!("a: \"{many}\"\n"),
            format!("a: x{many}\n"),
            format!("a: 1 # {many}\n"),
            format!("- key: |\n    {many}\n  other: 1\n"),
            format!("a: >-\n  {many}\n\n  more\nb: 1\n"),
            format!("a: \"multi\n  line {many}\"\n"),
            format!("a: ['it''s {many}', \"x\\\" {many}\"]\n"),
        ] {
            assert_eq!(flow_too_deep(&text), None, "{text}");
        }
        for text in [
            format!("--- {many}\n"),
            format!("a: &x !!seq {many}\n"),
            format!("- - {many}\n"),
            format!("a: |\n  text\nb: {many}\n"),
            format!("a: [x, {many}\n"),
            format!("{{\"a\":{many}\n"),
        ] {
            assert!(flow_too_deep(&text).is_some(), "{text}");
        }
    }

    #[test]
    fn documents_are_numbered_as_a_parser_numbers_them() {
        let chunks: Vec<(usize, usize, bool)> =
            split_documents("# c\n---\na: 1\n---\n---\nb: 2\n...\n# after\n---\nc: 3\n")
                .map(|c| (c.index, c.line, c.has_content))
                .collect();
        assert_eq!(
            chunks,
            vec![(0, 2, true), (1, 4, false), (2, 5, true), (3, 9, true)]
        );
    }
}
