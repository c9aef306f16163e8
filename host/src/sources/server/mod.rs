//! Reading a server's configuration state into events.
//!
//! This module owns everything spamward learns by looking at a server's files
//! rather than its logs: cPanel's tweak settings (`cpanel.config`), the
//! sending limits and hold/suspend lists, which domains are local and who owns
//! them, the alias files, the PHP handler and suEXEC, Mailman, and the size
//! and bounce content of every mailbox. [`read_server_state`] turns them into
//! `Setting`, `MailAlias`, `ServiceState` and `MailboxStats` events, one
//! module per concept.
//!
//! Everything is read under a *root* so a copy of a server (a backup, a test
//! fixture) reads exactly like the live `/`. Symlinks are never followed out
//! of that root: on a copy, an absolute link would otherwise read the live
//! machine's file and mix two servers. A missing file is normal (not every
//! server is cPanel) and says nothing; a file that exists but cannot be read,
//! and a line that cannot be understood, become a [`Problem`] naming the file
//! and line. Nothing here panics on any input.

mod cpanel_config;
mod domains;
mod mailman;
mod maildir;
mod php;
mod send_limits;
mod valiases;

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::normalize::{Event, EventBody, Origin, Setting, Timestamp};

/// Largest configuration file read. `userdomains` on a big shared server is a
/// few megabytes; anything far larger is not a configuration file, and reading
/// it whole would only cost memory.
const MAX_TEXT_BYTES: u64 = 64 * 1024 * 1024;

/// Malformed lines reported one by one per file; the rest are summed up in
/// one line, so a binary file dropped in `/etc/valiases` does not bury every
/// other problem.
const MAX_LINE_PROBLEMS_PER_FILE: usize = 20;

/// What [`read_server_state`] read and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStateReport {
    /// Files read and directories listed, in reading order. Maildirs are
    /// listed once per mailbox (its directory), not once per message.
    pub files_read: Vec<PathBuf>,
    /// Files that exist but could not be read, and lines that could not be
    /// understood.
    pub problems: Vec<Problem>,
}

/// A file, or a line of one, that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or directory) at fault, as `root.join(...)`.
    pub file: PathBuf,
    /// 1-based line, when the problem is one line.
    pub line: Option<u64>,
    /// What is wrong, for a person.
    pub message: String,
}

/// `file:line: message`, or `file: message` when no line is at fault.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Reads everything under `root` (a server root: "/" or a copy of one) into events at time `at`.
///
/// Events are appended to `out` in a stable order (configuration, limits,
/// domains, aliases, PHP and suEXEC, mailboxes; directory entries sorted by
/// name), so two reads of the same tree give the same list.
pub fn read_server_state(root: &Path, at: Timestamp, out: &mut Vec<Event>) -> ServerStateReport {
    let mut report = ServerStateReport::default();
    // A missing root is a mistyped `--root`, not a server without cPanel:
    // say so instead of reporting a perfectly empty server.
    let canon_root = match fs::canonicalize(root) {
        Ok(p) if p.is_dir() => p,
        Ok(_) => {
            report.problems.push(Problem {
                file: root.to_path_buf(),
                line: None,
                message: "server root is not a directory".into(),
            });
            return report;
        }
        Err(e) => {
            report.problems.push(Problem {
                file: root.to_path_buf(),
                line: None,
                message: format!("cannot open server root: {e}"),
            });
            return report;
        }
    };
    let mut scan = Scan {
        root: root.to_path_buf(),
        canon_root,
        sink: Sink {
            at,
            events: Vec::new(),
        },
        report,
    };

    if let Some(config) = cpanel_config::read(&mut scan) {
        mailman::read(&mut scan, &config);
    }
    send_limits::read(&mut scan);
    domains::read(&mut scan);
    valiases::read(&mut scan);
    php::read(&mut scan);
    maildir::read(&mut scan);

    out.append(&mut scan.sink.events);
    scan.report
}

/// Where events go while a tree is read: kept apart from the report so a
/// line callback can emit events while the reader records problems.
struct Sink {
    at: Timestamp,
    events: Vec<Event>,
}

impl Sink {
    fn emit(&mut self, origin: &Origin, body: EventBody) {
        self.events.push(Event::new(self.at, origin, body));
    }

    fn setting(
        &mut self,
        origin: &Origin,
        source: &str,
        scope: Option<&str>,
        key: &str,
        value: Option<&str>,
    ) {
        self.emit(
            origin,
            EventBody::Setting(Setting {
                source: source.to_owned(),
                scope: scope.map(str::to_owned),
                key: key.to_owned(),
                value: value.map(str::to_owned),
            }),
        );
    }
}

/// What a directory entry is, from the directory itself (symlinks are not
/// followed, so a link is reported as a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One directory entry.
#[derive(Debug, Clone)]
struct Entry {
    /// File name, lossily converted.
    name: String,
    /// `dir.join(name)`, with the name's original bytes.
    path: PathBuf,
    kind: Kind,
}

/// How a path resolved.
enum Resolved {
    /// Not there: normal, says nothing.
    Missing,
    /// There but unusable; the problem is already reported.
    Refused,
    /// Inside the root; the canonical path.
    Inside(PathBuf),
}

/// The state of one read of a tree.
struct Scan {
    root: PathBuf,
    canon_root: PathBuf,
    sink: Sink,
    report: ServerStateReport,
}

impl Scan {
    /// `root.join(rel)`: the path events and problems show.
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn problem(&mut self, file: &Path, line: Option<u64>, message: impl Into<String>) {
        self.report.problems.push(Problem {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// Whether `path` is there and inside the root, without reporting
    /// anything: for probes such as "is there a suEXEC module", where a
    /// dangling or escaping link simply means "no".
    fn present(&self, path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok()
            && fs::canonicalize(path).is_ok_and(|c| c.starts_with(&self.canon_root))
    }

    /// Resolves `path`, refusing (with a problem) anything that leads out of
    /// the root.
    fn resolve(&mut self, path: &Path) -> Resolved {
        match fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if is_missing(&e) => return Resolved::Missing,
            Err(e) => {
                self.problem(path, None, format!("cannot read: {e}"));
                return Resolved::Refused;
            }
        }
        match fs::canonicalize(path) {
            Ok(c) if c.starts_with(&self.canon_root) => Resolved::Inside(c),
            Ok(c) => {
                self.problem(
                    path,
                    None,
                    format!(
                        "leads outside the server root (to {}); not read",
                        c.display()
                    ),
                );
                Resolved::Refused
            }
            Err(e) => {
                self.problem(path, None, format!("cannot resolve (broken link?): {e}"));
                Resolved::Refused
            }
        }
    }

    /// The bytes of a regular file, at most [`MAX_TEXT_BYTES`]; `None` when
    /// it is missing or unreadable (then a problem says why).
    fn read_file(&mut self, path: &Path) -> Option<Vec<u8>> {
        let real = match self.resolve(path) {
            Resolved::Inside(real) => real,
            Resolved::Missing | Resolved::Refused => return None,
        };
        let mut file = match fs::File::open(&real) {
            Ok(f) => f,
            Err(e) => {
                self.problem(path, None, format!("cannot open: {e}"));
                return None;
            }
        };
        // Checked on the open file: a FIFO would block the read forever and a
        // directory cannot be read as text.
        match file.metadata() {
            Ok(m) if m.is_file() => {}
            Ok(m) if m.is_dir() => {
                self.problem(path, None, "is a directory, expected a file");
                return None;
            }
            Ok(_) => {
                self.problem(path, None, "not a regular file; not read");
                return None;
            }
            Err(e) => {
                self.problem(path, None, format!("cannot read: {e}"));
                return None;
            }
        }
        let mut bytes = Vec::new();
        if let Err(e) = (&mut file)
            .take(MAX_TEXT_BYTES + 1)
            .read_to_end(&mut bytes)
        {
            self.problem(path, None, format!("cannot read: {e}"));
            return None;
        }
        if bytes.len() as u64 > MAX_TEXT_BYTES {
            // Keep whole lines only: a cut line would be reported as malformed.
            let keep = bytes
                .iter()
                .take(MAX_TEXT_BYTES as usize)
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            bytes.truncate(keep);
            self.problem(
                path,
                None,
                format!(
                    "larger than {} MiB; only the first {keep} bytes read",
                    MAX_TEXT_BYTES / (1024 * 1024)
                ),
            );
        }
        self.report.files_read.push(path.to_path_buf());
        Some(bytes)
    }

    /// Calls `parse` for every meaningful line of the text file at `path`:
    /// blank lines and `#` comments are skipped (every format read here uses
    /// them that way), `\r\n` endings and bytes that are not UTF-8 are
    /// tolerated. A line `parse` rejects (or that holds a NUL byte, i.e.
    /// binary data) becomes a problem with its line number.
    ///
    /// Returns whether the file was read (false when missing or unreadable).
    fn each_line(
        &mut self,
        path: &Path,
        mut parse: impl FnMut(&mut Sink, &Origin, &str) -> Result<(), String>,
    ) -> bool {
        let Some(bytes) = self.read_file(path) else {
            return false;
        };
        let text = String::from_utf8_lossy(&bytes);
        let file: Arc<str> = path.display().to_string().into();
        let mut reported = 0usize;
        let mut unreported = 0u64;
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let origin = Origin {
                file: file.clone(),
                line: index as u64 + 1,
            };
            let outcome = if line.contains('\0') {
                Err("binary data (NUL byte) in a text file".to_owned())
            } else {
                parse(&mut self.sink, &origin, line)
            };
            if let Err(message) = outcome {
                if reported < MAX_LINE_PROBLEMS_PER_FILE {
                    reported += 1;
                    self.problem(path, Some(origin.line), message);
                } else {
                    unreported += 1;
                }
            }
        }
        if unreported > 0 {
            self.problem(
                path,
                None,
                format!("{unreported} more lines could not be read (not listed)"),
            );
        }
        true
    }

    /// The entries of the directory at `path`, sorted by name; `None` when it
    /// is missing or unreadable (then a problem says why). `record` adds the
    /// directory to [`ServerStateReport::files_read`].
    fn list_dir(&mut self, path: &Path, record: bool) -> Option<Vec<Entry>> {
        let real = match self.resolve(path) {
            Resolved::Inside(real) => real,
            Resolved::Missing | Resolved::Refused => return None,
        };
        if !real.is_dir() {
            self.problem(path, None, "is not a directory");
            return None;
        }
        let dir = match fs::read_dir(&real) {
            Ok(d) => d,
            Err(e) => {
                self.problem(path, None, format!("cannot list: {e}"));
                return None;
            }
        };
        let mut entries = Vec::new();
        let mut failed = 0u64;
        let mut first_error = None;
        for item in dir {
            match item.and_then(|e| Ok((e.file_name(), e.file_type()?))) {
                Ok((name, ty)) => {
                    let kind = if ty.is_symlink() {
                        Kind::Symlink
                    } else if ty.is_dir() {
                        Kind::Dir
                    } else if ty.is_file() {
                        Kind::File
                    } else {
                        Kind::Other
                    };
                    entries.push(Entry {
                        name: name.to_string_lossy().into_owned(),
                        path: path.join(&name),
                        kind,
                    });
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if let Some(e) = first_error {
            self.problem(
                path,
                None,
                format!("{failed} entries could not be listed (first: {e})"),
            );
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        if record {
            self.report.files_read.push(path.to_path_buf());
        }
        Some(entries)
    }

    /// The files of a one-file-per-name directory such as `/etc/valiases`:
    /// regular files and links (a link is checked when read), not hidden
    /// files (editors' and lock files) nor subdirectories. Devices, FIFOs and
    /// sockets are reported, never opened.
    fn files_in(&mut self, dir: &Path) -> Vec<Entry> {
        let Some(entries) = self.list_dir(dir, true) else {
            return Vec::new();
        };
        let mut files = Vec::new();
        for entry in entries {
            if entry.name.starts_with('.') {
                continue;
            }
            match entry.kind {
                Kind::File | Kind::Symlink => files.push(entry),
                Kind::Dir => {}
                Kind::Other => self.problem(&entry.path, None, "not a regular file; not read"),
            }
        }
        files
    }
}

/// Errors meaning "not there": not found, or a parent that is a file.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// A plausible configuration key or name: something, without blanks, control
/// characters or the U+FFFD that stands for bytes that were not UTF-8. This
/// is what tells a real `key` line from garbage in `key=value` files, where a
/// bare word is itself meaningful.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != char::REPLACEMENT_CHARACTER)
}

