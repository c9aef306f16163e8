//! Input format detection: what kind of file the user handed to `scan` or
//! `events`. Decided by content, never by name, because admins copy spool
//! files and save `exim -bp` output under whatever name comes to mind, while
//! a rotated mainlog keeps no telling extension.

use crate::queue::looks_like_listing_line;

/// What an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// An Exim main log (plain or gzip): the default.
    Mainlog,
    /// One spool header file (`<id>-H`).
    SpoolHeader,
    /// A spool directory (or its `input/`) of header files.
    SpoolDir,
    /// Saved `exim -bp` output.
    QueueListing,
}

impl InputKind {
    /// The name used in summaries: `mainlog`, `spool-header`, `spool-dir`,
    /// `queue-listing`.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Mainlog => "mainlog",
            InputKind::SpoolHeader => "spool-header",
            InputKind::SpoolDir => "spool-dir",
            InputKind::QueueListing => "queue-listing",
        }
    }
}

/// The kind of an input from its first bytes (see
/// [`input::HEAD`](crate::input::HEAD)): gzip is a rotated mainlog; a spool
/// header and a queue listing have telling first lines. Anything not
/// recognised is a mainlog, whose parser counts and reports the lines it
/// cannot read. (A directory is a spool; the caller knows that before it
/// reads a byte.)
pub fn detect_bytes(head: &[u8]) -> InputKind {
    // Only mainlogs are rotated and compressed.
    if head.starts_with(&[0x1f, 0x8b]) {
        return InputKind::Mainlog;
    }
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let second = lines.next().unwrap_or("");
    if is_spool_first_line(first) && is_login_line(second) {
        return InputKind::SpoolHeader;
    }
    if text
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(looks_like_listing_line)
    {
        return InputKind::QueueListing;
    }
    InputKind::Mainlog
}

/// `<message id>-H`: one word ending in `-H`.
fn is_spool_first_line(line: &str) -> bool {
    line.strip_suffix("-H")
        .is_some_and(|id| !id.is_empty() && !id.contains(char::is_whitespace))
}

/// `<login> <uid> <gid>`, numbers possibly negative.
fn is_login_line(line: &str) -> bool {
    let mut words = line.rsplitn(3, ' ');
    let number = |w: Option<&str>| {
        w.map(|w| w.strip_prefix('-').unwrap_or(w))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    number(words.next()) && number(words.next()) && words.next().is_some_and(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn spool_header_by_content_whatever_its_name() {
        let text = b"1aaabbcccdddee02-H\nexampleuser 1168 982\n<exampleuser@cpanel.example.test>\n1777409086 0\n";
        assert_eq!(detect_bytes(text), InputKind::SpoolHeader);
        assert_eq!(
            detect_bytes(b"1hIAif-00H7J4-Lb-H\r\nodd login 0 -1\r\n"),
            InputKind::SpoolHeader
        );
    }

    #[test]
    fn queue_listing_by_content() {
        for text in [
            "25m  2.9K 0t5C6f-0000c8-00 <alice@wonderland.fict.example>\n          red.king@looking-glass.fict.example\n",
            "\n\n 5m   367 1xWjHO-0003vo-0m <> *** frozen ***\n          a@b.example\n",
            "45s 512 1wHpIU-0000000G8Fo-1FA1 <x@y.example>\n",
        ] {
            assert_eq!(
                detect_bytes(text.as_bytes()),
                InputKind::QueueListing,
                "{text}"
            );
        }
    }

    #[test]
    fn mainlogs_including_ones_that_start_oddly() {
        for text in [
            "2019-04-21 04:33:14 1hIAif-00H7J4-Lb <= vani@teletek-intl.com U=telet4 P=local S=1\n",
            // A first line that ends in -H, but no `login uid gid` after it.
            "2019-04-21 04:33:14 exim arguments: -bd -H\n2019-04-21 04:33:14 1hIAif-00H7J4-Lb Completed\n",
            "1hIAif-00H7J4-Lb-H\n2019-04-21 04:33:14 1hIAif-00H7J4-Lb Completed\n",
            // Something like a listing line, but not at the start.
            "2019-04-21 04:33:14 Start queue run\n25m  2.9K 0t5C6f-0000c8-00 <a@b.example>\n",
            // Junk, binary, empty.
            "\u{0}\u{1}\u{2}garbage\n",
            "",
            "\n\n\n",
            "25m  2.9K not-an-id <a@b.example>\n",
        ] {
            assert_eq!(
                detect_bytes(text.as_bytes()),
                InputKind::Mainlog,
                "{text:?}"
            );
        }
        assert_eq!(
            detect_bytes(&[0xff, 0xfe, 0x00, b'-', b'H', b'\n', 0xc3]),
            InputKind::Mainlog
        );
    }

    #[test]
    fn gzip_is_a_mainlog_even_if_it_holds_a_listing() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"25m  2.9K 0t5C6f-0000c8-00 <a@b.example>\n")
            .unwrap();
        assert_eq!(detect_bytes(&e.finish().unwrap()), InputKind::Mainlog);
    }

    #[test]
    fn head_cut_inside_a_utf8_sequence_is_fine() {
        let mut bytes = b"25m  2.9K 0t5C6f-0000c8-00 <a@b.example>\n".to_vec();
        bytes.extend("é".repeat(3000).as_bytes());
        bytes.truncate(crate::input::HEAD - 1);
        assert_eq!(detect_bytes(&bytes), InputKind::QueueListing);
    }
}
