//! Ingest: runs each input through the parser for its format and hands
//! every event to a sink, counting what could not be read.
//!
//! This is the one loop shared by `scan`, `events` and `bench`, so they see
//! exactly the same events. The format is detected from the content
//! ([`input`]): Exim mainlogs (plain or gzip), spool `-H` files, spool
//! directories and saved `exim -bp` listings, from files, pipes or standard
//! input.
//!
//! Reading one input never fails as a whole: what was read before a fault
//! (a truncated `.gz`, an unreadable file) still counts, and the fault is in
//! the [`FileSummary`], naming the input and the line.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use crate::detect::InputKind;
use crate::input::{self, Opened, Stream};
use crate::log_file::LogFile;
use crate::queue::{self, ListingParser, QueueError};
use crate::{EximLogParser, LineOutcome};
use spamward_model::{Event, LocalZone, Origin, Timestamp};

/// Unparsed lines kept as samples per file.
const SAMPLES: usize = 5;

/// Characters of an unparsed line kept in its sample.
const SAMPLE_CHARS: usize = 200;

/// How inputs are read.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// The zone logs write their local times in.
    pub zone: LocalZone,
    /// Once set, reading stops (between lines, or inside an endless line):
    /// what was read still counts and the summary says it was cut short.
    pub stop: Option<Arc<AtomicBool>>,
}

impl IngestOptions {
    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// What reading one input gave.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileSummary {
    /// The input as given.
    pub file: String,
    /// Its detected format: `mainlog`, `spool-header`, `spool-dir` or
    /// `queue-listing` (empty when it could not be opened).
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
    /// Lines longer than the line cap, cut to it.
    pub truncated: u64,
    /// Events whose recipient lists were cut to the per-event cap.
    pub capped: u64,
    /// Why reading stopped before the end, if it did; everything before
    /// counts.
    pub error: Option<String>,
    /// Whether reading was stopped on request (a signal).
    pub interrupted: bool,
}

impl FileSummary {
    fn new(file: String, kind: Option<InputKind>) -> Self {
        FileSummary {
            file,
            kind: kind.map_or_else(String::new, |k| k.name().to_owned()),
            ..FileSummary::default()
        }
    }

    fn unparsed(&mut self, line: u64, text: String) {
        self.unparsed += 1;
        if self.unparsed_samples.len() < SAMPLES {
            self.unparsed_samples.push((line, text));
        }
    }

    fn event(&mut self, mut event: Event, sink: &mut dyn FnMut(Event)) {
        self.capped += u64::from(event.cap_recipients());
        self.events += 1;
        sink(event);
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
            self.event(event, sink);
        }
    }

    /// Whether the input was read to its end without a fault.
    pub fn is_complete(&self) -> bool {
        self.error.is_none() && !self.interrupted
    }
}

/// Reads `path` (`-` for standard input) in whatever format it holds,
/// calling `sink` for each event and `progress(done, total)` now and then
/// (bytes for logs; `total` is unknown for a stream).
pub fn ingest_file(
    path: &Path,
    options: &IngestOptions,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> FileSummary {
    let opened = match input::open(path) {
        Ok(opened) => opened,
        Err(e) => {
            let mut summary = FileSummary::new(path.display().to_string(), None);
            summary.error = Some(e.to_string());
            return summary;
        }
    };
    match opened {
        Opened::Directory(dir) => ingest_spool_dir(&dir, options, sink, progress),
        Opened::Stream(stream) => match stream.kind {
            InputKind::Mainlog => ingest_mainlog(stream, options, sink, progress),
            InputKind::SpoolHeader => ingest_spool_header(stream, options, sink, progress),
            InputKind::QueueListing => ingest_queue_listing(stream, options, sink, progress),
            InputKind::SpoolDir => unreachable!("a stream is never a directory"),
        },
    }
}

/// An Exim mainlog, plain or gzip, line by line.
fn ingest_mainlog(
    stream: Stream,
    options: &IngestOptions,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> FileSummary {
    let file: Arc<str> = stream.name.display().to_string().into();
    let mut summary = FileSummary::new(file.to_string(), Some(InputKind::Mainlog));
    let mut log = LogFile::new(stream);
    if let Some(stop) = &options.stop {
        log.stop_on(stop.clone());
    }
    let mut parser = EximLogParser::in_zone(options.zone.clone());
    let mut out = Vec::with_capacity(8);
    let mut origin = Origin {
        file: file.clone(),
        line: 0,
    };
    loop {
        let line = match log.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                summary.error = Some(e.to_string());
                break;
            }
        };
        origin.line = line.number;
        summary.lines += 1;
        match parser.push_line(line.text, &origin, &mut out) {
            LineOutcome::Understood => {}
            LineOutcome::Ignored => summary.ignored += 1,
            LineOutcome::Unparsed => {
                summary.unparsed(line.number, line.text.chars().take(SAMPLE_CHARS).collect())
            }
        }
        for event in out.drain(..) {
            summary.event(event, sink);
        }
        if line.number % 65_536 == 0 {
            progress(log.bytes_read(), log.file_size());
        }
    }
    summary.interrupted = options.stopped();
    summary.truncated = log.truncated();
    parser.finish(&mut out);
    for event in out.drain(..) {
        summary.event(event, sink);
    }
    progress(log.bytes_read(), log.file_size());
    summary
}

/// One spool `-H` file, as a snapshot taken when it was last written.
fn ingest_spool_header(
    stream: Stream,
    options: &IngestOptions,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> FileSummary {
    let name = stream.name.display().to_string();
    let mut summary = FileSummary::new(name.clone(), Some(InputKind::SpoolHeader));
    let now = snapshot_time(stream.modified, &options.zone);
    let size = stream.file.as_deref().and_then(queue::data_file_size);
    let bytes = match stream.read_all(queue::MAX_HEADER_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => {
            summary.error = Some(e.to_string());
            return summary;
        }
    };
    let (events, errors) = match queue::parse_header_bytes(&bytes, &name, now, size) {
        Ok(event) => (vec![event], Vec::new()),
        Err(e) => (Vec::new(), vec![e]),
    };
    summary.lines = 1;
    summary.queue_results(events, errors, sink);
    progress(bytes.len() as u64, Some(bytes.len() as u64));
    summary
}

/// A spool directory; its snapshot time is that of its newest `-H` file,
/// the last moment the queue is known to have looked like this.
fn ingest_spool_dir(
    path: &Path,
    options: &IngestOptions,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> FileSummary {
    let mut summary = FileSummary::new(path.display().to_string(), Some(InputKind::SpoolDir));
    let (files, _) = queue::list_header_files(path);
    let modified = |p: &Path| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok();
    let newest = files
        .iter()
        .filter_map(|f| modified(f))
        .max()
        .or_else(|| modified(path));
    let now = snapshot_time(newest, &options.zone);
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
    progress(summary.lines, Some(summary.lines));
    summary
}

/// Saved `exim -bp` output, as a snapshot taken when it was saved, read
/// line by line like a log.
fn ingest_queue_listing(
    stream: Stream,
    options: &IngestOptions,
    sink: &mut dyn FnMut(Event),
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> FileSummary {
    let name = stream.name.display().to_string();
    let mut summary = FileSummary::new(name.clone(), Some(InputKind::QueueListing));
    let now = snapshot_time(stream.modified, &options.zone);
    let mut log = LogFile::new(stream);
    if let Some(stop) = &options.stop {
        log.stop_on(stop.clone());
    }
    let mut parser = ListingParser::new(&name, now);
    let mut events = Vec::new();
    loop {
        match log.next_line() {
            Ok(Some(line)) => {
                summary.lines += 1;
                parser.push_line(line.number, line.text, &mut events);
                for event in events.drain(..) {
                    summary.event(event, sink);
                }
            }
            Ok(None) => break,
            Err(e) => {
                summary.error = Some(e.to_string());
                break;
            }
        }
    }
    summary.interrupted = options.stopped();
    summary.truncated = log.truncated();
    let errors = parser.finish(&mut events);
    summary.queue_results(events, errors, sink);
    progress(log.bytes_read(), log.file_size());
    summary
}

/// When a snapshot was taken: its file's modification time, else now.
fn snapshot_time(modified: Option<SystemTime>, zone: &LocalZone) -> Timestamp {
    zone.at_system_time(modified.unwrap_or_else(SystemTime::now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_model::EventBody;

    fn ingest(path: &Path) -> (FileSummary, Vec<Event>) {
        let mut events = Vec::new();
        let mut calls = 0;
        let summary = ingest_file(
            path,
            &IngestOptions::default(),
            &mut |e| events.push(e),
            &mut |_, _| calls += 1,
        );
        assert!(calls > 0, "progress is reported at least once");
        (summary, events)
    }

    fn set_mtime(path: &Path, epoch: u64) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
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
        assert!(s.is_complete());
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
        // Two messages and the snapshot's tally (`queue-snapshot`).
        assert_eq!((s.lines, s.events, s.unparsed), (3, 3, 1));
        assert!(ev.iter().all(|e| e.time == Timestamp::naive(1_700_000_200)));
        assert_eq!(s.unparsed_samples[0].0, 1);
        assert!(
            s.unparsed_samples[0]
                .1
                .starts_with(&format!("{}: ", bad.display())),
            "{s:?}"
        );
    }

    /// Regression: a named pipe called `*-H` in a spool hung the reader
    /// forever.
    #[test]
    fn a_fifo_in_a_spool_is_reported_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("1hIAif-00H7J4-Lb-H"), HEADER).unwrap();
        let fifo = input.join("1hIAig-00H7J4-Lb-H");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo does not keep it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // And a link to it, which must not be followed into it either.
        std::os::unix::fs::symlink(&fifo, input.join("1hIAih-00H7J4-Lb-H")).unwrap();
        let (s, ev) = ingest(dir.path());
        // The message and the snapshot's tally.
        assert_eq!((s.events, s.unparsed), (2, 2), "{s:?}");
        assert!(ev.len() == 2);
        let texts: Vec<&str> = s.unparsed_samples.iter().map(|(_, t)| t.as_str()).collect();
        assert!(
            texts.iter().all(|t| t.contains("not a regular file")),
            "{texts:?}"
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
        // The message, then the snapshot's tally (`queue-snapshot`).
        assert_eq!((s.lines, s.events, s.unparsed), (4, 2, 1));
        assert_eq!(s.unparsed_samples[0].0, 4);
        assert_eq!(ev[0].time, Timestamp::naive(1_700_000_000));
        assert_eq!(ev[0].line, 1);
        assert_eq!(&*ev[0].file, p.display().to_string());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kind"], "queue-listing");
    }

    #[test]
    fn missing_input_is_a_summary_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope");
        let s = ingest_file(&p, &IngestOptions::default(), &mut |_| {}, &mut |_, _| {});
        assert!(!s.is_complete());
        assert!(
            s.error
                .as_deref()
                .unwrap()
                .starts_with(&format!("could not open {}: ", p.display())),
            "{s:?}"
        );
    }

    #[test]
    fn a_recipient_list_past_the_cap_is_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mainlog");
        let many: Vec<String> = (0..5000).map(|i| format!("r{i}@x.example")).collect();
        std::fs::write(
            &p,
            format!(
                "2019-04-21 04:33:14 1hIAif-00H7J4-Lb <= a@b.example U=u P=local S=1 for {}\n\
                 2019-04-21 04:33:15 1hIAig-00H7J4-Lb <= a@b.example U=u P=local S=1 for one@x.example\n",
                many.join(" ")
            ),
        )
        .unwrap();
        let (s, ev) = ingest(&p);
        assert_eq!((s.events, s.capped), (2, 1));
        let EventBody::MessageReceived(m) = &ev[0].body else {
            panic!()
        };
        assert_eq!(m.recipients.len(), spamward_model::MAX_RECIPIENTS);
        assert_eq!(m.recipients[999], "r999@x.example");
    }
}
