//! One followed main log: the file follower, the parser its lines go
//! through, and how far it has been read.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spamward_exim::{EximLogParser, LineOutcome};
use spamward_files::tail::{Follower, Position, Resumed, Start};
use spamward_model::{Event, LocalZone, Origin};
use spamward_pipeline::config::StartAt;
use spamward_state::SourceRow;

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
}

impl Source {
    /// Follows `path`, from where `saved` says it was read to, else from
    /// `start_at`; its times are read in `zone`.
    pub fn open(
        path: &Path,
        zone: LocalZone,
        saved: Option<&SourceRow>,
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
        Ok(Source {
            path: path.to_path_buf(),
            file: path.display().to_string().into(),
            follower,
            parser: EximLogParser::in_zone(zone),
            lines: saved.map_or(0, |r| r.lines),
            unparsed: saved.map_or(0, |r| r.unparsed),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every complete line appended since the last call; the events
    /// they make are appended to `out`. Returns the lines read.
    pub fn read(&mut self, out: &mut Vec<Event>) -> io::Result<u64> {
        let Source {
            file,
            follower,
            parser,
            lines,
            unparsed,
            ..
        } = self;
        let before = *lines;
        follower.poll(&mut |bytes: &[u8]| {
            *lines += 1;
            let text = String::from_utf8_lossy(bytes);
            let origin = Origin {
                file: file.clone(),
                line: *lines,
            };
            if parser.push_line(text.trim_end_matches('\r'), &origin, out) == LineOutcome::Unparsed
            {
                *unparsed += 1;
            }
        })?;
        Ok(*lines - before)
    }

    /// Hands over the events the parser still holds for a join (on stop:
    /// they would otherwise be lost with the process).
    pub fn release(&mut self, out: &mut Vec<Event>) {
        self.parser.finish(out);
    }

    /// Where this log has been read to, for a checkpoint; `None` before the
    /// file was ever seen.
    pub fn row(&self) -> Option<SourceRow> {
        let p = self.follower.position()?;
        Some(SourceRow {
            path: self.path.display().to_string(),
            dev: p.dev,
            inode: p.inode,
            head: p.head,
            offset: p.offset,
            lines: self.lines,
            unparsed: self.unparsed,
            parser: Vec::new(),
        })
    }
}
