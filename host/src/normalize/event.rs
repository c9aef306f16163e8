//! The host's typed event model: neutral records of what the mail server did.
//!
//! These mirror the `spamward:rule/types` records of `wit/rule.wit` one for
//! one (the engine converts them at the wasm boundary), and add where each
//! event came from (`Origin`) so findings can cite file and line. They
//! serialize to the flat JSON Lines shape `spamward events` prints: `kind`,
//! `time`, `file`, `line`, then the body's fields with identity fields
//! flattened in (`client_ip`, `sender`, `auth_id`, ...).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// When an event happened, and how its source wrote it.
///
/// `seconds` is the instant (Unix time, UTC): windows and ordering count it,
/// so they measure real elapsed time across daylight saving changes (see
/// [`clock`](super::clock)). The local offset of that instant is kept only so
/// the time prints as the source wrote it, with the offset when the source
/// wrote one (Exim's `log_timezone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// The source's offset from UTC at that instant, in minutes.
    pub offset_minutes: i16,
    /// Whether the source wrote the offset beside the time.
    pub offset_written: bool,
}

impl Timestamp {
    /// The instant `seconds`, shown as UTC without an offset: the time of a
    /// source that writes UTC, or of one whose zone is not known.
    pub fn naive(seconds: i64) -> Self {
        Timestamp::local(seconds, 0, false)
    }

    /// The instant `seconds` on a clock `offset_minutes` east of UTC;
    /// `written` when the source wrote the offset.
    pub fn local(seconds: i64, offset_minutes: i16, written: bool) -> Self {
        Timestamp {
            seconds,
            offset_minutes,
            offset_written: written,
        }
    }

    /// A system time (file modification, now) as a UTC timestamp. Use
    /// [`LocalZone::at`](super::LocalZone::at) to show it in a zone.
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        let seconds = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        Timestamp::naive(seconds)
    }

    /// The calendar fields read as a UTC time; `None` if any is out of
    /// range.
    pub fn from_civil(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Option<Self> {
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(Timestamp::naive(
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second),
        ))
    }

    /// Calendar fields `(year, month, day, hour, minute, second)` of the
    /// source's wall clock.
    pub fn to_civil(self) -> (i32, u32, u32, u32, u32, u32) {
        let wall = self
            .seconds
            .saturating_add(i64::from(self.offset_minutes) * 60);
        let days = wall.div_euclid(86_400);
        let secs = wall.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (
            y,
            m,
            d,
            (secs / 3600) as u32,
            ((secs / 60) % 60) as u32,
            (secs % 60) as u32,
        )
    }
}

/// RFC 3339 as written: `2019-04-21T04:33:14` on the source's wall clock,
/// plus `+01:00` when the source wrote an offset.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.to_civil();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")?;
        if self.offset_written {
            let off = self.offset_minutes;
            let sign = if off < 0 { '-' } else { '+' };
            let off = off.unsigned_abs();
            write!(f, "{sign}{:02}:{:02}", off / 60, off % 60)?;
        }
        Ok(())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days: exact for the
// proleptic Gregorian calendar, no tables, no time zone database.
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// Where an event came from: the input file and the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Input path as the user gave it.
    pub file: Arc<str>,
    /// 1-based line number (0 for sources without lines).
    pub line: u64,
}

/// One normalized event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// When it happened, as written.
    pub time: Timestamp,
    /// Input path.
    #[serde(serialize_with = "serialize_file")]
    pub file: Arc<str>,
    /// 1-based line of the line the event came from.
    pub line: u64,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

fn serialize_file<S: serde::Serializer>(file: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(file)
}

impl Event {
    /// An event at `time` from `origin`.
    pub fn new(time: Timestamp, origin: &Origin, body: EventBody) -> Self {
        Event {
            time,
            file: origin.file.clone(),
            line: origin.line,
            body,
        }
    }

    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// Cuts a recipient list longer than [`MAX_RECIPIENTS`] to that many;
    /// whether it did. Sources read at most one recipient past the cap, so
    /// a cut is seen here and counted by whoever reads the source.
    pub fn cap_recipients(&mut self) -> bool {
        let recipients = match &mut self.body {
            EventBody::MessageReceived(m) => &mut m.recipients,
            EventBody::QueuedMessage(q) => &mut q.recipients,
            _ => return false,
        };
        let cut = recipients.len() > MAX_RECIPIENTS;
        recipients.truncate(MAX_RECIPIENTS);
        cut
    }
}

/// The most recipients one event carries. An arrival line or a queued
/// message may list thousands (a hostile one, millions); every rule would
/// copy them, so one event could exhaust a rule's memory and cost a whole
/// batch. Past this many, the count of recipients is no longer evidence of
/// anything a rule does not already see.
pub const MAX_RECIPIENTS: usize = 1000;

/// Everything known about who sent a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Envelope sender; `None` for the null sender `<>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Domain of the envelope sender, lower-cased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_domain: Option<String>,
    /// SMTP AUTH id (`A=authenticator:id`, the id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_id: Option<String>,
    /// Local user that submitted the message (`U=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_user: Option<String>,
    /// Owning hosting account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Submitting script or directory (`cwd=`, `X-PHP-Script`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Remote client IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Remote client host name or HELO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_host: Option<String>,
}

impl Identity {
    /// Sets `sender` and derives `sender_domain` from it; `""` or `<>` mean
    /// the null sender.
    pub fn set_sender(&mut self, sender: &str) {
        let sender = sender.trim_start_matches('<').trim_end_matches('>');
        if sender.is_empty() {
            self.sender = None;
            self.sender_domain = None;
        } else {
            self.sender_domain = sender
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .filter(|d| !d.is_empty());
            self.sender = Some(sender.to_owned());
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A message was accepted.
    MessageReceived(MessageReceived),
    /// A delivery attempt ended.
    Delivery(Delivery),
    /// A message left the queue.
    MessageCompleted(MessageState),
    /// A message was frozen.
    MessageFrozen(MessageState),
    /// Something a client asked for was refused.
    Rejection(Rejection),
    /// An SMTP AUTH attempt failed.
    AuthFailure(AuthFailure),
    /// The panel's mail governor acted.
    GovernorAction(GovernorAction),
    /// A message in the queue.
    QueuedMessage(QueuedMessage),
    /// A configuration setting.
    Setting(Setting),
    /// An alias line.
    MailAlias(MailAlias),
    /// A mailbox's size and bounce content.
    MailboxStats(MailboxStats),
    /// A service's state.
    ServiceState(ServiceState),
    /// A kind this interface version does not model yet.
    Extension(Extension),
}

impl EventBody {
    /// The kind of this body.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::MessageReceived(_) => EventKind::MessageReceived,
            EventBody::Delivery(_) => EventKind::Delivery,
            EventBody::MessageCompleted(_) => EventKind::MessageCompleted,
            EventBody::MessageFrozen(_) => EventKind::MessageFrozen,
            EventBody::Rejection(_) => EventKind::Rejection,
            EventBody::AuthFailure(_) => EventKind::AuthFailure,
            EventBody::GovernorAction(_) => EventKind::GovernorAction,
            EventBody::QueuedMessage(_) => EventKind::QueuedMessage,
            EventBody::Setting(_) => EventKind::Setting,
            EventBody::MailAlias(_) => EventKind::MailAlias,
            EventBody::MailboxStats(_) => EventKind::MailboxStats,
            EventBody::ServiceState(_) => EventKind::ServiceState,
            EventBody::Extension(_) => EventKind::Extension,
        }
    }

    /// The sender identity the event carries, if it is about a message.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            EventBody::MessageReceived(m) => Some(&m.identity),
            EventBody::Delivery(d) => Some(&d.identity),
            EventBody::MessageCompleted(m) | EventBody::MessageFrozen(m) => Some(&m.identity),
            EventBody::GovernorAction(g) => Some(&g.identity),
            EventBody::QueuedMessage(q) => Some(&q.identity),
            _ => None,
        }
    }
}

/// The kinds of [`EventBody`], in the order of the WIT `event-kind` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum EventKind {
    MessageReceived,
    Delivery,
    MessageCompleted,
    MessageFrozen,
    Rejection,
    AuthFailure,
    GovernorAction,
    QueuedMessage,
    Setting,
    MailAlias,
    MailboxStats,
    ServiceState,
    Extension,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 13] = [
        EventKind::MessageReceived,
        EventKind::Delivery,
        EventKind::MessageCompleted,
        EventKind::MessageFrozen,
        EventKind::Rejection,
        EventKind::AuthFailure,
        EventKind::GovernorAction,
        EventKind::QueuedMessage,
        EventKind::Setting,
        EventKind::MailAlias,
        EventKind::MailboxStats,
        EventKind::ServiceState,
        EventKind::Extension,
    ];

    /// A bit for this kind in a subscription mask.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The snake_case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::MessageReceived => "message_received",
            EventKind::Delivery => "delivery",
            EventKind::MessageCompleted => "message_completed",
            EventKind::MessageFrozen => "message_frozen",
            EventKind::Rejection => "rejection",
            EventKind::AuthFailure => "auth_failure",
            EventKind::GovernorAction => "governor_action",
            EventKind::QueuedMessage => "queued_message",
            EventKind::Setting => "setting",
            EventKind::MailAlias => "mail_alias",
            EventKind::MailboxStats => "mailbox_stats",
            EventKind::ServiceState => "service_state",
            EventKind::Extension => "extension",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A message was accepted (Exim `<=`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MessageReceived {
    /// Exim message id.
    pub message_id: String,
    /// Who sent it.
    #[serde(flatten)]
    pub identity: Identity,
    /// `P=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// `S=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Envelope recipients (`for ...`).
    pub recipients: Vec<String>,
    /// `T=`, unquoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Null sender `<>`.
    pub bounce: bool,
    /// For a local bounce, the message it reports on (`R=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_of: Option<String>,
}

/// Outcome of a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// `=>` / `->`.
    Delivered,
    /// `==`.
    Deferred,
    /// `**`.
    Failed,
}

/// One delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// Exim message id.
    pub message_id: String,
    /// What became of it.
    pub outcome: DeliveryOutcome,
    /// The recipient address.
    pub recipient: String,
    /// `R=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// `T=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Remote host name (`H=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// Remote host IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Error text for deferrals and failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Sender of the message, joined from its arrival.
    #[serde(flatten)]
    pub identity: Identity,
}

/// A message completed or was frozen.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MessageState {
    /// Exim message id.
    pub message_id: String,
    /// Why, where said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Sender of the message, joined from its arrival.
    #[serde(flatten)]
    pub identity: Identity,
}

/// SMTP phase of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum SmtpStage {
    Connect,
    Helo,
    MailFrom,
    RcptTo,
    Data,
    Other,
}

/// The MTA refused something.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    /// Remote client IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Remote client host or HELO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_host: Option<String>,
    /// Envelope sender (`F=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Recipient refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Phase.
    pub stage: SmtpStage,
    /// Reason as logged.
    pub reason: String,
    /// Message id, when one was assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// A failed SMTP AUTH attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthFailure {
    /// Remote client IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Remote client host or HELO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_host: Option<String>,
    /// Authenticator name.
    pub authenticator: String,
    /// Login tried (`set_id=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_id: Option<String>,
    /// SMTP response text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which panel limit acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum GovernorLimit {
    MaxEmailsPerHour,
    MaxDefersAndFailures,
    OutgoingHold,
    OutgoingSuspension,
    NobodyRestricted,
    Other,
}

/// The panel's mail governor acted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GovernorAction {
    /// Message affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Domain the limit applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Which limit.
    pub limit: GovernorLimit,
    /// Count reached (`500/500`: 500).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Limit reached (`500/500`: the second 500).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<u32>,
    /// Discarded (true) or to be retried (false).
    pub discarded: bool,
    /// Recipient affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Sender of the message.
    #[serde(flatten)]
    pub identity: Identity,
}

/// A message in the queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueuedMessage {
    /// Exim message id.
    pub message_id: String,
    /// Who sent it.
    #[serde(flatten)]
    pub identity: Identity,
    /// Seconds in the queue at snapshot time.
    pub age_seconds: u64,
    /// Size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Recipients still pending.
    pub recipients: Vec<String>,
    /// `*** frozen ***`.
    pub frozen: bool,
    /// Null sender.
    pub bounce: bool,
    /// `From:` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_header: Option<String>,
    /// `Subject:` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Other headers of interest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

/// A configuration setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// Where it was read.
    pub source: String,
    /// Domain or account it applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Key.
    pub key: String,
    /// Value; `None` when present but unset.
    pub value: Option<String>,
}

/// An alias line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MailAlias {
    /// Domain of the alias file.
    pub domain: String,
    /// Local part, `*` for the catch-all.
    pub local_part: String,
    /// Target as written.
    pub target: String,
}

/// A mailbox's size and bounce content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MailboxStats {
    /// Owning account.
    pub account: String,
    /// Mail domain.
    pub domain: String,
    /// Mailbox (local part).
    pub mailbox: String,
    /// Total bytes.
    pub bytes: u64,
    /// Message count.
    pub messages: u32,
    /// Bounce messages.
    pub bounces: u32,
}

/// A service's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceState {
    /// Service name.
    pub name: String,
    /// Enabled or not.
    pub enabled: bool,
    /// Further facts.
    pub details: Vec<(String, String)>,
}

/// An event kind not modelled yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extension {
    /// Kind name.
    #[serde(rename = "extension_kind")]
    pub kind: String,
    /// Fields.
    pub fields: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_display() {
        let t = Timestamp::from_civil(2019, 4, 21, 4, 33, 14).unwrap();
        assert_eq!(t.to_string(), "2019-04-21T04:33:14");
        assert_eq!(t.to_civil(), (2019, 4, 21, 4, 33, 14));
        let t = Timestamp::from_civil(2024, 2, 29, 23, 59, 59).unwrap();
        assert_eq!(t.to_string(), "2024-02-29T23:59:59");
        assert!(Timestamp::from_civil(2023, 2, 29, 0, 0, 0).is_none());
        assert!(Timestamp::from_civil(2023, 13, 1, 0, 0, 0).is_none());
        // 05:30 UTC written on a clock 5½ hours behind: shown as written.
        let with_offset = Timestamp::local(5 * 3600 + 1800, -330, true);
        assert_eq!(with_offset.to_string(), "1970-01-01T00:00:00-05:30");
        assert_eq!(with_offset.to_civil(), (1970, 1, 1, 0, 0, 0));
        let unwritten = Timestamp::local(5 * 3600 + 1800, -330, false);
        assert_eq!(unwritten.to_string(), "1970-01-01T00:00:00");
    }

    #[test]
    fn set_sender_derives_domain_and_null_sender() {
        let mut id = Identity::default();
        id.set_sender("Vani@Teletek-Intl.com");
        assert_eq!(id.sender.as_deref(), Some("Vani@Teletek-Intl.com"));
        assert_eq!(id.sender_domain.as_deref(), Some("teletek-intl.com"));
        id.set_sender("<>");
        assert_eq!(id.sender, None);
        assert_eq!(id.sender_domain, None);
    }

    #[test]
    fn json_is_flat_with_kind_time_file_line() {
        let origin = Origin {
            file: "mainlog".into(),
            line: 7,
        };
        let mut identity = Identity::default();
        identity.set_sender("a@b.example");
        identity.client_ip = Some("192.0.2.1".into());
        let ev = Event::new(
            Timestamp::from_civil(2020, 1, 2, 3, 4, 5).unwrap(),
            &origin,
            EventBody::MessageReceived(MessageReceived {
                message_id: "1hIAif-00H7J4-Lb".into(),
                identity,
                recipients: vec!["x@y.example".into()],
                ..Default::default()
            }),
        );
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], "message_received");
        assert_eq!(v["time"], "2020-01-02T03:04:05");
        assert_eq!(v["file"], "mainlog");
        assert_eq!(v["line"], 7);
        assert_eq!(v["client_ip"], "192.0.2.1");
        assert_eq!(v["sender_domain"], "b.example");
        assert_eq!(v["recipients"][0], "x@y.example");
        assert!(v.get("auth_id").is_none());
    }
}
