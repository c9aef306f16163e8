//! Following a log as it is written, the way `tail -F` should: through
//! rotation and restarts, losing and repeating no line.
//!
//! A [`Follower`] is polled — on inotify events and on a slow timer, the
//! caller decides — and hands over every complete line appended since the
//! last poll. It watches nothing itself and starts no thread.
//!
//! What it survives, and how:
//! - **rename and create** (logrotate, cPanel): the renamed file's
//!   descriptor is kept and read to its end before the new file, and again
//!   on later polls for lines the writer appended before it reopened;
//! - **copytruncate**: the size falls below what was read, or the file's
//!   first bytes change; the lines written between the last poll and the
//!   truncation are in the copy, which is found beside the log (same first
//!   bytes, at least as long) and read from where reading stopped;
//! - **delete and recreate**, and a rotated file **compressed later**: the
//!   old descriptor still reads the old inode to its end;
//! - a **partial last line**: held until its newline (a checkpoint saves
//!   the position of its start);
//! - a log that **does not exist yet**: nothing is read until it appears;
//! - a **restart** ([`Start::At`]): the saved device, inode and first bytes
//!   find the file read before, at its path or renamed beside it.
//!
//! A line longer than [`MAX_LINE`] is cut there and counted; whatever the
//! input, the bytes held stay under that.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::regular_file::{self, OpenError};

/// The longest line handed over; the rest of a longer one is skipped.
pub const MAX_LINE: usize = 64 << 10;

/// First bytes kept to tell a file from another that reuses its inode.
const HEAD: usize = 64;

/// Polls a rotated-away file is still read after it last gave data, once
/// the new file has some: the writer's late appends arrive within these.
const RETIRED_IDLE_POLLS: u32 = 8;

/// Bytes read from a file at a time.
const CHUNK: usize = 64 << 10;

/// Where the next unread line of a file starts, and which file that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub inode: u64,
    /// Its first bytes (up to 64).
    pub head: Vec<u8>,
    /// Byte offset of the next unread line.
    pub offset: u64,
}

/// Where a follower starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The whole file.
    Beginning,
    /// What is written from now on (a file that appears later is read
    /// whole: all of it is new).
    End,
    /// A saved position.
    At(Position),
}

/// What [`Follower::open`] found of a saved position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// Nothing was saved.
    Fresh,
    /// The file read before is still at the path: reading goes on.
    Continued,
    /// It was rotated (or copied and truncated) meanwhile: its rest is read
    /// from here first, then the file now at the path from its start.
    FromRotated(PathBuf),
    /// It is gone: the file now at the path is read from its start.
    Restarted,
}

/// What one poll read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Complete lines handed over.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines cut at [`MAX_LINE`].
    pub truncated: u64,
    /// Rotations, truncations and re-creations seen.
    pub rotations: u64,
    /// Whether the poll stopped at its byte budget with more to read.
    pub more: bool,
}

/// One open file and how far it has been read.
struct Tailed {
    file: File,
    dev: u64,
    inode: u64,
    head: Vec<u8>,
    /// Start of the line being read (everything before was handed over).
    offset: u64,
    /// Bytes read so far (`offset` plus the partial line held).
    read_to: u64,
    /// The partial line (at most [`MAX_LINE`] bytes).
    partial: Vec<u8>,
    /// Skipping the rest of a line already cut.
    skipping: bool,
    /// The read buffer (allocated at the first read, then reused).
    chunk: Vec<u8>,
}

impl Tailed {
    fn open(path: &Path, offset: u64) -> Result<Tailed, OpenError> {
        let (file, meta) = regular_file::open(path)?;
        let mut t = Tailed {
            file,
            dev: meta.dev(),
            inode: meta.ino(),
            head: Vec::new(),
            offset,
            read_to: offset,
            partial: Vec::new(),
            chunk: Vec::new(),
            skipping: false,
        };
        t.refresh_head()?;
        t.file.seek(SeekFrom::Start(offset))?;
        Ok(t)
    }

    /// Reads the first bytes again while fewer than [`HEAD`] are known.
    fn refresh_head(&mut self) -> io::Result<()> {
        if self.head.len() < HEAD {
            self.head = first_bytes(&self.file)?;
        }
        Ok(())
    }

    fn position(&self) -> Position {
        Position {
            dev: self.dev,
            inode: self.inode,
            head: self.head.clone(),
            offset: self.offset,
        }
    }

    /// Reads to the end of the file, or about `budget` bytes, handing over
    /// each complete line; the bytes read.
    fn drain(
        &mut self,
        line: &mut impl FnMut(&[u8]),
        stats: &mut PollStats,
        budget: u64,
    ) -> io::Result<u64> {
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(CHUNK, 0);
        let mut total = 0;
        loop {
            if total >= budget {
                stats.more = true;
                break;
            }
            let n = match self.file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.chunk = chunk;
                    return Err(e);
                }
            };
            total += n as u64;
            self.take(&chunk[..n], line, stats);
        }
        self.chunk = chunk;
        stats.bytes += total;
        if total > 0 {
            self.refresh_head()?;
        }
        Ok(total)
    }

    /// Splits `bytes` (the next ones of the file) into lines.
    fn take(&mut self, mut bytes: &[u8], line: &mut impl FnMut(&[u8]), stats: &mut PollStats) {
        while !bytes.is_empty() {
            match memchr::memchr(b'\n', bytes) {
                Some(end) => {
                    let (text, rest) = (&bytes[..end], &bytes[end + 1..]);
                    if self.skipping {
                        self.skipping = false;
                    } else if self.partial.is_empty() && text.len() <= MAX_LINE {
                        line(text);
                        stats.lines += 1;
                    } else {
                        let room = MAX_LINE - self.partial.len();
                        if text.len() > room {
                            stats.truncated += 1;
                        }
                        self.partial
                            .extend_from_slice(&text[..text.len().min(room)]);
                        line(&self.partial);
                        stats.lines += 1;
                        self.partial.clear();
                    }
                    self.read_to += end as u64 + 1;
                    self.offset = self.read_to;
                    bytes = rest;
                }
                None => {
                    if !self.skipping {
                        let room = MAX_LINE - self.partial.len();
                        if bytes.len() > room {
                            // Hand over what fits now, so memory stays
                            // bounded; the rest of the line is skipped.
                            self.partial.extend_from_slice(&bytes[..room]);
                            line(&self.partial);
                            stats.lines += 1;
                            stats.truncated += 1;
                            self.partial.clear();
                            self.skipping = true;
                        } else {
                            self.partial.extend_from_slice(bytes);
                        }
                    }
                    self.read_to += bytes.len() as u64;
                    bytes = &[];
                }
            }
        }
    }

    /// Hands over a partial last line: the file will not grow any more.
    fn finish(&mut self, line: &mut impl FnMut(&[u8]), stats: &mut PollStats) {
        if !self.partial.is_empty() && !self.skipping {
            line(&self.partial);
            stats.lines += 1;
        }
        self.partial.clear();
        self.offset = self.read_to;
    }
}

/// A rotated-away file still read for late appends.
struct Retired {
    tailed: Tailed,
    idle_polls: u32,
}

/// Follows one log path; see the module documentation.
pub struct Follower {
    path: PathBuf,
    current: Option<Tailed>,
    retired: Vec<Retired>,
}

impl Follower {
    /// Follows `path` from `start`. A path that does not exist yet is not an
    /// error: reading begins when it appears. Something other than a
    /// regular file there (a FIFO, a directory) is.
    pub fn open(path: &Path, start: Start) -> io::Result<(Follower, Resumed)> {
        let mut f = Follower {
            path: path.to_path_buf(),
            current: None,
            retired: Vec::new(),
        };
        let resumed = match start {
            Start::Beginning => {
                f.current = open_if_present(path, |_| 0)?;
                Resumed::Fresh
            }
            Start::End => {
                f.current = open_if_present(path, |len| len)?;
                Resumed::Fresh
            }
            Start::At(saved) => f.resume(&saved)?,
        };
        Ok((f, resumed))
    }

    fn resume(&mut self, saved: &Position) -> io::Result<Resumed> {
        let here = match fs::metadata(&self.path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let same_file = here
            .as_ref()
            .is_some_and(|m| m.dev() == saved.dev && m.ino() == saved.inode);
        if same_file {
            let t = Tailed::open(&self.path, 0).map_err(|e| with_path(&self.path, e))?;
            if starts_with(&t.head, &saved.head) {
                let len = t.file.metadata()?.len();
                if len >= saved.offset {
                    let t = Tailed::open(&self.path, saved.offset)
                        .map_err(|e| with_path(&self.path, e))?;
                    self.current = Some(t);
                    return Ok(Resumed::Continued);
                }
                // Copied and truncated while stopped.
                return Ok(match self.copy_of(saved)? {
                    Some((copy, at)) => {
                        self.retire_from(&copy, at)?;
                        self.current = Some(t);
                        Resumed::FromRotated(copy)
                    }
                    None => {
                        self.current = Some(t);
                        Resumed::Restarted
                    }
                });
            }
        }
        // Renamed while stopped: look beside the log for that inode.
        if let Some(old) = self.sibling(|p, m| {
            m.dev() == saved.dev
                && m.ino() == saved.inode
                && m.len() >= saved.offset
                && first_bytes_of(p).is_ok_and(|h| starts_with(&h, &saved.head))
        })? {
            self.retire_from(&old, saved.offset)?;
            self.current = open_if_present(&self.path, |_| 0)?;
            return Ok(Resumed::FromRotated(old));
        }
        self.current = open_if_present(&self.path, |_| 0)?;
        Ok(Resumed::Restarted)
    }

    /// The path followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the next unread line of the file at the path starts: what a
    /// checkpoint saves. `None` until the file has been seen.
    pub fn position(&self) -> Option<Position> {
        self.current.as_ref().map(Tailed::position)
    }

    /// Hands `line` every complete line appended since the last poll, in
    /// order, without its newline: first the rest of rotated-away files,
    /// then the file at the path.
    pub fn poll(&mut self, line: &mut impl FnMut(&[u8])) -> io::Result<PollStats> {
        self.poll_some(u64::MAX, line)
    }

    /// [`Follower::poll`], stopping once about `budget` bytes were read
    /// ([`PollStats::more`] says there is more): a long backlog is read in
    /// pieces, so what it becomes needs not be held all at once.
    pub fn poll_some(
        &mut self,
        budget: u64,
        line: &mut impl FnMut(&[u8]),
    ) -> io::Result<PollStats> {
        let mut stats = PollStats::default();
        self.check_rotation(line, &mut stats)?;
        let current_has_data = self
            .current
            .as_ref()
            .is_some_and(|c| c.file.metadata().is_ok_and(|m| m.len() > c.read_to));
        for r in &mut self.retired {
            if r.tailed.drain(line, &mut stats, budget)? > 0 {
                r.idle_polls = 0;
            } else if current_has_data || self.current.as_ref().is_some_and(|c| c.read_to > 0) {
                r.idle_polls += 1;
            }
        }
        if stats.more {
            return Ok(stats);
        }
        self.retired.retain_mut(|r| {
            let done = r.idle_polls >= RETIRED_IDLE_POLLS;
            if done {
                r.tailed.finish(line, &mut stats);
            }
            !done
        });
        let left = budget.saturating_sub(stats.bytes);
        if let Some(c) = &mut self.current {
            c.drain(line, &mut stats, left)?;
        }
        Ok(stats)
    }

    /// Notices a new file at the path, a vanished one, or a truncated one.
    fn check_rotation(
        &mut self,
        line: &mut impl FnMut(&[u8]),
        stats: &mut PollStats,
    ) -> io::Result<()> {
        let here = match fs::metadata(&self.path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(current) = &self.current else {
            if here.is_some() {
                // Appeared: all of it is new.
                self.current = open_if_present(&self.path, |_| 0)?;
            }
            return Ok(());
        };
        let replaced = here
            .as_ref()
            .is_none_or(|m| m.dev() != current.dev || m.ino() != current.inode);
        if replaced {
            stats.rotations += 1;
            let old = self.current.take().expect("checked above");
            self.retired.push(Retired {
                tailed: old,
                idle_polls: 0,
            });
            if here.is_some() {
                self.current = open_if_present(&self.path, |_| 0)?;
            }
            return Ok(());
        }
        let len = here.map_or(0, |m| m.len());
        let head_now = first_bytes(&current.file)?;
        let rewritten = !starts_with(&head_now, &current.head);
        if len < current.read_to || rewritten {
            // Copied and truncated: what was written since the last poll is
            // in the copy beside the log.
            stats.rotations += 1;
            let saved = current.position();
            if let Some((copy, at)) = self.copy_of(&saved)? {
                let mut from_copy = Tailed::open(&copy, at).map_err(|e| with_path(&copy, e))?;
                from_copy.drain(line, stats, u64::MAX)?;
                from_copy.finish(line, stats);
            }
            let c = self.current.as_mut().expect("checked above");
            c.file.seek(SeekFrom::Start(0))?;
            c.offset = 0;
            c.read_to = 0;
            c.partial.clear();
            c.skipping = false;
            c.head = head_now;
        }
        Ok(())
    }

    /// A copy beside the log of the file at `saved` (its first bytes, at
    /// least as long, another inode), and where to read it from.
    fn copy_of(&self, saved: &Position) -> io::Result<Option<(PathBuf, u64)>> {
        if saved.head.is_empty() {
            return Ok(None);
        }
        let copy = self.sibling(|p, m| {
            m.ino() != saved.inode
                && m.len() >= saved.offset
                && first_bytes_of(p).is_ok_and(|h| starts_with(&h, &saved.head))
        })?;
        Ok(copy.map(|c| (c, saved.offset)))
    }

    /// Starts reading the rotated file `path` from `offset`, before the file
    /// at the path.
    fn retire_from(&mut self, path: &Path, offset: u64) -> io::Result<()> {
        let tailed = Tailed::open(path, offset).map_err(|e| with_path(path, e))?;
        self.retired.push(Retired {
            tailed,
            idle_polls: 0,
        });
        Ok(())
    }

    /// The first regular file beside the log (not the log itself, not a
    /// link) that `matches`.
    fn sibling(
        &self,
        matches: impl Fn(&Path, &fs::Metadata) -> bool,
    ) -> io::Result<Option<PathBuf>> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut found: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if path == self.path {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_file() && matches(&path, &meta) {
                found.push(path);
            }
        }
        // The most recently modified first: `mainlog.1`, not `mainlog.7`.
        found.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).and_then(|m| m.modified()).ok()));
        Ok(found.into_iter().next())
    }
}

/// Opens `path` at the offset `at(len)` gives, or `None` if it is not there.
fn open_if_present(path: &Path, at: impl FnOnce(u64) -> u64) -> io::Result<Option<Tailed>> {
    match regular_file::open(path) {
        Ok((_, meta)) => Tailed::open(path, at(meta.len()))
            .map(Some)
            .map_err(|e| with_path(path, e)),
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(with_path(path, e)),
    }
}

fn with_path(path: &Path, e: OpenError) -> io::Error {
    io::Error::other(format!("{}: {e}", path.display()))
}

/// The first (up to [`HEAD`]) bytes of an open file, read without moving
/// its position.
fn first_bytes(file: &File) -> io::Result<Vec<u8>> {
    let mut head = vec![0; HEAD];
    let mut n = 0;
    while n < HEAD {
        match file.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(n);
    Ok(head)
}

fn first_bytes_of(path: &Path) -> io::Result<Vec<u8>> {
    let (file, _) = regular_file::open(path).map_err(|e| with_path(path, e))?;
    first_bytes(&file)
}

/// Whether `bytes` begins with `prefix`, or `prefix` with `bytes` (a file
/// that held fewer than [`HEAD`] bytes when its head was taken has grown).
fn starts_with(bytes: &[u8], prefix: &[u8]) -> bool {
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

#[cfg(test)]
mod tests;
