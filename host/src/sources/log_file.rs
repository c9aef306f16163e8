//! Reading a log file line by line: plain or gzip-compressed (detected by
//! its magic bytes, so rotated `mainlog.1.gz` needs no flag), tolerant of
//! `\r\n` endings and of bytes that are not UTF-8, with 1-based line numbers
//! and a count of bytes consumed on disk for progress reporting.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::bufread::MultiGzDecoder;

/// Read buffer size: large enough that per-call overhead vanishes on
/// multi-gigabyte logs.
const BUF_SIZE: usize = 256 * 1024;

/// Why a log file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Opening (or probing) the file failed.
    #[error("could not open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading failed, e.g. a truncated or corrupt gzip stream.
    #[error("could not read {} at line {line}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The line that could not be read (1-based).
        line: u64,
        /// The cause.
        source: io::Error,
    },
}

/// Counts bytes read from the file on disk, shared with the `LogFile` so the
/// count stays reachable through the decoder.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

enum Reader {
    Plain(BufReader<Counting<File>>),
    Gzip(Box<BufReader<MultiGzDecoder<BufReader<Counting<File>>>>>),
}

/// A log file opened for line-by-line reading.
pub struct LogFile {
    path: PathBuf,
    reader: Reader,
    count: Arc<AtomicU64>,
    len: u64,
    line: u64,
    buf: Vec<u8>,
    lossy: String,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.path)
            .field("gzip", &self.is_gzip())
            .field("line", &self.line)
            .field("bytes_read", &self.bytes_read())
            .field("len", &self.len)
            .finish()
    }
}

impl LogFile {
    /// Opens `path`; gzip is detected from the first two bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| SourceError::Open {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        let count = Arc::new(AtomicU64::new(0));
        let mut raw = BufReader::with_capacity(
            BUF_SIZE,
            Counting {
                inner: file,
                count: count.clone(),
            },
        );
        let gzip = raw.fill_buf().map_err(open_err)?.starts_with(&[0x1f, 0x8b]);
        let reader = if gzip {
            Reader::Gzip(Box::new(BufReader::with_capacity(
                BUF_SIZE,
                MultiGzDecoder::new(raw),
            )))
        } else {
            Reader::Plain(raw)
        };
        Ok(LogFile {
            path,
            reader,
            count,
            len,
            line: 0,
            buf: Vec::with_capacity(1024),
            lossy: String::new(),
        })
    }

    /// The next line without its `\n` / `\r\n`, with its 1-based number;
    /// `None` at the end. Invalid UTF-8 is replaced with U+FFFD.
    pub fn next_line(&mut self) -> Result<Option<(u64, &str)>, SourceError> {
        self.buf.clear();
        let n = match &mut self.reader {
            Reader::Plain(r) => r.read_until(b'\n', &mut self.buf),
            Reader::Gzip(r) => r.read_until(b'\n', &mut self.buf),
        }
        .map_err(|source| SourceError::Read {
            path: self.path.clone(),
            line: self.line + 1,
            source,
        })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        let text = match std::str::from_utf8(&self.buf) {
            Ok(s) => s,
            Err(_) => {
                self.lossy.clear();
                for chunk in self.buf.utf8_chunks() {
                    self.lossy.push_str(chunk.valid());
                    if !chunk.invalid().is_empty() {
                        self.lossy.push(char::REPLACEMENT_CHARACTER);
                    }
                }
                &self.lossy
            }
        };
        Ok(Some((self.line, text)))
    }

    /// The path as given to [`LogFile::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        matches!(self.reader, Reader::Gzip(_))
    }

    /// Number of the last line returned (0 before the first).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Bytes of the file on disk consumed so far (compressed bytes for gzip;
    /// read-ahead included), for a progress bar against [`LogFile::len`].
    pub fn bytes_read(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Size of the file on disk when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file was empty when it was opened.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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

    fn all_lines(f: &mut LogFile) -> Result<Vec<(u64, String)>, SourceError> {
        let mut v = Vec::new();
        while let Some((n, l)) = f.next_line()? {
            v.push((n, l.to_owned()));
        }
        Ok(v)
    }

    #[test]
    fn plain_file_crlf_and_last_line_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "mainlog", b"one\r\ntwo\n\nthree");
        let mut f = LogFile::open(&p).unwrap();
        assert!(!f.is_gzip());
        assert_eq!(f.len(), 15);
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
        assert_eq!(f.len(), data.len() as u64);
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = gz(b"a\n");
        data.extend(gz(b"b\n"));
        let p = write(&dir, "multi.gz", &data);
        let lines = all_lines(&mut LogFile::open(&p).unwrap()).unwrap();
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn truncated_gzip_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let body: String = (0..2000)
            .map(|i| format!("line {i} x{}\n", i * 7919))
            .collect();
        let data = gz(body.as_bytes());
        let p = write(&dir, "cut.gz", &data[..data.len() / 2]);
        let mut f = LogFile::open(&p).unwrap();
        let err = all_lines(&mut f).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SourceError::Read { .. }), "{msg}");
        assert!(
            msg.starts_with(&format!("could not read {} at line ", p.display())),
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
        assert!(f.is_empty());
        assert!(f.next_line().unwrap().is_none());
    }
}
