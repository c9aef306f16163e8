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

#![warn(missing_docs)]

mod cpanel_config;
mod domains;
mod maildir;
mod mailman;
mod php;
mod send_limits;
mod valiases;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spamward_files::regular_file::{self, OpenError};
use spamward_model::{Event, EventBody, EventKind, HostLookups, Origin, Setting, Text, Timestamp};

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
    /// The root itself is missing or not a directory: nothing was read.
    pub root_missing: bool,
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

/// The files and directories (relative to the server root) whose change
/// changes what [`read_server_state`] reads, mailboxes aside: those change
/// with every message delivered, so a daemon reads them on its timer only.
/// A directory stands for every file in it.
pub const STATE_PATHS: &[&str] = &[
    "var/cpanel/cpanel.config",
    "var/cpanel/users",
    "etc/email_send_limits",
    "etc/userdomains",
    "etc/localdomains",
    "etc/outgoing_mail_hold_users",
    "etc/outgoing_mail_suspended_users",
    "etc/valiases",
    "etc/cpanel/ea4/php.conf",
    "etc/apache2/conf.modules.d",
    "etc/apache2/mods-enabled",
];

/// Reads everything under `root` (a server root: "/" or a copy of one) into events at time `at`.
///
/// Events are appended to `out` in a stable order (configuration, limits,
/// domains, aliases, suEXEC then the PHP handlers it qualifies, mailboxes; directory entries sorted by
/// name), so two reads of the same tree give the same list.
pub fn read_server_state(root: &Path, at: Timestamp, out: &mut Vec<Event>) -> ServerStateReport {
    read_with(root, at, out, |scan| {
        if let Some(config) = cpanel_config::read(scan) {
            mailman::read(scan, &config);
        }
        send_limits::read(scan);
        domains::read(scan);
        valiases::read(scan);
        php::read(scan);
        maildir::read(scan);
    })
}

/// Reads only which domains the server serves and who owns them
/// (`/etc/userdomains`, `/etc/localdomains`), with the same checks as
/// [`read_server_state`]: what `scan` needs to charge a sender domain to an
/// account.
pub fn read_domains(root: &Path, at: Timestamp, out: &mut Vec<Event>) -> ServerStateReport {
    read_with(root, at, out, domains::read)
}

/// Who owns which domain and which are local, from `<root>/etc/userdomains`
/// and `<root>/etc/localdomains` (read by [`read_domains`]); a missing file
/// means nothing is known (not every server is cPanel). The report says
/// what could not be read.
pub fn domain_lookups(root: &Path) -> (HostLookups, ServerStateReport) {
    let mut events = Vec::new();
    let report = read_domains(root, Timestamp::naive(0), &mut events);
    (HostLookups::from_events(&events), report)
}

fn read_with(
    root: &Path,
    at: Timestamp,
    out: &mut Vec<Event>,
    read: impl FnOnce(&mut Scan),
) -> ServerStateReport {
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
            report.root_missing = true;
            return report;
        }
        Err(e) => {
            report.problems.push(Problem {
                file: root.to_path_buf(),
                line: None,
                message: format!("cannot open server root: {e}"),
            });
            report.root_missing = true;
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
    read(&mut scan);
    out.append(&mut scan.sink.events);
    scan.report
}

/// What the reader looks for to make events of `kind`, as an admin would
/// look for it (paths under the server root): what a check that found
/// nothing had to go on.
pub fn looked_for(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::Setting => &[
            "/var/cpanel/cpanel.config",
            "/etc/email_send_limits",
            "/var/cpanel/users/*",
            "/etc/userdomains",
            "/etc/localdomains",
            "/etc/outgoing_mail_hold_users",
            "/etc/outgoing_mail_suspended_users",
        ],
        EventKind::MailAlias => &["/etc/valiases/*"],
        EventKind::MailboxStats => &["/home/*/mail"],
        EventKind::ServiceState => &[
            "/etc/cpanel/ea4/php.conf (PHP handlers, then suEXEC)",
            "/var/cpanel/cpanel.config (Mailman)",
        ],
        EventKind::Extension => &["Exim's answer to a relay probe (exim -bh, on a live root)"],
        _ => &[],
    }
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
                source: Text::owned(source),
                scope: scope.map(Text::owned),
                key: Text::owned(key),
                value: value.map(Text::owned),
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
        // The type is checked on the opened file, which is opened without
        // blocking: a FIFO would block a read forever, and a directory
        // cannot be read as text.
        let (mut bytes, longer) = match regular_file::read_capped(&real, MAX_TEXT_BYTES) {
            Ok(read) => read,
            Err(OpenError::NotRegular(what)) => {
                self.problem(path, None, what.to_string());
                return None;
            }
            Err(OpenError::Io(e)) => {
                self.problem(path, None, format!("cannot read: {e}"));
                return None;
            }
        };
        if longer {
            // Keep whole lines only: a cut line would be reported as malformed.
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
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

#[cfg(test)]
mod tests {
    //! Test helpers shared by the readers' tests (a temporary server tree and
    //! event extractors), the badly and well configured server fixtures, and
    //! the tests of the whole read.

    use std::path::{Path, PathBuf};

    use super::*;
    use spamward_model::{MailAlias, MailboxStats, ServiceState};

    /// A setting as `(scope, key, value, line)`.
    pub(super) type S = (Option<String>, String, Option<String>, u64);
    /// An alias as `(domain, local_part, target, line)`.
    pub(super) type A = (String, String, String, u64);
    /// A service state as `(enabled, details, line)`.
    pub(super) type Svc = (bool, Vec<(String, String)>, u64);

    /// The time every test reads at.
    pub(super) fn at() -> Timestamp {
        Timestamp::from_civil(2024, 5, 1, 12, 0, 0).expect("valid date")
    }

    /// A server root in a temporary directory.
    pub(super) struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        pub(super) fn new() -> Self {
            Tree {
                dir: tempfile::tempdir().expect("temp dir"),
            }
        }

        pub(super) fn root(&self) -> &Path {
            self.dir.path()
        }

        pub(super) fn write(&self, rel: &str, text: &str) {
            put(self.root(), rel, text.as_bytes());
        }

        pub(super) fn write_bytes(&self, rel: &str, bytes: &[u8]) {
            put(self.root(), rel, bytes);
        }

        pub(super) fn mkdir(&self, rel: &str) {
            fs::create_dir_all(self.root().join(rel)).expect("mkdir");
        }

        /// Makes `rel` a symlink to `target`.
        pub(super) fn symlink(&self, target: &Path, rel: &str) {
            let link = self.root().join(rel);
            if let Some(parent) = link.parent() {
                fs::create_dir_all(parent).expect("mkdir");
            }
            std::os::unix::fs::symlink(target, link).expect("symlink");
        }

        pub(super) fn read(&self) -> (Vec<Event>, ServerStateReport) {
            let mut events = Vec::new();
            let report = read_server_state(self.root(), at(), &mut events);
            (events, report)
        }

        /// A reader on this tree, for testing one module's internals.
        pub(super) fn scan(&self) -> Scan {
            Scan {
                root: self.root().to_path_buf(),
                canon_root: fs::canonicalize(self.root()).expect("canonical root"),
                sink: Sink {
                    at: at(),
                    events: Vec::new(),
                },
                report: ServerStateReport::default(),
            }
        }
    }

    fn put(root: &Path, rel: &str, bytes: &[u8]) {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, bytes).expect("write");
    }

    /// The settings of one `source`, in order.
    pub(super) fn settings(events: &[Event], source: &str) -> Vec<S> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Setting(s) if s.source == source => Some((
                    s.scope.as_deref().map(str::to_owned),
                    s.key.to_string(),
                    s.value.as_deref().map(str::to_owned),
                    e.line,
                )),
                _ => None,
            })
            .collect()
    }

    /// The value of one server-wide `cpanel.config` key: `None` when absent,
    /// `Some(None)` when bare.
    fn config_value(events: &[Event], key: &str) -> Option<Option<String>> {
        settings(events, "cpanel.config")
            .into_iter()
            .find(|s| s.1 == key)
            .map(|s| s.2)
    }

    pub(super) fn aliases(events: &[Event]) -> Vec<A> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::MailAlias(MailAlias {
                    domain,
                    local_part,
                    target,
                }) => Some((
                    domain.to_string(),
                    local_part.to_string(),
                    target.to_string(),
                    e.line,
                )),
                _ => None,
            })
            .collect()
    }

    pub(super) fn services(events: &[Event], name: &str) -> Vec<Svc> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::ServiceState(ServiceState {
                    name: n,
                    enabled,
                    details,
                }) if n == name => {
                    let details = details
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    Some((*enabled, details, e.line))
                }
                _ => None,
            })
            .collect()
    }

    fn mailboxes(events: &[Event]) -> Vec<MailboxStats> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::MailboxStats(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Which fixture server to build.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Quality {
        /// Everything the checklist warns about.
        Bad,
        /// The checklist followed.
        Good,
    }

    impl Quality {
        fn name(self) -> &'static str {
            match self {
                Quality::Bad => "bad",
                Quality::Good => "good",
            }
        }
    }

    /// Writes a small cPanel server tree under `root`.
    ///
    /// Bad: `nobodyspam=0`, `smtpmailgidonly=0`, no hourly limit nor
    /// defer/fail percentage, `:fail:` catch-alls, Mailman on with no lists,
    /// mod_php (`dso`) as the default handler without suEXEC, and a mailbox
    /// that is 30 bounces out of 35 messages. Good: the opposite of each,
    /// and a mailbox of 5 ordinary messages (one in a `.Sent` folder).
    /// The same trees live in `tests/fixtures/servers/{bad,good}` for the
    /// end-to-end tests (see `fixture_trees_on_disk_match_the_builder`).
    pub(super) fn build_server(root: &Path, quality: Quality) {
        let bad = quality == Quality::Bad;
        let w = |rel: &str, text: &str| put(root, rel, text.as_bytes());
        let (user, domain, other, mailbox) = if bad {
            ("shopco", "shop.example", "shop-mail.example", "info")
        } else {
            ("goodco", "goodco.example", "goodco-mail.example", "alice")
        };

        w(
            "var/cpanel/cpanel.config",
            if bad {
                "# WHM Tweak Settings (excerpt)\n\
                 defaultmailaction=fail\n\
                 email_outbound_spam_detect_action=noaction\n\
                 email_outbound_spam_detect_threshold=500\n\
                 email_send_limits_defer_cutoff=125\n\
                 email_send_limits_max_defer_fail_percentage\n\
                 email_send_limits_min_defer_fail_to_trigger_protection=5\n\
                 emailsperdaynotify\n\
                 maxemailsperhour\n\
                 nobodyspam=0\n\
                 skipmailman=0\n\
                 smtpmailgidonly=0\n"
            } else {
                "# WHM Tweak Settings (excerpt)\n\
                 defaultmailaction=blackhole\n\
                 email_outbound_spam_detect_action=hold\n\
                 email_outbound_spam_detect_threshold=500\n\
                 email_send_limits_defer_cutoff=125\n\
                 email_send_limits_max_defer_fail_percentage=25\n\
                 email_send_limits_min_defer_fail_to_trigger_protection=5\n\
                 emailsperdaynotify=1000\n\
                 maxemailsperhour=200\n\
                 nobodyspam=1\n\
                 skipmailman=1\n\
                 smtpmailgidonly=1\n"
            },
        );

        let limits = if bad { ",,5" } else { "200,25,5" };
        let domain_limits = if bad { ",,5" } else { "100,25,5" };
        w(
            "etc/email_send_limits",
            &format!(
                "#version 1.0\n\
                 #format DOMAIN: MAX_EMAIL_PER_HOUR,MAX_DEFER_FAIL_PERCENTAGE,MIN_DEFER_FAIL_TO_TRIGGER_PROTECTION\n\
                 *: {limits}\n\
                 {domain}: {domain_limits}\n\
                 {other}: {domain_limits}\n"
            ),
        );

        let (per_hour, defer) = if bad {
            ("unlimited", "unlimited")
        } else {
            ("100", "25")
        };
        w(
            &format!("var/cpanel/users/{user}"),
            &format!(
                "CONTACTEMAIL=owner@example.org\n\
                 DNS={domain}\n\
                 DNS1={other}\n\
                 FEATURELIST=default\n\
                 IP=192.0.2.10\n\
                 MAX_DEFER_FAIL_PERCENTAGE={defer}\n\
                 MAX_EMAIL_PER_HOUR={per_hour}\n\
                 OWNER=root\n\
                 PLAN=default\n\
                 STARTDATE=1700000000\n\
                 SUSPENDED=0\n\
                 USER={user}\n"
            ),
        );

        w(
            "etc/userdomains",
            &format!("{domain}: {user}\n{other}: {user}\n*: nobody\n"),
        );
        w(
            "etc/localdomains",
            &format!("server.example.net\n{domain}\n{other}\n"),
        );

        let catch_all = if bad {
            ":fail: No Such User Here"
        } else {
            ":blackhole:"
        };
        w(
            &format!("etc/valiases/{domain}"),
            &format!("sales@{domain}: {mailbox}@{domain},owner@example.org\n*: {catch_all}\n"),
        );
        w(
            &format!("etc/valiases/{other}"),
            &format!("*: {catch_all}\n"),
        );

        let php81 = if bad { "dso" } else { "suphp" };
        w(
            "etc/cpanel/ea4/php.conf",
            &format!("---\ndefault: ea-php81\nea-php80: cgi\nea-php81: {php81}\n"),
        );
        w(
            "etc/apache2/conf.modules.d/00_mod_mpm_prefork.conf",
            "LoadModule mpm_prefork_module modules/mod_mpm_prefork.so\n",
        );
        if !bad {
            w("etc/apache2/modules/mod_suexec.so", "");
            w(
                "etc/apache2/conf.modules.d/090_mod_suexec.conf",
                "LoadModule suexec_module modules/mod_suexec.so\n",
            );
        }

        if bad {
            // Only Mailman's own site list: enabled, used by no one.
            w(
                "usr/local/cpanel/3rdparty/mailman/lists/mailman/config.pck",
                "",
            );
        }

        let boxdir = format!("home/{user}/mail/{domain}/{mailbox}");
        let (messages, bounces) = if bad { (35, 30) } else { (4, 0) };
        for n in 0..messages {
            let part = if n % 2 == 0 { "new" } else { "cur" };
            w(
                &format!("{boxdir}/{part}/17000000{n:02}.M{n}P100.server.example.net"),
                &message(n, n < bounces, mailbox, domain),
            );
        }
        if !bad {
            // A folder, counted with its mailbox.
            w(
                &format!("{boxdir}/.Sent/cur/1700000100.M1P100.server.example.net"),
                &message(100, false, mailbox, domain),
            );
        }
        w(
            &format!("home/{user}/mail/cur/1700000200.M1P100.server.example.net"),
            &message(200, false, user, "server.example.net"),
        );
    }

    /// A small message; bounces come in the three shapes the reader knows.
    fn message(n: u32, bounce: bool, local: &str, domain: &str) -> String {
        let to = format!("{local}@{domain}");
        if !bounce {
            return format!(
                "Return-Path: <customer{n}@example.org>\n\
                 From: Customer {n} <customer{n}@example.org>\n\
                 To: {to}\n\
                 Subject: Order question {n}\n\
                 Message-ID: <m{n}@example.org>\n\
                 \n\
                 Hello, where is my order?\n"
            );
        }
        match n % 3 {
            0 => format!(
                "Return-Path: <>\n\
                 From: Mail Delivery System <Mailer-Daemon@server.example.net>\n\
                 To: {to}\n\
                 Subject: Mail delivery failed: returning message to sender\n\
                 \n\
                 This message was created automatically by mail delivery software.\n"
            ),
            1 => format!(
                "Return-Path: <>\n\
                 From: postmaster@mx.example.com\n\
                 To: {to}\n\
                 Subject: Delivery Status Notification (Failure)\n\
                 Content-Type: multipart/report;\n\
                 \treport-type=delivery-status;\n\
                 \tboundary=\"b{n}\"\n\
                 \n\
                 --b{n}\n\
                 \n\
                 550 5.1.1 user unknown\n"
            ),
            _ => format!(
                "Return-Path: <>\n\
                 From: MAILER-DAEMON@mx.example.org\n\
                 To: {to}\n\
                 Subject: Undelivered Mail Returned to Sender\n\
                 \n\
                 I'm sorry to have to inform you that your message could not be delivered.\n"
            ),
        }
    }

    fn s(
        scope: Option<&str>,
        key: &str,
        value: Option<&str>,
    ) -> (Option<String>, String, Option<String>) {
        (
            scope.map(str::to_owned),
            key.to_owned(),
            value.map(str::to_owned),
        )
    }

    fn without_lines(v: Vec<S>) -> Vec<(Option<String>, String, Option<String>)> {
        v.into_iter().map(|(a, b, c, _)| (a, b, c)).collect()
    }

    fn built(quality: Quality) -> (Tree, Vec<Event>, ServerStateReport) {
        let tree = Tree::new();
        build_server(tree.root(), quality);
        let (events, report) = tree.read();
        (tree, events, report)
    }

    #[test]
    fn badly_configured_server() {
        let (tree, events, report) = built(Quality::Bad);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(events.iter().all(|e| e.time == at()));

        assert_eq!(config_value(&events, "nobodyspam"), Some(Some("0".into())));
        assert_eq!(
            config_value(&events, "smtpmailgidonly"),
            Some(Some("0".into()))
        );
        assert_eq!(config_value(&events, "maxemailsperhour"), Some(None));
        assert_eq!(
            config_value(&events, "email_send_limits_max_defer_fail_percentage"),
            Some(None)
        );
        assert_eq!(config_value(&events, "skipmailman"), Some(Some("0".into())));
        assert_eq!(settings(&events, "cpanel.config").len(), 11);

        assert_eq!(
            without_lines(settings(&events, "email_send_limits"))[..3],
            [
                s(Some("*"), "max_emails_per_hour", None),
                s(Some("*"), "max_defer_fail_percentage", None),
                s(Some("*"), "min_defer_fail_to_trigger_protection", Some("5")),
            ]
        );
        assert_eq!(
            without_lines(settings(&events, "cpanel-users")),
            vec![
                s(Some("shopco"), "DNS", Some("shop.example")),
                s(Some("shopco"), "DNS1", Some("shop-mail.example")),
                s(
                    Some("shopco"),
                    "MAX_DEFER_FAIL_PERCENTAGE",
                    Some("unlimited")
                ),
                s(Some("shopco"), "MAX_EMAIL_PER_HOUR", Some("unlimited")),
                s(Some("shopco"), "OWNER", Some("root")),
                s(Some("shopco"), "PLAN", Some("default")),
                s(Some("shopco"), "SUSPENDED", Some("0")),
            ]
        );
        assert_eq!(
            without_lines(settings(&events, "userdomains")),
            vec![
                s(Some("shop.example"), "owner", Some("shopco")),
                s(Some("shop-mail.example"), "owner", Some("shopco")),
            ]
        );
        assert_eq!(settings(&events, "localdomains").len(), 3);

        let catch_alls: Vec<_> = aliases(&events)
            .into_iter()
            .filter(|a| a.1 == "*")
            .map(|a| (a.0, a.2))
            .collect();
        assert_eq!(
            catch_alls,
            vec![
                (
                    "shop-mail.example".into(),
                    ":fail: No Such User Here".into()
                ),
                ("shop.example".into(), ":fail: No Such User Here".into()),
            ]
        );

        let lists_dir = tree
            .root()
            .join("usr/local/cpanel/3rdparty/mailman/lists")
            .display()
            .to_string();
        assert_eq!(
            services(&events, "mailman"),
            vec![(
                true,
                vec![
                    ("lists".into(), "0".into()),
                    ("lists_dir".into(), lists_dir)
                ],
                11
            )]
        );
        let php: Vec<_> = services(&events, "php-handler")
            .into_iter()
            .map(|(_, d, _)| d)
            .collect();
        assert_eq!(
            php[1],
            vec![
                ("version".into(), "ea-php81".into()),
                ("handler".into(), "dso".into()),
                ("default".into(), "true".into()),
            ]
        );
        assert_eq!(
            services(&events, "suexec"),
            vec![(false, vec![("evidence".into(), "none".into())], 0)]
        );

        let boxes = mailboxes(&events);
        assert_eq!(boxes.len(), 2);
        assert_eq!(
            (
                boxes[0].domain.as_str(),
                boxes[0].mailbox.as_str(),
                boxes[0].messages,
                boxes[0].bounces
            ),
            ("(default)", "shopco", 1, 0)
        );
        assert_eq!(
            (
                boxes[1].account.as_str(),
                boxes[1].domain.as_str(),
                boxes[1].mailbox.as_str(),
                boxes[1].messages,
                boxes[1].bounces
            ),
            ("shopco", "shop.example", "info", 35, 30)
        );
        assert!(boxes[1].bytes > 0);
    }

    #[test]
    fn well_configured_server() {
        let (tree, events, report) = built(Quality::Good);
        assert!(report.problems.is_empty(), "{:?}", report.problems);

        assert_eq!(config_value(&events, "nobodyspam"), Some(Some("1".into())));
        assert_eq!(
            config_value(&events, "smtpmailgidonly"),
            Some(Some("1".into()))
        );
        assert_eq!(
            config_value(&events, "maxemailsperhour"),
            Some(Some("200".into()))
        );
        assert_eq!(
            config_value(&events, "email_send_limits_max_defer_fail_percentage"),
            Some(Some("25".into()))
        );
        assert_eq!(
            without_lines(settings(&events, "email_send_limits"))[3..6],
            [
                s(Some("goodco.example"), "max_emails_per_hour", Some("100")),
                s(
                    Some("goodco.example"),
                    "max_defer_fail_percentage",
                    Some("25")
                ),
                s(
                    Some("goodco.example"),
                    "min_defer_fail_to_trigger_protection",
                    Some("5")
                ),
            ]
        );
        let catch_alls: Vec<_> = aliases(&events)
            .into_iter()
            .filter(|a| a.1 == "*")
            .map(|a| a.2)
            .collect();
        assert_eq!(catch_alls, vec![":blackhole:", ":blackhole:"]);
        assert!(aliases(&events).contains(&(
            "goodco.example".into(),
            "sales".into(),
            "alice@goodco.example,owner@example.org".into(),
            1
        )));

        assert!(!services(&events, "mailman")[0].0);
        let handlers: Vec<_> = services(&events, "php-handler")
            .into_iter()
            .map(|(_, d, _)| (d[1].1.clone(), d[2].1.clone()))
            .collect();
        assert_eq!(
            handlers,
            vec![
                ("cgi".to_string(), "false".to_string()),
                ("suphp".into(), "true".into())
            ]
        );
        let evidence = tree.root().join("etc/apache2/modules/mod_suexec.so");
        assert_eq!(
            services(&events, "suexec"),
            vec![(
                true,
                vec![("evidence".into(), evidence.display().to_string())],
                0
            )]
        );
        assert!(report.files_read.contains(&evidence));

        let boxes = mailboxes(&events);
        assert_eq!(
            boxes
                .iter()
                .map(|b| (b.mailbox.as_str(), b.messages, b.bounces))
                .collect::<Vec<_>>(),
            vec![("goodco", 1, 0), ("alice", 5, 0)]
        );
    }

    #[test]
    fn origins_and_files_read() {
        let (tree, events, report) = built(Quality::Good);
        let root = tree.root();
        let alias = events
            .iter()
            .find(|e| matches!(&e.body, EventBody::MailAlias(a) if a.local_part == "*" && a.domain == "goodco.example"))
            .expect("catch-all");
        assert_eq!(
            &*alias.file,
            root.join("etc/valiases/goodco.example")
                .display()
                .to_string()
        );
        assert_eq!(alias.line, 2);
        for rel in [
            "var/cpanel/cpanel.config",
            "etc/email_send_limits",
            "var/cpanel/users/goodco",
            "etc/userdomains",
            "etc/localdomains",
            "etc/valiases/goodco.example",
            "etc/cpanel/ea4/php.conf",
            "home/goodco/mail/goodco.example/alice",
        ] {
            assert!(report.files_read.contains(&root.join(rel)), "{rel}");
        }
        // Every event cites a file under the root.
        let prefix = root.display().to_string();
        assert!(events.iter().all(|e| e.file.starts_with(&prefix)));
        // And two reads of one tree agree.
        assert_eq!(tree.read().0, events);
    }

    #[test]
    fn empty_and_missing_roots() {
        let tree = Tree::new();
        let (events, report) = tree.read();
        assert!(events.is_empty());
        assert_eq!(report, ServerStateReport::default());

        let missing = tree.root().join("no-such-server");
        let mut events = Vec::new();
        let report = read_server_state(&missing, at(), &mut events);
        assert!(events.is_empty());
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].file, missing);
        assert!(report.problems[0].message.contains("server root"));
    }

    #[test]
    fn problem_display_names_file_and_line() {
        let p = Problem {
            file: PathBuf::from("/etc/userdomains"),
            line: Some(3),
            message: "expected `domain: user`".into(),
        };
        assert_eq!(p.to_string(), "/etc/userdomains:3: expected `domain: user`");
        let p = Problem { line: None, ..p };
        assert_eq!(p.to_string(), "/etc/userdomains: expected `domain: user`");
    }

    #[test]
    fn unreadable_and_escaping_files_are_problems() {
        let tree = Tree::new();
        let outside = Tree::new();
        outside.write("localdomains", "live.example\n");
        // A directory where a file belongs, a link out of the tree, a broken
        // link and a socket where an alias file belongs.
        tree.mkdir("etc/userdomains");
        tree.symlink(&outside.root().join("localdomains"), "etc/localdomains");
        tree.symlink(
            Path::new("/nonexistent/spamward"),
            "etc/outgoing_mail_hold_users",
        );
        tree.mkdir("etc/valiases");
        let _socket =
            std::os::unix::net::UnixListener::bind(tree.root().join("etc/valiases/socket.example"))
                .expect("socket");
        // `etc/valiases` being a file is a problem too (checked below with
        // another tree).
        let (events, report) = tree.read();
        assert!(events.is_empty());
        let mut got: Vec<_> = report
            .problems
            .iter()
            .map(|p| {
                (
                    p.file.strip_prefix(tree.root()).unwrap().to_path_buf(),
                    p.line,
                )
            })
            .collect();
        got.sort();
        let want: Vec<(PathBuf, Option<u64>)> = [
            "etc/localdomains",
            "etc/outgoing_mail_hold_users",
            "etc/userdomains",
            "etc/valiases/socket.example",
        ]
        .iter()
        .map(|r| (PathBuf::from(r), None))
        .collect();
        assert_eq!(got, want);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.message.contains("outside the server root"))
        );

        let tree = Tree::new();
        tree.write("etc/valiases", "not a directory\n");
        let (_, report) = tree.read();
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].message.contains("not a directory"));
    }

    #[test]
    fn a_binary_file_yields_capped_problems() {
        let tree = Tree::new();
        let mut junk = Vec::new();
        for i in 0..100u8 {
            junk.extend_from_slice(&[0xff, b'a' + i % 26, 0x00, b'\n']);
        }
        tree.write_bytes("etc/localdomains", &junk);
        let (events, report) = tree.read();
        assert!(events.is_empty());
        assert_eq!(report.problems.len(), MAX_LINE_PROBLEMS_PER_FILE + 1);
        assert_eq!(report.problems[0].line, Some(1));
        let last = report.problems.last().unwrap();
        assert_eq!(last.line, None);
        assert!(
            last.message.starts_with("80 more lines"),
            "{}",
            last.message
        );
    }

    /// Every path the readers open, for the no-panic test.
    const READ_PATHS: &[&str] = &[
        "var/cpanel/cpanel.config",
        "etc/email_send_limits",
        "var/cpanel/users/u1",
        "etc/outgoing_mail_hold_users",
        "etc/outgoing_mail_suspended_users",
        "etc/userdomains",
        "etc/localdomains",
        "etc/valiases/a.example",
        "etc/cpanel/ea4/php.conf",
        "home/u1/mail/cur/1",
        "home/u1/mail/d.example/box/new/1",
    ];

    /// Garbage, truncated and binary content in every file read, and files
    /// and directories swapped: the read never panics and every problem
    /// names a path under the root.
    #[test]
    fn no_panic_on_garbage_truncated_or_binary_input() {
        // A fixed pseudo-random generator: the same "random" bytes each run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\n\n\r\n".to_vec(),
            b":".to_vec(),
            b"=".to_vec(),
            b"*:".to_vec(),
            b"*: 200,2".to_vec(),
            b"key=\xff\xfe\xfd".to_vec(),
            "\u{feff}nobodyspam=1\n\u{2028}: \u{1F600}\n"
                .as_bytes()
                .to_vec(),
            b"Return-Path: <>".to_vec(),
            b"Content-Type: multipart/report;\n\t".to_vec(),
            b"---\n  nested:\n    deeper: x\n: :\n".to_vec(),
            vec![b'a'; 100_000],
            vec![b':'; 10_000],
            (0..=255u8).collect(),
        ];
        for round in 0..40 {
            let tree = Tree::new();
            for (i, rel) in READ_PATHS.iter().enumerate() {
                let bytes = if round < samples.len() {
                    samples[(round + i) % samples.len()].clone()
                } else {
                    let len = (next() % 4096) as usize;
                    (0..len).map(|_| (next() % 256) as u8).collect()
                };
                tree.write_bytes(rel, &bytes);
            }
            // Swapped kinds: a directory where a file belongs, files where
            // directories belong, and a link loop.
            tree.mkdir("etc/localdomains.d");
            tree.write("usr/local/cpanel/3rdparty/mailman/lists", "file");
            tree.write("home/u2/mail/d.example/box/cur", "not a dir");
            tree.mkdir("etc/apache2/conf.modules.d/suexec-dir");
            tree.symlink(Path::new("loop"), "home/u1/mail/loop");
            tree.symlink(Path::new("loop2"), "etc/valiases/loop2");
            tree.symlink(Path::new("loop2"), "etc/valiases/loop3");
            let (events, report) = tree.read();
            for p in &report.problems {
                assert!(p.file.starts_with(tree.root()), "{p}");
                assert!(!p.to_string().is_empty());
            }
            // Serializing every event works too (what `--json` does).
            for e in &events {
                serde_json::to_string(e).expect("serializes");
            }
        }
    }

    fn tree_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let mut entries: Vec<_> = fs::read_dir(dir)
                .expect("list fixture")
                .map(|e| e.expect("entry").path())
                .collect();
            entries.sort();
            for path in entries {
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                    out.push((rel, fs::read(&path).expect("read fixture")));
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out
    }

    /// `tests/fixtures/servers/{bad,good}` are [`build_server`]'s trees,
    /// checked in for `spamward audit --root ...` end-to-end tests. This
    /// keeps the two in step; `SPAMWARD_UPDATE_FIXTURES=1` rewrites them
    /// (`SPAMWARD_FIXTURE_DIR` points elsewhere than the repository's).
    #[test]
    fn fixture_trees_on_disk_match_the_builder() {
        let base = std::env::var_os("SPAMWARD_FIXTURE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/servers")
            });
        let update = std::env::var_os("SPAMWARD_UPDATE_FIXTURES").is_some();
        for quality in [Quality::Bad, Quality::Good] {
            let dir = base.join(quality.name());
            if update {
                if dir.exists() {
                    fs::remove_dir_all(&dir).expect("remove old fixture");
                }
                build_server(&dir, quality);
            }
            if !dir.exists() {
                // Built outside the repository (no fixtures beside it).
                eprintln!("no fixture tree at {}; skipped", dir.display());
                continue;
            }
            let tree = Tree::new();
            build_server(tree.root(), quality);
            assert_eq!(
                tree_files(&dir),
                tree_files(tree.root()),
                "{} differs from build_server; rerun with SPAMWARD_UPDATE_FIXTURES=1",
                dir.display()
            );
        }
    }
}
