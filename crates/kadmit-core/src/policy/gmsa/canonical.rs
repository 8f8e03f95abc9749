//! The credential spec JSON exactly as windows-gmsa writes it into pods, because users and
//! tools compare those strings: Go `encoding/json` of the stored object — compact, object keys
//! sorted at every level, and HTML-safe (`<`, `>`, `&`, U+2028 and U+2029 escaped as `\uXXXX`).

use std::fmt::Write as _;

use serde_json::Value;

/// Serializes `value` the way Go's `json.Marshal` does for decoded JSON.
///
/// Numbers are written as serde_json holds them (integers as integers); Go would write a
/// non-integer through float64 formatting, which differs only for exotic exponents — credential
/// specs contain strings, objects and arrays.
pub fn to_go_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted explicitly: serde_json's map keeps insertion order when a dependency
            // enables `preserve_order`, and Go sorts map keys byte-wise.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_value(out, v);
                }
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            // Go 1.22+ writes these two short, like \n.
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_sorted_html_safe() {
        let value = json!({"b": {"z": 1, "a": [true, null, "x"]}, "a": "<p>&</p>", "c": "line\nsep\u{2028}\u{1}"});
        assert_eq!(
            to_go_json(&value),
            r#"{"a":"\u003cp\u003e\u0026\u003c/p\u003e","b":{"a":[true,null,"x"],"z":1},"c":"line\nsep\u2028\u0001"}"#
        );
    }
}
