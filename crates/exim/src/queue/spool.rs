//! Exim spool header files (`input/<id>-H`): the envelope, the submitting
//! user, Exim's per-message flags and the message headers, one message per
//! file. Format: the Exim specification, "Format of the -H file", and
//! `spool_in.c`, which this reader follows wherever the spec is vague.
//!
//! Deliberate leniencies, each because real files need it:
//! - The non-recipients line (`XX` or a tree) may be missing: sanitised
//!   captures such as CSM's fixtures drop it and go straight to the count.
//! - A header's declared length is trusted only when it is consistent (ends
//!   exactly at a line end followed by another header or the end of the
//!   file). Otherwise continuation lines are the lines that do not start a
//!   new header: sanitised files carry lengths that no longer match.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{QueueError, SnapshotTally, lossy};
use spamward_files::regular_file;
use spamward_model::{
    Event, EventBody, Identity, MAX_RECIPIENTS, Origin, QueuedMessage, SYSTEM_USERS, Text,
    Timestamp,
};

/// Headers copied into [`QueuedMessage::headers`], with the spelling they
/// are stored under (matching is case-insensitive; storing one spelling lets
/// rules compare names exactly).
const KEPT_HEADERS: &[&str] = &[
    "X-PHP-Script",
    "X-Mailer",
    "Reply-To",
    "X-Source",
    "X-Source-Args",
    "X-Source-Dir",
    "Received",
    "Message-ID",
];

/// Header flag Exim uses for a header that was removed or rewritten: it is
/// not transmitted, so it is not part of the message any more.
const DELETED: u8 = b'*';

/// Reads one spool header file as a [`QueuedMessage`] event at snapshot time
/// `now`. The message size is that of the sibling `<id>-D` file, when the
/// file name ends in `-H` and that file exists.
///
/// Only a regular file (or a link to one) is read: a named pipe or device
/// given that name is refused at once, never waited on.
pub fn read_header_file(path: &Path, now: Timestamp) -> Result<Event, QueueError> {
    let name = path.display().to_string();
    let (bytes, longer) = regular_file::read_capped(path, MAX_HEADER_BYTES)
        .map_err(|e| QueueError::new(&name, 0, format!("cannot read: {e}")))?;
    if longer {
        return Err(QueueError::new(
            &name,
            0,
            format!(
                "larger than {} MiB: not a spool header file",
                MAX_HEADER_BYTES >> 20
            ),
        ));
    }
    parse_header_bytes(&bytes, &name, now, data_file_size(path))
}

/// The largest spool header file read: a header lists its recipients, and
/// Exim's own limit on a message's recipients keeps real ones far smaller.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Parses the bytes of a spool header file. `origin_file` names it in the
/// event and in errors; `size` is the message size if the caller knows it.
pub fn parse_header_bytes(
    bytes: &[u8],
    origin_file: &str,
    now: Timestamp,
    size: Option<u64>,
) -> Result<Event, QueueError> {
    let mut cur = Cursor::new(bytes);
    let err = |line: u64, what: &str| QueueError::new(origin_file, line, what);

    // Line 1: `<id>-H`, which makes the file self-identifying.
    let first = cur.next_line().ok_or_else(|| err(1, "empty file"))?;
    let message_id = first
        .strip_suffix(b"-H")
        .filter(|id| !id.is_empty() && !id.iter().any(u8::is_ascii_whitespace))
        .ok_or_else(|| err(1, "first line is not `<message id>-H`"))?;
    let mut msg = QueuedMessage {
        message_id: lossy(message_id).into_owned().into(),
        ..QueuedMessage::default()
    };

    // Line 2: `<login> <uid> <gid>`; the login may contain spaces, so the
    // numbers are taken from the end as Exim does.
    let line = cur
        .next_line()
        .ok_or_else(|| err(2, "file ends before the `login uid gid` line"))?;
    let login = parse_login(line).ok_or_else(|| err(2, "expected `<login> <uid> <gid>`"))?;
    msg.identity = identity_for_login(&lossy(login));

    // Line 3: `<sender>`, `<>` for a bounce.
    let line = cur
        .next_line()
        .ok_or_else(|| err(3, "file ends before the sender line"))?;
    let sender = line
        .strip_prefix(b"<")
        .and_then(|s| s.strip_suffix(b">"))
        .ok_or_else(|| err(3, "expected the envelope sender in `<...>`"))?;
    msg.bounce = sender.is_empty();
    msg.identity.set_sender(&lossy(sender));

    // Line 4: `<received epoch> <warning count>`.
    let line = cur
        .next_line()
        .ok_or_else(|| err(4, "file ends before the received-time line"))?;
    let received = lossy(line)
        .split_ascii_whitespace()
        .next()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| err(4, "expected `<received time> <warning count>`"))?;
    msg.age_seconds = u64::try_from(now.seconds.saturating_sub(received)).unwrap_or(0);

    // Flag lines, then the first line after them.
    let mut host_ip = None;
    let mut helo = None;
    let after_flags = loop {
        let line = cur
            .next_line()
            .ok_or_else(|| err(cur.line + 1, "file ends before the recipients"))?;
        let Some(flag) = line.strip_prefix(b"-") else {
            break line;
        };
        // Exim ignores flags it does not know, so that spools survive
        // upgrades and downgrades; so do we.
        let flag = lossy(flag);
        let (name, value) = flag.split_once(' ').unwrap_or((flag.as_ref(), ""));
        match name {
            "frozen" => msg.frozen = true,
            "auth_id" => msg.identity.auth_id = non_empty(value),
            "host_address" => host_ip = strip_port(value),
            "host_name" => msg.identity.client_host = non_empty(value),
            "helo_name" => helo = non_empty(value),
            // ACL variables: the value follows on its own, length-prefixed,
            // and may itself contain newlines, so it must be skipped by
            // length or its lines would be misread as flags.
            "aclc" | "aclm" | "acl" => {
                let line_no = cur.line;
                let len = value
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| err(line_no, "expected `-acl<c|m> <name> <length>`"))?;
                cur.skip_value(len).ok_or_else(|| {
                    err(
                        line_no,
                        "the variable's value runs past the end of the file",
                    )
                })?;
            }
            _ => {}
        }
    };
    msg.identity.client_ip = host_ip.map(Text::from);
    if msg.identity.client_host.is_none() {
        msg.identity.client_host = helo;
    }

    // Addresses already delivered: `XX` for none, else a tree written
    // pre-order, one node a line, `<left?><right?> <address>`.
    let mut delivered = HashSet::new();
    let count_line = if after_flags.starts_with(b"XX") {
        cur.next_line()
            .ok_or_else(|| err(cur.line + 1, "file ends before the recipient count"))?
    } else if is_tree_node(after_flags) {
        let mut pending = 1usize;
        let mut node = after_flags;
        loop {
            if !is_tree_node(node) {
                return Err(err(
                    cur.line,
                    "expected a non-recipients tree node `YN address`",
                ));
            }
            delivered.insert(lossy(&node[3..]).to_ascii_lowercase());
            pending = pending - 1 + usize::from(node[0] == b'Y') + usize::from(node[1] == b'Y');
            node = cur
                .next_line()
                .ok_or_else(|| err(cur.line + 1, "file ends inside the non-recipients tree"))?;
            if pending == 0 {
                break node;
            }
        }
    } else {
        after_flags
    };

    // Recipient count, then that many recipient lines.
    let count = lossy(count_line)
        .trim()
        .parse::<usize>()
        .map_err(|_| err(cur.line, "expected the recipient count"))?;
    let mut recipients = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let line = cur.next_line().ok_or_else(|| {
            err(
                cur.line + 1,
                &format!("file ends after {i} of {count} recipients"),
            )
        })?;
        let address = lossy(recipient_address(line)).into_owned();
        // The listing shows pending recipients only; so do we. One past the
        // cap is kept so the cut shows (`Event::cap_recipients`).
        if recipients.len() <= MAX_RECIPIENTS && !delivered.contains(&address.to_ascii_lowercase())
        {
            recipients.push(address.into());
        }
    }
    msg.recipients = recipients;

    // A blank line, then the headers.
    match cur.next_line() {
        Some([]) => {}
        Some(_) => return Err(err(cur.line, "expected a blank line after the recipients")),
        None => return Err(err(cur.line + 1, "file ends before the headers")),
    }
    let mut script_header = None;
    let mut first_received = true;
    while !cur.at_end() {
        let start_line = cur.line + 1;
        let Some((flag, text)) = cur.next_header() else {
            return Err(err(start_line, "expected a header line `NNNc Name: value`"));
        };
        if flag == DELETED {
            continue;
        }
        let Some((name, value)) = split_header(text) else {
            continue;
        };
        if name.eq_ignore_ascii_case("From") {
            msg.from_header.get_or_insert(value.into());
        } else if name.eq_ignore_ascii_case("Subject") {
            msg.subject.get_or_insert(value.into());
        } else if let Some(kept) = KEPT_HEADERS.iter().find(|k| k.eq_ignore_ascii_case(name)) {
            if *kept == "Received" {
                if !first_received {
                    continue;
                }
                first_received = false;
            }
            if *kept == "X-PHP-Script" && script_header.is_none() {
                script_header = Some(value.clone());
            }
            msg.headers.push((Text::owned(kept), value.into()));
        }
    }

    // cPanel's `X-PHP-Script: <vhost>/<path> for <client ip>[, <proxy>...]`
    // names the web script and, for web-submitted mail with no SMTP peer,
    // the visitor who triggered it.
    if let Some(v) = script_header {
        let (script, ip) = match v.rsplit_once(" for ") {
            Some((s, ip)) => (s.trim(), ip.split(',').next().map(str::trim)),
            None => (v.trim(), None),
        };
        msg.identity.script = non_empty(script);
        if msg.identity.client_ip.is_none() {
            msg.identity.client_ip = ip.and_then(non_empty);
        }
    }
    msg.size = size;

    let origin = Origin {
        file: origin_file.into(),
        line: 0,
    };
    Ok(Event::new(now, &origin, EventBody::QueuedMessage(msg)))
}

/// Reads every `*-H` file of a spool as events at snapshot time `now`,
/// and then a `queue-snapshot` event with what they held ([`SnapshotTally`]).
///
/// `dir` may be the spool root (its `input/` is used), `input/` itself, or
/// any directory of `-H` files; one level of subdirectories is read too,
/// for `split_spool_directory`'s `input/<c>/`. A file that cannot be read or
/// parsed is an error in the returned list; the others are still read.
pub fn read_spool_dir(dir: &Path, now: Timestamp, out: &mut Vec<Event>) -> Vec<QueueError> {
    let (files, mut errors) = list_header_files(dir);
    let mut tally = SnapshotTally::default();
    for path in files {
        match read_header_file(&path, now) {
            Ok(event) => {
                if let EventBody::QueuedMessage(q) = &event.body {
                    tally.count(q);
                }
                out.push(event);
            }
            // Delivered and removed between the listing and the read: the
            // message simply left the queue, which is not an error.
            Err(_) if !path.exists() => {}
            Err(e) => errors.push(e),
        }
    }
    out.extend(tally.event(now, &dir.display().to_string()));
    errors
}

/// The `*-H` files of a spool, sorted by path (see [`read_spool_dir`] for
/// which directories are searched), and the directories that could not be
/// listed.
pub fn list_header_files(dir: &Path) -> (Vec<PathBuf>, Vec<QueueError>) {
    let input = dir.join("input");
    let root = if input.is_dir() {
        input
    } else {
        dir.to_path_buf()
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut subdirs = Vec::new();
    scan_dir(&root, &mut files, Some(&mut subdirs), &mut errors);
    for sub in subdirs {
        scan_dir(&sub, &mut files, None, &mut errors);
    }
    files.sort();
    (files, errors)
}

fn scan_dir(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    mut subdirs: Option<&mut Vec<PathBuf>>,
    errors: &mut Vec<QueueError>,
) {
    let list_err = |e: io::Error| {
        QueueError::new(
            dir.display().to_string(),
            0,
            format!("cannot list directory: {e}"),
        )
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return errors.push(list_err(e)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(list_err(e));
                continue;
            }
        };
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if let Some(subdirs) = subdirs.as_deref_mut() {
                subdirs.push(path);
            }
        } else if entry.file_name().as_encoded_bytes().ends_with(b"-H") {
            // Links are checked when read (they must lead to a regular
            // file); anything else that is not a file is reported, never
            // opened: a named pipe would block the reader forever.
            if kind.is_file() || kind.is_symlink() {
                files.push(path);
            } else {
                errors.push(QueueError::new(
                    path.display().to_string(),
                    0,
                    "not a regular file; not read",
                ));
            }
        }
    }
}

/// Size of the `<id>-D` file beside `<id>-H`.
pub fn data_file_size(header: &Path) -> Option<u64> {
    let name = header.file_name()?.as_encoded_bytes();
    let stem = name.strip_suffix(b"-H")?;
    let mut data = stem.to_vec();
    data.extend_from_slice(b"-D");
    // The bytes came from an OsStr and only ASCII was appended.
    let data = std::ffi::OsStr::new(std::str::from_utf8(&data).ok()?);
    fs::metadata(header.with_file_name(data))
        .ok()
        .map(|m| m.len())
}

/// Who submitted the message, from the `-H` file's login.
fn identity_for_login(login: &str) -> Identity {
    let login = login.trim();
    // `nobody` is the web server, not an account that could own mail.
    let system = SYSTEM_USERS.contains(&login) || login == "nobody";
    Identity {
        local_user: non_empty(login),
        owner: if system { None } else { non_empty(login) },
        ..Identity::default()
    }
}

/// The login of a `<login> <uid> <gid>` line; uid and gid may be negative.
fn parse_login(line: &[u8]) -> Option<&[u8]> {
    let line = line.trim_ascii_end();
    let (rest, _gid) = split_last_number(line)?;
    let (login, _uid) = split_last_number(rest)?;
    Some(login)
}

/// `<text> <number>` → (`<text>`, number bytes).
fn split_last_number(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = s.iter().rposition(|&b| b == b' ')?;
    let (head, num) = (&s[..space], &s[space + 1..]);
    let digits = num.strip_prefix(b"-").unwrap_or(num);
    (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit)).then_some((head, num))
}

/// `192.0.2.7.51234` → `192.0.2.7`; `2001:db8::1.25` → `2001:db8::1`.
/// Exim appends the port after a dot; older spools may omit it, so the
/// port is only stripped when what remains is an address.
fn strip_port(value: &str) -> Option<String> {
    let value = value.trim().trim_start_matches('[').replace(']', "");
    if value.is_empty() {
        return None;
    }
    if let Some((addr, port)) = value.rsplit_once('.')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && (addr.parse::<IpAddr>().is_ok()
            || (addr.contains(':') && value.parse::<IpAddr>().is_err()))
    {
        return Some(addr.to_owned());
    }
    Some(value)
}

fn is_tree_node(line: &[u8]) -> bool {
    matches!(line, [b'Y' | b'N', b'Y' | b'N', b' ', _, ..])
}

/// The address of a recipient line, without the data Exim appends after it
/// (see `spool_in.c`: `<address> <errors_to> <len>,<pno>#1`, with DSN
/// `<address> <orcpt> <len>,<flags> <errors_to> <len>,<pno>#3`, and the
/// older `<address> <pno>` and `<address> <n>,<pno>,<n>`). Read from the
/// right, because addresses may contain spaces.
fn recipient_address(line: &[u8]) -> &[u8] {
    let trimmed = line.trim_ascii_end();
    let mut end = trimmed.len();
    while end > 0 && trimmed[end - 1].is_ascii_digit() {
        end -= 1;
    }
    if end == trimmed.len() || end == 0 {
        return trimmed;
    }
    match trimmed[end - 1] {
        // Exim 3: `<address> <digits>,<digits>,<digits>`.
        b',' => {
            let mut p = end - 1;
            while p > 0 && (trimmed[p - 1].is_ascii_digit() || trimmed[p - 1] == b',') {
                p -= 1;
            }
            if p > 0 && trimmed[p - 1] == b' ' {
                &trimmed[..p - 1]
            } else {
                trimmed
            }
        }
        // Early Exim 4: `<address> <pno>`.
        b' ' => &trimmed[..end - 1],
        b'#' => {
            let flags: u32 = lossy(&trimmed[end..]).parse().unwrap_or(0);
            // `p` ends what precedes the field being read: first the `#`,
            // then the space before each field taken off.
            let mut p = end - 1;
            for bit in [1, 2] {
                if flags & bit == 0 {
                    continue;
                }
                match strip_length_field(&trimmed[..p]) {
                    Some(q) if q > 0 && trimmed[q - 1] == b' ' => p = q - 1,
                    // Inconsistent lengths: fall back to the first word,
                    // which is right for every address without spaces.
                    _ => return first_word(trimmed),
                }
            }
            if flags & 3 == 0 {
                // No field Exim knows: the address is the first word.
                return first_word(trimmed);
            }
            &trimmed[..p]
        }
        _ => trimmed,
    }
}

/// For `s` = `... <field> <len>,<n>`, the index where `<field>` starts
/// (`<len>` bytes before the space preceding the numbers).
fn strip_length_field(s: &[u8]) -> Option<usize> {
    let mut p = s.len();
    while p > 0 && (s[p - 1].is_ascii_digit() || s[p - 1] == b',' || s[p - 1] == b'-') {
        p -= 1;
    }
    let numbers = lossy(&s[p..]).into_owned();
    let len: usize = numbers.split(',').next()?.parse().ok()?;
    // `s[p - 1]` is the space before the numbers; the field ends there.
    let field_end = p.checked_sub(1).filter(|&i| s[i] == b' ')?;
    field_end.checked_sub(len)
}

fn first_word(s: &[u8]) -> &[u8] {
    s.split(|&b| b == b' ').next().unwrap_or(s)
}

/// `Name: value` with folded continuation lines joined by single spaces.
fn split_header(text: &[u8]) -> Option<(&str, String)> {
    let colon = text.iter().position(|&b| b == b':')?;
    let name = std::str::from_utf8(text[..colon].trim_ascii()).ok()?;
    if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let mut value = String::new();
    for piece in text[colon + 1..].split(|&b| b == b'\n') {
        let piece = piece.trim_ascii();
        if piece.is_empty() {
            continue;
        }
        if !value.is_empty() {
            value.push(' ');
        }
        value.push_str(&lossy(piece));
    }
    Some((name, value))
}

fn non_empty(s: &str) -> Option<Text<'static>> {
    let s = s.trim();
    (!s.is_empty()).then(|| Text::owned(s))
}

/// A byte cursor that counts lines. Working on bytes (not `&str`) keeps
/// length-prefixed values exact and never splits a UTF-8 sequence: only
/// whole fields are decoded.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// Number of the last line returned (1-based; 0 before the first).
    line: u64,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor {
            data,
            pos: 0,
            line: 0,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next line without `\n` / `\r\n`.
    fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.at_end() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let (line, used) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += used;
        self.line += 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// Skips a `len`-byte value and the newline after it.
    fn skip_value(&mut self, len: usize) -> Option<()> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.data.len())?;
        self.line += self.data[self.pos..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.pos = end;
        if self.data.get(self.pos) == Some(&b'\n') {
            self.pos += 1;
            self.line += 1;
        } else if !self.at_end() {
            // Exim writes a newline after the value; without one the length
            // was wrong and everything after is suspect.
            return None;
        }
        Some(())
    }

    /// One header: its flag byte and its text (name, value and
    /// continuation lines). `None` if the next line does not start one.
    fn next_header(&mut self) -> Option<(u8, &'a [u8])> {
        let (declared, flag, text_start) = header_start(&self.data[self.pos..])?;
        let text_start = self.pos + text_start;
        let exact = text_start
            .checked_add(declared)
            .filter(|&end| end <= self.data.len() && declared > 0 && self.data[end - 1] == b'\n')
            .filter(|&end| end == self.data.len() || header_start(&self.data[end..]).is_some());
        let end = match exact {
            Some(end) => end,
            None => {
                // Lengths disagree with the text: a header runs until the
                // next line that starts a header.
                let mut end = line_end(self.data, text_start);
                while end < self.data.len() && header_start(&self.data[end..]).is_none() {
                    end = line_end(self.data, end);
                }
                end
            }
        };
        let text = &self.data[text_start..end];
        self.line += text.iter().filter(|&&b| b == b'\n').count() as u64;
        if text.last() != Some(&b'\n') {
            // The last line of the file had no newline; it still counts.
            self.line += 1;
        }
        self.pos = end;
        Some((flag, text))
    }
}

/// Index just past the `\n` ending the line that starts at `from`.
fn line_end(data: &[u8], from: usize) -> usize {
    data[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| from + i + 1)
}

/// `NNNc ` at the start of `s`: (length, flag, offset of the text). As
/// Exim's `fscanf("%d%c ")`, whitespace after the flag is skipped.
fn header_start(s: &[u8]) -> Option<(usize, u8, usize)> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits < 3 {
        return None;
    }
    let flag = *s.get(digits)?;
    if flag == b'\n' || flag == b'\r' || s.get(digits + 1) != Some(&b' ') {
        return None;
    }
    let mut text = digits + 1;
    while matches!(s.get(text), Some(b' ' | b'\t')) {
        text += 1;
    }
    let declared = lossy(&s[..digits]).parse().ok()?;
    Some((declared, flag, text))
}

#[cfg(test)]
#[path = "spool_tests.rs"]
pub(crate) mod tests;
