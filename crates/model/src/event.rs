//! The host's events: the contract's records ([`spamward_contract::event`],
//! what rules receive) with the time as the source wrote it and where each
//! came from (`Origin`), so findings can cite file and line. They serialize
//! to the flat JSON Lines shape `spamward events` prints: `time`, `file`,
//! `line`, `kind`, then the body's fields with identity fields flattened in
//! (`client_ip`, `sender`, `auth_id`, ...).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use spamward_contract::event as contract;

pub use contract::{DeliveryOutcome, EventKind, GovernorLimit, SmtpStage, Text, extension_kind};

/// When an event happened, and how its source wrote it.
///
/// `seconds` is the instant (Unix time, UTC): windows and ordering count it,
/// so they measure real elapsed time across daylight saving changes (see
/// [`clock`](crate::clock)). The local offset of that instant is kept only so
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
    /// [`LocalZone::at`](crate::LocalZone::at) to show it in a zone.
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
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened, as written.
    pub time: Timestamp,
    /// Input path.
    pub file: Arc<str>,
    /// 1-based line of the line the event came from.
    pub line: u64,
    /// What happened.
    pub body: EventBody,
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

/// The event model the normalizer produces: the contract's records, owning
/// their strings. Rules receive the same records, borrowed from a batch.
pub type EventBody = contract::EventBody<'static>;
/// Who sent a message; see [`contract::Identity`].
pub type Identity = contract::Identity<'static>;
/// See [`contract::MessageReceived`].
pub type MessageReceived = contract::MessageReceived<'static>;
/// See [`contract::Delivery`].
pub type Delivery = contract::Delivery<'static>;
/// See [`contract::MessageState`].
pub type MessageState = contract::MessageState<'static>;
/// See [`contract::Rejection`].
pub type Rejection = contract::Rejection<'static>;
/// See [`contract::AuthFailure`].
pub type AuthFailure = contract::AuthFailure<'static>;
/// See [`contract::GovernorAction`].
pub type GovernorAction = contract::GovernorAction<'static>;
/// See [`contract::QueuedMessage`].
pub type QueuedMessage = contract::QueuedMessage<'static>;
/// See [`contract::Setting`].
pub type Setting = contract::Setting<'static>;
/// See [`contract::MailAlias`].
pub type MailAlias = contract::MailAlias<'static>;
/// See [`contract::MailboxStats`].
pub type MailboxStats = contract::MailboxStats<'static>;
/// See [`contract::ServiceState`].
pub type ServiceState = contract::ServiceState<'static>;
/// See [`contract::Extension`].
pub type Extension = contract::Extension<'static>;

/// An [`Event`] in full, for a checkpoint: `Event`'s own `Serialize` is
/// the flat view `spamward events` prints, which keeps the time only as
/// written. Read it back with a deserializer that does not borrow from its
/// input (e.g. `serde_json::Deserializer::from_reader`): its strings are
/// owned.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(bound(deserialize = "'de: 'static"))]
pub struct SavedEvent {
    seconds: i64,
    offset_minutes: i16,
    offset_written: bool,
    file: String,
    line: u64,
    body: EventBody,
}

impl From<&Event> for SavedEvent {
    fn from(e: &Event) -> Self {
        SavedEvent {
            seconds: e.time.seconds,
            offset_minutes: e.time.offset_minutes,
            offset_written: e.time.offset_written,
            file: e.file.to_string(),
            line: e.line,
            body: e.body.clone(),
        }
    }
}

impl From<SavedEvent> for Event {
    fn from(s: SavedEvent) -> Self {
        Event {
            time: Timestamp::local(s.seconds, s.offset_minutes, s.offset_written),
            file: s.file.into(),
            line: s.line,
            body: s.body,
        }
    }
}

/// The flat JSON Lines shape `spamward events` prints: `time`, `file`,
/// `line`, `kind`, then the body's fields in order with the identity's
/// fields in its place, absent values and empty header lists left out.
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        // The contract's derive writes `{"<kind>": {fields...}}`; flattening
        // that here keeps one derive serving both postcard and this view.
        let body = serde_json::to_value(&self.body).map_err(S::Error::custom)?;
        let serde_json::Value::Object(tagged) = body else {
            return Err(S::Error::custom("an event body is a tagged object"));
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("time", &self.time)?;
        map.serialize_entry("file", &*self.file)?;
        map.serialize_entry("line", &self.line)?;
        for (kind, fields) in tagged {
            map.serialize_entry("kind", &kind)?;
            let serde_json::Value::Object(fields) = fields else {
                continue;
            };
            for (name, value) in fields {
                match (name.as_str(), value) {
                    ("identity", serde_json::Value::Object(identity)) => {
                        for (name, value) in identity.into_iter().filter(|(_, v)| !v.is_null()) {
                            map.serialize_entry(&name, &value)?;
                        }
                    }
                    (_, serde_json::Value::Null) => {}
                    ("headers", serde_json::Value::Array(a)) if a.is_empty() => {}
                    (_, value) => map.serialize_entry(&name, &value)?,
                }
            }
        }
        map.end()
    }
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
