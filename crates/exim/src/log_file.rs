//! Reading a log line by line: plain or gzip-compressed (told by its first
//! bytes, so a rotated `mainlog.1.gz` needs no flag), from a file or any
//! stream, tolerant of `\r\n` endings and of bytes that are not UTF-8, with
//! 1-based line numbers and a count of bytes consumed for progress.
//!
//! Memory is bounded whatever the input: a line longer than [`MAX_LINE`]
//! bytes keeps its first `MAX_LINE` bytes, the rest is skipped as it streams
//! by, and the line is counted as truncated. Exim itself never writes a
//! line longer than 8 KiB, so only garbage (a binary file, `/dev/zero`, a
//! decompression bomb) is ever cut.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::input::{self, Opened, SourceError, Stream};
use spamward_files::gzip::GzipMembers;

/// Read buffer size: large enough that per-call overhead vanishes on
/// multi-gigabyte logs.
const BUF_SIZE: usize = 256 * 1024;

/// The longest line kept, in bytes; longer lines are cut to this.
pub const MAX_LINE: usize = 64 * 1024;

/// One line of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number.
    pub number: u64,
    /// The text, without its line ending; invalid UTF-8 replaced by U+FFFD.
    pub text: &'a str,
    /// Whether the line was longer than [`MAX_LINE`] and cut.
    pub truncated: bool,
}

/// A log opened for line-by-line reading.
pub struct LogFile {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    count: Arc<AtomicU64>,
    len: Option<u64>,
    gzip: bool,
    line: u64,
    truncated: u64,
    stop: Option<Arc<AtomicBool>>,
    buf: Vec<u8>,
    lossy: String,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.path)
            .field("gzip", &self.gzip)
            .field("line", &self.line)
            .field("bytes_read", &self.bytes_read())
            .field("len", &self.len)
            .finish()
    }
}

impl LogFile {
    /// Opens the file at `path` (`-` for standard input).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let path = path.as_ref();
        match input::open(path)? {
            Opened::Stream(stream) => Ok(LogFile::new(stream)),
            Opened::Directory(_) => Err(SourceError::Unusable {
                path: path.to_path_buf(),
                what: "is a directory, not a log".into(),
            }),
        }
    }

    /// Reads the log in `stream`, decompressing it if it is gzip.
    pub fn new(stream: Stream) -> Self {
        let path = stream.name.clone();
        let count = stream.counter();
        let len = stream.len;
        let gzip = stream.gzip;
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                BUF_SIZE,
                GzipMembers::new(BufReader::with_capacity(BUF_SIZE, stream)),
            ))
        } else {
            Box::new(BufReader::with_capacity(BUF_SIZE, stream))
        };
        LogFile {
            path,
            reader,
            count,
            len,
            gzip,
            line: 0,
            truncated: 0,
            stop: None,
            buf: Vec::with_capacity(1024),
            lossy: String::new(),
        }
    }

    /// Stops reading (the next call ends the log) once `stop` is set, even in
    /// the middle of an endless line.
    pub fn stop_on(&mut self, stop: Arc<AtomicBool>) {
        self.stop = Some(stop);
    }

    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// The next line; `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>, SourceError> {
        if self.stopped() {
            return Ok(None);
        }
        self.buf.clear();
        let mut seen = false;
        let mut cut = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(cause) => {
                    return Err(SourceError::Read {
                        path: self.path.clone(),
                        line: self.line + 1,
                        cause,
                    });
                }
            };
            if available.is_empty() {
                break;
            }
            seen = true;
            let newline = memchr::memchr(b'\n', available);
            let content = newline.unwrap_or(available.len());
            let room = MAX_LINE - self.buf.len();
            self.buf.extend_from_slice(&available[..content.min(room)]);
            cut |= content > room;
            self.reader.consume(newline.map_or(content, |i| i + 1));
            if newline.is_some() {
                break;
            }
            // Only a cut line can run on without end (`/dev/zero`): that is
            // where a stop request must be heard. The line read so far is
            // the last one.
            if cut && self.stopped() {
                break;
            }
        }
        if !seen {
            return Ok(None);
        }
        self.line += 1;
        if cut {
            self.truncated += 1;
        } else if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let text = spamward_files::line::text(&self.buf, &mut self.lossy);
        Ok(Some(Line {
            number: self.line,
            text,
            truncated: cut,
        }))
    }

    /// The input as shown in messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the log is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Number of the last line returned (0 before the first).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Lines cut at [`MAX_LINE`] so far.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Bytes of the input consumed so far (compressed bytes for gzip;
    /// read-ahead included), for a progress bar against [`LogFile::file_size`].
    pub fn bytes_read(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Size of the file when it was opened; `None` for a stream.
    pub fn file_size(&self) -> Option<u64> {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn stream(bytes: Vec<u8>) -> LogFile {
        LogFile::new(Stream::sniff("pipe".into(), Box::new(Cursor::new(bytes))).unwrap())
    }

    fn all_lines(f: &mut LogFile) -> Result<Vec<(u64, String)>, SourceError> {
        let mut v = Vec::new();
        while let Some(l) = f.next_line()? {
            v.push((l.number, l.text.to_owned()));
        }
        Ok(v)
    }

    #[test]
    fn plain_file_crlf_and_last_line_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "mainlog", b"one\r\ntwo\n\nthree");
        let mut f = LogFile::open(&p).unwrap();
        assert!(!f.is_gzip());
        assert_eq!(f.file_size(), Some(15));
        let lines = all_lines(&mut f).unwrap();
        assert_eq!(
            lines,
            vec![
                (1, "one".into()),
                (2, "two".into()),
                (3, "".into()),
                (4, "three".into())
            ]
        );
        assert_eq!(f.bytes_read(), 15);
        assert_eq!(f.line(), 4);
        assert!(f.next_line().unwrap().is_none());
    }

    #[test]
    fn gzip_detected_by_magic_even_without_extension() {
        let dir = tempfile::tempdir().unwrap();
        let data = gz(b"a\nb\n");
        let p = write(&dir, "mainlog.1", &data);
        let mut f = LogFile::open(&p).unwrap();
        assert!(f.is_gzip());
        let lines = all_lines(&mut f).unwrap();
        assert_eq!(lines, vec![(1, "a".into()), (2, "b".into())]);
        assert_eq!(f.bytes_read(), data.len() as u64);
        assert_eq!(f.file_size(), Some(data.len() as u64));
    }

    #[test]
    fn a_stream_loses_nothing_to_format_detection() {
        let text: String = (0..4000).map(|i| format!("line {i}\n")).collect();
        let lines = all_lines(&mut stream(text.clone().into_bytes())).unwrap();
        assert_eq!(lines.len(), 4000);
        assert_eq!(lines[0].1, "line 0");
        let lines = all_lines(&mut stream(gz(text.as_bytes()))).unwrap();
        assert_eq!(lines.len(), 4000);
        assert_eq!(lines[3999], (4000, "line 3999".into()));
    }

    #[test]
    fn concatenated_gzip_members_and_zero_padding_are_all_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = gz(b"a\n");
        data.extend(gz(b"b\n"));
        data.extend([0u8; 1000]);
        let p = write(&dir, "multi.gz", &data);
        let lines = all_lines(&mut LogFile::open(&p).unwrap()).unwrap();
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn truncated_gzip_gives_its_lines_then_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let body: String = (0..20_000)
            .map(|i| format!("line {i} x{}\n", i * 7919))
            .collect();
        let data = gz(body.as_bytes());
        let p = write(&dir, "cut.gz", &data[..data.len() / 2]);
        let mut f = LogFile::open(&p).unwrap();
        let mut read = 0u64;
        let err = loop {
            match f.next_line() {
                Ok(Some(l)) => {
                    read += 1;
                    assert_eq!(l.text, format!("line {} x{}", read - 1, (read - 1) * 7919));
                }
                Ok(None) => panic!("a truncated gzip must end in an error"),
                Err(e) => break e,
            }
        };
        assert!(read > 1000, "the lines before the damage are read: {read}");
        let msg = err.to_string();
        assert!(
            matches!(err, SourceError::Read { line, .. } if line == read + 1),
            "{msg}"
        );
        assert!(
            msg.starts_with(&format!(
                "could not read {} at line {}: ",
                p.display(),
                read + 1
            )),
            "{msg}"
        );
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = gz(b"hello\nworld\n");
        for b in data.iter_mut().skip(12).take(6) {
            *b ^= 0x5a;
        }
        let p = write(&dir, "bad.gz", &data);
        let r = LogFile::open(&p).and_then(|mut f| all_lines(&mut f));
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "latin1", b"caf\xe9 ok\nnext\xff\xfe\n");
        let lines = all_lines(&mut LogFile::open(&p).unwrap()).unwrap();
        assert_eq!(lines[0].1, "caf\u{FFFD} ok");
        assert_eq!(lines[1].1, "next\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn a_long_line_is_cut_counted_and_the_next_one_read_whole() {
        let mut bytes = vec![b'a'; MAX_LINE * 3 + 17];
        bytes.extend(b"\r\nnext\n");
        bytes.extend(vec![b'b'; MAX_LINE]);
        bytes.extend(b"\nexact fit above\n");
        let mut f = stream(bytes);
        let l = f.next_line().unwrap().unwrap();
        assert_eq!((l.number, l.text.len(), l.truncated), (1, MAX_LINE, true));
        let l = f.next_line().unwrap().unwrap();
        assert_eq!((l.text, l.truncated), ("next", false));
        let l = f.next_line().unwrap().unwrap();
        assert_eq!((l.text.len(), l.truncated), (MAX_LINE, false));
        assert_eq!(f.next_line().unwrap().unwrap().text, "exact fit above");
        assert_eq!(f.truncated(), 1);
    }

    #[test]
    fn an_endless_line_stops_when_asked() {
        let mut f =
            LogFile::new(Stream::sniff("/dev/zero".into(), Box::new(io::repeat(0))).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        f.stop_on(stop.clone());
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
        });
        let line = f.next_line().unwrap().unwrap();
        assert_eq!(
            (line.number, line.text.len(), line.truncated),
            (1, MAX_LINE, true)
        );
        assert!(f.next_line().unwrap().is_none(), "and then the log ends");
        stopper.join().unwrap();
    }

    #[test]
    fn missing_file_is_an_open_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope");
        let err = LogFile::open(&p).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("could not open {}: ", p.display()))
        );
    }

    #[test]
    fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "empty", b"");
        let mut f = LogFile::open(&p).unwrap();
        assert_eq!(f.file_size(), Some(0));
        assert!(f.next_line().unwrap().is_none());
    }
}
