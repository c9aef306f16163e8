//! Ingest: runs each input file through the parser for its format and hands
//! every event to a sink, counting lines that could not be read.
//!
//! This is the one loop shared by `scan`, `events` and `bench`, so they see
//! exactly the same events.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::normalize::{Event, EximLogParser, LineOutcome, Origin};
use crate::sources::log_file::{LogFile, SourceError};

/// Unparsed lines kept as samples per file.
const SAMPLES: usize = 5;

/// What reading one file gave.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileSummary {
    /// The file as given.
    pub file: String,
    /// Lines read.
    pub lines: u64,
    /// Events produced.
    pub events: u64,
    /// Known lines that carry nothing for the rules.
    pub ignored: u64,
    /// Lines that could not be read.
    pub unparsed: u64,
    /// The first few unparsed lines: (line number, text).
    pub unparsed_samples: Vec<(u64, String)>,
}

/// Reads `path` as an Exim mainlog (plain or gzip), calling `sink` for each
/// event and `progress(bytes_read)` now and then.
pub fn ingest_file(
    path: &Path,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FileSummary, SourceError> {
    let mut log = LogFile::open(path)?;
    let file: Arc<str> = path.display().to_string().into();
    let mut summary = FileSummary {
        file: file.to_string(),
        ..FileSummary::default()
    };
    let mut parser = EximLogParser::new();
    let mut out = Vec::with_capacity(8);
    let mut origin = Origin {
        file: file.clone(),
        line: 0,
    };
    while let Some((number, line)) = log.next_line()? {
        origin.line = number;
        summary.lines += 1;
        match parser.push_line(line, &origin, &mut out) {
            LineOutcome::Understood => {}
            LineOutcome::Ignored => summary.ignored += 1,
            LineOutcome::Unparsed => {
                summary.unparsed += 1;
                if summary.unparsed_samples.len() < SAMPLES {
                    summary
                        .unparsed_samples
                        .push((number, line.chars().take(200).collect()));
                }
            }
        }
        for event in out.drain(..) {
            summary.events += 1;
            sink(event);
        }
        if number % 65_536 == 0 {
            progress(log.bytes_read(), log.len());
        }
    }
    parser.finish(&mut out);
    for event in out.drain(..) {
        summary.events += 1;
        sink(event);
    }
    progress(log.bytes_read(), log.len());
    Ok(summary)
}
