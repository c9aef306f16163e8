//! Words in the free text of events — delivery errors, refusal reasons,
//! subjects — matched ignoring ASCII case, since every mail server
//! capitalises its messages its own way.

use std::cell::RefCell;

thread_local! {
    /// The haystack in lower case, reused: a rule tests a text per event.
    static LOWER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Whether `haystack` contains any of `needles`, ignoring ASCII case.
/// `needles` are given in lower case.
///
/// The text is lower-cased once and searched with the standard library's
/// substring search, rather than compared position by position for each
/// needle.
pub fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    debug_assert!(
        needles
            .iter()
            .all(|n| !n.bytes().any(|b| b.is_ascii_uppercase())),
        "needles are given in lower case: {needles:?}"
    );
    LOWER.with(|lower| {
        let mut lower = lower.borrow_mut();
        lower.clear();
        lower.push_str(haystack);
        lower.make_ascii_lowercase();
        needles.iter().any(|n| lower.contains(n))
    })
}

/// Whether `haystack` contains `needle` (given in lower case), ignoring
/// ASCII case.
pub fn contains(haystack: &str, needle: &str) -> bool {
    contains_any(haystack, &[needle])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_is_ignored_in_the_text_and_every_needle_is_tried() {
        let error = "Mailbox Quota Exceeded (user@example.com)";
        assert!(contains(error, "quota exceeded"));
        assert!(contains_any(error, &["over quota", "quota exceeded"]));
        assert!(!contains_any(error, &["mailbox is full", "over quota"]));
        assert!(contains("x", ""));
        assert!(!contains("", "x"));
    }
}
