//! The events a rule receives, and how a batch of them crosses the wasm
//! boundary.
//!
//! The host turns what the mail server does (log lines, the queue, its
//! configuration) into these records. They are neutral facts; a rule answers
//! with verdicts.
//!
//! **Encoding.** A batch crosses as one `list<u8>` (`event-batch` in
//! `wit/rule.wit`): the [`Event`]s one after another, each in
//! [postcard](https://docs.rs/postcard)'s encoding of the types below, in
//! field order. The guest decodes it in place: every [`Text`] of an event
//! borrows the batch's bytes, so receiving an event costs no allocation per
//! string. (Lowering typed WIT records instead costs one call into the
//! guest's allocator per string, which was over a third of a rule's time.)
//! These types are part of the `spamward:rule` package version
//! ([`crate::INTERFACE_VERSION`]): changing a field or adding a variant is a
//! new version. (Serde names matter only to JSON; postcard encodes fields by
//! position and variants by index.)

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Event time: seconds since 1970-01-01T00:00:00Z.
pub type Timestamp = i64;

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Delivered (`=>`, `->`).
    Delivered,
    /// Deferred, to be retried (`==`).
    Deferred,
    /// Failed for good (`**`).
    Failed,
}

/// The kinds of [`EventBody`], in the order of the WIT `event-kind` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// A string of an event: borrowed from the batch the host sent, or owned
/// when a test built the event.
///
/// It dereferences to `str`, so `&text`, `text.len()`, `text.starts_with(..)`
/// and `opt.as_deref()` work as on a `String`. Keep it past the event with
/// `to_string()`.
///
/// A string borrowed from a batch is checked to be UTF-8 when it is read,
/// not when the batch is decoded: a rule reads two or three of an event's
/// ten strings, and in wasm the check was a third of decoding. The host
/// writes every string from a Rust `str`, so the check fails only on a
/// batch that is not the host's: then reading it panics (in a rule, a
/// trap), as a batch that does not decode does.
#[derive(Clone)]
pub struct Text<'a>(Repr<'a>);

#[derive(Clone)]
enum Repr<'a> {
    /// From a batch, not yet checked.
    Unchecked(&'a [u8]),
    Borrowed(&'a str),
    Owned(String),
}

impl Default for Text<'_> {
    fn default() -> Self {
        Text(Repr::Borrowed(""))
    }
}

impl Text<'static> {
    /// An owned copy of `s`, to keep past the text it came from.
    pub fn owned(s: &str) -> Self {
        Text(Repr::Owned(s.to_owned()))
    }
}

impl Text<'_> {
    /// The string.
    ///
    /// # Panics
    /// If it came from a batch the host did not write (not UTF-8).
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Unchecked(bytes) => checked(bytes),
            Repr::Borrowed(s) => s,
            Repr::Owned(s) => s,
        }
    }

    /// The string's bytes, unchecked: equal texts have equal bytes.
    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Unchecked(bytes) => bytes,
            Repr::Borrowed(s) => s.as_bytes(),
            Repr::Owned(s) => s.as_bytes(),
        }
    }
}

/// `bytes` as a string, checked. Out of line, so that reading a text the
/// host built (every text, on the host's side) stays a small inlined match.
#[inline(never)]
fn checked(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("an event batch holds a string that is not UTF-8: {e}"))
}

impl Deref for Text<'_> {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Text<'_> {}

impl PartialOrd for Text<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Byte order, which is `str`'s order.
impl Ord for Text<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl std::hash::Hash for Text<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text(Repr::Borrowed(s))
    }
}

impl<'a> From<&'a String> for Text<'a> {
    fn from(s: &'a String) -> Self {
        Text(Repr::Borrowed(s))
    }
}

impl From<String> for Text<'_> {
    fn from(s: String) -> Self {
        Text(Repr::Owned(s))
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.bytes() == other.as_bytes()
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Repr::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Repr::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Repr::Owned(s)))
            }
            fn visit_borrowed_bytes<E>(self, bytes: &'de [u8]) -> Result<Text<'de>, E> {
                Ok(Text(Repr::Unchecked(bytes)))
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Text<'de>, E> {
                std::str::from_utf8(bytes)
                    .map(|s| Text(Repr::Owned(s.to_owned())))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Visitor)
        } else {
            // The batch encoding writes a string as its bytes, so they can
            // be borrowed as they are and checked when read.
            deserializer.deserialize_bytes(Visitor)
        }
    }
}

/// Everything known about who sent a message. Peers that count only by IP
/// or only by domain miss stolen logins and web scripts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity<'a> {
    /// Envelope sender (`<=`/`F=`); `None` for the null sender `<>`.
    #[serde(borrow)]
    pub sender: Option<Text<'a>>,
    /// Domain part of `sender`, lower-cased. A bounce (no `sender`) may
    /// have one too: the domain the server charged it to, where the log
    /// says (cPanel's `SMTP connection outbound`).
    #[serde(borrow)]
    pub sender_domain: Option<Text<'a>>,
    /// SMTP AUTH id (`A=authenticator:id`, the id part).
    #[serde(borrow)]
    pub auth_id: Option<Text<'a>>,
    /// Local user that submitted the message (`U=`).
    #[serde(borrow)]
    pub local_user: Option<Text<'a>>,
    /// Hosting account that owns the sender (cPanel "Sender identification",
    /// `/home/<user>/` scripts, `/etc/userdomains`).
    #[serde(borrow)]
    pub owner: Option<Text<'a>>,
    /// Script or directory that submitted the message (`cwd=`,
    /// `X-PHP-Script`).
    #[serde(borrow)]
    pub script: Option<Text<'a>>,
    /// Remote client IP for SMTP submissions (`H=... [ip]`).
    #[serde(borrow)]
    pub client_ip: Option<Text<'a>>,
    /// Remote client host name or HELO, as logged.
    #[serde(borrow)]
    pub client_host: Option<Text<'a>>,
}

impl Identity<'_> {
    /// Sets `sender` and derives `sender_domain` from it (lower-cased);
    /// `""` or `<>` mean the null sender.
    pub fn set_sender(&mut self, sender: &str) {
        let sender = sender.trim_start_matches('<').trim_end_matches('>');
        if sender.is_empty() {
            self.sender = None;
            self.sender_domain = None;
        } else {
            self.sender_domain = sender
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .map(Text::from);
            self.sender = Some(Text::from(sender.to_owned()));
        }
    }
}

/// A message accepted by the MTA (Exim `<=`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageReceived<'a> {
    /// The MTA's message id.
    #[serde(borrow)]
    pub message_id: Text<'a>,
    /// Who sent it.
    #[serde(borrow)]
    pub identity: Identity<'a>,
    /// Received protocol (`P=`): `esmtpsa`, `local`, ...
    #[serde(borrow)]
    pub protocol: Option<Text<'a>>,
    /// Size in bytes (`S=`).
    pub size: Option<u64>,
    /// Envelope recipients.
    #[serde(borrow)]
    pub recipients: Vec<Text<'a>>,
    /// Subject (`T=`), unquoted.
    #[serde(borrow)]
    pub subject: Option<Text<'a>>,
    /// True for the null sender `<>` (a bounce or other DSN).
    pub bounce: bool,
    /// For a locally generated bounce, the message it reports on (`R=`).
    #[serde(borrow)]
    pub bounce_of: Option<Text<'a>>,
}

/// One delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery<'a> {
    /// The message delivered.
    #[serde(borrow)]
    pub message_id: Text<'a>,
    /// What became of the attempt.
    pub outcome: DeliveryOutcome,
    /// The recipient address.
    #[serde(borrow)]
    pub recipient: Text<'a>,
    /// Router (`R=`).
    #[serde(borrow)]
    pub router: Option<Text<'a>>,
    /// Transport (`T=`).
    #[serde(borrow)]
    pub transport: Option<Text<'a>>,
    /// Remote host name as logged (`H=`).
    #[serde(borrow)]
    pub remote_host: Option<Text<'a>>,
    /// Remote host IP (`H=... [ip]`).
    #[serde(borrow)]
    pub remote_ip: Option<Text<'a>>,
    /// Error text for `Deferred` and `Failed`.
    #[serde(borrow)]
    pub error: Option<Text<'a>>,
    /// The sender of the message, joined from its arrival.
    #[serde(borrow)]
    pub identity: Identity<'a>,
}

/// A message left the queue, or was frozen; the identity is joined from its
/// arrival when it was seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageState<'a> {
    /// The message.
    #[serde(borrow)]
    pub message_id: Text<'a>,
    /// Why, where the source says (`Frozen (delivery error message)`).
    #[serde(borrow)]
    pub reason: Option<Text<'a>>,
    /// Who sent it.
    #[serde(borrow)]
    pub identity: Identity<'a>,
}

/// The SMTP phase a rejection happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// The MTA refused something a client asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection<'a> {
    /// The client's IP.
    #[serde(borrow)]
    pub client_ip: Option<Text<'a>>,
    /// The client's host name or HELO.
    #[serde(borrow)]
    pub client_host: Option<Text<'a>>,
    /// Envelope sender, when given before the rejection.
    #[serde(borrow)]
    pub sender: Option<Text<'a>>,
    /// Recipient, when the rejection is about one.
    #[serde(borrow)]
    pub recipient: Option<Text<'a>>,
    /// When in the SMTP dialogue it happened.
    pub stage: SmtpStage,
    /// The MTA's reason, as logged.
    #[serde(borrow)]
    pub reason: Text<'a>,
    /// Message id when the rejection happened after one was assigned.
    #[serde(borrow)]
    pub message_id: Option<Text<'a>>,
}

/// A failed SMTP AUTH attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthFailure<'a> {
    /// The client's IP.
    #[serde(borrow)]
    pub client_ip: Option<Text<'a>>,
    /// The client's host name or HELO.
    #[serde(borrow)]
    pub client_host: Option<Text<'a>>,
    /// Exim authenticator name (`dovecot_login`, `plain`, ...).
    #[serde(borrow)]
    pub authenticator: Text<'a>,
    /// The login that was tried (`set_id=`), when logged.
    #[serde(borrow)]
    pub set_id: Option<Text<'a>>,
    /// Why it failed, as logged.
    #[serde(borrow)]
    pub reason: Option<Text<'a>>,
}

/// Which sending limit of the hosting panel acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GovernorLimit {
    /// "has exceeded the max emails per hour".
    MaxEmailsPerHour,
    /// "has exceeded the max defers and failures per hour".
    MaxDefersAndFailures,
    /// "has an outgoing mail hold".
    OutgoingHold,
    /// "has an outgoing mail suspension".
    OutgoingSuspension,
    /// "Mail sent by user nobody being discarded".
    NobodyRestricted,
    /// Another limit.
    Other,
}

/// The hosting panel's own mail governor held back or discarded mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GovernorAction<'a> {
    /// The message it acted on.
    #[serde(borrow)]
    pub message_id: Option<Text<'a>>,
    /// Domain the limit applies to.
    #[serde(borrow)]
    pub domain: Option<Text<'a>>,
    /// Which limit.
    pub limit: GovernorLimit,
    /// Count the domain reached, where logged (`500/500`).
    pub count: Option<u32>,
    /// The limit it reached, where logged.
    pub maximum: Option<u32>,
    /// True when mail was discarded, false when it will be retried.
    pub discarded: bool,
    /// The recipient of the delivery it stopped.
    #[serde(borrow)]
    pub recipient: Option<Text<'a>>,
    /// Who sent the message.
    #[serde(borrow)]
    pub identity: Identity<'a>,
}

/// A message sitting in the queue (`exim -bp`, spool `-H` files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueuedMessage<'a> {
    /// The message id.
    #[serde(borrow)]
    pub message_id: Text<'a>,
    /// Who sent it.
    #[serde(borrow)]
    pub identity: Identity<'a>,
    /// Seconds in the queue when the snapshot was taken.
    pub age_seconds: u64,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Recipients not yet delivered.
    #[serde(borrow)]
    pub recipients: Vec<Text<'a>>,
    /// Frozen (`*** frozen ***`).
    pub frozen: bool,
    /// A bounce (null sender).
    pub bounce: bool,
    /// The `From:` header, as written.
    #[serde(borrow)]
    pub from_header: Option<Text<'a>>,
    /// The `Subject:` header.
    #[serde(borrow)]
    pub subject: Option<Text<'a>>,
    /// Further headers of interest (`X-PHP-Script`, `X-Mailer`, ...).
    #[serde(borrow)]
    pub headers: Vec<(Text<'a>, Text<'a>)>,
}

/// One configuration setting (`cpanel.config`, `/etc/email_send_limits`, a
/// user file, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting<'a> {
    /// File or subsystem it was read from, e.g. `cpanel.config`.
    #[serde(borrow)]
    pub source: Text<'a>,
    /// What it applies to when not the whole server: a domain or account.
    #[serde(borrow)]
    pub scope: Option<Text<'a>>,
    /// The setting's name.
    #[serde(borrow)]
    pub key: Text<'a>,
    /// `None` when the key is present but unset.
    #[serde(borrow)]
    pub value: Option<Text<'a>>,
}

/// One alias line (`/etc/valiases/<domain>`): `local-part: target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailAlias<'a> {
    /// The domain the alias file is for.
    #[serde(borrow)]
    pub domain: Text<'a>,
    /// `*` for the catch-all (default address).
    #[serde(borrow)]
    pub local_part: Text<'a>,
    /// As written: `:fail: No Such User Here`, `:blackhole:`, a user,
    /// addresses, a `|pipe`.
    #[serde(borrow)]
    pub target: Text<'a>,
}

/// Size and bounce content of one mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxStats<'a> {
    /// The hosting account that owns it.
    #[serde(borrow)]
    pub account: Text<'a>,
    /// Its domain.
    #[serde(borrow)]
    pub domain: Text<'a>,
    /// The mailbox (local part).
    #[serde(borrow)]
    pub mailbox: Text<'a>,
    /// Bytes of mail in it.
    pub bytes: u64,
    /// Messages in it.
    pub messages: u32,
    /// Messages that are bounces (null return path or delivery reports).
    pub bounces: u32,
}

/// State of a service or subsystem (Mailman, suEXEC, the PHP handler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState<'a> {
    /// The service.
    #[serde(borrow)]
    pub name: Text<'a>,
    /// Whether it is on.
    pub enabled: bool,
    /// What else is known, as name/value pairs.
    #[serde(borrow)]
    pub details: Vec<(Text<'a>, Text<'a>)>,
}

/// An event kind this interface version does not model yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extension<'a> {
    /// What kind of event it is.
    #[serde(borrow, rename = "extension_kind")]
    pub kind: Text<'a>,
    /// Its fields.
    #[serde(borrow)]
    pub fields: Vec<(Text<'a>, Text<'a>)>,
}

impl Extension<'_> {
    /// The value of field `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The extension kinds the host sends, and their fields. A rule matches
/// `Extension::kind` against these rather than spelling the names itself.
pub mod extension_kind {
    /// The outcome of an offline relay test (`exim -bh` with a relay
    /// attempt): fields `client_ip`, `recipient`, `response`, `accepted`
    /// (`true`/`false`).
    pub const RELAY_PROBE: &str = "relay-probe";
    /// A redirected address (an alias or forwarder) delivered to a remote
    /// host, said just before that delivery: fields `message_id`,
    /// `recipient` (the address delivered to) and `parent` (the address the
    /// client sent to). Such a delivery is a forward, not a relay.
    pub const REDIRECT: &str = "redirect";
    /// The end of a whole-queue snapshot (a spool directory, an `exim -bp`
    /// listing), after its `queued-message` events and at their time:
    /// fields `messages`, `frozen`, `bounces` and `frozen_bounces`, so a
    /// rule can judge a share of the queue once it knows the queue's size.
    pub const QUEUE_SNAPSHOT: &str = "queue-snapshot";
    /// A total of one of the rule's own counters reached its threshold or a
    /// further step (interface 0.2.2), said right after the event that took
    /// it there: fields `counter`, `key`, `total`, `threshold`,
    /// `window_seconds`, and `message_id`, `sender` and (a delivery's)
    /// `error` when that event had them. Read it with
    /// [`crate::counter::Crossing::from_extension`].
    pub const COUNTER: &str = "counter";
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum EventBody<'a> {
    #[serde(borrow)]
    MessageReceived(MessageReceived<'a>),
    #[serde(borrow)]
    Delivery(Delivery<'a>),
    #[serde(borrow)]
    MessageCompleted(MessageState<'a>),
    #[serde(borrow)]
    MessageFrozen(MessageState<'a>),
    #[serde(borrow)]
    Rejection(Rejection<'a>),
    #[serde(borrow)]
    AuthFailure(AuthFailure<'a>),
    #[serde(borrow)]
    GovernorAction(GovernorAction<'a>),
    #[serde(borrow)]
    QueuedMessage(QueuedMessage<'a>),
    #[serde(borrow)]
    Setting(Setting<'a>),
    #[serde(borrow)]
    MailAlias(MailAlias<'a>),
    #[serde(borrow)]
    MailboxStats(MailboxStats<'a>),
    #[serde(borrow)]
    ServiceState(ServiceState<'a>),
    #[serde(borrow)]
    Extension(Extension<'a>),
}

/// One normalized event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<'a> {
    /// Unique within a run; cite it in a finding as evidence.
    pub id: u64,
    /// When it happened: seconds since 1970-01-01T00:00:00Z (the host turns
    /// a source's local times into instants).
    pub time: Timestamp,
    /// What happened.
    #[serde(borrow)]
    pub body: EventBody<'a>,
}

/// Appends `event`'s encoding to `batch` (the host's side of the boundary).
pub fn encode(event: &Event<'_>, batch: &mut Vec<u8>) {
    encode_parts(event.id, event.time, &event.body, batch);
}

/// Appends the encoding of the event `id` at `time` with `body` to `batch`:
/// the same bytes as [`encode`], for a body the caller keeps.
pub fn encode_parts(id: u64, time: Timestamp, body: &EventBody<'_>, batch: &mut Vec<u8>) {
    /// [`Event`]'s fields in order, the body borrowed.
    #[derive(Serialize)]
    struct Parts<'b, 'a> {
        id: u64,
        time: Timestamp,
        body: &'b EventBody<'a>,
    }
    let bytes = postcard::to_extend(&Parts { id, time, body }, std::mem::take(batch))
        // Only sequences of unknown length can fail to encode; events have none.
        .expect("an event always encodes");
    *batch = bytes;
}

/// The events of an encoded batch, in order, borrowing its bytes.
pub fn decode(batch: &[u8]) -> Decode<'_> {
    Decode {
        rest: batch,
        offset: 0,
    }
}

/// Iterator over the events of an encoded batch; see [`decode`].
pub struct Decode<'a> {
    rest: &'a [u8],
    offset: usize,
}

/// A batch that does not decode: host and rule disagree on the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset of the event that failed.
    pub offset: usize,
    /// What postcard said.
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event batch does not decode at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for DecodeError {}

impl<'a> Iterator for Decode<'a> {
    type Item = Result<Event<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match postcard::take_from_bytes::<Event<'a>>(self.rest) {
            Ok((event, rest)) => {
                self.offset += self.rest.len() - rest.len();
                self.rest = rest;
                Some(Ok(event))
            }
            Err(e) => {
                let error = DecodeError {
                    offset: self.offset,
                    reason: e.to_string(),
                };
                self.rest = &[];
                Some(Err(error))
            }
        }
    }
}

impl EventBody<'_> {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        use EventKind as K;
        match self {
            EventBody::MessageReceived(_) => K::MessageReceived,
            EventBody::Delivery(_) => K::Delivery,
            EventBody::MessageCompleted(_) => K::MessageCompleted,
            EventBody::MessageFrozen(_) => K::MessageFrozen,
            EventBody::Rejection(_) => K::Rejection,
            EventBody::AuthFailure(_) => K::AuthFailure,
            EventBody::GovernorAction(_) => K::GovernorAction,
            EventBody::QueuedMessage(_) => K::QueuedMessage,
            EventBody::Setting(_) => K::Setting,
            EventBody::MailAlias(_) => K::MailAlias,
            EventBody::MailboxStats(_) => K::MailboxStats,
            EventBody::ServiceState(_) => K::ServiceState,
            EventBody::Extension(_) => K::Extension,
        }
    }

    /// The sender identity, for events about a message.
    pub fn identity(&self) -> Option<&Identity<'_>> {
        match self {
            EventBody::MessageReceived(m) => Some(&m.identity),
            EventBody::Delivery(d) => Some(&d.identity),
            EventBody::MessageCompleted(m) | EventBody::MessageFrozen(m) => Some(&m.identity),
            EventBody::GovernorAction(g) => Some(&g.identity),
            EventBody::QueuedMessage(q) => Some(&q.identity),
            _ => None,
        }
    }

    /// The MTA's id of the message, for events about one.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            EventBody::MessageReceived(m) => Some(&m.message_id),
            EventBody::Delivery(d) => Some(&d.message_id),
            EventBody::MessageCompleted(m) | EventBody::MessageFrozen(m) => Some(&m.message_id),
            EventBody::QueuedMessage(q) => Some(&q.message_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event<'static>> {
        let identity = Identity {
            sender: Some("info@shop.example".into()),
            sender_domain: Some("shop.example".into()),
            auth_id: Some("info@shop.example".into()),
            client_ip: Some("203.0.113.9".into()),
            ..Identity::default()
        };
        vec![
            Event {
                id: 7,
                time: -3,
                body: EventBody::MessageReceived(MessageReceived {
                    message_id: "1abc23-000456-AB".into(),
                    identity: identity.clone(),
                    protocol: Some("esmtpsa".into()),
                    size: Some(1234),
                    recipients: vec!["a@far.example".into(), "b@far.example".into()],
                    subject: Some("é ✓".into()),
                    bounce: false,
                    bounce_of: None,
                }),
            },
            Event {
                id: u64::MAX,
                time: 1_714_557_600,
                body: EventBody::Delivery(Delivery {
                    message_id: "1abc23-000456-AB".into(),
                    outcome: DeliveryOutcome::Failed,
                    recipient: "a@far.example".into(),
                    router: None,
                    transport: Some("remote_smtp".into()),
                    remote_host: None,
                    remote_ip: None,
                    error: Some(String::new().into()),
                    identity,
                }),
            },
            Event {
                id: 9,
                time: 0,
                body: EventBody::Extension(Extension {
                    kind: "x".into(),
                    fields: vec![("k".into(), "v".into())],
                }),
            },
        ]
    }

    #[test]
    fn a_batch_decodes_to_the_events_encoded_borrowing_its_bytes() {
        let events = sample();
        let mut batch = Vec::new();
        for e in &events {
            encode(e, &mut batch);
        }
        let decoded: Vec<Event<'_>> = decode(&batch).collect::<Result<_, _>>().unwrap();
        assert_eq!(decoded, events);
        let EventBody::MessageReceived(m) = &decoded[0].body else {
            panic!("first is a message")
        };
        let range = batch.as_ptr_range();
        assert!(
            range.contains(&m.recipients[1].as_ptr()),
            "strings point into the batch"
        );
        assert!(matches!(m.message_id, Text(Repr::Unchecked(_))));
    }

    #[test]
    fn a_borrowed_text_is_the_text_it_was_encoded_from() {
        let events = sample();
        let mut batch = Vec::new();
        encode(&events[0], &mut batch);
        let decoded = decode(&batch).next().unwrap().unwrap();
        let (EventBody::MessageReceived(m), EventBody::MessageReceived(original)) =
            (&decoded.body, &events[0].body)
        else {
            panic!("first is a message")
        };
        // Equal, ordered and hashed as the string it holds, unchecked or not.
        assert_eq!(m.message_id, original.message_id);
        assert_eq!(m.message_id, *original.message_id.as_str());
        assert_eq!(
            m.message_id.cmp(&original.message_id),
            std::cmp::Ordering::Equal
        );
        let hash = |t: &Text<'_>| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(t)
        };
        assert_eq!(hash(&m.message_id), hash(&original.message_id));
        assert_eq!(m.message_id.to_string(), original.message_id.to_string());
    }

    #[test]
    #[should_panic(expected = "an event batch holds a string that is not UTF-8")]
    fn a_string_that_is_not_utf8_panics_when_read_not_when_decoded() {
        // A message id whose first byte is 0xff: no host writes that.
        let mut batch = Vec::new();
        encode(&sample()[0], &mut batch);
        let id = b"1abc23-000456-AB";
        let at = batch.windows(id.len()).position(|w| w == id);
        let at = at.expect("the sample's message id is in the batch");
        batch[at] = 0xff;
        let decoded = decode(&batch)
            .next()
            .unwrap()
            .expect("decodes: not read yet");
        let EventBody::MessageReceived(m) = &decoded.body else {
            panic!("first is a message")
        };
        let _ = m.message_id.len();
    }

    #[test]
    fn a_truncated_batch_is_an_error_naming_the_offset_not_a_panic() {
        let events = sample();
        let mut batch = Vec::new();
        encode(&events[0], &mut batch);
        let first = batch.len();
        encode(&events[1], &mut batch);
        batch.truncate(batch.len() - 3);
        let mut decoded = decode(&batch);
        assert!(decoded.next().unwrap().is_ok());
        let err = decoded.next().unwrap().unwrap_err();
        assert_eq!(err.offset, first);
        assert!(err.to_string().contains(&format!("byte {first}")), "{err}");
        assert!(decoded.next().is_none(), "decoding stops at the error");

        let mut failed = events[1].clone();
        failed.id = 1;
        failed.time = 0;
        if let EventBody::Delivery(d) = &mut failed.body {
            d.message_id = "m".into();
        }
        let mut bad = Vec::new();
        encode(&failed, &mut bad);
        // id, time, body tag, the message id's length and byte, the outcome.
        assert_eq!(bad[..6], [1, 0, 1, 1, b'm', 2]);
        bad[5] = 9;
        let err = decode(&bad).next().unwrap().unwrap_err();
        assert_eq!(err.offset, 0, "{err}");
    }

    #[test]
    fn text_reads_like_a_str() {
        let owned: Text<'static> = String::from("Nobody@Host.example").into();
        assert_eq!(owned, "Nobody@Host.example");
        assert_eq!(owned.rsplit_once('@').map(|(_, d)| d), Some("Host.example"));
        assert_eq!(
            format!("{owned} {owned:?}"),
            "Nobody@Host.example \"Nobody@Host.example\""
        );
        let opt = Some(owned);
        assert_eq!(opt.as_deref(), Some("Nobody@Host.example"));
    }
}
