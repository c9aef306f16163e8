//! The Exim queue as a source: spool `-H` header files (one message each, or
//! a whole spool directory) and the `exim -bp` listing. Both become
//! [`QueuedMessage`](spamward_model::QueuedMessage) events stamped with the
//! snapshot time the caller gives, so a saved copy of a queue replays exactly
//! like the live one.
//!
//! This module owns the two readers and the error they share; the
//! `queue-health`, `script-sender` and `nobody-sender` rules are their users.

mod listing;
mod spool;

pub use listing::{ListingParser, parse_queue_listing, run_exim_bp};
pub use spool::{
    MAX_HEADER_BYTES, data_file_size, list_header_files, parse_header_bytes, read_header_file,
    read_spool_dir,
};

pub(crate) use listing::looks_like_listing_line;

/// A queue input that could not be read, naming the file (or command) and
/// the 1-based line at fault (0 when the fault is not on a line, e.g. the
/// file could not be opened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {what}")]
pub struct QueueError {
    /// The file, directory or command, as given.
    pub path: String,
    /// 1-based line; 0 for the file as a whole.
    pub line: u64,
    /// What was wrong.
    pub what: String,
}

impl QueueError {
    pub(crate) fn new(path: impl Into<String>, line: u64, what: impl Into<String>) -> Self {
        QueueError {
            path: path.into(),
            line,
            what: what.into(),
        }
    }
}

/// Whether `id` has the shape of an Exim message id: the old 16-character
/// `XXXXXX-XXXXXX-XX`, the 4.97+ 23-character `XXXXXX-XXXXXXXXXXX-XXXX`, or an
/// anonymised id of that length and alphabet (CSM's fixtures drop the
/// dashes). Only used to *recognise* a listing line; `-H` files take their id
/// as written.
pub(crate) fn looks_like_message_id(id: &str) -> bool {
    (16..=23).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Decodes bytes that should be text but may not be UTF-8: invalid sequences
/// become U+FFFD instead of failing the whole input.
pub(crate) fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}
