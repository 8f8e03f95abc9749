//! How field values reach the log, so that a client cannot forge lines or flood the log.
//!
//! Request-derived values (a uid, a namespace, a denial's message) are recorded as strings
//! (`uid = request.uid.as_str()`, never `uid = %request.uid`): the text format then writes them
//! quoted and escaped as Rust's `Debug` does, and the JSON format as JSON strings holding the
//! original text. A `%` (Display) value is written raw by `tracing-subscriber`'s text format,
//! so a `\n` in it would start a forged log line and an ESC would drive the reader's terminal;
//! [`OneLineFields`] escapes those in every other value as a second line of defence.
//!
//! Values that can be long (a denial's message, an error) go through [`bounded`] first: the
//! answer keeps the whole text, the log a prefix and the full length.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The most bytes of one field value written to the log; longer values are cut (see
/// [`bounded`]). Enough for any message a person reads in a log line; a denial listing
/// thousands of containers is still counted and answered in full.
pub const MAX_VALUE_BYTES: usize = 1024;

/// `text` as it should be logged: whole when it is at most [`MAX_VALUE_BYTES`] long, otherwise
/// its first [`MAX_VALUE_BYTES`] bytes (cut on a character boundary) followed by
/// `… (truncated, N bytes)` stating the full length.
///
/// Record the result as a string (`reason = &*bounded(&message)`) so it is escaped too.
pub fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_VALUE_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_VALUE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let kept = text.get(..end).unwrap_or_default();
    Cow::Owned(format!("{kept}… (truncated, {} bytes)", text.len()))
}

/// The text format's field formatter: `tracing-subscriber`'s default one, except that no value
/// can put a control character (a line break, an ESC starting a terminal sequence) or a
/// Unicode line separator or bidirectional override into the line.
///
/// String values are already written quoted and escaped by the default formatter and pass
/// through unchanged; Display and Debug values (`%error`, `?duration`) and the message get
/// those characters escaped (`\n`, `\u{1b}`) and stay unquoted, so that an error text reads as
/// before.
#[derive(Debug, Default, Clone, Copy)]
pub struct OneLineFields;

impl<'a> MakeVisitor<Writer<'a>> for OneLineFields {
    type Visitor = OneLineVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> OneLineVisitor<'a> {
        OneLineVisitor(DefaultVisitor::new(target, true))
    }
}

/// See [`OneLineFields`].
pub struct OneLineVisitor<'a>(DefaultVisitor<'a>);

impl Visit for OneLineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            // The default formatter writes a string message unquoted: escape it like any other.
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.0.record_str(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.record_debug(field, &OneLine(value));
    }
}

impl VisitOutput<fmt::Result> for OneLineVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl VisitFmt for OneLineVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

/// A value formatted with its control characters escaped.
struct OneLine<'a>(&'a dyn fmt::Debug);

impl fmt::Debug for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapeControls(f), "{:?}", self.0)
    }
}

/// Writes through to a formatter, escaping what [`needs_escape`] names.
struct EscapeControls<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapeControls<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(needs_escape) {
            let (clean, tail) = rest.split_at(at);
            self.0.write_str(clean)?;
            let mut chars = tail.chars();
            if let Some(c) = chars.next() {
                if c.is_control() {
                    write!(self.0, "{}", c.escape_debug())?;
                } else {
                    write!(self.0, "{}", c.escape_unicode())?;
                }
            }
            rest = chars.as_str();
        }
        self.0.write_str(rest)
    }
}

/// Characters that change how a log line is split or shown: C0 and C1 controls (line breaks,
/// ESC, DEL), the Unicode line and paragraph separators and the bidirectional overrides and
/// isolates (which make a line display in an order other than the one it is written in).
///
/// A backslash is not escaped: Debug values (`?value`) already escape theirs, and escaping it
/// again would double them.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_char_boundary_with_their_length() {
        assert_eq!(bounded("short"), "short");
        let exact = "a".repeat(MAX_VALUE_BYTES);
        assert!(matches!(bounded(&exact), Cow::Borrowed(_)));
        // A two-byte character straddles the bound: it is left out whole.
        let text = format!("{}é{}", "a".repeat(MAX_VALUE_BYTES - 1), "b".repeat(5000));
        let cut = bounded(&text);
        assert_eq!(
            cut,
            format!(
                "{}… (truncated, {} bytes)",
                "a".repeat(MAX_VALUE_BYTES - 1),
                text.len()
            )
        );
    }

    #[test]
    fn controls_separators_and_overrides_are_escaped() {
        let value = "a\nb\r\u{1b}[31mc\u{9b}d\u{2028}e\u{202e}f\\g \"h\" é";
        let shown = format!("{:?}", OneLine(&format_args!("{value}")));
        assert_eq!(
            shown,
            "a\\nb\\r\\u{1b}[31mc\\u{9b}d\\u{2028}e\\u{202e}f\\g \"h\" é"
        );
    }
}
