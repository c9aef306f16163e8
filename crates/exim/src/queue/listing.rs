//! The `exim -bp` queue listing: one paragraph per message, a header line
//! `<age> <size> <id> <sender> [*** frozen ***]` and indented recipient
//! lines, `D ` marking those already delivered. Shape as printed by Exim's
//! `queue_list()`: the age is `%2dm`/`%2dh`/`%2dd` (so it may start with a
//! space), the size is blank for an empty message, and an untrusted sender
//! is followed by the submitting login in parentheses.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use super::{QueueError, SnapshotTally, looks_like_message_id, lossy};
use spamward_model::{
    Event, EventBody, MAX_RECIPIENTS, Origin, QueuedMessage, SYSTEM_USERS, Text, Timestamp,
};

/// Exim's marker for a frozen message.
const FROZEN: &str = "*** frozen ***";

/// Parses an `exim -bp` listing into [`QueuedMessage`] events at snapshot
/// time `now`, each with the 1-based line of its header line as origin.
/// Lines that are not part of a message are returned as errors; the rest of
/// the listing is still read.
pub fn parse_queue_listing(
    text: &str,
    origin_file: &str,
    now: Timestamp,
    out: &mut Vec<Event>,
) -> Vec<QueueError> {
    let mut parser = ListingParser::new(origin_file, now);
    for (index, line) in text.lines().enumerate() {
        parser.push_line(index as u64 + 1, line, out);
    }
    parser.finish(out)
}

/// A listing read line by line, so a listing of any length is parsed in
/// bounded memory: one message is held at a time.
#[derive(Debug)]
pub struct ListingParser {
    origin_file: Arc<str>,
    now: Timestamp,
    /// The message being read, with its header line.
    current: Option<(u64, QueuedMessage)>,
    errors: Vec<QueueError>,
    /// Errors not kept (beyond [`MAX_ERRORS`]).
    more_errors: u64,
    tally: SnapshotTally,
}

/// Errors kept one by one; the rest are counted.
const MAX_ERRORS: usize = 1000;

impl ListingParser {
    /// A parser for the listing `origin_file`, a snapshot taken at `now`.
    pub fn new(origin_file: &str, now: Timestamp) -> Self {
        ListingParser {
            origin_file: origin_file.into(),
            now,
            current: None,
            errors: Vec::new(),
            more_errors: 0,
            tally: SnapshotTally::default(),
        }
    }

    /// Reads line `number` (1-based); a finished message goes to `out`.
    pub fn push_line(&mut self, number: u64, line: &str, out: &mut Vec<Event>) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            self.flush(out);
            return;
        }
        if let Some(msg) = parse_message_line(line) {
            self.flush(out);
            self.current = Some((number, msg));
            return;
        }
        let indented = line.starts_with([' ', '\t']);
        match (&mut self.current, indented) {
            (Some((_, msg)), true) => {
                let item = line.trim();
                if item.starts_with("***") {
                    // `*** spool format error ***` and the like: Exim could
                    // not read this message's header file. The message is
                    // still in the queue, so it is kept; the line is
                    // reported.
                    let e = QueueError::new(&*self.origin_file, number, item);
                    self.error(e);
                } else if item.starts_with("D ") || item.starts_with("+D ") {
                    // Delivered already (`+D`: a delivered generated
                    // address, in `-bpa` output).
                } else if msg.recipients.len() <= MAX_RECIPIENTS {
                    // One past the cap is kept so the cut shows downstream
                    // (`Event::cap_recipients`); the rest cost nothing.
                    msg.recipients.push(Text::owned(item));
                }
            }
            _ => {
                let e = QueueError::new(
                    &*self.origin_file,
                    number,
                    format!(
                        "not a queue listing line: {}",
                        line.chars().take(200).collect::<String>()
                    ),
                );
                self.error(e);
            }
        }
    }

    fn error(&mut self, e: QueueError) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        } else {
            self.more_errors += 1;
        }
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        if let Some((line, msg)) = self.current.take() {
            let origin = Origin {
                file: self.origin_file.clone(),
                line,
            };
            self.tally.count(&msg);
            out.push(Event::new(self.now, &origin, EventBody::QueuedMessage(msg)));
        }
    }

    /// Ends the listing: the last message goes to `out`, then the
    /// `queue-snapshot` event; the lines that could not be read are
    /// returned.
    pub fn finish(mut self, out: &mut Vec<Event>) -> Vec<QueueError> {
        self.flush(out);
        out.extend(self.tally.event(self.now, &self.origin_file));
        if self.more_errors > 0 {
            self.errors.push(QueueError::new(
                &*self.origin_file,
                0,
                format!(
                    "{} more lines could not be read (not listed)",
                    self.more_errors
                ),
            ));
        }
        self.errors
    }
}

/// Runs `<exim> -bp` and parses its output (see [`parse_queue_listing`]);
/// the events' file is `<exim> -bp`. An error if the command cannot be run
/// or fails; otherwise the lines of its output that could not be read.
pub fn run_exim_bp(
    exim: &Path,
    now: Timestamp,
    out: &mut Vec<Event>,
) -> Result<Vec<QueueError>, QueueError> {
    let name = format!("{} -bp", exim.display());
    let output = Command::new(exim)
        .arg("-bp")
        .output()
        .map_err(|e| QueueError::new(&name, 0, format!("could not run: {e}")))?;
    if !output.status.success() {
        let stderr = lossy(&output.stderr);
        let stderr = stderr.trim();
        return Err(QueueError::new(
            &name,
            0,
            format!(
                "failed ({}){}{}",
                output.status,
                if stderr.is_empty() { "" } else { ": " },
                stderr.chars().take(500).collect::<String>()
            ),
        ));
    }
    Ok(parse_queue_listing(&lossy(&output.stdout), &name, now, out))
}

/// Whether `line` is a `-bp` message header line; used by format detection.
pub(crate) fn looks_like_listing_line(line: &str) -> bool {
    parse_message_line(line).is_some()
}

/// `<age> <size> <id> <<sender>> [(login)] [*** frozen ***]`.
fn parse_message_line(line: &str) -> Option<QueuedMessage> {
    let mut rest = line.trim();
    let frozen = match rest.strip_suffix(FROZEN) {
        Some(r) => {
            rest = r.trim_end();
            true
        }
        None => false,
    };
    let (age, r) = rest.split_once(char::is_whitespace)?;
    let age_seconds = parse_age(age)?;
    let r = r.trim_start();
    let (first, r) = r.split_once(char::is_whitespace)?;
    // The size is printed blank for an empty message, so the next word is
    // either the size or already the id.
    let (size, id, r) = if looks_like_message_id(first) && parse_size(first).is_none() {
        (None, first, r)
    } else {
        let size = parse_size(first)?;
        let (id, r) = r.trim_start().split_once(char::is_whitespace)?;
        (Some(size), id, r)
    };
    if !looks_like_message_id(id) {
        return None;
    }
    // The sender is in `<...>` and may contain spaces; `(login)` may follow.
    let r = r.trim_start();
    let close = r.rfind('>')?;
    let sender = r.strip_prefix('<')?.get(..close - 1)?;
    let login = r[close + 1..]
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if !r[close + 1..].trim().is_empty() && login.is_none() {
        return None;
    }
    let mut msg = QueuedMessage {
        message_id: Text::owned(id),
        age_seconds,
        size,
        frozen,
        bounce: sender.is_empty(),
        ..QueuedMessage::default()
    };
    msg.identity.set_sender(sender);
    if let Some(login) = login {
        msg.identity.local_user = Some(Text::owned(login));
        if !SYSTEM_USERS.contains(&login) && login != "nobody" {
            msg.identity.owner = Some(Text::owned(login));
        }
    }
    Some(msg)
}

/// `45s`, `25m`, `3h`, `2d`, `1w` → seconds.
fn parse_age(age: &str) -> Option<u64> {
    let unit = age.chars().last()?;
    let n: u64 = age[..age.len() - unit.len_utf8()].parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `512`, `2.9K`, `1.2M`, `3G` → bytes, with Exim's binary multiples.
fn parse_size(size: &str) -> Option<u64> {
    let (number, mult) = match size.chars().last()? {
        'K' => (&size[..size.len() - 1], 1024.0),
        'M' => (&size[..size.len() - 1], 1024.0 * 1024.0),
        'G' => (&size[..size.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => (size, 1.0),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let bytes = (value * mult).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
#[path = "listing_tests.rs"]
mod tests;
