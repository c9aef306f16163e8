//! An input named on the command line, opened once: a file, a named pipe,
//! `/dev/stdin`, or `-` for standard input.
//!
//! The format is told from the input's first bytes ([`detect`]), and those
//! bytes are read from the very stream that is then parsed: a pipe can be
//! read only once, so opening it again after a peek would lose what the peek
//! took (the first 4 KiB of a piped log, or the whole of a piped `.gz`).

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::detect::{self, InputKind};

/// How much of an input is looked at to tell its format: enough for a spool
/// header's first lines or a listing's first message, small enough to cost
/// nothing.
pub const HEAD: usize = 4096;

/// The name standard input is shown under.
pub const STDIN_NAME: &str = "(stdin)";

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Opening (or probing) it failed.
    #[error("could not open {}: {cause}", path.display())]
    Open {
        /// The input, as given.
        path: PathBuf,
        /// The operating system's reason.
        cause: io::Error,
    },
    /// Reading failed part way, e.g. a truncated or corrupt gzip stream;
    /// what came before was read.
    #[error("could not read {} at line {line}: {cause}", path.display())]
    Read {
        /// The input, as given.
        path: PathBuf,
        /// The line that could not be read (1-based).
        line: u64,
        /// The reason.
        cause: io::Error,
    },
    /// The input is not what the reader expected (a directory given as a
    /// log, an input too large to be what it seems).
    #[error("{}: {what}", path.display())]
    Unusable {
        /// The input, as given.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
}

/// An opened input.
pub enum Opened {
    /// A directory: read as a spool.
    Directory(PathBuf),
    /// A stream of bytes whose format its first bytes told.
    Stream(Stream),
}

/// A byte stream with its first bytes already looked at (and still to be
/// read).
pub struct Stream {
    /// The input as shown in messages.
    pub name: PathBuf,
    /// Its format.
    pub kind: InputKind,
    /// Whether it starts like gzip.
    pub gzip: bool,
    /// Its size, for a regular file; `None` for pipes and terminals.
    pub len: Option<u64>,
    /// When it was last written, for a regular file.
    pub modified: Option<SystemTime>,
    /// The path, for a regular file named by one (to find files beside it).
    pub file: Option<PathBuf>,
    reader: io::Chain<Cursor<Vec<u8>>, Counting>,
    count: Arc<AtomicU64>,
}

impl Stream {
    /// A stream over `reader`, named `name`: its first [`HEAD`] bytes are
    /// read now to tell the format, and remain to be read.
    pub fn sniff(name: PathBuf, reader: Box<dyn Read + Send>) -> io::Result<Self> {
        let count = Arc::new(AtomicU64::new(0));
        let mut counting = Counting {
            inner: reader,
            count: count.clone(),
        };
        let mut head = Vec::with_capacity(HEAD);
        (&mut counting).take(HEAD as u64).read_to_end(&mut head)?;
        Ok(Stream {
            name,
            kind: detect::detect_bytes(&head),
            gzip: head.starts_with(&spamward_files::gzip::MAGIC),
            len: None,
            modified: None,
            file: None,
            reader: Cursor::new(head).chain(counting),
            count,
        })
    }

    /// Bytes taken from the underlying input so far (compressed bytes for
    /// gzip), for progress against [`Stream::len`].
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }

    /// Everything left, at most `cap` bytes: for inputs read whole (spool
    /// header files, queue listings).
    pub fn read_all(mut self, cap: u64) -> Result<Vec<u8>, SourceError> {
        let mut bytes = Vec::new();
        (&mut self.reader)
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|cause| SourceError::Unusable {
                path: self.name.clone(),
                what: format!("cannot read: {cause}"),
            })?;
        if bytes.len() as u64 > cap {
            return Err(SourceError::Unusable {
                path: self.name,
                what: format!(
                    "larger than {} MiB, too large to be what it looks like ({})",
                    cap >> 20,
                    self.kind.name()
                ),
            });
        }
        Ok(bytes)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// Counts bytes taken from the input, shared so the count stays reachable
/// through a decoder.
struct Counting {
    inner: Box<dyn Read + Send>,
    count: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens `path` (`-` for standard input) once and tells what it holds.
pub fn open(path: &Path) -> Result<Opened, SourceError> {
    let open_err = |cause| SourceError::Open {
        path: path.to_path_buf(),
        cause,
    };
    if path == Path::new("-") {
        let stream = Stream::sniff(STDIN_NAME.into(), Box::new(io::stdin())).map_err(|cause| {
            SourceError::Open {
                path: STDIN_NAME.into(),
                cause,
            }
        })?;
        return Ok(Opened::Stream(stream));
    }
    // A FIFO opens once a writer is there, as a reader of a pipe expects;
    // the descriptor is then read like any other stream.
    let file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if meta.is_dir() {
        return Ok(Opened::Directory(path.to_path_buf()));
    }
    let mut stream = Stream::sniff(path.to_path_buf(), Box::new(file)).map_err(open_err)?;
    if meta.is_file() {
        stream.len = Some(meta.len());
        stream.modified = meta.modified().ok();
        stream.file = Some(path.to_path_buf());
    }
    Ok(Opened::Stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_sniffed_bytes_are_still_read() {
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let stream = Stream::sniff("pipe".into(), Box::new(Cursor::new(text.clone()))).unwrap();
        assert_eq!(stream.kind, InputKind::Mainlog);
        assert!(!stream.gzip);
        let bytes = stream.read_all(1 << 20).unwrap();
        assert_eq!(bytes, text.as_bytes());
    }

    #[test]
    fn a_short_input_and_an_empty_one_are_whole() {
        let stream = Stream::sniff("x".into(), Box::new(Cursor::new(b"ab".to_vec()))).unwrap();
        assert_eq!(stream.read_all(10).unwrap(), b"ab");
        let stream = Stream::sniff("x".into(), Box::new(io::empty())).unwrap();
        assert_eq!(stream.read_all(10).unwrap(), b"");
    }

    #[test]
    fn gzip_is_told_by_its_magic() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"hello\n").unwrap();
        let stream = Stream::sniff("x".into(), Box::new(Cursor::new(e.finish().unwrap()))).unwrap();
        assert!(stream.gzip);
        assert_eq!(stream.kind, InputKind::Mainlog);
    }

    #[test]
    fn read_all_refuses_what_is_too_large() {
        let stream = Stream::sniff("big".into(), Box::new(Cursor::new(vec![b'x'; 100]))).unwrap();
        let e = stream.read_all(10).unwrap_err();
        assert!(e.to_string().starts_with("big: larger than"), "{e}");
    }

    #[test]
    fn a_directory_is_a_spool_a_file_knows_its_size_a_missing_one_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(open(dir.path()), Ok(Opened::Directory(_))));
        let p = dir.path().join("mainlog");
        std::fs::write(&p, "x\n").unwrap();
        let Ok(Opened::Stream(s)) = open(&p) else {
            panic!()
        };
        assert_eq!(s.len, Some(2));
        assert_eq!(s.file.as_deref(), Some(p.as_path()));
        let missing = dir.path().join("nope");
        let e = match open(&missing) {
            Err(e) => e.to_string(),
            Ok(_) => panic!(),
        };
        // The operating system's reason appears once.
        assert_eq!(
            e,
            format!(
                "could not open {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }
}
