//! A log line's bytes as text. Logs are meant to be UTF-8 but carry what
//! clients sent: an invalid sequence becomes U+FFFD instead of losing the
//! line, and a valid line (nearly all of them) is checked at full speed and
//! borrowed, not copied.

/// `bytes` as text: borrowed when valid UTF-8, else written into `spare`
/// with each invalid sequence replaced by U+FFFD (`spare` is reused from
/// line to line, so a broken line costs no allocation either).
pub fn text<'a>(bytes: &'a [u8], spare: &'a mut String) -> &'a str {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => {
            spare.clear();
            for chunk in bytes.utf8_chunks() {
                spare.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    spare.push(char::REPLACEMENT_CHARACTER);
                }
            }
            spare
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_lines_are_borrowed_and_broken_ones_replaced() {
        let mut spare = String::new();
        let line = b"2024-05-01 10:00:00 <= a@b.example";
        assert!(std::ptr::eq(text(line, &mut spare).as_ptr(), line.as_ptr()));
        assert_eq!(
            text(b"T=\"caf\xe9\" x\xff", &mut spare),
            "T=\"caf\u{fffd}\" x\u{fffd}"
        );
    }
}
