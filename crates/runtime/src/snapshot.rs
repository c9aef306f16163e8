//! What the daemon reads besides its logs: the server's configuration
//! state (every `[daemon] server_every`, and at once when one of its files
//! changes) and Exim's queue (every `[daemon] queue_every`).
//!
//! Both are read off the event path, and only once the logs are caught up:
//! their events carry the present time, which a backlog's events have not
//! reached yet, and a rule's windows expect time to move forward.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use spamward_exim::queue;
use spamward_model::{Event, EventBody, HostLookups, LocalZone};

/// At most this many queued messages are read per snapshot: past it the
/// queue's limits are long crossed, and a snapshot is held in memory whole.
pub const MAX_QUEUED: usize = 100_000;

/// Reads the server's configuration state, and tells whether it changed
/// since the last read.
#[derive(Debug)]
pub struct ServerReader {
    root: PathBuf,
    zone: LocalZone,
    /// What the last read found: each event's file, line and body.
    last: Option<Vec<(Arc<str>, u64, EventBody)>>,
    /// The problems the last read met, said once until they change.
    problems: Vec<String>,
}

/// The server's state as read again, when it changed.
#[derive(Debug)]
pub struct ServerState {
    /// Every event of the read, in the reader's order (suEXEC before the
    /// PHP handlers it qualifies).
    pub events: Vec<Event>,
    /// The domains and owners the read describes.
    pub lookups: HostLookups,
}

impl ServerReader {
    /// A reader of the server under `root`, stamping its events in `zone`.
    pub fn new(root: PathBuf, zone: LocalZone) -> Self {
        ServerReader {
            root,
            zone,
            last: None,
            problems: Vec::new(),
        }
    }

    /// Reads the server state now; `None` when it is what the last read
    /// found (the rules already judged it). Problems met are logged when
    /// they differ from the last read's.
    pub fn read(&mut self) -> Option<ServerState> {
        let now = self.zone.at_system_time(SystemTime::now());
        let mut events = Vec::new();
        let report = spamward_cpanel::read_server_state(&self.root, now, &mut events);
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        if problems != self.problems {
            for problem in &problems {
                tracing::warn!("server state: {problem}");
            }
            self.problems = problems;
        }
        let found: Vec<_> = events
            .iter()
            .map(|e| (e.file.clone(), e.line, e.body.clone()))
            .collect();
        if self.last.as_ref() == Some(&found) {
            return None;
        }
        self.last = Some(found);
        let lookups = HostLookups::from_events(&events);
        Some(ServerState { events, lookups })
    }
}

/// Reads Exim's queue: the spool's `-H` files, or `exim -bp` when there is
/// no readable spool.
#[derive(Debug)]
pub struct QueueReader {
    spool: Option<PathBuf>,
    exim: Option<PathBuf>,
    zone: LocalZone,
}

impl QueueReader {
    /// A reader of `spool` (a spool directory or its `input/`); without
    /// one, or when it cannot be listed, of `exim -bp` (when `exim` is
    /// given).
    pub fn new(spool: Option<PathBuf>, exim: Option<PathBuf>, zone: LocalZone) -> Self {
        QueueReader { spool, exim, zone }
    }

    /// Whether there is anything to read the queue from.
    pub fn is_available(&self) -> bool {
        self.spool.is_some() || self.exim.is_some()
    }

    /// One snapshot of the queue: one `queued-message` event per message,
    /// all at the same time (at most [`MAX_QUEUED`]). Files or lines that
    /// could not be read are logged; an `Err` says why there is no
    /// snapshot at all.
    pub fn read(&self) -> Result<Vec<Event>, String> {
        let now = self.zone.at_system_time(SystemTime::now());
        let mut events = Vec::new();
        let errors = match (self.readable_spool(), &self.exim) {
            (Some(spool), _) => queue::read_spool_dir(spool, now, &mut events),
            (None, Some(exim)) => {
                queue::run_exim_bp(exim, now, &mut events).map_err(|e| e.to_string())?
            }
            (None, None) => {
                return Err(match &self.spool {
                    Some(spool) => format!("{}: cannot be read", spool.display()),
                    None => "no spool directory and no Exim binary".to_owned(),
                });
            }
        };
        if !errors.is_empty() {
            tracing::warn!(
                "queue: {} entries not read, the first: {}",
                errors.len(),
                errors[0]
            );
        }
        if events.len() > MAX_QUEUED {
            tracing::warn!(
                "queue: {} messages, the first {MAX_QUEUED} judged",
                events.len()
            );
            events.truncate(MAX_QUEUED);
        }
        Ok(events)
    }

    /// The spool, when its directory can be listed.
    fn readable_spool(&self) -> Option<&Path> {
        let spool = self.spool.as_deref()?;
        let input = spool.join("input");
        let dir = if input.is_dir() { &input } else { spool };
        std::fs::read_dir(dir).is_ok().then_some(spool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_state_is_handed_over_only_when_it_changed() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir_all(etc.join("valiases")).unwrap();
        std::fs::write(etc.join("userdomains"), "shop.example: shop\n").unwrap();
        let mut reader = ServerReader::new(root.path().to_path_buf(), LocalZone::utc());
        let first = reader.read().expect("the first read is news");
        assert_eq!(first.lookups.domain_owner("shop.example"), Some("shop"));
        assert!(reader.read().is_none(), "nothing changed");

        std::fs::write(
            etc.join("valiases/shop.example"),
            "*: :fail: no such user\n",
        )
        .unwrap();
        let changed = reader.read().expect("a new alias file");
        assert!(
            changed
                .events
                .iter()
                .any(|e| matches!(&e.body, EventBody::MailAlias(_))),
            "{:?}",
            changed.events
        );
        assert!(reader.read().is_none());
    }

    #[test]
    fn a_queue_is_read_from_the_spool_and_an_unreadable_one_says_so() {
        let spool = tempfile::tempdir().unwrap();
        let input = spool.path().join("input");
        std::fs::create_dir_all(&input).unwrap();
        let reader = QueueReader::new(Some(spool.path().to_path_buf()), None, LocalZone::utc());
        assert_eq!(reader.read().unwrap().len(), 0, "an empty queue");

        let gone = QueueReader::new(Some(spool.path().join("nowhere")), None, LocalZone::utc());
        let e = gone.read().unwrap_err();
        assert!(e.contains("nowhere: cannot be read"), "{e}");
        assert!(!QueueReader::new(None, None, LocalZone::utc()).is_available());
    }
}
