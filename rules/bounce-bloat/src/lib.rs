//! `bounce-bloat`: mailboxes swollen with bounces, and mailboxes full.
//!
//! A mailbox full of delivery failures means its owner sends mail that
//! bounces — an account pushing spam to harvested addresses — or that
//! spammers forge its address and the world's bounces come home. Either way
//! the account is worth a look.
//!
//! **From the server's disk** (`MailboxStats`, read from the maildirs): a
//! mailbox is reported when it holds at least `min_bounces` bounces that
//! make up at least `min_bounce_percent` % of its messages, critical at ten
//! times `min_bounces`.
//!
//! **From the Exim main log alone** (so a replay on another machine, with no
//! maildirs and no `/etc/localdomains`, finds it too): a mailbox the server
//! reports full. Exim first defers mail for it (`== user@dom ... defer
//! (-22): mailbox is full (MTA-imposed quota exceeded while writing to
//! ...)`, Dovecot LMTP's `452 4.2.2 ... Quota exceeded (mailbox for user is
//! full)`), then fails it (`** user@dom ...: Mailbox quota exceeded`,
//! `** user@dom: retry timeout exceeded`) and returns each failed message to
//! its sender (`<= <> R=<failed message>`). When the sender was forged, that
//! bounce is backscatter to an innocent address. The rule counts, per
//! mailbox over `window_hours`, the messages refused as full, their distinct
//! senders, the failures and the bounces they caused, and the quota warnings
//! the server sent the owner (Exim's `quota_warn_message`, arriving as
//! `<= <>` with a subject such as "Mailbox quota warning"). A mailbox is
//! reported once it has refused `min_refused` messages: a warning while the
//! mail is only deferred, critical once bounces go back to senders or
//! `critical_senders` senders have been refused. At most one report per
//! mailbox per window, and one more if it turns critical. Quota warnings
//! alone accuse nobody: nothing has been refused yet, and the server has
//! already told the owner; they are counted in the evidence.
//!
//! Remote mailboxes are not the server's to empty: a remote server's "over
//! quota" answer (`SMTP error from remote mail server`) is ignored.
//!
//! **From configuration**, only the host's local domains
//! (`/etc/localdomains`), when it has them: a recipient known not to be
//! local never reaches the rule. The quota itself is not read; the log
//! says when it was hit.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;
use spamward_sdk::text;

/// `[rules.bounce-bloat]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Bounces a mailbox must hold before it is reported; ten times this
    /// makes it critical.
    pub min_bounces: u32,
    /// Share of the mailbox's messages, in percent, the bounces must make up.
    pub min_bounce_percent: u32,
    /// Distinct messages the log must show refused as "mailbox full" within
    /// the window before the mailbox is reported.
    pub min_refused: u32,
    /// Distinct senders refused within the window that make a full mailbox
    /// critical even before anything bounced.
    pub critical_senders: u32,
    /// Window, in hours, over which refusals are counted and within which a
    /// mailbox is reported once (once more if it turns critical).
    pub window_hours: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_bounces: 20,
            min_bounce_percent: 30,
            // One refusal can be a single oversized message against a
            // nearly full quota, and one message is retried at every queue
            // run; three different messages refused is a mailbox that is
            // really full.
            min_refused: 3,
            critical_senders: 10,
            // A full mailbox stays full until someone empties it, and a
            // quiet mailbox gets a few messages a day: a day catches it and
            // says so once a day rather than every hour.
            window_hours: 24,
        }
    }
}

/// Longest window accepted: 30 days.
const MAX_WINDOW_HOURS: u32 = 30 * 24;

/// How long a failed message waits for its bounce's arrival line. Exim
/// writes the bounce's `<= <> R=<id>` right after the failure, in the same
/// delivery run; minutes allow for a busy log's interleaving.
const BOUNCE_LINK_SECONDS: i64 = 600;

/// Failed messages remembered for their bounces at most. Guest memory, not
/// host state: only a few seconds' worth is ever needed, and losing it on a
/// reload loses at most those few links.
const BOUNCE_LINK_CAP: usize = 512;

/// The rule.
pub struct BounceBloat {
    settings: Settings,
    /// Messages of unknown sender recently failed because their mailbox
    /// was full, so their bounce's arrival can be charged to the mailbox;
    /// oldest first.
    failed_recently: VecDeque<Failed>,
}

/// `bytes` for a person: `512 B`, `3.4 MB`, `1.2 GB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// How the mail servers say a mailbox is over its quota, in lower case:
/// Exim's appendfile (`mailbox is full (MTA-imposed quota exceeded ...)`),
/// cPanel (`Mailbox quota exceeded`), Dovecot (`Quota exceeded (mailbox for
/// user is full)`, `Mailbox is full / Blocks limit exceeded`) and the
/// "over quota" wordings.
const FULL_WORDS: [&str; 6] = [
    "mailbox is full",
    "mailbox full",
    "quota exceeded",
    "over quota",
    "overquota",
    "over-quota",
];

/// Whether a deferral's or failure's error says the mailbox is full.
fn says_full(error: &str) -> bool {
    text::contains_any(error, &FULL_WORDS)
        // A remote server's answer is about a mailbox elsewhere.
        && !text::contains(error, "smtp error from remote")
}

/// Whether a null-sender arrival's subject is a quota warning ("Mailbox
/// quota warning", "Warning: mailbox ... is nearly full", "Your mailbox is
/// now 90% full"), not a bounce ("Mail delivery failed: ...") or a delay
/// warning ("Warning: message ... delayed 24 hours").
fn is_quota_warning(subject: &str) -> bool {
    text::contains(subject, "quota")
        || (text::contains(subject, "mailbox") && text::contains(subject, "full"))
}

/// The first address (`user@domain`) a subject names, without the quotes
/// or brackets around it.
fn address_in(subject: &str) -> Option<&str> {
    subject
        .split(|c: char| c.is_whitespace() || "\"'<>()[],;“”‘’".contains(c))
        .map(|w| w.trim_end_matches(['.', ':', '!', '?']))
        .find(|w| {
            w.split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        })
}

/// A message failed because its mailbox was full, waiting for its bounce.
struct Failed {
    /// When it failed.
    at: i64,
    /// The failed message.
    message_id: String,
    /// The full mailbox, lower-cased.
    mailbox: String,
    /// What the server said.
    error: String,
}

/// Host-state keys of one mailbox.
struct Keys {
    /// Distinct messages refused as full.
    refused: String,
    /// Distinct messages failed for good.
    failed: String,
    /// Distinct failed messages known to have bounced to their sender.
    bounced: String,
    /// Distinct senders refused.
    senders: String,
    /// Quota warnings the server sent the mailbox.
    warned: String,
    /// Marks the last report, so the mailbox is reported once per window.
    reported: String,
    /// Marks the last critical report: the one report more it may get.
    reported_critical: String,
}

impl Keys {
    /// The keys of `mailbox` (lower-cased).
    fn of(mailbox: &str) -> Keys {
        Keys {
            refused: format!("refused:{mailbox}"),
            failed: format!("failed:{mailbox}"),
            bounced: format!("bounced:{mailbox}"),
            senders: format!("senders:{mailbox}"),
            warned: format!("warned:{mailbox}"),
            reported: format!("reported:{mailbox}"),
            reported_critical: format!("reported-critical:{mailbox}"),
        }
    }
}

/// What one event adds to a full mailbox's counts.
struct Refusal<'e> {
    /// The refused message.
    message_id: &'e str,
    /// Its envelope sender, when known and not `<>`.
    sender: Option<&'e str>,
    /// Failed for good rather than deferred.
    failed: bool,
    /// The bounce back to the sender is certain (a failure with a known
    /// sender) or was seen.
    bounced: bool,
    /// What the server said, for the evidence.
    error: &'e str,
}

impl BounceBloat {
    /// The window in seconds.
    fn window(&self) -> u32 {
        self.settings.window_hours * 3600
    }

    /// Counts `r` against `mailbox` at the event's time and reports the
    /// mailbox when it has refused enough.
    fn refused(&self, cx: &mut Context<'_>, mailbox: &str, r: Refusal<'_>) {
        let (at, w) = (cx.time(), self.window());
        let keys = Keys::of(mailbox);
        // Every refusal is counted; the counts it does not change are only
        // asked for once the mailbox may be reported (host calls cost).
        let refused = host::distinct_add(&keys.refused, r.message_id, at, w);
        let senders = r
            .sender
            .map(|s| host::distinct_add(&keys.senders, &s.to_ascii_lowercase(), at, w));
        let failed = r
            .failed
            .then(|| host::distinct_add(&keys.failed, r.message_id, at, w));
        let bounced = r
            .bounced
            .then(|| host::distinct_add(&keys.bounced, r.message_id, at, w));
        if refused < self.settings.min_refused {
            return;
        }
        let senders = senders.unwrap_or_else(|| host::distinct_count(&keys.senders, at, w));
        let failed = failed.unwrap_or_else(|| host::distinct_count(&keys.failed, at, w));
        let bounced = bounced.unwrap_or_else(|| host::distinct_count(&keys.bounced, at, w));
        let critical = bounced > 0 || senders >= self.settings.critical_senders;
        // Once per window, and once more if it turns critical: the state
        // of a mailbox, not every line about it.
        let spoke = |key: &str| host::window_total(key, at, w) > 0;
        if critical {
            if spoke(&keys.reported_critical) {
                return;
            }
            host::window_add(&keys.reported_critical, at, w, 1);
            host::window_add(&keys.reported, at, w, 1);
        } else {
            if spoke(&keys.reported) {
                return;
            }
            host::window_add(&keys.reported, at, w, 1);
        }
        let warnings = host::window_total(&keys.warned, at, w);
        let hours = self.settings.window_hours;
        let fate = if bounced > 0 {
            format!(
                "{failed} failed for good and {bounced} went back to their senders as bounces (backscatter when the sender was forged)"
            )
        } else if failed > 0 {
            format!("{failed} failed for good; Exim bounces them to their senders")
        } else {
            "Exim keeps retrying and bounces them to their senders when the retries run out"
                .to_owned()
        };
        let from = match senders {
            0 => String::new(),
            1 => " from 1 sender".to_owned(),
            n => format!(" from {n} senders"),
        };
        let summary = format!(
            "mailbox {mailbox} is full: {refused} messages{from} refused in {hours} h; {fate}"
        );
        let error = if r.error.eq_ignore_ascii_case("retry timeout exceeded") {
            "retry timeout exceeded (after the mailbox was reported full)"
        } else {
            r.error
        };
        cx.report(
            Finding::new(
                if critical {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                Target::Mailbox(mailbox.to_owned()),
                Action::Alert,
                summary,
            )
            .evidence("refused", refused)
            .evidence("senders", senders)
            .evidence("failed", failed)
            .evidence("bounced", bounced)
            .evidence("quota_warnings", warnings)
            .evidence("window_hours", hours)
            .evidence("error", error)
            .evidence(
                "fix",
                format!(
                    "Empty or enlarge the mailbox {mailbox}; bounces to forged senders cause backscatter"
                ),
            ),
        );
    }

    /// Forgets failed messages whose bounce is no longer expected at `at`.
    fn expire_links(&mut self, at: i64) {
        while self
            .failed_recently
            .front()
            .is_some_and(|f| f.at <= at - BOUNCE_LINK_SECONDS)
            // Room for one more.
            || self.failed_recently.len() >= BOUNCE_LINK_CAP
        {
            self.failed_recently.pop_front();
        }
    }
}

impl Rule for BounceBloat {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "bounce-bloat",
            "Mailboxes swollen with bounces (an account sending spam or an address being forged) and mailboxes the server reports full",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::MailboxStats)
        // Only refused deliveries cross the boundary, never the delivered
        // mail, and none for a recipient the host knows is remote.
        .subscribe_matching(
            filter::all(EventKind::Delivery)
                .all_of([filter::outcome(&[
                    DeliveryOutcome::Deferred,
                    DeliveryOutcome::Failed,
                ])])
                .none_of([filter::remote_recipient()]),
        )
        // Null-sender arrivals only: the bounces of refused messages and
        // the quota warnings. Every other arrival stays in the host.
        .subscribe_matching(
            filter::all(EventKind::MessageReceived)
                .none_of([filter::has(IdentityField::Sender)]),
        )
        .action(Action::Alert)
        .setting(
            "min_bounces",
            "bounces a mailbox must hold before it is reported (ten times this is critical)",
        )
        .setting(
            "min_bounce_percent",
            "share of the mailbox's messages, in percent, the bounces must make up",
        )
        .setting(
            "min_refused",
            "distinct messages the log must show refused as \"mailbox full\" within the window before the mailbox is reported",
        )
        .setting(
            "critical_senders",
            "distinct senders refused within the window that make a full mailbox critical before anything bounced",
        )
        .setting(
            "window_hours",
            "hours over which refusals are counted; a full mailbox is reported once per window (once more if it turns critical)",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.min_bounces == 0 {
            return Err("min_bounces must be at least 1".into());
        }
        if settings.min_bounce_percent > 100 {
            return Err(format!(
                "min_bounce_percent must be 0..=100, not {}",
                settings.min_bounce_percent
            ));
        }
        if settings.min_refused == 0 {
            return Err("min_refused must be at least 1".into());
        }
        if settings.critical_senders == 0 {
            return Err("critical_senders must be at least 1".into());
        }
        if !(1..=MAX_WINDOW_HOURS).contains(&settings.window_hours) {
            return Err(format!(
                "window_hours must be 1..={MAX_WINDOW_HOURS}, not {}",
                settings.window_hours
            ));
        }
        Ok(BounceBloat {
            settings,
            failed_recently: VecDeque::new(),
        })
    }

    fn on_delivery(&mut self, cx: &mut Context<'_>, d: &Delivery) {
        let Some(error) = d.error.as_deref() else {
            return;
        };
        let failed = d.outcome == DeliveryOutcome::Failed;
        let full = says_full(error);
        // After deferrals for a full mailbox, Exim gives up with only
        // "retry timeout exceeded"; it is a full-mailbox failure when this
        // mailbox was refused as full within the window.
        let timed_out = failed && !full && error.eq_ignore_ascii_case("retry timeout exceeded");
        if !full && !timed_out {
            return;
        }
        // An address, not a file or pipe; one spelling per mailbox.
        if !d.recipient.contains('@') {
            return;
        }
        let mailbox = d.recipient.to_ascii_lowercase();
        if timed_out
            && host::distinct_count(&format!("refused:{mailbox}"), cx.time(), self.window()) == 0
        {
            return;
        }
        let sender = d.identity.sender.as_deref().filter(|s| !s.is_empty());
        if failed && sender.is_none() {
            // The log did not say who sent it (its arrival is in an older
            // log, and no `F=` on this line), or it was itself a bounce
            // and goes nowhere: its bounce's arrival, if one follows, tells.
            self.expire_links(cx.time());
            self.failed_recently.push_back(Failed {
                at: cx.time(),
                message_id: d.message_id.to_string(),
                mailbox: mailbox.clone(),
                error: error.to_owned(),
            });
        }
        self.refused(
            cx,
            &mailbox,
            Refusal {
                message_id: &d.message_id,
                sender,
                failed,
                // Exim returns a failed message to its sender; with the
                // sender unknown, the bounce's own arrival says so.
                bounced: failed && sender.is_some(),
                error,
            },
        );
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        if !m.bounce {
            return;
        }
        if let Some(subject) = m.subject.as_deref()
            && is_quota_warning(subject)
        {
            // Sent to the mailbox it warns about; a subject naming an
            // address names it better than a forwarded recipient.
            let mailbox = address_in(subject)
                .or_else(|| m.recipients.first().map(|r| r.as_str()))
                .filter(|r| r.contains('@'))
                .map(str::to_ascii_lowercase);
            if let Some(mailbox) = mailbox {
                host::window_add(&format!("warned:{mailbox}"), cx.time(), self.window(), 1);
            }
            return;
        }
        // A bounce of a message that failed because its mailbox was full.
        let Some(of) = m.bounce_of.as_deref() else {
            return;
        };
        self.expire_links(cx.time());
        let Some(i) = self.failed_recently.iter().position(|f| f.message_id == of) else {
            return;
        };
        let Some(f) = self.failed_recently.remove(i) else {
            return;
        };
        self.refused(
            cx,
            &f.mailbox,
            Refusal {
                message_id: &f.message_id,
                sender: None,
                failed: true,
                bounced: true,
                error: &f.error,
            },
        );
    }

    fn on_mailbox_stats(&mut self, cx: &mut Context<'_>, m: &MailboxStats) {
        let bounces = u64::from(m.bounces);
        let messages = u64::from(m.messages);
        let min = u64::from(self.settings.min_bounces);
        if bounces < min || bounces * 100 < messages * u64::from(self.settings.min_bounce_percent) {
            return;
        }
        let severity = if bounces >= 10 * min {
            Severity::Critical
        } else {
            Severity::Warning
        };
        // "(default)" is the account's own system mailbox, not an address.
        let (target, mailbox) = if m.domain == "(default)" {
            (
                Target::Account(m.account.to_string()),
                format!("the main mailbox of {}", m.account),
            )
        } else {
            let address = format!("{}@{}", m.mailbox, m.domain);
            (Target::Mailbox(address.clone()), address)
        };
        let percent = bounces * 100 / messages.max(bounces).max(1);
        cx.report(
            Finding::new(
                severity,
                target,
                Action::Alert,
                format!(
                    "{mailbox} holds {bounces} bounces ({percent}% of {messages} messages, {}): its account may be sending spam or its address is forged",
                    human_size(m.bytes)
                ),
            )
            .evidence("account", &m.account)
            .evidence("bytes", m.bytes)
            .evidence("messages", messages)
            .evidence("bounces", bounces)
            .evidence("percent", percent)
            .evidence(
                "fix",
                format!(
                    "Empty the bounces from {mailbox} and check {} for outgoing spam",
                    m.account
                ),
            ),
        );
    }
}

spamward_sdk::export_rule!(BounceBloat);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness, evidence};

    fn stats(
        domain: &str,
        mailbox: &str,
        messages: u32,
        bounces: u32,
    ) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::MailboxStats(MailboxStats {
                account: "shopacct".into(),
                domain: testing::text(domain),
                mailbox: testing::text(mailbox),
                bytes: 38 * 1024 * 1024,
                messages,
                bounces,
            }),
        )
    }

    #[test]
    fn mailbox_full_of_bounces_is_a_warning_on_the_mailbox() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([stats("shop.example", "info", 120, 60)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Mailbox("info@shop.example".into()));
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary
                .contains("info@shop.example holds 60 bounces (50% of 120 messages, 38.0 MB)"),
            "{}",
            v[0].summary
        );
        assert_eq!(evidence(&v[0], "bytes"), Some("39845888"));
        assert_eq!(evidence(&v[0], "messages"), Some("120"));
        assert_eq!(evidence(&v[0], "bounces"), Some("60"));
        assert_eq!(
            evidence(&v[0], "fix"),
            Some("Empty the bounces from info@shop.example and check shopacct for outgoing spam")
        );
    }

    #[test]
    fn ten_times_the_minimum_is_critical() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([
            stats("shop.example", "a", 400, 200),
            stats("shop.example", "b", 400, 199),
        ]);
        let severities: Vec<_> = v.iter().map(|v| v.severity).collect();
        assert_eq!(severities, vec![Severity::Critical, Severity::Warning]);
    }

    #[test]
    fn the_default_mailbox_is_reported_on_the_account() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([stats("(default)", "shopacct", 30, 25)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Account("shopacct".into()));
        assert!(
            v[0].summary.contains("the main mailbox of shopacct"),
            "{}",
            v[0].summary
        );
        assert_eq!(
            evidence(&v[0], "fix"),
            Some(
                "Empty the bounces from the main mailbox of shopacct and check shopacct for outgoing spam"
            )
        );
    }

    #[test]
    fn thresholds_are_inclusive() {
        let mut h = Harness::<BounceBloat>::new();
        // 20 bounces, but 29.9 % of the mailbox.
        let v = h.feed([stats("shop.example", "info", 67, 20)]);
        assert!(v.is_empty(), "{v:?}");
        // Exactly 30 %, and exactly 20 bounces.
        let v = h.feed([stats("shop.example", "info", 200, 60)]);
        assert_eq!(v.len(), 1, "{v:?}");
        let v = h.feed([stats("shop.example", "sales", 60, 20)]);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn few_bounces_or_a_big_healthy_mailbox_are_quiet() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([
            // All bounces, but only 19 of them.
            stats("shop.example", "a", 19, 19),
            // Many bounces, but a small share of a busy mailbox.
            stats("shop.example", "b", 10_000, 500),
            stats("shop.example", "c", 0, 0),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn more_bounces_than_messages_does_not_overflow_the_percentage() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([stats("shop.example", "info", 0, u32::MAX)]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(evidence(&v[0], "percent"), Some("100"));
    }

    // Log events, shaped as the Exim log parser makes them of real lines
    // (`spamward events`): the recipient from the address, router and
    // transport from `R=`/`T=`, the error from the line's tail, the sender
    // joined from the arrival (or `F=`) when the log had it.

    const JANE: &str = "jane@shop.example";

    /// Exim's appendfile transport over a maildir quota (its test suite,
    /// `test/log/0264`, and cPanel's `virtual_userdelivery`).
    const APPENDFILE_FULL: &str = "mailbox is full (MTA-imposed quota exceeded while writing to /home/shop/mail/shop.example/jane/new/1714557600.H1P2.host)";
    /// Dovecot LMTP with `quota_full_tempfail`, through Exim's lmtp transport.
    const LMTP_FULL_DEFER: &str = "LMTP error after end of data: 452 4.2.2 <jane@shop.example> Quota exceeded (mailbox for user is full)";
    /// Dovecot LMTP refusing for good.
    const LMTP_FULL_FAIL: &str = "LMTP error after end of data: 552 5.2.2 <jane@shop.example> Quota exceeded (mailbox for user is full)";
    /// cPanel failing mail for an over-quota mailbox.
    const CPANEL_FULL: &str = "Mailbox quota exceeded";

    fn t(second: i64) -> i64 {
        testing::at("2024-05-01 10:00:00") + second
    }

    /// `<id> == <rcpt> R=virtual_user T=<transport> defer (-22): <error>`
    /// (`**` with `failed`), from `sender` when the log named it.
    fn refused(
        second: i64,
        id: &str,
        rcpt: &str,
        sender: Option<&str>,
        outcome: DeliveryOutcome,
        error: &str,
    ) -> (i64, EventBody<'static>) {
        let mut d = testing::delivery(id, sender.unwrap_or(""), outcome, rcpt);
        d.router = Some(testing::text("virtual_user"));
        d.transport = Some(testing::text("virtual_userdelivery"));
        d.error = Some(testing::text(error));
        (t(second), EventBody::Delivery(d))
    }

    fn deferred(second: i64, id: &str, sender: &str, error: &str) -> (i64, EventBody<'static>) {
        refused(
            second,
            id,
            JANE,
            Some(sender),
            DeliveryOutcome::Deferred,
            error,
        )
    }

    /// `<id> <= <> R=<of> U=mailnull P=local S=.. T="<subject>" for <rcpt>`.
    fn null_sender_arrival(
        second: i64,
        id: &str,
        of: &str,
        subject: &str,
        rcpt: &str,
    ) -> (i64, EventBody<'static>) {
        let mut m = testing::received(id, "<>");
        m.bounce_of = Some(testing::text(of));
        m.protocol = Some(testing::text("local"));
        m.identity.local_user = Some(testing::text("mailnull"));
        m.subject = Some(testing::text(subject));
        m.recipients = vec![testing::text(rcpt)];
        (t(second), EventBody::MessageReceived(m))
    }

    #[test]
    fn three_messages_deferred_as_full_are_a_warning_on_the_mailbox() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([
            deferred(0, "1rAaaa-000001-AB", "a@far.example", APPENDFILE_FULL),
            // Retries of the same message are not new refusals.
            deferred(900, "1rAaaa-000001-AB", "a@far.example", APPENDFILE_FULL),
            deferred(1800, "1rAaaa-000001-AB", "a@far.example", APPENDFILE_FULL),
            deferred(2000, "1rAaab-000002-AB", "b@far.example", APPENDFILE_FULL),
            deferred(3000, "1rAaac-000003-AB", "b@far.example", APPENDFILE_FULL),
            // Further refusals the same day: already said.
            deferred(4000, "1rAaad-000004-AB", "c@far.example", APPENDFILE_FULL),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Mailbox(JANE.into()));
        assert_eq!(v[0].action, Action::Alert);
        assert_eq!(v[0].events, vec![5], "cites the refusal that tipped it");
        assert_eq!(
            v[0].summary,
            "mailbox jane@shop.example is full: 3 messages from 2 senders refused in 24 h; \
             Exim keeps retrying and bounces them to their senders when the retries run out"
        );
        assert_eq!(evidence(&v[0], "refused"), Some("3"));
        assert_eq!(evidence(&v[0], "senders"), Some("2"));
        assert_eq!(evidence(&v[0], "failed"), Some("0"));
        assert_eq!(evidence(&v[0], "bounced"), Some("0"));
        assert_eq!(evidence(&v[0], "error"), Some(APPENDFILE_FULL));
        assert_eq!(
            evidence(&v[0], "fix"),
            Some(
                "Empty or enlarge the mailbox jane@shop.example; bounces to forged senders cause backscatter"
            )
        );
    }

    #[test]
    fn one_message_retried_or_two_messages_are_not_enough() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed((0..10).map(|i| {
            deferred(
                i * 900,
                "1rAaaa-000001-AB",
                "a@far.example",
                LMTP_FULL_DEFER,
            )
        }));
        assert!(v.is_empty(), "{v:?}");
        let v = h.feed([deferred(
            9000,
            "1rAaab-000002-AB",
            "b@far.example",
            LMTP_FULL_DEFER,
        )]);
        assert!(v.is_empty(), "{v:?}");
        let v = h.feed([deferred(
            9001,
            "1rAaac-000003-AB",
            "c@far.example",
            LMTP_FULL_DEFER,
        )]);
        assert_eq!(v.len(), 1, "the third message: {v:?}");
    }

    #[test]
    fn other_errors_and_remote_full_mailboxes_are_quiet() {
        let mut h = Harness::<BounceBloat>::new();
        let remote = "SMTP error from remote mail server after RCPT TO:<x@far.example>: 452 4.2.2 The email account that you tried to reach is over quota";
        let v = h.feed((0..5).flat_map(|i| {
            let id = format!("1rAab{i}-00000{i}-AB");
            [
                refused(
                    i,
                    &id,
                    JANE,
                    Some("a@far.example"),
                    DeliveryOutcome::Deferred,
                    "Connection refused",
                ),
                refused(
                    i,
                    &id,
                    "x@far.example",
                    Some("jane@shop.example"),
                    DeliveryOutcome::Failed,
                    remote,
                ),
                // A retry timeout for a mailbox never seen full.
                refused(
                    i,
                    &id,
                    "bob@shop.example",
                    Some("a@far.example"),
                    DeliveryOutcome::Failed,
                    "retry timeout exceeded",
                ),
            ]
        }));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn failures_going_back_to_their_senders_are_critical() {
        // cPanel, "Bounce email for users over quota": `** info@bob.example
        // F=<..> R=virtual_user T=virtual_userdelivery: Mailbox quota exceeded`.
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed((0..3).map(|i| {
            refused(
                i * 60,
                &format!("1rAac{i}-00000{i}-AB"),
                "Info@Bob.example",
                Some(&format!("s{i}@far.example")),
                DeliveryOutcome::Failed,
                CPANEL_FULL,
            )
        }));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].target, Target::Mailbox("info@bob.example".into()));
        assert_eq!(evidence(&v[0], "failed"), Some("3"));
        assert_eq!(evidence(&v[0], "bounced"), Some("3"));
        assert!(
            v[0].summary.ends_with(
                "3 failed for good and 3 went back to their senders as bounces (backscatter when the sender was forged)"
            ),
            "{}",
            v[0].summary
        );
    }

    #[test]
    fn a_full_mailbox_turns_critical_once_and_is_not_repeated() {
        let mut h = Harness::<BounceBloat>::new();
        let mut events: Vec<_> = (0..4)
            .map(|i| {
                deferred(
                    i * 60,
                    &format!("1rAad{i}-00000{i}-AB"),
                    "a@far.example",
                    LMTP_FULL_DEFER,
                )
            })
            .collect();
        events.extend((4..8).map(|i| {
            refused(
                i * 60,
                &format!("1rAad{i}-00000{i}-AB"),
                JANE,
                Some("b@far.example"),
                DeliveryOutcome::Failed,
                LMTP_FULL_FAIL,
            )
        }));
        let v = h.feed(events);
        let severities: Vec<_> = v.iter().map(|v| v.severity).collect();
        assert_eq!(severities, vec![Severity::Warning, Severity::Critical]);
        assert_eq!(evidence(&v[1], "error"), Some(LMTP_FULL_FAIL));
        assert_eq!(evidence(&v[1], "refused"), Some("5"));
    }

    #[test]
    fn many_senders_refused_are_critical_before_anything_bounced() {
        let mut h = Harness::<BounceBloat>::with_settings(r#"{"critical_senders": 3}"#).unwrap();
        let v = h.feed((0..3).map(|i| {
            deferred(
                i,
                &format!("1rAae{i}-00000{i}-AB"),
                &format!("s{i}@far.example"),
                APPENDFILE_FULL,
            )
        }));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(evidence(&v[0], "bounced"), Some("0"));
    }

    #[test]
    fn a_retry_timeout_after_full_deferrals_and_its_bounce_make_it_critical() {
        // Exim's test suite (`test/log/0345`), the arrivals in an older log:
        //   == a@test.ex R=smart T=local_delivery defer (-22): mailbox is full (...)
        //   ** a@test.ex: retry timeout exceeded
        //   <= <> R=<the failed message> U=EXIMUSER P=local S=sss
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed((0..3).map(|i| {
            refused(
                i,
                &format!("1rAaf{i}-00000{i}-AB"),
                JANE,
                None,
                DeliveryOutcome::Deferred,
                APPENDFILE_FULL,
            )
        }));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Warning);
        assert!(
            v[0].summary.contains("3 messages refused in 24 h"),
            "{}",
            v[0].summary
        );

        let mut timeout = testing::delivery("1rAaf0-000000-AB", "", DeliveryOutcome::Failed, JANE);
        timeout.error = Some(testing::text("retry timeout exceeded"));
        let v = h.feed([(t(100), EventBody::Delivery(timeout))]);
        assert!(
            v.is_empty(),
            "the sender is unknown: no bounce seen yet: {v:?}"
        );

        let v = h.feed([
            // Someone else's bounce.
            null_sender_arrival(
                101,
                "1rAag0-000009-AB",
                "1rAzzz-000009-AB",
                "Mail delivery failed: returning message to sender",
                "x@far.example",
            ),
            null_sender_arrival(
                101,
                "1rAag1-000010-AB",
                "1rAaf0-000000-AB",
                "Mail delivery failed: returning message to sender",
                "a@far.example",
            ),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].events, vec![6], "cites the bounce");
        assert_eq!(evidence(&v[0], "failed"), Some("1"));
        assert_eq!(evidence(&v[0], "bounced"), Some("1"));
        assert_eq!(
            evidence(&v[0], "error"),
            Some("retry timeout exceeded (after the mailbox was reported full)")
        );
    }

    #[test]
    fn a_bounce_long_after_the_failure_is_not_linked() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed((0..3).map(|i| {
            refused(
                i,
                &format!("1rAah{i}-00000{i}-AB"),
                JANE,
                None,
                DeliveryOutcome::Failed,
                LMTP_FULL_FAIL,
            )
        }));
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].severity,
            Severity::Warning,
            "nothing known to go back yet"
        );
        assert!(
            v[0].summary
                .ends_with("3 failed for good; Exim bounces them to their senders")
        );
        let v = h.feed([null_sender_arrival(
            3 + BOUNCE_LINK_SECONDS,
            "1rAai0-000009-AB",
            "1rAah0-000000-AB",
            "Mail delivery failed: returning message to sender",
            "a@far.example",
        )]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn quota_warnings_are_counted_in_the_evidence_but_do_not_accuse() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([
            null_sender_arrival(
                0,
                "1rAaj0-000001-AB",
                "1rAaj1-000002-AB",
                "Mailbox quota warning",
                JANE,
            ),
            // The subject names the mailbox; the recipient is a forward.
            null_sender_arrival(
                1,
                "1rAaj2-000003-AB",
                "1rAaj3-000004-AB",
                "Warning: mailbox “Jane@shop.example” is nearly full",
                "owner@elsewhere.example",
            ),
            // A delay warning is no quota warning.
            null_sender_arrival(
                2,
                "1rAaj4-000005-AB",
                "1rAaj5-000006-AB",
                "Warning: message 1rAaj5-000006-AB delayed 24 hours",
                JANE,
            ),
        ]);
        assert!(v.is_empty(), "{v:?}");
        let v = h.feed((0..3).map(|i| {
            deferred(
                10 + i,
                &format!("1rAak{i}-00000{i}-AB"),
                "a@far.example",
                APPENDFILE_FULL,
            )
        }));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(evidence(&v[0], "quota_warnings"), Some("2"));
    }

    #[test]
    fn a_full_mailbox_is_reported_again_the_next_day() {
        let mut h = Harness::<BounceBloat>::new();
        let day = |d: i64| {
            (0..3).map(move |i| {
                deferred(
                    d * 86_400 + i,
                    &format!("1rAal{i}-0000{d}{i}-AB"),
                    "a@far.example",
                    APPENDFILE_FULL,
                )
            })
        };
        assert_eq!(h.feed(day(0)).len(), 1);
        assert_eq!(h.feed(day(1)).len(), 1);
        let mut h = Harness::<BounceBloat>::with_settings(r#"{"window_hours": 48}"#).unwrap();
        assert_eq!(h.feed(day(0)).len(), 1);
        assert!(h.feed(day(1)).is_empty());
    }

    #[test]
    fn recipients_the_host_knows_are_remote_never_reach_the_rule() {
        let mut h = Harness::<BounceBloat>::new().local_domain("shop.example");
        let v = h.feed((0..3).map(|i| {
            refused(
                i,
                &format!("1rAam{i}-00000{i}-AB"),
                "x@far.example",
                Some("jane@shop.example"),
                DeliveryOutcome::Deferred,
                "mailbox is full",
            )
        }));
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(h.host(|host| host.state.len()), 0, "not even counted");
    }

    #[test]
    fn failed_messages_wait_for_their_bounce_a_bounded_while() {
        let mut r = BounceBloat::new(Settings::default()).unwrap();
        for i in 0..(BOUNCE_LINK_CAP as i64 + 50) {
            r.expire_links(i);
            r.failed_recently.push_back(Failed {
                at: i,
                message_id: format!("m{i}"),
                mailbox: JANE.into(),
                error: CPANEL_FULL.into(),
            });
        }
        assert_eq!(r.failed_recently.len(), BOUNCE_LINK_CAP);
        assert_eq!(
            r.failed_recently[0].message_id, "m50",
            "the oldest go first"
        );
        r.expire_links(BOUNCE_LINK_CAP as i64 + 49 + BOUNCE_LINK_SECONDS);
        assert!(r.failed_recently.is_empty());
    }

    #[test]
    fn full_and_warning_wordings_are_recognised() {
        for error in [
            APPENDFILE_FULL,
            "mailbox is full (MTA-imposed filecount quota exceeded while writing to tmp/MAILDIR.myhost.test.ex)",
            LMTP_FULL_DEFER,
            LMTP_FULL_FAIL,
            CPANEL_FULL,
            "LMTP error after end of data: 452 4.2.2 <name@domain.com> Mailbox is full / Blocks limit exceeded / Inode limit exceeded",
        ] {
            assert!(says_full(error), "{error}");
        }
        for error in [
            "retry timeout exceeded",
            "Connection refused",
            "Unrouteable address",
            "SMTP error from remote mail server after RCPT TO:<rrrr@remote.defer>: 451 Over-quota",
        ] {
            assert!(!says_full(error), "{error}");
        }
        assert!(is_quota_warning("Mailbox quota warning"));
        assert!(is_quota_warning("Your mailbox is now 90% full"));
        assert!(!is_quota_warning(
            "Mail delivery failed: returning message to sender"
        ));
        assert_eq!(
            address_in("Warning: mailbox “jane@shop.example” is nearly full."),
            Some("jane@shop.example")
        );
        assert_eq!(address_in("Warning: your mailbox is nearly full"), None);
    }

    #[test]
    fn settings_are_checked() {
        let mut h =
            Harness::<BounceBloat>::with_settings(r#"{"min_bounces": 5, "min_bounce_percent": 0}"#)
                .unwrap();
        assert_eq!(h.feed([stats("a.example", "x", 10_000, 5)]).len(), 1);
        let err = Harness::<BounceBloat>::with_settings(r#"{"min_bounce_percent": 101}"#).err();
        assert_eq!(
            err.as_deref(),
            Some("min_bounce_percent must be 0..=100, not 101")
        );
        let err = Harness::<BounceBloat>::with_settings(r#"{"min_bounces": 0}"#).err();
        assert_eq!(err.as_deref(), Some("min_bounces must be at least 1"));
        let err = Harness::<BounceBloat>::with_settings(r#"{"min_refused": 0}"#).err();
        assert_eq!(err.as_deref(), Some("min_refused must be at least 1"));
        let err = Harness::<BounceBloat>::with_settings(r#"{"critical_senders": 0}"#).err();
        assert_eq!(err.as_deref(), Some("critical_senders must be at least 1"));
        let err = Harness::<BounceBloat>::with_settings(r#"{"window_hours": 0}"#).err();
        assert_eq!(err.as_deref(), Some("window_hours must be 1..=720, not 0"));
        let err = Harness::<BounceBloat>::with_settings(r#"{"min_bounce": 5}"#)
            .err()
            .unwrap();
        assert!(err.contains("min_bounce"), "{err}");
    }

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GB");
    }
}
