//! Ingest: runs each input file through the parser for its format and hands
//! every event to a sink, counting lines that could not be read.
//!
//! This is the one loop shared by `scan`, `events` and `bench`, so they see
//! exactly the same events. The format is detected from the content
//! ([`detect`]): Exim mainlogs (plain or gzip), spool `-H` files, spool
//! directories and saved `exim -bp` listings.

use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::normalize::{Event, EximLogParser, LineOutcome, Origin, Timestamp};
use crate::sources::detect::{InputKind, detect};
use crate::sources::log_file::{LogFile, SourceError};
use crate::sources::queue::{self, QueueError};

/// Unparsed lines kept as samples per file.
const SAMPLES: usize = 5;

/// What reading one file gave.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileSummary {
    /// The file as given.
    pub file: String,
    /// Its detected format: `mainlog`, `spool-header`, `spool-dir` or
    /// `queue-listing`.
    pub kind: String,
    /// Lines read (for a spool directory: header files read).
    pub lines: u64,
    /// Events produced.
    pub events: u64,
    /// Known lines that carry nothing for the rules.
    pub ignored: u64,
    /// Lines (or spool files) that could not be read.
    pub unparsed: u64,
    /// The first few unparsed lines: (line number, text or error).
    pub unparsed_samples: Vec<(u64, String)>,
}

impl FileSummary {
    fn new(path: &Path, kind: InputKind) -> Self {
        FileSummary {
            file: path.display().to_string(),
            kind: kind.name().to_owned(),
            ..FileSummary::default()
        }
    }

    fn unparsed(&mut self, line: u64, text: String) {
        self.unparsed += 1;
        if self.unparsed_samples.len() < SAMPLES {
            self.unparsed_samples.push((line, text));
        }
    }

    /// Counts queue events and errors. In a directory the error's file is
    /// not the summary's, so the sample names it.
    fn queue_results(
        &mut self,
        events: Vec<Event>,
        errors: Vec<QueueError>,
        sink: &mut dyn FnMut(Event),
    ) {
        for e in errors {
            let text = if e.path == self.file {
                e.what
            } else {
                format!("{}: {}", e.path, e.what)
            };
            self.unparsed(e.line, text);
        }
        for event in events {
            self.events += 1;
            sink(event);
        }
    }
}

/// Reads `path` in whatever format it holds, calling `sink` for each event
/// and `progress(done, total)` now and then (bytes for logs).
pub fn ingest_file(
    path: &Path,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FileSummary, SourceError> {
    let open_err = |source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    };
    match detect(path).map_err(open_err)? {
        InputKind::Mainlog => ingest_mainlog(path, sink, progress),
        InputKind::SpoolHeader => Ok(ingest_spool_header(path, sink, progress)),
        InputKind::SpoolDir => Ok(ingest_spool_dir(path, sink, progress)),
        InputKind::QueueListing => ingest_queue_listing(path, sink, progress),
    }
}

/// An Exim mainlog, plain or gzip, line by line.
fn ingest_mainlog(
    path: &Path,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FileSummary, SourceError> {
    let mut log = LogFile::open(path)?;
    let file: Arc<str> = path.display().to_string().into();
    let mut summary = FileSummary::new(path, InputKind::Mainlog);
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
            LineOutcome::Unparsed => summary.unparsed(number, line.chars().take(200).collect()),
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

/// One spool `-H` file, as a snapshot taken when it was last written.
fn ingest_spool_header(
    path: &Path,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, u64),
) -> FileSummary {
    let mut summary = FileSummary::new(path, InputKind::SpoolHeader);
    let now = mtime(path).unwrap_or(Timestamp::naive(0));
    let (events, errors) = match queue::read_header_file(path, now) {
        Ok(event) => (vec![event], Vec::new()),
        Err(e) => (Vec::new(), vec![e]),
    };
    summary.lines = 1;
    summary.queue_results(events, errors, sink);
    progress(1, 1);
    summary
}

/// A spool directory; its snapshot time is that of its newest `-H` file,
/// the last moment the queue is known to have looked like this.
fn ingest_spool_dir(
    path: &Path,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, u64),
) -> FileSummary {
    let mut summary = FileSummary::new(path, InputKind::SpoolDir);
    let (files, _) = queue::list_header_files(path);
    let now = files
        .iter()
        .filter_map(|f| mtime(f))
        .max()
        .or_else(|| mtime(path))
        .unwrap_or(Timestamp::naive(0));
    let mut events = Vec::new();
    let errors = queue::read_spool_dir(path, now, &mut events);
    summary.lines = files.len() as u64;
    // An empty queue is normal, but a directory that is no spool at all
    // (say, the log directory) must not pass for one silently.
    let is_spool = path.join("input").is_dir() || path.file_name().is_some_and(|n| n == "input");
    if files.is_empty() && errors.is_empty() && !is_spool {
        summary.unparsed(
            0,
            "not an Exim spool: no `input/` and no `*-H` files".to_owned(),
        );
    }
    summary.queue_results(events, errors, sink);
    progress(summary.lines, summary.lines);
    summary
}

/// Saved `exim -bp` output, as a snapshot taken when it was saved.
fn ingest_queue_listing(
    path: &Path,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FileSummary, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut summary = FileSummary::new(path, InputKind::QueueListing);
    let now = mtime(path).unwrap_or(Timestamp::naive(0));
    let mut events = Vec::new();
    let errors = queue::parse_queue_listing(&text, &summary.file, now, &mut events);
    summary.lines = text.lines().count() as u64;
    summary.queue_results(events, errors, sink);
    progress(bytes.len() as u64, bytes.len() as u64);
    Ok(summary)
}

/// A file's modification time as a naive timestamp: the UTC wall clock, the
/// same clock the spool's received times count on.
fn mtime(path: &Path) -> Option<Timestamp> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let seconds = match modified.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_secs()).ok()?,
    };
    Some(Timestamp::naive(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::EventBody;

    fn ingest(path: &Path) -> (FileSummary, Vec<Event>) {
        let mut events = Vec::new();
        let mut calls = 0;
        let summary = ingest_file(path, &mut |e| events.push(e), &mut |_, _| calls += 1).unwrap();
        assert!(calls > 0, "progress is reported at least once");
        (summary, events)
    }

    fn set_mtime(path: &Path, epoch: u64) {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(epoch);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    const HEADER: &str = "1hIAif-00H7J4-Lb-H\nwebacct 1001 1001\n<a@b.example>\n1700000000 0\n-local\nXX\n1\nr@x.example\n\n012  Subject: hi\n";

    #[test]
    fn mainlog_still_goes_through_the_log_parser() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mainlog");
        std::fs::write(
            &p,
            "2019-04-21 04:33:14 1hIAif-00H7J4-Lb <= a@b.example U=webacct P=local S=1 for r@x.example\nnot a log line\n",
        )
        .unwrap();
        let (s, ev) = ingest(&p);
        assert_eq!(s.kind, "mainlog");
        assert_eq!((s.lines, s.events, s.unparsed), (2, 1, 1));
        assert_eq!(s.unparsed_samples, [(2, "not a log line".to_owned())]);
        assert_eq!(ev[0].kind().name(), "message_received");
    }

    #[test]
    fn spool_header_file_at_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("saved.H");
        std::fs::write(&p, HEADER).unwrap();
        set_mtime(&p, 1_700_000_090);
        let (s, ev) = ingest(&p);
        assert_eq!(s.kind, "spool-header");
        assert_eq!((s.lines, s.events, s.unparsed), (1, 1, 0));
        assert_eq!(ev[0].time, Timestamp::naive(1_700_000_090));
        let EventBody::QueuedMessage(m) = &ev[0].body else {
            panic!()
        };
        assert_eq!(m.age_seconds, 90);

        // A broken header file is one unparsed item naming the line.
        std::fs::write(&p, "1hIAif-00H7J4-Lb-H\nwebacct 1001 1001\nno brackets\n").unwrap();
        let (s, ev) = ingest(&p);
        assert_eq!(s.kind, "spool-header");
        assert!(ev.is_empty());
        assert_eq!(s.unparsed, 1);
        assert_eq!(s.unparsed_samples[0].0, 3);
        assert!(
            s.unparsed_samples[0]
                .1
                .starts_with("expected the envelope sender"),
            "{s:?}"
        );
    }

    #[test]
    fn spool_dir_at_its_newest_header() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        std::fs::create_dir_all(input.join("b")).unwrap();
        let a = input.join("1hIAif-00H7J4-Lb-H");
        let b = input.join("b/1hIAib-00H7J4-Lb-H");
        let bad = input.join("b/1hIAic-00H7J4-Lb-H");
        std::fs::write(&a, HEADER).unwrap();
        std::fs::write(&b, HEADER.replace("1hIAif", "1hIAib")).unwrap();
        std::fs::write(&bad, "junk").unwrap();
        set_mtime(&a, 1_700_000_100);
        set_mtime(&b, 1_700_000_200);
        set_mtime(&bad, 1_700_000_050);
        let (s, ev) = ingest(dir.path());
        assert_eq!(s.kind, "spool-dir");
        assert_eq!((s.lines, s.events, s.unparsed), (3, 2, 1));
        assert!(ev.iter().all(|e| e.time == Timestamp::naive(1_700_000_200)));
        assert_eq!(s.unparsed_samples[0].0, 1);
        assert!(
            s.unparsed_samples[0]
                .1
                .starts_with(&format!("{}: ", bad.display())),
            "{s:?}"
        );
    }

    #[test]
    fn directory_that_is_no_spool_is_reported_an_empty_spool_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mainlog"), "x\n").unwrap();
        let (s, ev) = ingest(dir.path());
        assert!(ev.is_empty());
        assert_eq!(s.unparsed, 1);
        assert!(
            s.unparsed_samples[0].1.starts_with("not an Exim spool"),
            "{s:?}"
        );

        std::fs::create_dir(dir.path().join("input")).unwrap();
        let (s, ev) = ingest(dir.path());
        assert!(ev.is_empty());
        assert_eq!((s.kind.as_str(), s.unparsed), ("spool-dir", 0));
    }

    #[test]
    fn queue_listing_at_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mailq.txt");
        std::fs::write(
            &p,
            "25m  2.9K 0t5C6f-0000c8-00 <alice@x.example>\n          r@y.example\n\nstray\n",
        )
        .unwrap();
        set_mtime(&p, 1_700_000_000);
        let (s, ev) = ingest(&p);
        assert_eq!(s.kind, "queue-listing");
        assert_eq!((s.lines, s.events, s.unparsed), (4, 1, 1));
        assert_eq!(s.unparsed_samples[0].0, 4);
        assert_eq!(ev[0].time, Timestamp::naive(1_700_000_000));
        assert_eq!(ev[0].line, 1);
        assert_eq!(&*ev[0].file, p.display().to_string());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kind"], "queue-listing");
    }

    #[test]
    fn missing_input_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope");
        let err = ingest_file(&p, &mut |_| {}, &mut |_, _| {}).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("could not open {}: ", p.display()))
        );
    }
}
