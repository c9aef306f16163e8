//! One followed main log: the file follower, the parser its lines go
//! through, and how far it has been read.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spamward_exim::{EximLogParser, LineOutcome, SavedMessage};
use spamward_files::tail::{Follower, Position, Resumed, Start};
use spamward_model::{Event, LocalZone, Origin};
use spamward_pipeline::config::StartAt;
use spamward_state::{MessageRow, SourceRow};

/// Bytes of log read at a time: about 4,000 lines, a few batches.
pub const READ_BUDGET: u64 = 512 << 10;

/// A main log being followed.
pub struct Source {
    path: PathBuf,
    file: Arc<str>,
    follower: Follower,
    parser: EximLogParser,
    /// Lines read from this log since it was first followed (the line
    /// numbers findings cite continue across restarts).
    lines: u64,
    /// Lines the parser could not read.
    unparsed: u64,
    /// Whether the last read found nothing new.
    idle: bool,
    /// Where a line that is not valid UTF-8 is mended (reused).
    lossy: String,
}

impl Source {
    /// Follows `path`, from where `saved` says it was read to (its parser
    /// remembering what it did then, with the `messages` kept beside the
    /// checkpoint), else from `start_at`; its times are read in `zone`.
    pub fn open(
        path: &Path,
        zone: LocalZone,
        saved: Option<&SourceRow>,
        messages: Vec<MessageRow>,
        start_at: StartAt,
    ) -> io::Result<Source> {
        let start = match saved {
            Some(row) => Start::At(Position {
                dev: row.dev,
                inode: row.inode,
                head: row.head.clone(),
                offset: row.offset,
            }),
            None if start_at == StartAt::Beginning => Start::Beginning,
            None => Start::End,
        };
        let (follower, resumed) = Follower::open(path, start)?;
        match &resumed {
            Resumed::Fresh | Resumed::Continued => {}
            Resumed::FromRotated(old) => tracing::info!(
                log = %path.display(),
                "rotated while stopped: reading the rest of {} first",
                old.display()
            ),
            Resumed::Restarted => tracing::warn!(
                log = %path.display(),
                "the file read before the stop is gone (rotated and removed?): reading the current one from its start"
            ),
        }
        let parser = match saved.filter(|r| !r.parser.is_empty()) {
            Some(row)
                if resumed == Resumed::Continued || matches!(resumed, Resumed::FromRotated(_)) =>
            {
                let messages = messages.into_iter().map(|m| SavedMessage {
                    id: m.id,
                    seq: m.seq,
                    info: m.info,
                });
                EximLogParser::restore(zone.clone(), &row.parser, messages).unwrap_or_else(|e| {
                    tracing::warn!(log = %path.display(), "saved parser state not readable, starting empty: {e}");
                    EximLogParser::in_zone(zone).tracking_changes()
                })
            }
            _ => EximLogParser::in_zone(zone).tracking_changes(),
        };
        Ok(Source {
            path: path.to_path_buf(),
            file: path.display().to_string().into(),
            follower,
            parser,
            lines: saved.map_or(0, |r| r.lines),
            unparsed: saved.map_or(0, |r| r.unparsed),
            idle: true,
            lossy: String::new(),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the complete lines appended since the last call, up to about
    /// [`READ_BUDGET`] bytes; the events they make are appended to `out`.
    /// Returns whether more is waiting (a backlog is read in pieces, so
    /// what it becomes is never held all at once).
    pub fn read(&mut self, out: &mut Vec<Event>) -> io::Result<bool> {
        let Source {
            file,
            follower,
            parser,
            lines,
            unparsed,
            lossy,
            ..
        } = self;
        let before = *lines;
        let stats = follower.poll_some(READ_BUDGET, &mut |bytes: &[u8]| {
            *lines += 1;
            let text = spamward_files::line::text(bytes, lossy);
            let origin = Origin {
                file: file.clone(),
                line: *lines,
            };
            if parser.push_line(text.trim_end_matches('\r'), &origin, out) == LineOutcome::Unparsed
            {
                *unparsed += 1;
            }
        })?;
        self.idle = *lines == before;
        Ok(stats.more)
    }

    /// Whether the last read found nothing new.
    pub fn idle(&self) -> bool {
        self.idle
    }

    /// Hands over the events the parser still holds for a join (on stop:
    /// they would otherwise be lost with the process).
    pub fn release(&mut self, out: &mut Vec<Event>) {
        self.parser.finish(out);
    }

    /// Where this log has been read to, for a checkpoint (with what its
    /// parser remembers besides messages). `None` before the file was ever
    /// seen.
    pub fn checkpoint(&self) -> Option<SourceRow> {
        let p = self.follower.position()?;
        Some(SourceRow {
            path: self.path.display().to_string(),
            dev: p.dev,
            inode: p.inode,
            head: p.head,
            offset: p.offset,
            lines: self.lines,
            unparsed: self.unparsed,
            parser: self.parser.save_core(),
        })
    }

    /// The messages its parser remembered, changed or forgot since the
    /// last checkpoint, one at a time, to be saved with it.
    pub fn changed_messages(&mut self) -> impl Iterator<Item = MessageRow> + '_ {
        let source = self.path.display().to_string();
        self.parser.drain_changed().map(move |m| MessageRow {
            source: source.clone(),
            id: m.id,
            seq: m.seq,
            info: m.info,
        })
    }

    /// The changes handed over last were not saved: the next checkpoint
    /// saves every message the parser remembers.
    pub fn resave_messages(&mut self) {
        self.parser.mark_all_changed();
    }
}
