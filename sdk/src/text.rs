//! Words in the free text of events — delivery errors, refusal reasons,
//! subjects — matched ignoring ASCII case, since every mail server
//! capitalises its messages its own way.

/// Whether `haystack` contains any of `needles`, ignoring ASCII case.
/// `needles` are given in lower case.
///
/// One pass over the text: a position is compared with the needles only
/// when its byte starts one of them. The texts are short (a delivery
/// error, a subject) and the needles few: setting up the standard
/// library's substring search once per needle per text cost the rules
/// that match words more than the searching did.
pub fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    debug_assert!(
        needles
            .iter()
            .all(|n| !n.bytes().any(|b| b.is_ascii_uppercase())),
        "needles are given in lower case: {needles:?}"
    );
    let mut starts = [false; 256];
    for needle in needles {
        match needle.as_bytes().first() {
            Some(&first) => starts[usize::from(first)] = true,
            None => return true,
        }
    }
    let text = haystack.as_bytes();
    (0..text.len()).any(|at| {
        starts[usize::from(text[at].to_ascii_lowercase())]
            && needles.iter().any(|needle| {
                text[at..]
                    .get(..needle.len())
                    .is_some_and(|word| word.eq_ignore_ascii_case(needle.as_bytes()))
            })
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
        // At the very end, and a needle longer than what is left.
        assert!(contains("550 Over Quota", "quota"));
        assert!(!contains("550 over quot", "quota"));
        // Text that is not ASCII is searched byte by byte, never split.
        assert!(contains("Postfach voll — Quota überschritten", "quota"));
        assert!(contains("Quota überschritten", "über"));
    }
}
