//! Go's `%q` quoting, which upstream uses for label and annotation values in messages.

/// Go's `%q` (`strconv.Quote`) of a string: double quotes around it, `"` and `\` escaped, the
/// usual `\a \b \f \n \r \t \v` escapes, other non-printable characters as `\xNN` (below U+0080),
/// `\uNNNN` or `\UNNNNNNNN` in lower-case hex.
///
/// Printable follows Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and
/// the ASCII space) for everything except unassigned code points, which Go escapes but this
/// table-free version passes through: see [`go_printable`].
pub(crate) fn go_quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ if go_printable(ch) => out.push(ch),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            _ => {
                let n = u32::from(ch);
                // Writing to a String cannot fail.
                let _ = if n < 0x80 {
                    write!(out, "\\x{n:02x}")
                } else if n < 0x1_0000 {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint` without the Unicode tables: not printable are control characters (Cc),
/// space separators other than U+0020 and the line/paragraph separators (Zs, Zl, Zp), format
/// characters (Cf), private-use characters (Co) and noncharacters. Other unassigned code points
/// count as printable here (Go escapes them); they cannot name anything real in an annotation.
fn go_printable(ch: char) -> bool {
    if ch == ' ' {
        return true;
    }
    if ch.is_control() || ch.is_whitespace() {
        return false;
    }
    let n = u32::from(ch);
    const NOT_PRINTABLE: &[(u32, u32)] = &[
        // Cf, format characters.
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
        // Co, private use.
        (0xE000, 0xF8FF),
        (0xF_0000, 0xF_FFFD),
        (0x10_0000, 0x10_FFFD),
        // Noncharacters (unassigned, Cn).
        (0xFDD0, 0xFDEF),
    ];
    if (n & 0xFFFE) == 0xFFFE {
        return false;
    }
    !NOT_PRINTABLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote("unconfined"), r#""unconfined""#);
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(go_quote("a\nb\tc\rd"), r#""a\nb\tc\rd""#);
        assert_eq!(go_quote("\u{7}\u{8}\u{c}\u{b}"), r#""\a\b\f\v""#);
        assert_eq!(go_quote("\u{0}\u{1b}\u{7f}"), r#""\x00\x1b\x7f""#);
        assert_eq!(
            go_quote("\u{85}\u{a0}\u{ad}\u{200b}\u{feff}"),
            r#""\u0085\u00a0\u00ad\u200b\ufeff""#
        );
        assert_eq!(go_quote("\u{e0001}\u{10fffd}"), r#""\U000e0001\U0010fffd""#);
        assert_eq!(
            go_quote("héllo wörld ☃ 日本 😀"),
            "\"héllo wörld ☃ 日本 😀\""
        );
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote(""), r#""""#);
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(go_quote("a\nb\tc\rd"), r#""a\nb\tc\rd""#);
        assert_eq!(
            go_quote("\u{0}\u{1b}\u{7f}\u{7}\u{8}\u{b}\u{c}"),
            r#""\x00\x1b\x7f\a\b\v\f""#
        );
        assert_eq!(go_quote("é ü 日本 🙂"), "\"é ü 日本 🙂\"");
        assert_eq!(
            go_quote("\u{85}\u{a0}\u{200b}\u{feff}\u{10fffd}"),
            r#""\u0085\u00a0\u200b\ufeff\U0010fffd""#
        );
        assert_eq!(
            go_quote("\u{fdd0}\u{ffff}\u{1fffe}"),
            r#""\ufdd0\uffff\U0001fffe""#
        );
    }
}
