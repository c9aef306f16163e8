//! Exim mainlog parser: turns `exim_mainlog` lines (plain, syslog or journal
//! prefixed) into [`Event`]s.
//!
//! Besides reading single lines it owns the joins Exim's log needs: a
//! message's sender identity is remembered from its `<=` arrival and given to
//! its deliveries, completion and freezing; `cwd=` lines give the arrival
//! that follows them its script and owner; cPanel's `Sender identification`
//! line, which comes *after* the arrival, sets the owner of an arrival held
//! back for a few lines to wait for it.
//!
//! Lines are hand-parsed with byte scans (no regex) so replaying a large log
//! is not parser bound, and every slice is taken at an ASCII delimiter so no
//! input can make it panic.

mod fields;
mod prefix;
mod saved;

pub use saved::SavedMessage;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::LineOutcome;
use fields::{Host, Scanner, Tok, parse_host, split_address, split_word, strip_angles, unescape};

use spamward_model::clock::{LocalClock, LocalZone};
use spamward_model::event::{
    AuthFailure, Delivery, DeliveryOutcome, Event, EventBody, Extension, GovernorAction,
    GovernorLimit, Identity, MessageReceived, MessageState, Origin, Rejection, SmtpStage, Text,
    Timestamp, extension_kind,
};

/// How many lines an arrival waits for its `Sender identification`.
const HOLD_LINES: u64 = 64;
/// How long (log time) it waits at most, so a quiet live log is not delayed
/// by a whole 64 lines.
const HOLD_SECONDS: i64 = 5;
/// Messages whose sender identity is remembered for their deliveries.
const MAX_TRACKED: usize = 500_000;
/// How far (seconds) a `cwd=` line may precede the arrival it belongs to.
const CWD_WINDOW: i64 = 2;
/// `cwd=` lines without a pid waiting for their arrival.
const MAX_PENDING_CWDS: usize = 64;
/// `cwd=` lines remembered per pid before old ones are dropped.
const MAX_CWD_PIDS: usize = 4096;

/// The parser's maps, looked up on nearly every line by message id: std's
/// SipHash was a twentieth of parsing; foldhash is several times faster and
/// still seeded per process.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// An Exim message id packed into a fixed array: a cheap map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MsgKey {
    len: u8,
    bytes: [u8; 23],
}

/// Validates the shape of an Exim message id: `6-6-2` (before 4.97) or
/// `6-11-4` (4.97 and later), base-62 characters between the dashes.
fn message_key(tok: &str) -> Option<MsgKey> {
    let b = tok.as_bytes();
    let (d1, d2) = match b.len() {
        16 => (6, 13),
        23 => (6, 18),
        _ => return None,
    };
    for (i, &c) in b.iter().enumerate() {
        let ok = if i == d1 || i == d2 {
            c == b'-'
        } else {
            c.is_ascii_alphanumeric()
        };
        if !ok {
            return None;
        }
    }
    let mut bytes = [0u8; 23];
    bytes[..b.len()].copy_from_slice(b);
    Some(MsgKey {
        len: b.len() as u8,
        bytes,
    })
}

#[derive(Debug, Default)]
struct MsgInfo {
    identity: Identity,
    frozen: bool,
    /// When it was first seen, counted in messages: a checkpoint rebuilds
    /// the forgetting order from it.
    seq: u64,
    /// Whether a checkpoint holds it: forgetting it must then be saved
    /// too, while one forgotten before any checkpoint saw it leaves no
    /// trace to save.
    saved: bool,
}

/// An event waiting in the output queue; `wait` is set while an arrival
/// waits for its sender identification.
#[derive(Debug)]
struct Held {
    event: Event,
    wait: Option<MsgKey>,
    deadline: u64,
    /// A local arrival by `nobody` (or another non-account user) whose
    /// `cwd=` is claimed only when it leaves the queue: it could run in any
    /// home, so it waits for the arrivals of real users, which claim the
    /// `cwd=` in their own home at once, to take theirs first.
    claim: Option<WeakClaim>,
}

#[derive(Debug, Clone, Copy)]
struct WeakClaim {
    key: MsgKey,
    /// Line count until which the arrival is held for its claim.
    until_line: u64,
}

/// Lines a weak `cwd=` claim waits for real users' arrivals.
const CLAIM_LINES: u64 = 16;

#[derive(Debug)]
struct Cwd {
    path: String,
    time: i64,
}

/// Per-line context shared by the line handlers.
struct Ctx<'o> {
    time: Timestamp,
    pid: Option<u32>,
    origin: &'o Origin,
}

/// Stateful Exim mainlog parser. Feed it lines in log order.
#[derive(Debug, Default)]
pub struct EximLogParser {
    lines: u64,
    /// Turns the times lines write into instants.
    clock: LocalClock,
    /// The last time a line wrote, read.
    stamps: prefix::StampCache,
    /// The time held events wait against: the earlier of the last two
    /// lines' times. A clock that steps back (a daylight saving change, an
    /// NTP step) or one stray line from the future must not make every
    /// waiting arrival look stale: only time that two lines agree has
    /// passed counts.
    now: i64,
    /// The previous line's time.
    last_line: Option<i64>,
    held: VecDeque<Held>,
    waiting: usize,
    messages: HashMap<MsgKey, MsgInfo>,
    /// The messages in the order they were first seen, to forget the
    /// oldest past [`MAX_TRACKED`]; completed ones are left in it and
    /// swept out once they are half of it.
    order: VecDeque<MsgKey>,
    cwd_by_pid: HashMap<u32, Cwd>,
    /// Messages first seen so far (numbers [`MsgInfo::seq`]).
    seq: u64,
    /// Whether `changed` is kept: only a daemon saves checkpoints.
    tracking: bool,
    /// Messages remembered, changed or forgotten since the last
    /// [`EximLogParser::drain_changed`].
    changed: HashSet<MsgKey>,
    /// `cwd=` lines without a pid, oldest first: concurrent scripts
    /// interleave their `cwd=` and `<=` lines, so each arrival takes the
    /// oldest fresh one it can belong to.
    pending_cwds: VecDeque<Cwd>,
    /// The client IP and time of the last refusal: an ACL `drop` logs its
    /// refusal and then `closed by DROP in ACL` for the same connection,
    /// which is no second refusal.
    /// (The IP is kept in a reused buffer: brute-force logs are mostly
    /// refusals.)
    last_refusal: (String, Option<i64>),
}

fn is_system_user(u: &str) -> bool {
    // `nobody` is the web server, not an account that could own mail.
    spamward_model::SYSTEM_USERS.contains(&u) || u == "nobody"
}

fn real_user(u: &str) -> Option<&str> {
    Some(u).filter(|u| !u.is_empty() && !is_system_user(u))
}

/// A `cwd=` that names a user or web directory, not Exim's own spool or `/`.
fn is_user_dir(path: &str) -> bool {
    !path.is_empty() && path != "/" && !path.starts_with("/var/spool/exim")
}

/// `/home/<user>/...` (also `/home2`, `/home3`, ... as cPanel uses), found
/// as a path segment so a server root mounted elsewhere still resolves.
fn home_owner(path: &str) -> Option<&str> {
    let mut segments = path.split('/');
    while let Some(segment) = segments.next() {
        let is_home = segment
            .strip_prefix("home")
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if is_home {
            return segments.next().and_then(real_user);
        }
    }
    None
}

/// Whether a `cwd=` line's command is Exim running itself (a delivery
/// process `-Mc`, a queue runner `-q`, the daemon `-bd`, a bounce `-E<id>`,
/// admin commands) rather than something submitting mail.
fn is_exim_internal(args: &str) -> bool {
    args.split_ascii_whitespace().skip(1).any(|a| {
        a.starts_with("-M")
            || a.starts_with("-q")
            || a.starts_with("-E")
            || matches!(a, "-bd" | "-bdf" | "-bp" | "-bpc" | "-bh" | "-bt" | "-bV")
    })
}

/// Whether the `cwd=` directory can be the submitting process's: a real
/// user submits from their own home (or from outside any home); `nobody`
/// and system users can run anywhere.
fn cwd_fits(path: &str, local_user: Option<&str>) -> bool {
    match (home_owner(path), local_user.and_then(real_user)) {
        (Some(owner), Some(user)) => owner == user,
        _ => true,
    }
}

fn opt(s: &str) -> Option<Text<'static>> {
    (!s.is_empty()).then(|| Text::owned(s))
}

impl EximLogParser {
    /// A parser with no state, for a log written in UTC.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser for a log whose times are written in `zone`.
    pub fn in_zone(zone: LocalZone) -> Self {
        EximLogParser {
            clock: LocalClock::new(zone),
            ..Self::default()
        }
    }

    /// Keeps track of the messages remembered, changed or forgotten, for a
    /// daemon that saves them with its checkpoints
    /// ([`EximLogParser::drain_changed`]); a replay has no use for it.
    pub fn tracking_changes(mut self) -> Self {
        self.tracking = true;
        self
    }

    /// Feed one line (no trailing newline). Events that are ready are
    /// appended to `out` (possibly events of earlier lines that were held
    /// back for a join).
    pub fn push_line(&mut self, line: &str, origin: &Origin, out: &mut Vec<Event>) -> LineOutcome {
        self.lines += 1;
        let outcome = self.parse(line, origin, out);
        self.release(out);
        outcome
    }

    /// End of input: emit everything still held back.
    ///
    /// A live reader may also call this when its input goes idle; parsing
    /// can continue afterwards (the joins that were still waiting are lost).
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        while let Some(h) = self.held.pop_front() {
            out.push(self.settle(h));
        }
        self.waiting = 0;
    }

    fn release(&mut self, out: &mut Vec<Event>) {
        while let Some(front) = self.held.front() {
            let young = front.event.time.seconds + HOLD_SECONDS > self.now;
            let waiting = front.wait.is_some() && front.deadline > self.lines && young;
            // A claim is for a `cwd=` written within seconds of the
            // arrival: once a line is later than that, whatever it waited
            // for has come or will not.
            let line_time = self.last_line.unwrap_or(self.now);
            let claiming = front.claim.is_some_and(|c| {
                c.until_line > self.lines && front.event.time.seconds + CWD_WINDOW >= line_time
            });
            if waiting || claiming {
                break;
            }
            let h = self.held.pop_front().expect("front exists");
            if h.wait.is_some() {
                self.waiting -= 1;
            }
            out.push(self.settle(h));
        }
    }

    /// A held event leaving the queue: resolve its weak `cwd=` claim.
    fn settle(&mut self, h: Held) -> Event {
        let mut event = h.event;
        if let Some(claim) = h.claim
            && let EventBody::MessageReceived(m) = &mut event.body
            && let Some(cwd) =
                self.take_cwd(None, event.time.seconds, m.identity.local_user.as_deref())
            && is_user_dir(&cwd)
        {
            if m.identity.owner.is_none() {
                m.identity.owner = home_owner(&cwd).map(Text::owned);
            }
            m.identity.script = Some(cwd.into());
            if let Some(info) = self.message_mut(claim.key) {
                info.identity.owner = m.identity.owner.clone();
                info.identity.script = m.identity.script.clone();
            }
            // Lines about the message queued behind its arrival joined the
            // identity before the claim: give them the script too.
            for later in &mut self.held {
                let (id, identity) = match &mut later.event.body {
                    EventBody::Delivery(d) => (d.message_id.as_str(), &mut d.identity),
                    EventBody::MessageCompleted(c) | EventBody::MessageFrozen(c) => {
                        (c.message_id.as_str(), &mut c.identity)
                    }
                    _ => continue,
                };
                if m.message_id == id {
                    identity.owner = m.identity.owner.clone();
                    identity.script = m.identity.script.clone();
                }
            }
        }
        event
    }

    /// Queues behind held arrivals so the output keeps log order.
    fn emit(&mut self, event: Event, out: &mut Vec<Event>) {
        if let EventBody::Rejection(r) = &event.body {
            let (ip, at) = &mut self.last_refusal;
            ip.clear();
            ip.push_str(r.client_ip.as_deref().unwrap_or(""));
            *at = r.client_ip.is_some().then_some(event.time.seconds);
        }
        if self.held.is_empty() {
            out.push(event);
        } else {
            self.held.push_back(Held {
                event,
                wait: None,
                deadline: 0,
                claim: None,
            });
        }
    }

    /// The held arrival of `key`, if still waiting.
    fn held_arrival(&mut self, key: MsgKey) -> Option<&mut Held> {
        if self.waiting == 0 {
            return None;
        }
        self.held.iter_mut().rev().find(|h| h.wait == Some(key))
    }

    /// Another line about the message: its identification is not coming.
    fn release_id(&mut self, key: MsgKey) {
        if let Some(h) = self.held_arrival(key) {
            h.wait = None;
            self.waiting -= 1;
        }
    }

    /// Notes that `key`'s message changed, for the next save.
    fn mark_changed(&mut self, key: MsgKey) {
        if self.tracking {
            self.changed.insert(key);
        }
    }

    /// Forgets a message, and notes it for the next save if a save holds
    /// it.
    fn forget(&mut self, key: MsgKey) -> Option<MsgInfo> {
        let info = self.messages.remove(&key);
        if self.tracking {
            if info.as_ref().is_some_and(|i| i.saved) {
                self.changed.insert(key);
            } else {
                self.changed.remove(&key);
            }
        }
        info
    }

    fn remember(&mut self, key: MsgKey) -> &mut MsgInfo {
        self.mark_changed(key);
        if !self.messages.contains_key(&key) {
            self.order.push_back(key);
            self.seq += 1;
            if self.order.len() > MAX_TRACKED
                && let Some(old) = self.order.pop_front()
            {
                self.forget(old);
            }
            if self.order.len() > 2 * self.messages.len() + 1024 {
                let messages = &self.messages;
                self.order.retain(|k| messages.contains_key(k));
            }
            let seq = self.seq;
            return self.messages.entry(key).or_insert(MsgInfo {
                seq,
                ..MsgInfo::default()
            });
        }
        self.messages.entry(key).or_default()
    }

    /// A message already remembered, to change.
    fn message_mut(&mut self, key: MsgKey) -> Option<&mut MsgInfo> {
        if self.tracking && self.messages.contains_key(&key) {
            self.changed.insert(key);
        }
        self.messages.get_mut(&key)
    }

    fn identity_of(&self, key: MsgKey) -> Option<Identity> {
        self.messages.get(&key).map(|m| m.identity.clone())
    }

    fn parse(&mut self, line: &str, origin: &Origin, out: &mut Vec<Event>) -> LineOutcome {
        // A crash or power loss leaves the file's unwritten tail as NULs,
        // and the next line Exim writes follows them on the same line.
        let line = line.trim_start_matches('\0');
        if line.starts_with([' ', '\t']) {
            // A continuation: Exim writes the further lines of a long
            // entry indented, without a time. The first line said it.
            return LineOutcome::Ignored;
        }
        let Some(p) = prefix::split(line, &mut self.stamps) else {
            return LineOutcome::Unparsed;
        };
        let time = self.clock.resolve(p.time);
        let later = self.last_line.is_some_and(|t| time.seconds > t);
        self.now = self.last_line.map_or(time.seconds, |t| t.min(time.seconds));
        self.last_line = Some(time.seconds);
        if later {
            // What this line's time releases leaves first: a held arrival's
            // `cwd=` claim must be settled before this line's own arrival
            // takes the `cwd=` lines of its time (and drops older ones).
            self.release(out);
        }
        let ctx = Ctx {
            time,
            pid: p.pid,
            origin,
        };
        let body = p.body;
        let (first, rest) = split_word(body).unwrap_or((body, ""));
        if let Some(key) = message_key(first) {
            return self.id_line(key, first, rest, &ctx, out);
        }
        self.plain_line(body, &ctx, out)
    }

    fn id_line(
        &mut self,
        key: MsgKey,
        id: &str,
        rest: &str,
        ctx: &Ctx<'_>,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        // `(=` is an arrival Exim accepted while telling the client it
        // refused it (fakereject): the message is real and is delivered.
        if let Some(r) = rest
            .strip_prefix("<= ")
            .or_else(|| rest.strip_prefix("(= "))
        {
            return self.arrival(key, id, r, ctx);
        }
        if let Some(r) = rest.strip_prefix("Sender identification ") {
            return self.identification(key, r);
        }
        if let Some(r) = rest.strip_prefix("nobody send identification ") {
            return self.identification(key, r);
        }
        self.release_id(key);
        let marker = rest.get(..3);
        let outcome = match marker {
            // `>>`: a cutthrough delivery, made while the client waited.
            Some("=> " | "-> " | "*> " | ">> ") => Some(DeliveryOutcome::Delivered),
            Some("== ") => Some(DeliveryOutcome::Deferred),
            Some("** ") => Some(DeliveryOutcome::Failed),
            _ => None,
        };
        if let Some(outcome) = outcome {
            return self.delivery(key, id, outcome, &rest[3..], ctx, out);
        }
        if rest == "Completed" || rest.starts_with("Completed ") {
            // Nothing more is logged of a completed message: forget it (and
            // say so to the next save).
            let identity = self.forget(key).map(|m| m.identity).unwrap_or_default();
            let ev = EventBody::MessageCompleted(MessageState {
                message_id: Text::owned(id),
                reason: None,
                identity,
            });
            self.emit(Event::new(ctx.time, ctx.origin, ev), out);
            return LineOutcome::Understood;
        }
        if split_word(rest).is_some_and(|(_, r)| r.starts_with("authenticator failed H=")) {
            // Exim as a client, refused by the remote server it delivers
            // to (`<id> plain authenticator failed H=host [ip] 535 ...`):
            // nobody guessed a password here.
            return LineOutcome::Ignored;
        }
        if rest.starts_with('[') && rest.contains("] SSL verify error:") {
            // A certificate that did not verify, noted on a delivery; the
            // delivery line says what came of it.
            return LineOutcome::Ignored;
        }
        if rest.contains(": error ignored") {
            // `<addr> [<original>]: error ignored[: why]`: the failure
            // before it had its bounce suppressed (`errors_to = <>`, no
            // DSN asked for): a note, not a new failure.
            return LineOutcome::Ignored;
        }
        if is_host_failure_note(rest) {
            // `<id> host <name> [<ip>]: Connection timed out`, `<id> <name>
            // [<ip>] Network is unreachable`: Exim notes each host that
            // failed before the delivery line, which says what came of the
            // attempt.
            return LineOutcome::Ignored;
        }
        if rest.starts_with("Message is frozen") {
            // A queue run passing over a message frozen earlier: no new
            // freeze, even when the freeze itself was before this log.
            if let Some(m) = self.message_mut(key) {
                m.frozen = true;
            }
            return LineOutcome::Ignored;
        }
        if let Some(reason) = frozen_reason(rest) {
            let info = self.remember(key);
            if info.frozen {
                return LineOutcome::Understood;
            }
            info.frozen = true;
            let identity = info.identity.clone();
            let ev = EventBody::MessageFrozen(MessageState {
                message_id: Text::owned(id),
                reason: reason.map(Text::owned),
                identity,
            });
            self.emit(Event::new(ctx.time, ctx.origin, ev), out);
            return LineOutcome::Understood;
        }
        if rest.starts_with("Unfrozen") || rest.starts_with("unfrozen") {
            if let Some(m) = self.message_mut(key) {
                m.frozen = false;
            }
            return LineOutcome::Ignored;
        }
        if rest.starts_with("H=") || rest.starts_with("F=") || rest.starts_with("U=") {
            return self.session(rest, Some(id), ctx, out);
        }
        if let Some(r) = rest.strip_prefix("SMTP connection from ") {
            return self.smtp_connection(r, Some(id), ctx, out);
        }
        if let Some(r) = rest.strip_prefix("SA: Action: ") {
            return self.spamassassin(rest, r, id, ctx, out);
        }
        if IGNORED_ID_LINES.iter().any(|p| rest.starts_with(p)) || rest.contains(" rewritten as ") {
            return LineOutcome::Ignored;
        }
        LineOutcome::Unparsed
    }

    fn arrival(&mut self, key: MsgKey, id: &str, rest: &str, ctx: &Ctx<'_>) -> LineOutcome {
        let (sender, fields) = split_address(rest);
        let mut m = MessageReceived {
            message_id: Text::owned(id),
            ..Default::default()
        };
        m.bounce = strip_angles(sender).is_empty();
        m.identity.set_sender(sender);
        let mut reference = None;
        let mut local_user = None;
        let mut sc = Scanner::new(fields, false);
        while let Some(tok) = sc.next() {
            match tok {
                Tok::Field {
                    key: "H",
                    host: Some(h),
                    ..
                } => set_client(&mut m.identity, &h),
                Tok::Field {
                    key, value, quoted, ..
                } => match key {
                    "U" => local_user = Some(value),
                    "A" => {
                        m.identity.auth_id = value.split_once(':').and_then(|(_, v)| opt(v));
                    }
                    "P" => m.protocol = opt(value),
                    "S" => m.size = value.parse().ok(),
                    "R" => reference = Some(value),
                    "T" => {
                        m.subject = Some(if quoted {
                            unescape(value).into()
                        } else {
                            Text::owned(value)
                        })
                    }
                    _ => {}
                },
                Tok::Word("for") => {
                    // One past the cap, so the cut is seen and counted.
                    m.recipients = sc
                        .rest()
                        .split(' ')
                        .filter(|r| !r.is_empty())
                        .take(spamward_model::MAX_RECIPIENTS + 1)
                        .map(|r| Text::owned(strip_angles(r)))
                        .collect();
                    break;
                }
                Tok::Word("from") => {
                    sc.next();
                }
                Tok::Word(_) | Tok::Tail(_) => {}
            }
        }
        if m.bounce {
            m.bounce_of = reference
                .filter(|r| message_key(r).is_some())
                .map(Text::owned);
        }
        m.identity.local_user = local_user.and_then(opt);
        let local = m
            .protocol
            .as_deref()
            .is_some_and(|p| p == "local" || p.starts_with("local-"));
        let mut claim = None;
        if local {
            if let Some(u) = local_user.and_then(real_user) {
                m.identity.owner = Some(Text::owned(u));
            }
            // The MTA's own submissions (bounces) run from its spool, never
            // from a script's directory.
            let by_mta =
                m.bounce || local_user.is_some_and(|u| spamward_model::SYSTEM_USERS.contains(&u));
            let by_account = local_user.and_then(real_user).is_some();
            if !by_mta && (by_account || ctx.pid.is_some()) {
                // A real user submits from its own home (and a pid is
                // unambiguous): claim now.
                if let Some(cwd) = self.take_cwd(ctx.pid, ctx.time.seconds, local_user)
                    && is_user_dir(&cwd)
                {
                    if m.identity.owner.is_none() {
                        m.identity.owner = home_owner(&cwd).map(Text::owned);
                    }
                    m.identity.script = Some(cwd.into());
                }
            } else if !by_mta {
                claim = Some(WeakClaim {
                    key,
                    until_line: self.lines + CLAIM_LINES,
                });
            }
        }
        self.remember(key).identity = m.identity.clone();
        self.held.push_back(Held {
            event: Event::new(ctx.time, ctx.origin, EventBody::MessageReceived(m)),
            wait: Some(key),
            deadline: self.lines + HOLD_LINES,
            claim,
        });
        self.waiting += 1;
        LineOutcome::Understood
    }

    /// cPanel's `Sender identification U=... D=... S=...` and `nobody send
    /// identification H=... U=...`: the owning account of the message.
    fn identification(&mut self, key: MsgKey, fields: &str) -> LineOutcome {
        let user = Scanner::new(fields, false).find_map(|t| match t {
            Tok::Field {
                key: "U", value, ..
            } => real_user(value),
            _ => None,
        });
        if let Some(user) = user {
            if let Some(h) = self.held_arrival(key)
                && let EventBody::MessageReceived(m) = &mut h.event.body
            {
                m.identity.owner = Some(Text::owned(user));
            }
            if let Some(m) = self.message_mut(key) {
                m.identity.owner = Some(Text::owned(user));
            }
        }
        self.release_id(key);
        LineOutcome::Understood
    }

    /// The `cwd=` of the process that is submitting a local message.
    fn take_cwd(&mut self, pid: Option<u32>, now: i64, local_user: Option<&str>) -> Option<String> {
        let fresh = |c: &Cwd| (now - c.time).abs() <= CWD_WINDOW;
        if let Some(pid) = pid
            && let Some(c) = self.cwd_by_pid.remove(&pid)
        {
            return fresh(&c).then_some(c.path);
        }
        // Drop what no arrival can take any more: too old for this one and
        // for every arrival still holding a claim (an arrival later in the
        // log may come first here, its claim settled before theirs).
        let oldest_claim = self
            .held
            .iter()
            .filter(|h| h.claim.is_some())
            .map(|h| h.event.time.seconds)
            .min()
            .map_or(now, |t| t.min(now));
        self.pending_cwds
            .retain(|c| c.time >= oldest_claim - CWD_WINDOW);
        // A real user's scripts run in its own home; a directory outside any
        // home (say /var/www) belongs to a nobody script that may still be
        // waiting for it, and a user submitting without a script (a cron
        // job's `mail`) must not take it.
        let i = match local_user.and_then(real_user) {
            Some(user) => self
                .pending_cwds
                .iter()
                .position(|c| fresh(c) && home_owner(&c.path) == Some(user))?,
            None => self
                .pending_cwds
                .iter()
                .position(|c| fresh(c) && cwd_fits(&c.path, local_user))?,
        };
        self.pending_cwds.remove(i).map(|c| c.path)
    }

    fn cwd(&mut self, r: &str, ctx: &Ctx<'_>) -> LineOutcome {
        // Searched once, with a searcher built once: a `cwd=` line comes
        // with nearly every message, and `str::split_once` sets up a
        // substring search per call (a twentieth of parsing on a busy log).
        static ARGS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(" args:"));
        let args_at = ARGS.find(r.as_bytes());
        if let Some(args) = args_at.and_then(|i| r[i + " args:".len()..].strip_prefix(' '))
            && is_exim_internal(args)
        {
            return LineOutcome::Understood;
        }
        let path = match args_at {
            Some(i) => r[..i]
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .trim_end_matches(' '),
            None => r.trim_end(),
        };
        let cwd = Cwd {
            path: path.to_owned(),
            time: ctx.time.seconds,
        };
        match ctx.pid {
            Some(pid) => {
                if self.cwd_by_pid.len() >= MAX_CWD_PIDS {
                    let now = ctx.time.seconds;
                    self.cwd_by_pid
                        .retain(|_, c| (now - c.time).abs() <= CWD_WINDOW);
                    if self.cwd_by_pid.len() >= MAX_CWD_PIDS {
                        self.cwd_by_pid.clear();
                    }
                }
                self.cwd_by_pid.insert(pid, cwd);
            }
            None => {
                if self.pending_cwds.len() >= MAX_PENDING_CWDS {
                    self.pending_cwds.pop_front();
                }
                self.pending_cwds.push_back(cwd);
            }
        }
        LineOutcome::Understood
    }

    fn delivery(
        &mut self,
        key: MsgKey,
        id: &str,
        outcome: DeliveryOutcome,
        rest: &str,
        ctx: &Ctx<'_>,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let (mut rcpt, mut fields) = split_address(rest);
        // A local delivery names the user, file, pipe or `:blackhole:` and
        // then the address it was for (`=> userx <userx@host.example>`):
        // that address, with its domain, is the recipient. A remote one
        // keeps the address it was delivered to.
        // A redirected address is delivered under its new name with the
        // address the client gave after it (`=> fwd@far.example
        // <alias@shop.example> R=...`): a forward, not a relay.
        let mut parent = None;
        if fields.starts_with('<') {
            let (original, after) = split_address(fields);
            if rcpt.contains('@') {
                parent = Some(strip_angles(original));
                fields = after;
            } else {
                (rcpt, fields) = (original, after);
            }
        }
        let (rcpt, mut error) = match rcpt.strip_suffix(':') {
            Some(r) if outcome != DeliveryOutcome::Delivered => (r, opt(fields.trim())),
            _ => (rcpt, None),
        };

        let mut d = Delivery {
            message_id: Text::owned(id),
            outcome,
            recipient: Text::owned(strip_angles(rcpt)),
            router: None,
            transport: None,
            remote_host: None,
            remote_ip: None,
            error: None,
            identity: Identity::default(),
        };
        let mut from = None;
        if error.is_none() {
            for tok in Scanner::new(fields, true) {
                match tok {
                    Tok::Field {
                        key: "H",
                        host: Some(h),
                        ..
                    } => {
                        d.remote_host = h.label().map(Text::owned);
                        d.remote_ip = h.ip_normalized().map(Text::owned);
                    }
                    Tok::Field { key, value, .. } => match key {
                        "R" => d.router = opt(value),
                        "T" => d.transport = opt(value),
                        "F" => from = Some(value),
                        _ => {}
                    },
                    Tok::Tail(t) => error = opt(t.trim_end()),
                    Tok::Word(_) => {}
                }
            }
        }
        if error.as_deref().is_some_and(is_retry_not_due) {
            // A retry skipped because its time has not come (`-51`..`-54`):
            // nothing was attempted, so it is no deferral.
            return LineOutcome::Ignored;
        }
        d.identity = self.identity_of(key).unwrap_or_else(|| {
            let mut i = Identity::default();
            if let Some(f) = from {
                i.set_sender(f);
            }
            i
        });
        let governed = d.router.as_deref().is_some_and(|r| {
            r.starts_with("enforce_mail_permissions") || r.starts_with("check_mail_permissions")
        });
        let body = if governed && outcome != DeliveryOutcome::Delivered {
            EventBody::GovernorAction(governor(
                error.as_deref().unwrap_or(""),
                outcome,
                id,
                d.recipient,
                d.identity,
            ))
        } else {
            if outcome != DeliveryOutcome::Delivered {
                d.error = error;
            }
            if let Some(parent) = parent.filter(|_| d.remote_ip.is_some()) {
                // Said before the delivery, so a rule judging relaying
                // knows the delivery is a forward by the time it sees it.
                let redirect = EventBody::Extension(Extension {
                    kind: Text::owned(extension_kind::REDIRECT),
                    fields: vec![
                        (Text::owned("message_id"), Text::owned(id)),
                        (Text::owned("recipient"), d.recipient.clone()),
                        (Text::owned("parent"), Text::owned(parent)),
                    ],
                });
                self.emit(Event::new(ctx.time, ctx.origin, redirect), out);
            }
            EventBody::Delivery(d)
        };
        self.emit(Event::new(ctx.time, ctx.origin, body), out);
        LineOutcome::Understood
    }

    /// Lines of an SMTP session: `H=... [ip] F=<...> rejected RCPT ...`,
    /// `sender verify fail`, `dropped by ... ACL`, `rejected by local_scan()`.
    fn session(
        &mut self,
        body: &str,
        id: Option<&str>,
        ctx: &Ctx<'_>,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let mut host = Host::default();
        let mut sender = None;
        let mut phrase = "";
        let mut sc = Scanner::new(body, false);
        loop {
            let off = sc.offset();
            match sc.next() {
                Some(Tok::Field {
                    key: "H",
                    host: Some(h),
                    ..
                }) => host = h,
                Some(Tok::Field {
                    key: "F", value, ..
                }) => sender = Some(value),
                Some(Tok::Field { .. }) => {}
                Some(Tok::Word(_) | Tok::Tail(_)) => {
                    phrase = body.get(off..).unwrap_or("");
                    break;
                }
                None => break,
            }
        }
        let mut rej = Rejection {
            client_ip: host.ip_normalized().map(Text::owned),
            client_host: host.label().map(Text::owned),
            sender: sender.map(strip_angles).and_then(opt),
            recipient: None,
            stage: SmtpStage::Other,
            reason: Text::default(),
            message_id: id.map(Text::owned),
        };
        let ph = phrase.strip_prefix("temporarily ").unwrap_or(phrase);
        if let Some(r) = ph.strip_prefix("rejected ") {
            let (stage, after) = if let Some(a) = r.strip_prefix("RCPT ") {
                let addr = a.split_once(' ').map_or(a, |x| x.0);
                rej.recipient = opt(strip_angles(addr.trim_end_matches(':')));
                (SmtpStage::RcptTo, a)
            } else if let Some(a) = r.strip_prefix("MAIL ") {
                let addr = a.split_once(' ').map_or(a, |x| x.0);
                if rej.sender.is_none() {
                    rej.sender = opt(strip_angles(addr.trim_end_matches(':')));
                }
                (SmtpStage::MailFrom, a)
            } else if r.starts_with("after DATA") || r.starts_with("DATA") {
                (SmtpStage::Data, r)
            } else if let Some(a) = r.strip_prefix("by local_scan()") {
                (SmtpStage::Data, a)
            } else if r.starts_with("EHLO") || r.starts_with("HELO") {
                (SmtpStage::Helo, r)
            } else if r.starts_with("connection") {
                (SmtpStage::Connect, r)
            } else {
                (SmtpStage::Other, r)
            };
            rej.stage = stage;
            rej.reason = Text::owned(after.split_once(": ").map_or(phrase, |x| x.1).trim());
        } else if let Some(a) = ph
            .strip_prefix("sender verify fail for ")
            .or_else(|| ph.strip_prefix("sender verify defer for "))
        {
            let (addr, reason) = a.split_once(": ").unwrap_or((a, ""));
            rej.sender = opt(strip_angles(addr));
            rej.stage = SmtpStage::MailFrom;
            rej.reason = Text::owned(if reason.is_empty() { phrase } else { reason });
        } else if let Some(a) = ph
            .strip_prefix("recipient verify fail for ")
            .or_else(|| ph.strip_prefix("recipient verify defer for "))
        {
            let (addr, reason) = a.split_once(": ").unwrap_or((a, ""));
            rej.recipient = opt(strip_angles(addr));
            rej.stage = SmtpStage::RcptTo;
            rej.reason = Text::owned(if reason.is_empty() { phrase } else { reason });
        } else if let Some((what, reason)) = ph.split_once(": discarded by ") {
            // A `discard` ACL verb: accepted on the wire, thrown away.
            if let Some(addr) = what.strip_prefix("RCPT ") {
                rej.recipient = opt(strip_angles(addr.trim()));
                rej.stage = SmtpStage::RcptTo;
            } else {
                rej.stage = SmtpStage::Data;
            }
            rej.reason = format!("discarded by {}", reason.trim()).into();
        } else if let Some(a) = ph.strip_prefix("dropped by '") {
            let (acl, reason) = a.split_once('\'').unwrap_or((a, ""));
            rej.stage = acl_stage(acl);
            rej.reason = Text::owned(
                reason
                    .trim_start_matches(" ACL")
                    .trim_start_matches(':')
                    .trim(),
            );
            if rej.reason.is_empty() {
                rej.reason = Text::owned(phrase);
            }
        } else if id.is_some() || IGNORED_SESSION.iter().any(|p| ph.starts_with(p)) {
            // With an id and no refusal: notes of a delivery attempt to that
            // remote host (timeouts, remote SMTP errors), already reflected
            // in the `==`/`**` line that follows.
            return LineOutcome::Ignored;
        } else {
            return LineOutcome::Unparsed;
        }
        self.emit(
            Event::new(ctx.time, ctx.origin, EventBody::Rejection(rej)),
            out,
        );
        LineOutcome::Understood
    }

    /// cPanel's `SMTP connection outbound <unix time> <id> <domain>
    /// <recipient>`, written as a message leaves for a remote host. The
    /// domain is the one cPanel charges the message to; a bounce has no
    /// sender domain of its own, so it takes this one and its deliveries
    /// name the domain that sent it (backscatter is charged to someone).
    fn outbound(&mut self, r: &str) -> LineOutcome {
        let mut fields = r.split(' ');
        let (Some(_), Some(id), Some(domain)) = (fields.next(), fields.next(), fields.next())
        else {
            return LineOutcome::Unparsed;
        };
        let Some(key) = message_key(id) else {
            return LineOutcome::Unparsed;
        };
        if domain.is_empty() {
            return LineOutcome::Unparsed;
        }
        if let Some(m) = self.message_mut(key)
            && m.identity.sender.is_none()
            && m.identity.sender_domain.is_none()
        {
            m.identity.sender_domain = Some(Text::owned(&domain.to_ascii_lowercase()));
        }
        LineOutcome::Understood
    }

    fn plain_line(&mut self, body: &str, ctx: &Ctx<'_>, out: &mut Vec<Event>) -> LineOutcome {
        let Some(&c) = body.as_bytes().first() else {
            return LineOutcome::Unparsed;
        };
        match c {
            // `U=` opens a local SMTP session (`exim -bs`, as a script's
            // mailer may run it): no host, the same refusals.
            b'H' | b'F' | b'U' if body.get(1..2) == Some("=") => {
                return self.session(body, None, ctx, out);
            }
            b'r' => {
                if let Some(r) = body
                    .strip_prefix("rejected EHLO from ")
                    .or_else(|| body.strip_prefix("rejected HELO from "))
                {
                    // `from [ip]: why: the argument` (or `from CALLER:` for
                    // a local session).
                    let (host, reason) = r.split_once(": ").unwrap_or((r, ""));
                    let reason = reason.split(": ").next().unwrap_or(reason);
                    let (h, _) = parse_host(host);
                    return self.reject(&h, SmtpStage::Helo, reason, None, ctx, out);
                }
            }
            b'V' => {
                if let Some(r) = body.strip_prefix("VRFY failed for ") {
                    // A client probing which addresses exist.
                    let h = r
                        .find("H=")
                        .map(|i| parse_host(&r[i + 2..]).0)
                        .unwrap_or_default();
                    return self.reject(&h, SmtpStage::Other, "VRFY failed", None, ctx, out);
                }
            }
            b'[' if body.contains("] SSL verify error:") => return LineOutcome::Ignored,
            b'c' => {
                if let Some(r) = body.strip_prefix("cwd=") {
                    return self.cwd(r, ctx);
                }
            }
            b'S' => {
                if let Some(r) = body.strip_prefix("SMTP connection from ") {
                    return self.smtp_connection(r, None, ctx, out);
                }
                if let Some(r) = body.strip_prefix("SMTP call from ") {
                    let (h, n) = parse_host(r);
                    return match r[n..].split_once("dropped: ") {
                        Some((_, reason)) => {
                            self.reject(&h, SmtpStage::Other, reason, None, ctx, out)
                        }
                        None => LineOutcome::Ignored,
                    };
                }
                if let Some(r) = body.strip_prefix("SMTP connection outbound ") {
                    return self.outbound(r);
                }
                if body.starts_with("SMTP protocol synchronization error") {
                    return self.sync_error(body, ctx, out);
                }
                if let Some(r) = body
                    .strip_prefix("SMTP protocol error in \"")
                    .or_else(|| body.strip_prefix("SMTP syntax error in \""))
                {
                    return self.protocol_error(r, ctx, out);
                }
            }
            b'n' => {
                if let Some(r) = body.strip_prefix("no MAIL in SMTP connection from ") {
                    let (h, _) = parse_host(r);
                    return self.reject(
                        &h,
                        SmtpStage::Other,
                        "no MAIL in SMTP connection",
                        None,
                        ctx,
                        out,
                    );
                }
                if body.starts_with("no host name found for IP address ")
                    || body.starts_with("no IP address found for host ")
                {
                    // A reverse lookup that found nothing: the connection
                    // goes on, nothing was refused.
                    return LineOutcome::Ignored;
                }
            }
            b'C' => {
                if let Some(r) = body.strip_prefix("Connection from ") {
                    return self.smtp_connection(r, None, ctx, out);
                }
            }
            b'0'..=b'9'
                if body
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .starts_with(" args:") =>
            {
                return LineOutcome::Ignored;
            }
            _ => {}
        }
        if IGNORED_LINES.iter().any(|p| body.starts_with(p)) {
            return LineOutcome::Ignored;
        }
        if let Some(o) = self.auth_failure(body, ctx, out) {
            return o;
        }
        LineOutcome::Unparsed
    }

    fn reject(
        &mut self,
        h: &Host<'_>,
        stage: SmtpStage,
        reason: &str,
        id: Option<&str>,
        ctx: &Ctx<'_>,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let rej = Rejection {
            client_ip: h.ip_normalized().map(Text::owned),
            client_host: h.label().map(Text::owned),
            sender: None,
            recipient: None,
            stage,
            reason: Text::owned(reason.trim()),
            message_id: id.map(Text::owned),
        };
        self.emit(
            Event::new(ctx.time, ctx.origin, EventBody::Rejection(rej)),
            out,
        );
        LineOutcome::Understood
    }

    /// `SMTP connection from <host> ...` / `Connection from <host> refused`:
    /// only a drop or refusal is an event; the rest is session noise.
    fn smtp_connection(
        &mut self,
        r: &str,
        id: Option<&str>,
        ctx: &Ctx<'_>,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let (h, n) = parse_host(r);
        let tail = &r[n..];
        // Searchers built once: most of these lines are neither, and std's
        // `find` sets a searcher up anew on every call.
        static DROP: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("closed by DROP"));
        static REFUSED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(" refused"));
        let (stage, reason) = if let Some(i) = DROP.find(tail.as_bytes()) {
            let (ip, at) = &self.last_refusal;
            let said = *at == Some(ctx.time.seconds) && h.ip_normalized() == Some(ip.as_str());
            if said {
                // The drop's own refusal was the line before.
                return LineOutcome::Ignored;
            }
            (SmtpStage::Other, &tail[i..])
        } else if let Some(i) = REFUSED.find(tail.as_bytes()) {
            (SmtpStage::Connect, &tail[i + 1..])
        } else {
            return LineOutcome::Ignored;
        };
        self.reject(&h, stage, reason, id, ctx, out)
    }

    /// `SMTP protocol synchronization error (why): rejected connection from
    /// H=... ` or `...: rejected "CMD" H=... next input="..."`.
    fn sync_error(&mut self, body: &str, ctx: &Ctx<'_>, out: &mut Vec<Event>) -> LineOutcome {
        let reason_end = body.find("): rejected").map_or(body.len(), |i| i + 1);
        let reason = &body[..reason_end];
        let (stage, h) = if let Some(i) = body.find("rejected connection from H=") {
            (SmtpStage::Connect, parse_host(&body[i + 27..]).0)
        } else {
            // The rejected command is client text and may itself contain
            // `" H=`; the real host spec is the last one before `next input=`.
            let seg_end = body.find(" next input=\"").unwrap_or(body.len());
            let h = body[..seg_end]
                .rfind("\" H=")
                .map(|i| parse_host(&body[i + 4..]).0)
                .unwrap_or_default();
            (SmtpStage::Other, h)
        };
        self.reject(&h, stage, reason, None, ctx, out)
    }

    /// `SMTP protocol error in "CMD" H=... reason` (also `syntax error`).
    fn protocol_error(&mut self, r: &str, ctx: &Ctx<'_>, out: &mut Vec<Event>) -> LineOutcome {
        // The quoted command is client text and may contain `" H=` itself
        // (an injection attempt): the real host spec is the last one.
        let Some(i) = r.rfind("\" H=") else {
            return self.reject(&Host::default(), SmtpStage::Other, r, None, ctx, out);
        };
        let command = &r[..i];
        let (h, n) = parse_host(&r[i + 4..]);
        let after = &r[i + 4 + n..];
        let mut sc = Scanner::new(after, false);
        let mut reason = "";
        loop {
            let off = sc.offset();
            match sc.next() {
                Some(Tok::Field { .. }) => {}
                Some(_) => {
                    reason = after.get(off..).unwrap_or("");
                    break;
                }
                None => break,
            }
        }
        let verb = command.split(' ').next().unwrap_or("");
        let stage = if verb.eq_ignore_ascii_case("EHLO") || verb.eq_ignore_ascii_case("HELO") {
            SmtpStage::Helo
        } else if verb.eq_ignore_ascii_case("MAIL") {
            SmtpStage::MailFrom
        } else if verb.eq_ignore_ascii_case("RCPT") {
            SmtpStage::RcptTo
        } else if verb.eq_ignore_ascii_case("DATA") || verb.eq_ignore_ascii_case("BDAT") {
            SmtpStage::Data
        } else {
            SmtpStage::Other
        };
        let reason = reason.trim_start_matches(": ");
        let reason = if reason.trim().is_empty() {
            "SMTP protocol error"
        } else {
            reason
        };
        self.reject(&h, stage, reason, None, ctx, out)
    }

    /// `<id> SA: Action: <what>: score=... (...). From <sender> (host=NAME
    /// [ip]) for <rcpts>` (sa-exim): SpamAssassin's verdict on a message.
    fn spamassassin(
        &mut self,
        whole: &str,
        r: &str,
        id: &str,
        ctx: &Ctx<'_>,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let from_at = r.rfind(". From <").unwrap_or(r.len());
        let action = &r[..from_at];
        let action = action.find(" (scanned").map_or(action, |i| &action[..i]);
        let reason_len = whole.len() - r.len() + action.len();
        let mut rej = Rejection {
            client_ip: None,
            client_host: None,
            sender: None,
            recipient: None,
            stage: SmtpStage::Data,
            reason: Text::owned(&whole[..reason_len]),
            message_id: Some(Text::owned(id)),
        };
        if let Some(tail) = r.get(from_at + 8..) {
            let (addr, tail) = tail.split_once('>').unwrap_or((tail, ""));
            rej.sender = opt(addr);
            if let Some(t) = tail.strip_prefix(" (host=") {
                let (h, n) = parse_host(t);
                rej.client_ip = h.ip_normalized().map(Text::owned);
                rej.client_host = h.label().map(Text::owned);
                if let Some(rcpts) = t[n..].strip_prefix(") for ") {
                    rej.recipient = rcpts.split(' ').next().and_then(opt);
                }
            }
        }
        self.emit(
            Event::new(ctx.time, ctx.origin, EventBody::Rejection(rej)),
            out,
        );
        LineOutcome::Understood
    }

    /// `<name> authenticator failed for <host> [I=...]: <reason> [(set_id=x)]`.
    fn auth_failure(
        &mut self,
        body: &str,
        ctx: &Ctx<'_>,
        out: &mut Vec<Event>,
    ) -> Option<LineOutcome> {
        let (name, after) = body.split_once(' ')?;
        let after = after.strip_prefix("authenticator failed for ")?;
        // Exim 4.99 writes the host as `H=(helo) [ip]`.
        let after = after.strip_prefix("H=").unwrap_or(after);
        let (h, n) = parse_host(after);
        let rest = &after[n..];
        let reason = rest.split_once(": ").map_or("", |x| x.1).trim_end();
        // `(set_id=x)` ends the reason, or (4.99) sits inside it:
        // `435 Unable to authenticate at present (set_id=userx): account
        // suspended`.
        let (reason, set_id) = match reason.find(" (set_id=") {
            Some(i) => {
                let tail = &reason[i + " (set_id=".len()..];
                let (id, more) = tail.split_once(')').unwrap_or((tail, ""));
                let more = more.trim_start_matches(':').trim();
                let reason = if more.is_empty() {
                    reason[..i].to_owned()
                } else {
                    format!("{}: {more}", &reason[..i])
                };
                (reason, Some(id))
            }
            None => (reason.to_owned(), None),
        };
        let f = AuthFailure {
            client_ip: h.ip_normalized().map(Text::owned),
            client_host: h.label().map(Text::owned),
            authenticator: Text::owned(name),
            set_id: set_id.and_then(opt),
            reason: opt(&reason),
        };
        self.emit(
            Event::new(ctx.time, ctx.origin, EventBody::AuthFailure(f)),
            out,
        );
        Some(LineOutcome::Understood)
    }
}

fn set_client(identity: &mut Identity, h: &Host<'_>) {
    identity.client_host = h.label().map(Text::owned);
    identity.client_ip = h.ip_normalized().map(Text::owned);
}

/// Whether a deferral's error says the retry was not due: Exim skipped the
/// address without trying it (`routing defer (-51)`, `defer (-54): retry
/// time not reached for any host`).
fn is_retry_not_due(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    error.contains("retry time not reached") || error.contains("retry time not yet reached")
}

/// `Frozen (why)`, `Frozen`, `frozen by <user>`; `Some(None)` for a freeze
/// without a stated reason.
fn frozen_reason(rest: &str) -> Option<Option<&str>> {
    if let Some(r) = rest.strip_prefix("Frozen") {
        let r = r.trim();
        let r = r
            .strip_prefix('(')
            .map_or(r, |x| x.strip_suffix(')').unwrap_or(x));
        return Some(Some(r).filter(|r| !r.is_empty()));
    }
    if rest.starts_with("frozen by ") {
        return Some(Some(rest.trim_end()));
    }
    None
}

fn acl_stage(acl: &str) -> SmtpStage {
    match acl {
        "connect" => SmtpStage::Connect,
        "helo" => SmtpStage::Helo,
        "mail" => SmtpStage::MailFrom,
        "rcpt" => SmtpStage::RcptTo,
        "data" | "mime" | "dkim" | "prdr" | "predata" => SmtpStage::Data,
        _ => SmtpStage::Other,
    }
}

/// cPanel's mail governor refusals (router `enforce_mail_permissions*` /
/// `check_mail_permissions`), e.g. `Domain x has exceeded the max emails per
/// hour (500/500 (100%)) allowed. Message discarded.`
fn governor(
    text: &str,
    outcome: DeliveryOutcome,
    id: &str,
    recipient: Text<'static>,
    identity: Identity,
) -> GovernorAction {
    let t = text.trim().trim_matches('"');
    let limit = if t.contains("max emails per hour") {
        GovernorLimit::MaxEmailsPerHour
    } else if t.contains("max defers and failures") {
        GovernorLimit::MaxDefersAndFailures
    } else if t.contains("outgoing mail hold") {
        GovernorLimit::OutgoingHold
    } else if t.contains("outgoing mail suspension") {
        GovernorLimit::OutgoingSuspension
    } else if t.contains("user nobody") && t.contains("sender restrictions") {
        GovernorLimit::NobodyRestricted
    } else {
        GovernorLimit::Other
    };
    let domain = t
        .strip_prefix("Domain ")
        .and_then(|r| r.split(' ').next())
        .and_then(opt);
    let (count, maximum) = t
        .find(" per hour (")
        .and_then(|i| {
            let r = &t[i + 11..];
            let (a, b) = r.split_once('/')?;
            let b = b.split(|c: char| !c.is_ascii_digit()).next()?;
            Some((a.parse().ok(), b.parse().ok()))
        })
        .unwrap_or((None, None));
    let discarded = if t.contains("discarded") {
        true
    } else if t.contains("reattempted") || t.contains("retried") {
        false
    } else {
        outcome == DeliveryOutcome::Failed
    };
    GovernorAction {
        message_id: Some(Text::owned(id)),
        domain,
        limit,
        count,
        maximum,
        discarded,
        recipient: Some(recipient).filter(|r| !r.is_empty()),
        identity,
    }
}

/// Whether `rest` (after the message id) is a note on one host that failed
/// during a delivery: `[host ]<name> [<ip>][:] <error>`.
fn is_host_failure_note(rest: &str) -> bool {
    let rest = rest.strip_prefix("host ").unwrap_or(rest);
    let Some((name, after)) = rest.split_once(" [") else {
        return false;
    };
    let Some((ip, error)) = after.split_once(']') else {
        return false;
    };
    let plain_name = !name.is_empty() && !name.contains(['=', ' ', '<']);
    let looks_ip = !ip.is_empty()
        && ip
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':');
    plain_name && looks_ip && (error.starts_with(' ') || error.starts_with(": "))
}

/// Message lines that carry nothing the rules need.
const IGNORED_ID_LINES: &[&str] = &[
    "Spool file is locked",
    "no immediate delivery",
    "Warning:",
    "DKIM:",
    "DMARC",
    "SPF",
    "ARC",
    "SA: ",
    "removed by",
    "cancelled by",
    "retry time not reached",
    // A reverse lookup that found nothing, noted during delivery.
    "no IP address found for host",
    // A virus or spam scanner that could not be asked: the ACL goes on.
    "malware acl condition:",
    "spam acl condition:",
    "no host name found for IP address",
    "SMTP error from remote",
    "error ignored",
    "routing defer",
    "TLS error",
    "tls_",
    "Message is locked",
    "SMTP data timeout",
    "SMTP connection lost",
    // A delivery attempt's remote end failing: the delivery line (or the
    // retry that follows) says what came of it.
    "SMTP timeout while connected to ",
    "Remote host ",
    // The message's files went away under a queue run, or its bounce
    // could not be made: the queue run's own notes.
    "Spool file ",
    "Error while reading message with no usable sender address",
    "Process failed (",
];

/// Lines without a message id that carry nothing the rules need.
const IGNORED_LINES: &[&str] = &[
    "Start queue run",
    "End queue run",
    "exim ",
    "TLS error",
    "Spool file is locked",
    "no immediate delivery",
    "SMTP command timeout",
    "SMTP data timeout",
    "SMTP connection lost",
    "unexpected disconnection",
    "daemon ",
    "pid ",
    "Warning:",
    "DKIM:",
    "SIGHUP",
    "args:",
    "LOG: ",
    // cPanel's note of who an SMTP session authenticated as: the arrival
    // and its `Sender identification` line say it for each message.
    "SMTP connection identification ",
    // The daemon could not listen on an address (another daemon has it,
    // no IPv6) or the spool's disk is full: service problems, not mail.
    "socket bind() ",
    "IPv6 socket creation failed",
    "spool directory space check failed",
];

/// Session remarks that are not refusals.
const IGNORED_SESSION: &[&str] = &["Warning:", "incomplete transaction", "SMTP ", "TLS "];
