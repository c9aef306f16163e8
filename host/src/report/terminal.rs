//! Text from inputs made safe to print on a terminal.
//!
//! Log lines, subjects, addresses and file names come from strangers. Printed
//! raw, a control byte in them can move the cursor, rewrite what was printed
//! before or set the terminal's title: every such character is shown escaped
//! (`\x1b`, `\u{9b}`) instead. JSON output needs none of this; serde escapes
//! control characters itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character escaped (tab kept).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            let code = u32::from(c);
            if code < 0x80 {
                let _ = write!(out, "\\x{code:02x}");
            } else {
                let _ = write!(out, "\\u{{{code:x}}}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_the_rest_kept() {
        assert!(matches!(
            escape("plain text, ünïcode\tand a tab"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape("a\x1b]0;owned\x07b\0c\u{9b}2Jd\r\n"),
            "a\\x1b]0;owned\\x07b\\x00c\\u{9b}2Jd\\x0d\\x0a"
        );
    }
}
