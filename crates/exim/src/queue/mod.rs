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

use spamward_model::event::extension_kind;
use spamward_model::{Event, EventBody, Extension, Origin, QueuedMessage, Text, Timestamp};

/// What a whole-queue snapshot held, counted as its messages are read and
/// sent after them as a `queue-snapshot` extension event: a share of the
/// queue can only be judged once the queue's size is known.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotTally {
    messages: u64,
    frozen: u64,
    bounces: u64,
    frozen_bounces: u64,
}

impl SnapshotTally {
    /// Counts one queued message.
    pub fn count(&mut self, q: &QueuedMessage) {
        self.messages += 1;
        self.frozen += u64::from(q.frozen);
        self.bounces += u64::from(q.bounce);
        self.frozen_bounces += u64::from(q.frozen && q.bounce);
    }

    /// The summary event, at the snapshot's time `now`, from `source` (the
    /// spool directory or the listing); none for an empty queue, of which
    /// there is no share to judge.
    pub fn event(&self, now: Timestamp, source: &str) -> Option<Event> {
        if self.messages == 0 {
            return None;
        }
        let field = |k: &str, v: u64| (Text::owned(k), Text::owned(&v.to_string()));
        let origin = Origin {
            file: source.into(),
            line: 0,
        };
        Some(Event::new(
            now,
            &origin,
            EventBody::Extension(Extension {
                kind: Text::owned(extension_kind::QUEUE_SNAPSHOT),
                fields: vec![
                    field("messages", self.messages),
                    field("frozen", self.frozen),
                    field("bounces", self.bounces),
                    field("frozen_bounces", self.frozen_bounces),
                ],
            }),
        ))
    }
}

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

#[cfg(test)]
/// The queued messages of `out`, checking that the `queue-snapshot` event
/// closes them (when there are any) and counts them.
pub(crate) fn messages_and_tally(out: &mut Vec<Event>) -> Vec<QueuedMessage> {
    let tally = match out.last().map(|e| &e.body) {
        Some(EventBody::Extension(x)) if x.kind == "queue-snapshot" => Some(
            x.fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    if tally.is_some() {
        out.pop();
    }
    let msgs: Vec<QueuedMessage> = out
        .iter()
        .map(|e| match &e.body {
            EventBody::QueuedMessage(q) => q.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let count = |f: fn(&QueuedMessage) -> bool| msgs.iter().filter(|m| f(m)).count();
    let want = (!msgs.is_empty()).then(|| {
        vec![
            format!("messages={}", msgs.len()),
            format!("frozen={}", count(|m| m.frozen)),
            format!("bounces={}", count(|m| m.bounce)),
            format!("frozen_bounces={}", count(|m| m.frozen && m.bounce)),
        ]
    });
    assert_eq!(tally, want, "the snapshot's tally");
    msgs
}
