//! The answer's JSON, written straight into its buffer.
//!
//! An answer is a few fixed members around strings: the patch's paths and values, warnings,
//! audit annotations (mutation summaries run to a kilobyte). Through serde, each string is
//! escaped byte by byte behind a serializer, and the patch went through `serde_json::Value`,
//! then a `RawValue` that checked the base64 text again: a quarter of a mutating request's
//! cost. Here strings are scanned eight bytes at a time and copied in runs, and the rest is
//! written as the fixed text it is.
//!
//! The output is byte for byte what `serde_json::to_writer` writes for the same values (compact,
//! the same escapes); the tests compare the two.

use json_patch::PatchOperation;
use serde_json::Value;

/// Appends `s` as a JSON string: quoted, with `"`, `\` and control characters escaped as
/// serde_json escapes them (`\n`, `\t`… or `\u00XX`), everything else as it is.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(at) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..at]);
        write_escape(out, bytes[at]);
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The index of the first byte at or after `from` that must be escaped.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let rest = bytes.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut offset = from;
    for chunk in chunks.by_ref() {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        // A byte's high bit is set in each term when that byte is below 0x20, a quote or a
        // backslash (bytes of 0x80 and up never match: `& !word` clears them).
        let control = word.wrapping_sub(ONES * 0x20);
        let quote = (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
        let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
        let found = (control | quote | backslash) & !word & HIGH;
        if found != 0 {
            // The lowest flagged byte is a true match; borrows only run upwards from one.
            return Some(offset + found.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| offset + i)
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            let hex = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            out.extend_from_slice(&hex);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

/// Appends `value` as compact JSON, members in the map's order.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Numbers are rare in a patch (user and group IDs); serde_json formats them.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Appends `patch` as a JSON Patch document: each operation's `op`, then its members in the
/// order json-patch declares them.
pub(crate) fn write_patch(out: &mut Vec<u8>, patch: &[PatchOperation]) {
    out.push(b'[');
    for (i, op) in patch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (name, from, path, value) = match op {
            PatchOperation::Add(op) => ("add", None, &op.path, Some(&op.value)),
            PatchOperation::Remove(op) => ("remove", None, &op.path, None),
            PatchOperation::Replace(op) => ("replace", None, &op.path, Some(&op.value)),
            PatchOperation::Move(op) => ("move", Some(&op.from), &op.path, None),
            PatchOperation::Copy(op) => ("copy", Some(&op.from), &op.path, None),
            PatchOperation::Test(op) => ("test", None, &op.path, Some(&op.value)),
        };
        out.extend_from_slice(b"{\"op\":\"");
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
        if let Some(from) = from {
            out.extend_from_slice(b",\"from\":");
            write_str(out, from.as_str());
        }
        out.extend_from_slice(b",\"path\":");
        write_str(out, path.as_str());
        if let Some(value) = value {
            out.extend_from_slice(b",\"value\":");
            write_value(out, value);
        }
        out.push(b'}');
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn as_serde_writes<T: serde::Serialize + ?Sized>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "",
            "plain",
            "exactly8",
            "a\"quote",
            "back\\slash",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "kubernetes.io~1limit-ranger",
            "é€😀 \"and\" more than eight bytes\\",
            "0123456\"",
            "01234567\"",
            "012345678901234\u{1}",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), as_serde_writes(s), "{s:?}");
        }
    }

    #[test]
    fn a_patch_is_written_as_serde_json_writes_it() {
        let patch: Vec<PatchOperation> = serde_json::from_value(json!([
            {"op": "add", "path": "/metadata/annotations/a~1b", "value": "x\ny"},
            {"op": "replace", "path": "/spec/containers/0/resources",
             "value": {"limits": {"cpu": "1"}, "requests": {}, "n": [1, -2, 2.5, null, true, false]}},
            {"op": "remove", "path": "/spec/x"},
            {"op": "move", "from": "/a", "path": "/b"},
            {"op": "copy", "from": "/a", "path": "/c"},
            {"op": "test", "path": "/d", "value": {"e": []}},
        ]))
        .unwrap();
        let mut out = Vec::new();
        write_patch(&mut out, &patch);
        assert_eq!(String::from_utf8(out).unwrap(), as_serde_writes(&patch));
        let mut out = Vec::new();
        write_patch(&mut out, &[]);
        assert_eq!(out, b"[]");
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in any::<String>()) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(String::from_utf8(out).unwrap(), as_serde_writes(&s));
        }

        #[test]
        fn strings_of_json_specials_are_written_as_serde_json_writes_them(
            s in "[\"\\\\\u{0}-\u{1f}a~/é]{0,40}"
        ) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(String::from_utf8(out).unwrap(), as_serde_writes(&s));
        }
    }
}
