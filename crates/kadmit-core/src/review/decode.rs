//! Bytes → [`Review`], with errors that name the offending field.

use serde::Deserialize;

use super::meter::{Meter, Metered};
use super::{AdmissionRequest, Review, ReviewVersion};

/// Why a body is not an `AdmissionReview` kadmit can answer.
///
/// Every variant is the client's fault and maps to HTTP 400; the message is what the client
/// reads, so it names the field and what was expected there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("the body is not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// Not UTF-8, which JSON must be. Checked over the whole body first, because members no
    /// policy reads are skipped without decoding their strings.
    #[error("the body is not valid JSON: invalid UTF-8 at byte {offset}")]
    NotUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// Not UTF-8, and its first bytes are a compression format's magic number: the client
    /// compressed the body (with a `Content-Encoding` the server refuses, or none at all). The
    /// API server never does; "invalid UTF-8 at byte 1" would send the reader looking for a
    /// stray character.
    #[error(
        "the body is not JSON: it starts with the {format} magic number, so it looks \
         {format}-compressed; send the AdmissionReview uncompressed (no Content-Encoding)"
    )]
    Compressed {
        /// The format its first bytes announce, such as `gzip`.
        format: &'static str,
    },
    /// Nothing but whitespace.
    #[error("the body is empty: send an AdmissionReview")]
    Empty,
    /// A UTF-8 byte order mark before the document, which JSON on the wire must not have
    /// (RFC 8259, section 8.1); serde_json's own message is "expected value at line 1 column 1".
    #[error(
        "the body is not valid JSON: it starts with a byte order mark (EF BB BF); send it without"
    )]
    ByteOrderMark,
    /// JSON, but a field has the wrong type or is missing.
    #[error("{}: {message}", display_path(path))]
    Field {
        /// Dotted path of the field, `.` for the document itself.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// No `apiVersion`: kadmit could not tell which version to answer in.
    #[error("apiVersion is missing: expected admission.k8s.io/v1 or admission.k8s.io/v1beta1")]
    MissingApiVersion,
    /// An `apiVersion` that is not an admission review version.
    #[error(
        "apiVersion `{0}` is not supported: expected admission.k8s.io/v1 or admission.k8s.io/v1beta1"
    )]
    UnsupportedApiVersion(String),
    /// A `kind` other than `AdmissionReview`.
    #[error("kind is `{0}`, expected AdmissionReview")]
    WrongKind(String),
    /// No `kind`.
    #[error("kind is missing, expected AdmissionReview")]
    MissingKind,
    /// A `kind` that is not a string (an object `kind` without a `request` is a bare request).
    #[error("kind is {0}, expected the string AdmissionReview")]
    KindNotString(&'static str),
    /// No `request`, or `request: null`.
    #[error("the AdmissionReview has no request")]
    MissingRequest,
    /// A bare `AdmissionRequest` (what `kwctl run -r` reads) rather than a review around one.
    #[error(
        "this is a bare AdmissionRequest, not an AdmissionReview: send it as the `request` of {{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":...}}"
    )]
    BareRequest,
    /// `request.uid` is the empty string: the answer could not be matched to the request.
    #[error("request.uid is empty")]
    EmptyUid,
    /// The review (outside its objects, which are answered with a denial instead) would take
    /// more memory to decode than the limit allows.
    #[error(
        "{}: the review takes more than {limit} bytes of memory to decode",
        display_path(path)
    )]
    TooLarge {
        /// Where decoding stopped: inside the list or map that went past the limit.
        path: String,
        /// The limit.
        limit: usize,
    },
}

impl DecodeError {
    /// The error for a body that is not UTF-8, its first invalid byte at `offset`: it names the
    /// compression when the body starts with a compressed stream's magic number.
    pub(super) fn not_utf8(body: &[u8], offset: usize) -> DecodeError {
        /// Both start with a byte that is never valid UTF-8 after the first, so only bodies that
        /// are refused anyway are looked at.
        const MAGIC: &[(&[u8], &str)] = &[(b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd")];
        match MAGIC.iter().find(|(magic, _)| body.starts_with(magic)) {
            Some(&(_, format)) => DecodeError::Compressed { format },
            None => DecodeError::NotUtf8 { offset },
        }
    }
}

fn display_path(path: &str) -> String {
    if path == "." || path.is_empty() {
        "the document".to_owned()
    } else {
        path.to_owned()
    }
}

/// Named `AdmissionReview` so serde's messages read "expected struct AdmissionReview".
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionReview {
    api_version: Option<String>,
    /// A string in a review; an object (group/version/kind) in a bare request.
    kind: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "request_object")]
    request: Option<AdmissionRequest>,
}

/// `request`: an object or `null`. serde's derive would also read a list as the fields in
/// order, accepting `[uid, kind, ...]` and refusing a short one as "invalid length".
fn request_object<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<AdmissionRequest>, D::Error> {
    de.deserialize_option(RequestObject)
}

struct RequestObject;

impl<'de> serde::de::Visitor<'de> for RequestObject {
    type Value = Option<AdmissionRequest>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an AdmissionRequest object")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        AdmissionRequest::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
    }
}

/// Decodes the envelope, objects raw, building at most what `meter` allows.
pub(super) fn decode_review(body: &[u8], meter: &Meter) -> Result<Review, DecodeError> {
    if body.starts_with(b"\xef\xbb\xbf") {
        return Err(DecodeError::ByteOrderMark);
    }
    // serde's derive would take a list of the fields' values as the struct.
    match body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        None => return Err(DecodeError::Empty),
        Some(b'[') => return Err(list_document()),
        Some(_) => {}
    }
    // Tracking the path costs as much as the decoding itself, and is only needed to say where
    // a bad body went wrong: well-formed bodies take the plain decoder, and a body it refuses is
    // decoded again with tracking, which finds the same error and names its field.
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Ok(envelope) = AdmissionReview::deserialize(Metered::new(&mut de, meter))
        && de.end().is_ok()
    {
        return check_envelope(envelope);
    }
    let retry = Meter::new(meter.limit());
    let mut de = serde_json::Deserializer::from_slice(body);
    let envelope: AdmissionReview = serde_path_to_error::deserialize(Metered::new(&mut de, &retry))
        .map_err(|err| {
            if retry.tripped() {
                return DecodeError::TooLarge {
                    path: err.path().to_string(),
                    limit: retry.limit(),
                };
            }
            if !(err.inner().is_syntax() || err.inner().is_eof()) {
                return field_error(&err);
            }
            // serde_json refuses a value an enum cannot start with (`"operation": null`) as a
            // syntax error, "expected value", though the body is JSON: then say what is wrong
            // there. The document is read within the same limit: a `Value` is larger still.
            let meter = Meter::new(retry.limit());
            let mut de = serde_json::Deserializer::from_slice(body);
            serde_json::Value::deserialize(Metered::new(&mut de, &meter))
                .ok()
                .and_then(|document| enum_field_error(&document, err.path()))
                .unwrap_or_else(|| DecodeError::Syntax(err.into_inner()))
        })?;
    de.end().map_err(DecodeError::Syntax)?;
    check_envelope(envelope)
}

/// A data error of the envelope, with its field.
fn field_error(err: &serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    DecodeError::Field {
        path: err.path().to_string(),
        message: strip_position(err.inner()),
    }
}

/// A document that is a JSON list, which serde's derive would read as the fields in order.
fn list_document() -> DecodeError {
    DecodeError::Field {
        path: ".".to_owned(),
        message: "a list, expected an AdmissionReview object".to_owned(),
    }
}

/// The envelope of a review that is already a JSON value, the value kept for the errors.
fn envelope_from_value(
    document: &serde_json::Value,
) -> Result<AdmissionReview, serde_path_to_error::Error<serde_json::Error>> {
    serde_path_to_error::deserialize(document)
}

/// When the field at `path` of `document` is an enum (such as `request.operation`) and holds
/// neither a string nor an object, the error that names the field, what it holds and, in
/// serde's own words, the values it takes: `null is not a valid operation: expected one of
/// `CREATE`, ...`. `None` for any other field, whose error is already precise.
///
/// Whether the field is an enum is found by putting an empty string there: only an enum
/// refuses it as an unknown variant, listing the variants.
fn enum_field_error(
    document: &serde_json::Value,
    path: &serde_path_to_error::Path,
) -> Option<DecodeError> {
    let mut probe = document.clone();
    let slot = value_at(&mut probe, path)?;
    // A string is refused as an unknown variant, naming them already.
    if slot.is_string() {
        return None;
    }
    let found = describe(slot);
    *slot = serde_json::Value::String(String::new());
    let field = path.to_string();
    let expected = match envelope_from_value(&probe) {
        Err(err) if err.path().to_string() == field => strip_position(err.inner())
            .strip_prefix("unknown variant ``, ")?
            .to_owned(),
        _ => return None,
    };
    let name = match path.iter().next_back() {
        Some(serde_path_to_error::Segment::Map { key }) => key.as_str(),
        _ => "value",
    };
    Some(DecodeError::Field {
        path: field,
        message: format!("{found} is not a valid {name}: {expected}"),
    })
}

/// The value at `path` in `document`, when the path leads through objects and lists.
fn value_at<'a>(
    document: &'a mut serde_json::Value,
    path: &serde_path_to_error::Path,
) -> Option<&'a mut serde_json::Value> {
    use serde_path_to_error::Segment;
    path.iter()
        .try_fold(document, |value, segment| match segment {
            Segment::Map { key } => value.get_mut(key.as_str()),
            Segment::Seq { index } => value.get_mut(*index),
            _ => None,
        })
}

/// What a JSON value is, without quoting it (it may be a secret).
fn describe(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Review {
    /// Decodes an `AdmissionReview` that is already a JSON value, such as a YAML document or
    /// a line of a capture file that was parsed to find out what it is.
    ///
    /// The checks and the error messages are those of [`Review::from_slice`] (less
    /// [`DecodeError::Syntax`], which a value cannot have), so `kadmit replay` names a bad
    /// document exactly as `kadmit serve` answers it.
    pub fn from_value(value: serde_json::Value) -> Result<Review, DecodeError> {
        if value.is_array() {
            return Err(list_document());
        }
        // Borrowed, so that an error can look at what the field holds.
        let envelope = envelope_from_value(&value).map_err(|err| {
            enum_field_error(&value, err.path()).unwrap_or_else(|| field_error(&err))
        })?;
        check_envelope(envelope)
    }
}

/// What both decoders require of a decoded envelope, in the order the errors are reported.
fn check_envelope(envelope: AdmissionReview) -> Result<Review, DecodeError> {
    if envelope.request.is_none()
        && envelope
            .kind
            .as_ref()
            .is_some_and(serde_json::Value::is_object)
    {
        return Err(DecodeError::BareRequest);
    }
    let version = match envelope.api_version.as_deref() {
        None => return Err(DecodeError::MissingApiVersion),
        Some(v) => ReviewVersion::parse(v)
            .ok_or_else(|| DecodeError::UnsupportedApiVersion(v.to_owned()))?,
    };
    match &envelope.kind {
        Some(serde_json::Value::String(kind)) if kind == "AdmissionReview" => {}
        Some(serde_json::Value::String(other)) => {
            return Err(DecodeError::WrongKind(other.to_owned()));
        }
        Some(other) => return Err(DecodeError::KindNotString(describe(other))),
        None => return Err(DecodeError::MissingKind),
    }
    let request = envelope.request.ok_or(DecodeError::MissingRequest)?;
    if request.uid.is_empty() {
        return Err(DecodeError::EmptyUid);
    }
    Ok(Review {
        version,
        request,
        decoded: None,
        decoded_bytes: 0,
    })
}

/// The message for a data error in a review: serde_json's, without the " at line L column C" it
/// appends (the path already says where) and without the string value it quotes.
///
/// The message goes back to the API server, which shows it to the user and may keep it in its
/// audit log, and kadmit logs it at info; a wrongly typed value may be a secret (an env value, a
/// token in an annotation). Like the API server's own decoding errors, it names the field and
/// the types, not the value.
pub(crate) fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    if KNOWN_SHAPES.iter().any(|shape| text.starts_with(shape)) {
        without_quoted_strings(text)
    } else {
        // A type's own parser (a timestamp, a quantity) may quote the input in any shape.
        "invalid value".to_owned()
    }
}

/// How serde and serde_json word the errors they raise, none quoting input other than as
/// `string "..."` (left out) or a field or variant name; any other message is a type's own.
const KNOWN_SHAPES: &[&str] = &[
    "invalid type: ",
    "invalid value: ",
    "invalid length ",
    "missing field ",
    "unknown field ",
    "duplicate field ",
    "unknown variant ",
    "EOF while parsing",
    "expected ",
    "key must be ",
    "trailing ",
    "control character ",
    "invalid escape",
    "invalid number",
    "number out of range",
    "recursion limit exceeded",
    "lone leading surrogate",
    "invalid unicode code point",
    "unexpected end of hex escape",
    "invalid UTF-8",
];

/// `text` with each `string "..."` (serde's description of a string it did not expect, Rust
/// Debug-escaped) shortened to `string`.
fn without_quoted_strings(text: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len() - 2]);
        let quoted = &rest[at + MARK.len()..];
        // The closing quote is the first one not escaped by a backslash.
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(i, c)| match c {
            '\\' if !escaped => {
                escaped = true;
                None
            }
            '"' if !escaped => Some(i),
            _ => {
                escaped = false;
                None
            }
        });
        match end {
            Some(end) => rest = &quoted[end + 1..],
            // Not serde's form after all: keep the rest as it is.
            None => {
                out.push_str(&rest[at + MARK.len() - 2..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match Review::from_slice(body.as_bytes()) {
            Ok(review) => panic!("decoded {review:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn quoted_strings_are_left_out_of_messages() {
        for (text, expected) in [
            (
                r#"spec.containers[0].env[0].value: invalid type: string "hunter2", expected i64"#,
                "spec.containers[0].env[0].value: invalid type: string, expected i64",
            ),
            (
                r#"x: invalid value: string "a \" b \\", expected y; invalid type: string "", expected z"#,
                "x: invalid value: string, expected y; invalid type: string, expected z",
            ),
            (r#"unterminated string "abc"#, r#"unterminated string "abc"#),
            (
                "invalid type: integer `5`, expected a string",
                "invalid type: integer `5`, expected a string",
            ),
        ] {
            assert_eq!(without_quoted_strings(text), expected);
        }
        let body = r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
            "object": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
              "securityContext": {"runAsUser": "hunter2"}}]}}}}"#;
        let review = Review::from_slice(body.as_bytes()).unwrap();
        let raw = review.request.object.as_ref().unwrap();
        let err =
            super::super::TypedObject::decode(&review.request.kind, raw, "object").unwrap_err();
        assert_eq!(
            err.to_string(),
            "object does not decode as a v1 Pod: spec.containers[0].securityContext.runAsUser: invalid type: string, expected i64"
        );
    }

    #[test]
    fn a_type_s_own_parse_error_is_not_quoted() {
        let gvk = super::super::GroupVersionKind {
            group: String::new(),
            version: "v1".to_owned(),
            kind: "Namespace".to_owned(),
        };
        let raw = serde_json::value::RawValue::from_string(
            r#"{"metadata": {"name": "n", "creationTimestamp": "2024-01-01T00:00:00Zhunter2"}}"#
                .to_owned(),
        )
        .unwrap();
        let err = super::super::TypedObject::decode(&gvk, &raw, "object").unwrap_err();
        assert_eq!(
            err.to_string(),
            "object does not decode as a v1 Namespace: metadata.creationTimestamp: invalid value"
        );
    }

    #[test]
    fn invalid_utf8_is_refused_even_where_nothing_is_read() {
        // managedFields is skipped without decoding its strings; the body is still not JSON.
        let body = b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{\"metadata\":{\"managedFields\":[{\"\x84\":1}]}}}}";
        let err = Review::from_slice(body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the body is not valid JSON: invalid UTF-8 at byte 192"
        );
    }

    #[test]
    fn names_missing_and_mistyped_fields() {
        assert_eq!(
            err("null"),
            "the document: invalid type: null, expected struct AdmissionReview"
        );
        assert!(err("{").starts_with("the body is not valid JSON"));
        assert_eq!(
            err(
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#
            ),
            "request: missing field `uid`"
        );
        assert_eq!(
            err(
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{},"operation":"PATCH"}}"#
            ),
            "request.operation: unknown variant `PATCH`, expected one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT`"
        );
        assert_eq!(
            err(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            "the AdmissionReview has no request"
        );
        assert_eq!(
            err(
                r#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"u","kind":{},"operation":"CREATE"}}"#
            ),
            "apiVersion `v1` is not supported: expected admission.k8s.io/v1 or admission.k8s.io/v1beta1"
        );
        assert_eq!(
            err(
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"","kind":{},"operation":"CREATE"}}"#
            ),
            "request.uid is empty"
        );
        assert!(err(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{},"operation":"CREATE"}} x"#)
            .starts_with("the body is not valid JSON"));
    }

    /// serde_json calls these "expected value" at the field, a syntax error: they were
    /// answered "the body is not valid JSON".
    #[test]
    fn an_operation_of_the_wrong_type_is_named() {
        for (value, found) in [
            ("null", "null"),
            ("5", "a number"),
            ("true", "a boolean"),
            ("[]", "a list"),
            ("{}", "an object"),
        ] {
            let body = format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{}},"operation":{value}}}}}"#
            );
            let expected = format!(
                "request.operation: {found} is not a valid operation: expected one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT`"
            );
            assert_eq!(err(&body), expected, "{body}");
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(Review::from_value(value).unwrap_err().to_string(), expected);
        }
        // A body that is not JSON after all is still called that.
        assert!(
            err(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{},"operation":nul"#)
                .starts_with("the body is not valid JSON")
        );
    }

    #[test]
    fn a_compressed_or_empty_body_is_called_that() {
        // `gzip` of a review: the magic number 1f 8b, then deflate (08) and the header.
        let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03];
        gzip.extend_from_slice(&[0xab, 0x56, 0x4a, 0x2c, 0xc8, 0x04, 0x00]);
        assert_eq!(
            Review::from_slice(&gzip).unwrap_err().to_string(),
            "the body is not JSON: it starts with the gzip magic number, so it looks \
             gzip-compressed; send the AdmissionReview uncompressed (no Content-Encoding)"
        );
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x00, 0x31, 0x00];
        assert!(
            Review::from_slice(&zstd)
                .unwrap_err()
                .to_string()
                .contains("looks zstd-compressed")
        );
        // Other bytes that are not UTF-8 keep their offset.
        assert_eq!(
            Review::from_slice(b"{\"a\xff").unwrap_err().to_string(),
            "the body is not valid JSON: invalid UTF-8 at byte 3"
        );
        for body in ["", " \r\n\t"] {
            assert_eq!(err(body), "the body is empty: send an AdmissionReview");
        }
        assert_eq!(
            err("\u{feff}{}"),
            "the body is not valid JSON: it starts with a byte order mark (EF BB BF); send it without"
        );
    }

    #[test]
    fn an_envelope_of_the_wrong_shape_is_named() {
        let review = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"#;
        for request in [
            "[]",
            r#"["u", {}, {}, null, null, null, "CREATE", {}, null, null, null]"#,
        ] {
            assert_eq!(
                err(&format!("{review}{request}}}")),
                "request: invalid type: sequence, expected an AdmissionRequest object"
            );
        }
        assert_eq!(
            err(&format!("{review}5}}")),
            "request: invalid type: integer `5`, expected an AdmissionRequest object"
        );
        let list = "the document: a list, expected an AdmissionReview object";
        assert_eq!(err("[]"), list);
        // serde's derive would read this as the three fields in order.
        assert_eq!(
            err(
                r#" ["admission.k8s.io/v1","AdmissionReview",{"uid":"u","kind":{},"operation":"CREATE"}]"#
            ),
            list
        );
        assert_eq!(
            err(
                r#"{"apiVersion":"admission.k8s.io/v1","kind":5,"request":{"uid":"u","kind":{},"operation":"CREATE"}}"#
            ),
            "kind is a number, expected the string AdmissionReview"
        );
        assert_eq!(
            err(
                r#"{"apiVersion":"admission.k8s.io/v1","kind":{"kind":"Pod"},"request":{"uid":"u","kind":{},"operation":"CREATE"}}"#
            ),
            "kind is an object, expected the string AdmissionReview"
        );
    }

    #[test]
    fn recognises_a_bare_request() {
        assert!(
            err(r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"}"#)
                .starts_with("this is a bare AdmissionRequest, not an AdmissionReview: send it as the `request` of {\"apiVersion\"")
        );
        assert_eq!(
            err(
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"Other","request":{"uid":"u","kind":{},"operation":"CREATE"}}"#
            ),
            "kind is `Other`, expected AdmissionReview"
        );
    }

    #[test]
    fn from_value_reports_as_from_slice() {
        let bodies = [
            "null",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{},"operation":"PATCH"}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            r#"{"kind":"AdmissionReview","request":{"uid":"u","kind":{},"operation":"CREATE"}}"#,
            r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"","kind":{},"operation":"CREATE"}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{},"operation":null}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":[],"request":{"uid":"u","kind":{},"operation":"CREATE"}}"#,
            r#"["admission.k8s.io/v1","AdmissionReview",{"uid":"u","kind":{},"operation":"CREATE"}]"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":[]}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#,
        ];
        for body in bodies {
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            let from_value = Review::from_value(value).unwrap_err().to_string();
            assert_eq!(from_value, err(body), "{body}");
        }
        let value = serde_json::json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
            "request": {"uid": "abc", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "operation": "CREATE", "object": {"a": [1, 2]}}});
        let review = Review::from_value(value).unwrap();
        assert_eq!(review.version, ReviewVersion::V1Beta1);
        assert_eq!(review.request.object.unwrap().get(), r#"{"a":[1,2]}"#);
    }

    #[test]
    fn keeps_version_and_raw_object() {
        // The plain decoder (Review::from_slice's one pass would decode the Pod instead).
        let review = decode_review(
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{},
                "request":{"uid":"abc","kind":{"group":"","version":"v1","kind":"Pod"},
                "operation":"CREATE","object":{"a": [1, 2]},"oldObject":null}}"#,
            &Meter::new(crate::review::DEFAULT_MAX_DECODED_BYTES),
        )
        .unwrap();
        assert_eq!(review.version, ReviewVersion::V1Beta1);
        assert_eq!(review.request.uid, "abc");
        assert!(review.request.kind.is_core_v1("Pod"));
        assert_eq!(review.request.object.unwrap().get(), r#"{"a": [1, 2]}"#);
        assert!(review.request.old_object.is_none());
    }
}
