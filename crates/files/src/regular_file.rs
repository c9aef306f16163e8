//! Opening files that must be regular files: configuration under a server
//! root, spool `-H` files, mailbox messages.
//!
//! A plain `File::open` of a FIFO blocks until a writer appears, forever if
//! none does, and a device or directory cannot be read as text. Anything
//! placed where a file is expected (by mistake, or by an attacker who can
//! write there) must be refused, not read: the file is opened without
//! blocking and its type checked on the open descriptor, so a swap between a
//! check and the open cannot fool it either.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What stands where a regular file was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRegular {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
    /// A character or block device.
    Device,
}

impl fmt::Display for NotRegular {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotRegular::Directory => "is a directory, expected a file",
            NotRegular::Fifo => "is a named pipe (FIFO), not a regular file; not read",
            NotRegular::Socket => "is a socket, not a regular file; not read",
            NotRegular::Device => "is a device, not a regular file; not read",
        })
    }
}

/// Why a regular file could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Something else stands at the path.
    #[error("{0}")]
    NotRegular(NotRegular),
    /// The operating system refused (missing, permissions, I/O).
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl OpenError {
    /// Whether the file simply is not there (or a parent is not a
    /// directory): for optional files, normal rather than a problem.
    pub fn is_missing(&self) -> bool {
        matches!(self, OpenError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        ))
    }
}

/// Opens `path` for reading if, once opened, it is a regular file.
///
/// Symlinks are followed (callers that must not follow them check the link
/// first); whatever they lead to must be a regular file.
pub fn open(path: &Path) -> Result<(File, Metadata), OpenError> {
    open_with(path, 0)
}

/// [`open`], but a symlink at `path` itself is refused rather than
/// followed: for files found by listing a directory, which must be what
/// the listing said.
pub fn open_no_follow(path: &Path) -> Result<(File, Metadata), OpenError> {
    open_with(path, libc::O_NOFOLLOW)
}

fn open_with(path: &Path, flags: libc::c_int) -> Result<(File, Metadata), OpenError> {
    let file = OpenOptions::new()
        .read(true)
        // Never block in open(2) on a FIFO; a regular file ignores the flag.
        .custom_flags(libc::O_NONBLOCK | flags)
        .open(path)?;
    let meta = file.metadata()?;
    let ty = meta.file_type();
    if ty.is_file() {
        return Ok((file, meta));
    }
    Err(OpenError::NotRegular(if ty.is_dir() {
        NotRegular::Directory
    } else if ty.is_fifo() {
        NotRegular::Fifo
    } else if ty.is_socket() {
        NotRegular::Socket
    } else {
        NotRegular::Device
    }))
}

/// The bytes of a regular file, at most `cap` of them; the flag says whether
/// the file was longer (then only the first `cap` bytes are returned).
pub fn read_capped(path: &Path, cap: u64) -> Result<(Vec<u8>, bool), OpenError> {
    let (file, meta) = open(path)?;
    let mut bytes = Vec::with_capacity(meta.len().min(cap) as usize);
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    let longer = bytes.len() as u64 > cap;
    if longer {
        bytes.truncate(cap as usize);
    }
    Ok((bytes, longer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo does not keep it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn regular_file_is_read_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(
            read_capped(&p, 100).unwrap(),
            (b"0123456789".to_vec(), false)
        );
        assert_eq!(
            read_capped(&p, 10).unwrap(),
            (b"0123456789".to_vec(), false)
        );
        assert_eq!(read_capped(&p, 4).unwrap(), (b"0123".to_vec(), true));
    }

    #[test]
    fn fifo_is_refused_at_once_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pipe");
        mkfifo(&p);
        let err = read_capped(&p, 100).unwrap_err();
        assert!(
            matches!(err, OpenError::NotRegular(NotRegular::Fifo)),
            "{err}"
        );
        // Also through a symlink.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(
            open(&link),
            Err(OpenError::NotRegular(NotRegular::Fifo))
        ));
    }

    #[test]
    fn directory_and_device_are_refused_missing_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = open(dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "is a directory, expected a file");
        assert!(matches!(
            open(Path::new("/dev/null")),
            Err(OpenError::NotRegular(NotRegular::Device))
        ));
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open(&link).is_ok());
        assert!(open_no_follow(&link).is_err(), "a link is not followed");
        let missing = open(&dir.path().join("nope")).unwrap_err();
        assert!(missing.is_missing());
        assert!(!err.is_missing());
    }
}
