//! `default-address`: domains that accept mail for unknown users and bounce
//! it (backscatter), and dictionary attacks on their addresses.
//!
//! Spammers forge their victims' addresses as the sender. A server that
//! accepts mail for an address that does not exist and only then fails it
//! sends the bounce to the forged sender, an innocent stranger
//! (backscatter), and its IP ends up on blocklists. Refusing unknown users
//! during the SMTP dialogue (at RCPT) bounces nothing: the sending client
//! is told, and the forged sender never hears of it.
//!
//! What the rule reads:
//!
//! - **Configuration** (`/etc/valiases/<domain>`, as `MailAlias` events): a
//!   domain's default address (`*`) set to `:fail:` is cPanel's "bounce
//!   unknown users" catch-all. Each one is reported once, on its domain.
//!   `:blackhole:` (cPanel's "Discard") or a forward to a mailbox is fine.
//! - **The log, alone** (no valiases, no `/etc/localdomains` needed, so a
//!   replay on another machine finds it):
//!   - *Backscatter.* Mail from outside (no login, no local user) accepted
//!     for a user the server then cannot route: `** nouser@dom:
//!     Unrouteable address` (Exim with no router for it), `** x@dom
//!     R=virtual_aliases: No Such User Here` (cPanel's `:fail:` default
//!     address), `Unknown user` (Debian's `cannot_route_message`). Exim
//!     returns it to its sender (`<= <> R=<failed id> U=mailnull P=local`),
//!     and that bounce goes to a remote server (`=> forged@remote R=lookuphost
//!     T=remote_smtp H=...`). Per domain of the unknown recipients, over an
//!     hour: once `backscatter_min_bounces` such bounces went out, spread
//!     over at least `backscatter_min_spread` unknown users or remote
//!     senders, the domain is reported (one warning per domain per hour).
//!     One sender writing again and again to one dead address is a
//!     correspondence, not a spam run; a mistyped address is one bounce.
//!     The bounce is tied to the failure by its `R=<id>`, and its delivery
//!     by its own id. Exim also says `Unrouteable address` of a remote
//!     domain with no DNS; when the host knows the local domains, those
//!     are left out, otherwise the thresholds keep a stray one quiet.
//!   - *Dictionary attack.* Many unknown local parts of one domain refused
//!     at RCPT (`rejected RCPT <x@dom>: No Such User Here`, `Unrouteable
//!     address`, `Unknown user`, `User unknown`) from several clients:
//!     `dictionary_min_local_parts` names from `dictionary_min_clients` IPs
//!     in an hour. It is reported on the domain as an attack, not as
//!     backscatter (nothing was bounced): for information when every guess
//!     was refused, a warning when the domain also accepted unknown users
//!     that hour (guesses that get past RCPT are bounced).
//!   - *Bounce volume.* Every bounce the MTA generates itself (`<>` messages
//!     submitted by its own user), whatever its cause, counted over an
//!     hour: past `max_bounces_per_hour` the server is reported, once per
//!     hour.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;
use spamward_sdk::text;

/// `[rules.default-address]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Locally generated bounces per hour above which the server is
    /// reported as sending backscatter.
    pub max_bounces_per_hour: u32,
    /// Bounces for a domain's unknown users sent to remote servers in an
    /// hour before the domain is reported for backscatter.
    pub backscatter_min_bounces: u32,
    /// Distinct unknown users, or distinct remote senders bounced to,
    /// those bounces must spread over: a spam run guesses many names or
    /// forges many senders; one correspondent retrying one dead address
    /// does neither.
    pub backscatter_min_spread: u32,
    /// Distinct unknown local parts of one domain refused at RCPT in an
    /// hour that make a dictionary attack. People mistype one or two;
    /// a harvest tries hundreds.
    pub dictionary_min_local_parts: u32,
    /// Distinct client IPs those refusals must come from. Harvests run
    /// from botnets; one broken client retrying a stale list is one IP.
    pub dictionary_min_clients: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_bounces_per_hour: 300,
            backscatter_min_bounces: 10,
            backscatter_min_spread: 5,
            dictionary_min_local_parts: 20,
            dictionary_min_clients: 3,
        }
    }
}

/// The rule.
pub struct DefaultAddress {
    settings: Settings,
    /// Messages from outside that failed for an unknown user, waiting for
    /// the bounce Exim writes for them (`<= <> R=<id>`).
    failed: Pending,
    /// Those bounces, waiting for their first delivery attempt.
    bounces: Pending,
}

const HOUR: u32 = 3600;

/// Local users the MTA submits its own bounces as (cPanel, Debian, others).
const MTA_USERS: [&str; 3] = ["mailnull", "Debian-exim", "exim"];

/// How Exim and the panels say an address has no user, in lower case:
/// Exim's own `Unrouteable address` (no router took it), cPanel's default
/// `:fail:` text `No Such User Here`, Debian's `cannot_route_message`
/// `Unknown user`, and the common `User unknown`.
const UNKNOWN_USER: [&str; 4] = [
    "unrouteable address",
    "no such user",
    "unknown user",
    "user unknown",
];

/// Messages remembered for a join at most. The two halves of each join are
/// written in the same delivery run, seconds apart, so guest memory holds
/// them, not host state: a reload loses at most the few in flight, while
/// the counts (in the host) stay.
const PENDING_CAP: usize = 4096;

const BACKSCATTER_FIX: &str = "refuse unknown recipients during SMTP instead of bouncing them after acceptance: Exim `require verify = recipient` in the RCPT ACL for local domains; in cPanel → Email → Default Address, \"Discard\" (:blackhole:) rather than a bounce";

const REFUSED_FIX: &str = "nothing to fix for the domain: the server refused every guess at RCPT; block the clients if they keep trying (fail2ban's exim jail, cPanel's dictionary attack protection)";

/// Whether an error or refusal says the recipient has no user here.
fn is_unknown_user(error: &str) -> bool {
    text::contains_any(error, &UNKNOWN_USER)
}

/// `(local part, domain)` of an address, both non-empty.
fn split(address: &str) -> Option<(&str, &str)> {
    address
        .rsplit_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty())
}

/// Whether an alias target is `:fail:` (any case, leading spaces allowed).
fn is_fail(target: &str) -> bool {
    target
        .trim_start()
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case(":fail:"))
}

/// What a failed message or its bounce is charged to.
#[derive(Debug, Clone)]
struct Link {
    /// The domain of the unknown recipient, lower case.
    domain: String,
    /// The unknown recipient, as logged.
    recipient: String,
    /// The failed message.
    original: String,
}

/// Message ids waiting for the line that completes their join, at most
/// [`PENDING_CAP`]; the oldest is forgotten first.
#[derive(Debug, Default)]
struct Pending {
    links: HashMap<String, Link>,
    /// Insertion order. Ids taken early stay here until their turn to be
    /// forgotten comes (Exim ids are unique, so that removes nothing
    /// else): the queue never holds more than the cap.
    order: VecDeque<String>,
}

impl Pending {
    fn insert(&mut self, id: &str, link: Link) {
        if self.links.insert(id.to_owned(), link).is_some() {
            return;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > PENDING_CAP
            && let Some(old) = self.order.pop_front()
        {
            self.links.remove(&old);
        }
    }

    fn take(&mut self, id: &str) -> Option<Link> {
        self.links.remove(id)
    }
}

impl DefaultAddress {
    /// A routing failure of mail from outside for a user the server does
    /// not have: remembered for the bounce that follows, and counted for
    /// its domain.
    fn unknown_recipient(&mut self, cx: &mut Context<'_>, d: &Delivery) {
        // Cheap tests first. A message without a sender is a bounce
        // itself: Exim sends nothing back for it. One refused by a remote
        // server (a transport ran) failed elsewhere, not for want of a
        // local user.
        if d.outcome != DeliveryOutcome::Failed
            || d.identity.sender.is_none()
            || d.transport.is_some()
            || d.remote_ip.is_some()
            || !d.error.as_deref().is_some_and(is_unknown_user)
        {
            return;
        }
        let Some((local, domain)) = split(&d.recipient) else {
            return;
        };
        let domain = domain.to_ascii_lowercase();
        host::distinct_add(
            &format!("unknown:{domain}"),
            &local.to_ascii_lowercase(),
            cx.time(),
            HOUR,
        );
        self.failed.insert(
            &d.message_id,
            Link {
                domain,
                recipient: d.recipient.to_string(),
                original: d.message_id.to_string(),
            },
        );
    }

    /// The first delivery attempt of a bounce for an unknown user.
    fn bounce_delivery(&mut self, cx: &mut Context<'_>, d: &Delivery) {
        let remote = d.remote_ip.is_some()
            || d.transport
                .as_deref()
                .is_some_and(|t| text::contains(t, "smtp"));
        if !remote {
            // Delivered to a mailbox here: the sender is local, and no
            // stranger got it. A routing deferral is no attempt yet.
            if d.outcome != DeliveryOutcome::Deferred {
                self.bounces.take(&d.message_id);
            }
            return;
        }
        // Retries of the same bounce count once: the link is gone after
        // its first attempt.
        let Some(link) = self.bounces.take(&d.message_id) else {
            return;
        };
        let at = cx.time();
        let domain = &link.domain;
        let sent = host::window_add(&format!("bs:sent:{domain}"), at, HOUR, 1);
        let senders = host::distinct_add(
            &format!("bs:to:{domain}"),
            &d.recipient.to_ascii_lowercase(),
            at,
            HOUR,
        );
        if sent < u64::from(self.settings.backscatter_min_bounces) {
            return;
        }
        let spread = self.settings.backscatter_min_spread;
        let unknown = host::distinct_count(&format!("unknown:{domain}"), at, HOUR);
        if (senders < spread && unknown < spread)
            || host::is_local_domain(domain) == Some(false)
            || !host::once_per_window(&format!("reported:bs:{domain}"), at, HOUR)
        {
            return;
        }
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Domain(domain.clone()),
                Action::Alert,
                format!(
                    "{domain} accepts mail for unknown users and then bounces it: {sent} bounces to {senders} remote senders in the last hour for {unknown} unknown addresses (e.g. {}) — backscatter to forged senders",
                    link.recipient
                ),
            )
            .evidence("pattern", "backscatter")
            .evidence("unknown_recipients", unknown)
            .evidence("bounces_sent", sent)
            .evidence("remote_senders", senders)
            .evidence("window_minutes", HOUR / 60)
            .evidence("sample_recipient", &link.recipient)
            .evidence("sample_message", &link.original)
            .evidence("sample_bounce", &d.message_id)
            .evidence("sample_bounced_to", &d.recipient)
            .evidence("fix", BACKSCATTER_FIX),
        );
    }

    /// The server's own bounce volume, whatever caused it.
    fn bounce_volume(&self, cx: &mut Context<'_>, m: &MessageReceived) {
        let at = cx.time();
        let bounces = host::window_add("bounces", at, HOUR, 1);
        let limit = u64::from(self.settings.max_bounces_per_hour);
        if bounces <= limit {
            return;
        }
        // One report per hour: remember when we last spoke.
        if !host::once_per_window("reported:bounces", at, HOUR) {
            return;
        }
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Setting("exim:bounces".into()),
                Action::Alert,
                format!(
                    "the server generated {bounces} bounces in the last hour (limit {limit}): likely backscatter to forged senders"
                ),
            )
            .evidence("bounces", bounces)
            .evidence("limit", limit)
            .evidence("window_minutes", HOUR / 60)
            .evidence("sample_bounce", &m.message_id)
            .evidence("bounce_of", m.bounce_of.as_deref().unwrap_or("-"))
            .evidence(
                "fix",
                "cPanel → Email → Default Address: set every domain's catch-all to \"Discard\" (:blackhole:) or a mailbox, not :fail:, and find the account whose mail is bouncing",
            ),
        );
    }
}

impl Rule for DefaultAddress {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "default-address",
            "Domains that accept mail for unknown users and bounce it (backscatter), dictionary attacks on them, and :fail: catch-alls",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::MailAlias)
        // Bounces are submitted by the MTA's own user; the host drops the
        // rest of the mail before it crosses the boundary.
        .subscribe_where(
            EventKind::MessageReceived,
            [filter::equals(IdentityField::LocalUser, &MTA_USERS)],
        )
        // Failures of mail from outside: what the server accepted from a
        // stranger and could not deliver. Mail of its own users bounces
        // back to them, which is no backscatter.
        .subscribe_matching(
            filter::all(EventKind::Delivery)
                .all_of([filter::outcome(&[DeliveryOutcome::Failed])])
                .none_of(filter::local_sender()),
        )
        // The deliveries of the MTA's own bounces (no sender).
        .subscribe_matching(
            filter::all(EventKind::Delivery)
                .all_of([filter::equals(IdentityField::LocalUser, &MTA_USERS)])
                .none_of([filter::has(IdentityField::Sender)]),
        )
        // A refusal has no identity to filter on: the stage and reason are
        // tested in the rule, before any host call.
        .subscribe(EventKind::Rejection)
        .action(Action::Alert)
        .setting(
            "max_bounces_per_hour",
            "locally generated bounces per hour above which the server is reported",
        )
        .setting(
            "backscatter_min_bounces",
            "bounces for a domain's unknown users sent to remote servers in an hour before the domain is reported",
        )
        .setting(
            "backscatter_min_spread",
            "distinct unknown users or remote senders those bounces must spread over",
        )
        .setting(
            "dictionary_min_local_parts",
            "distinct unknown local parts of a domain refused at RCPT in an hour that make a dictionary attack",
        )
        .setting(
            "dictionary_min_clients",
            "distinct client IPs those refusals must come from",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        for (name, value) in [
            ("max_bounces_per_hour", settings.max_bounces_per_hour),
            ("backscatter_min_bounces", settings.backscatter_min_bounces),
            ("backscatter_min_spread", settings.backscatter_min_spread),
            (
                "dictionary_min_local_parts",
                settings.dictionary_min_local_parts,
            ),
            ("dictionary_min_clients", settings.dictionary_min_clients),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(DefaultAddress {
            settings,
            failed: Pending::default(),
            bounces: Pending::default(),
        })
    }

    fn on_mail_alias(&mut self, cx: &mut Context<'_>, a: &MailAlias) {
        if a.local_part != "*" || !is_fail(&a.target) {
            return;
        }
        let domain = a.domain.to_ascii_lowercase();
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Domain(domain.clone()),
                Action::Alert,
                format!(
                    "default address (catch-all) of {domain} is :fail: — mail for unknown users is accepted, then bounced to forged senders (backscatter)"
                ),
            )
            .evidence("catch_all", a.target.trim())
            .evidence(
                "fix",
                format!(
                    "cPanel → Email → Default Address for {domain}: \"Discard\" (:blackhole:) or forward to a mailbox"
                ),
            ),
        );
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        if !m.bounce {
            return;
        }
        if let Some(link) = m.bounce_of.as_deref().and_then(|id| self.failed.take(id)) {
            self.bounces.insert(&m.message_id, link);
        }
        self.bounce_volume(cx, m);
    }

    fn on_delivery(&mut self, cx: &mut Context<'_>, d: &Delivery) {
        let by_mta = d
            .identity
            .local_user
            .as_deref()
            .is_some_and(|u| MTA_USERS.contains(&u));
        if by_mta && d.identity.sender.is_none() {
            self.bounce_delivery(cx, d);
        } else {
            self.unknown_recipient(cx, d);
        }
    }

    fn on_rejection(&mut self, cx: &mut Context<'_>, r: &Rejection) {
        if r.stage != SmtpStage::RcptTo || !is_unknown_user(&r.reason) {
            return;
        }
        let Some((local, domain)) = r.recipient.as_deref().and_then(split) else {
            return;
        };
        let domain = domain.to_ascii_lowercase();
        let at = cx.time();
        let client = r.client_ip.as_deref().unwrap_or("-");
        let names = host::distinct_add(
            &format!("dict:lp:{domain}"),
            &local.to_ascii_lowercase(),
            at,
            HOUR,
        );
        let clients = host::distinct_add(&format!("dict:ip:{domain}"), client, at, HOUR);
        if names < self.settings.dictionary_min_local_parts
            || clients < self.settings.dictionary_min_clients
            || host::is_local_domain(&domain) == Some(false)
            || !host::once_per_window(&format!("reported:dict:{domain}"), at, HOUR)
        {
            return;
        }
        // Unknown users of the domain accepted this hour and failed later:
        // some guesses got past RCPT and were (or will be) bounced.
        let accepted = host::distinct_count(&format!("unknown:{domain}"), at, HOUR);
        let (severity, outcome, fix) = if accepted == 0 {
            (
                Severity::Info,
                "all refused at RCPT".to_owned(),
                REFUSED_FIX,
            )
        } else {
            (
                Severity::Warning,
                format!(
                    "refused at RCPT, but {accepted} unknown addresses of the domain were accepted and then failed"
                ),
                BACKSCATTER_FIX,
            )
        };
        cx.report(
            Finding::new(
                severity,
                Target::Domain(domain.clone()),
                Action::Alert,
                format!(
                    "dictionary attack on {domain}: {names} unknown addresses tried from {clients} clients in the last hour, {outcome}"
                ),
            )
            .evidence("pattern", "dictionary-attack")
            .evidence("unknown_local_parts", names)
            .evidence("clients", clients)
            .evidence("accepted_unknown", accepted)
            .evidence("window_minutes", HOUR / 60)
            .evidence("sample_recipient", r.recipient.as_deref().unwrap_or("-"))
            .evidence("sample_client", client)
            .evidence("reason", &r.reason)
            .evidence("fix", fix),
        );
    }
}

spamward_sdk::export_rule!(DefaultAddress);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness, evidence};

    fn alias(domain: &str, local_part: &str, target: &str) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::MailAlias(MailAlias {
                domain: testing::text(domain),
                local_part: testing::text(local_part),
                target: testing::text(target),
            }),
        )
    }

    fn bounce(i: i64, user: &str) -> (i64, EventBody<'static>) {
        let mut m = testing::received(&format!("b{i}"), "");
        m.identity.local_user = Some(testing::text(user));
        m.bounce_of = Some(format!("orig{i}").into());
        (
            testing::at("2024-05-01 10:00:00") + i,
            EventBody::MessageReceived(m),
        )
    }

    #[test]
    fn fail_catch_all_is_a_warning_on_the_domain_with_the_fix() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed([alias("Shop.example", "*", ":fail: No Such User Here")]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Domain("shop.example".into()));
        assert_eq!(v[0].action, Action::Alert);
        assert!(v[0].summary.contains("backscatter"), "{}", v[0].summary);
        assert_eq!(
            evidence(&v[0], "fix"),
            Some(
                "cPanel → Email → Default Address for shop.example: \"Discard\" (:blackhole:) or forward to a mailbox"
            )
        );
        assert_eq!(
            evidence(&v[0], "catch_all"),
            Some(":fail: No Such User Here")
        );
        assert_eq!(v[0].events, vec![1]);
    }

    #[test]
    fn fail_is_recognised_in_any_case_and_after_spaces() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed([
            alias("a.example", "*", "  :FAIL: No Such User Here"),
            alias("b.example", "*", ":Fail:"),
        ]);
        let targets: Vec<_> = v.iter().map(|v| v.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                Target::Domain("a.example".into()),
                Target::Domain("b.example".into())
            ]
        );
    }

    #[test]
    fn blackhole_user_address_and_pipe_catch_alls_are_fine() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed([
            alias("a.example", "*", ":blackhole:"),
            alias("b.example", "*", "cpclient"),
            alias("c.example", "*", "a@b.example,c@d.example"),
            alias("d.example", "*", "\"|/home/x/pipe.php\""),
            alias("e.example", "*", ""),
            alias("f.example", "*", ":failure-is-not-fail"),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn fail_on_an_ordinary_alias_is_not_a_catch_all() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed([alias("a.example", "olduser", ":fail: gone")]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn bounce_flood_is_reported_once_per_hour() {
        let mut h =
            Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 10}"#).unwrap();
        let v = h.feed((0..30).map(|i| bounce(i, "mailnull")));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Setting("exim:bounces".into()));
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary
                .contains("11 bounces in the last hour (limit 10)"),
            "{}",
            v[0].summary
        );
        assert!(evidence(&v[0], "fix").unwrap().contains("Default Address"));
        assert_eq!(evidence(&v[0], "bounce_of"), Some("orig10"));

        // An hour later the flood goes on: one more report.
        let t = testing::at("2024-05-01 11:00:30");
        let v = h.feed((0..30).map(|i| {
            let (_, body) = bounce(100 + i, "Debian-exim");
            (t + i, body)
        }));
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn bounces_at_the_limit_or_spread_out_are_quiet() {
        let mut h =
            Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 10}"#).unwrap();
        assert!(h.feed((0..10).map(|i| bounce(i, "exim"))).is_empty());
        let mut h =
            Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 10}"#).unwrap();
        // 30 bounces, one every 10 minutes: 6 an hour.
        assert!(
            h.feed((0..30).map(|i| {
                let (_, body) = bounce(i, "mailnull");
                (i * 600, body)
            }))
            .is_empty()
        );
    }

    #[test]
    fn bounces_from_users_and_real_mail_from_the_mta_are_not_counted() {
        let mut h =
            Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 1}"#).unwrap();
        let mut not_bounce = testing::received("n1", "mailer@host.example");
        not_bounce.identity.local_user = Some("mailnull".into());
        let v = h.feed(
            (0..5)
                .map(|i| bounce(i, "alice"))
                .chain((0..5).map(|i| (i, EventBody::MessageReceived(not_bounce.clone())))),
        );
        assert!(v.is_empty(), "{v:?}");
    }

    // Events shaped as the Exim log parser makes them of the lines a real
    // Exim 4.96 wrote for a forged message to an unknown user of a domain
    // with cPanel's `*: :fail: No Such User Here`:
    //
    // 1xZMe8-0004PH-1g <= bob@forged2.example H=(vm) [127.0.0.61]:46813 I=[127.0.0.1]:2525 P=esmtp S=446 ... for nouser2@blog.example
    // 1xZMe8-0004PH-1g ** nouser2@blog.example F=<bob@forged2.example> R=virtual_aliases: No Such User Here
    // 1xZMe8-0004PK-1k <= <> R=1xZMe8-0004PH-1g U=Debian-exim P=local S=1697 T="Mail delivery failed: returning message to sender" from <> for bob@forged2.example
    // 1xZMe8-0004PK-1k => bob@forged2.example F=<> R=dnslookup T=remote_smtp S=1754 H=127.0.0.1 [127.0.0.1] ...

    fn t(second: i64) -> i64 {
        testing::at("2024-05-01 10:00:00") + second
    }

    fn original_id(n: u32) -> String {
        format!("1a{n:04}-000000-AB")
    }

    fn bounce_id(n: u32) -> String {
        format!("1b{n:04}-000000-AB")
    }

    /// `<id> ** <rcpt> F=<sender> [R=<router>]: <error>` of a message that
    /// came by SMTP from `ip`.
    fn failed(id: &str, rcpt: &str, sender: &str, ip: &str, error: &str) -> EventBody<'static> {
        let mut d = testing::delivery(id, sender, DeliveryOutcome::Failed, rcpt);
        if error == "No Such User Here" {
            d.router = Some(testing::text("virtual_aliases"));
        }
        d.error = Some(testing::text(error));
        d.identity.client_ip = Some(testing::text(ip));
        d.identity.client_host = Some(testing::text("vm"));
        EventBody::Delivery(d)
    }

    /// `<bounce> <= <> R=<original> U=mailnull P=local ... for <to>`.
    fn bounce_arrival(bounce: &str, original: &str, to: &str) -> EventBody<'static> {
        let mut m = testing::received(bounce, "");
        m.identity.local_user = Some(testing::text("mailnull"));
        m.protocol = Some(testing::text("local"));
        m.recipients = vec![testing::text(to)];
        m.subject = Some(testing::text(
            "Mail delivery failed: returning message to sender",
        ));
        m.bounce_of = Some(testing::text(original));
        EventBody::MessageReceived(m)
    }

    /// `<bounce> => <to> R=lookuphost T=remote_smtp H=mx.remote.example
    /// [198.51.100.7]` (or `==`/`**` with an error), with the domain
    /// cPanel's `SMTP connection outbound` line charged it to.
    fn bounce_sent(bounce: &str, to: &str, outcome: DeliveryOutcome) -> EventBody<'static> {
        let mut d = testing::delivery(bounce, "", outcome, to);
        d.router = Some(testing::text("lookuphost"));
        d.transport = Some(testing::text("remote_smtp"));
        d.remote_host = Some(testing::text("mx.remote.example"));
        d.remote_ip = Some(testing::text("198.51.100.7"));
        if outcome != DeliveryOutcome::Delivered {
            d.error = Some(testing::text(
                "SMTP error from remote mail server after RCPT TO:<x>: 451 4.2.1 Mailbox busy",
            ));
        }
        d.identity.local_user = Some(testing::text("mailnull"));
        d.identity.sender_domain = to.rsplit_once('@').map(|(_, dom)| testing::text(dom));
        EventBody::Delivery(d)
    }

    /// Message `n` from `sender` for `rcpt`, failed as an unknown user
    /// with `error`, bounced, and the bounce delivered to a remote server.
    fn backscatter(
        n: u32,
        at: i64,
        rcpt: &str,
        sender: &str,
        error: &str,
    ) -> Vec<(i64, EventBody<'static>)> {
        let (original, bounce) = (original_id(n), bounce_id(n));
        let ip = format!("203.0.113.{}", n % 250 + 1);
        vec![
            (at, failed(&original, rcpt, sender, &ip, error)),
            (at, bounce_arrival(&bounce, &original, sender)),
            (
                at + 1,
                bounce_sent(&bounce, sender, DeliveryOutcome::Delivered),
            ),
        ]
    }

    /// `H=(vm) [ip]:port I=[..]:25 F=<..> rejected RCPT <rcpt>: <reason>`.
    fn refused(rcpt: &str, ip: &str, reason: &str) -> EventBody<'static> {
        EventBody::Rejection(Rejection {
            client_ip: Some(testing::text(ip)),
            client_host: Some(testing::text("vm")),
            sender: Some(testing::text("x@spam.example")),
            recipient: Some(testing::text(rcpt)),
            stage: SmtpStage::RcptTo,
            reason: testing::text(reason),
            message_id: None,
        })
    }

    const ERRORS: [&str; 3] = ["No Such User Here", "Unrouteable address", "Unknown user"];

    #[test]
    fn backscatter_names_the_domain_once_an_hour_with_the_evidence() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed((0..12u32).flat_map(|n| {
            backscatter(
                n,
                t(i64::from(n) * 10),
                &format!("nouser{n}@Blog.example"),
                &format!("victim{n}@forged{}.example", n % 4),
                ERRORS[n as usize % 3],
            )
        }));
        assert_eq!(v.len(), 1, "{v:?}");
        let f = &v[0];
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.target, Target::Domain("blog.example".into()));
        assert_eq!(f.action, Action::Alert);
        assert_eq!(evidence(f, "pattern"), Some("backscatter"));
        // Said at the tenth bounce sent.
        assert_eq!(evidence(f, "bounces_sent"), Some("10"));
        assert_eq!(evidence(f, "remote_senders"), Some("10"));
        assert_eq!(evidence(f, "unknown_recipients"), Some("10"));
        assert_eq!(
            evidence(f, "sample_recipient"),
            Some("nouser9@Blog.example")
        );
        assert_eq!(evidence(f, "sample_message"), Some("1a0009-000000-AB"));
        assert_eq!(evidence(f, "sample_bounce"), Some("1b0009-000000-AB"));
        assert_eq!(
            evidence(f, "sample_bounced_to"),
            Some("victim9@forged1.example")
        );
        assert!(
            evidence(f, "fix").unwrap().contains("verify = recipient"),
            "{f:?}"
        );
        assert!(f.summary.contains("backscatter"), "{}", f.summary);
        // The bounce's delivery is the event cited.
        assert_eq!(f.events, vec![9 * 3 + 3]);

        // The next hour, the run goes on: one more report.
        let v = h.feed((100..112u32).flat_map(|n| {
            backscatter(
                n,
                t(3600 + i64::from(n)),
                &format!("other{n}@blog.example"),
                &format!("victim{n}@forged.example"),
                "No Such User Here",
            )
        }));
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn a_few_ordinary_unknown_user_failures_are_quiet() {
        // People mistype: three bounces in an hour are the server telling
        // them so.
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed((0..3u32).flat_map(|n| {
            backscatter(
                n,
                t(i64::from(n) * 600),
                &format!("jhon{n}@shop.example"),
                &format!("customer{n}@mail.example"),
                "Unrouteable address",
            )
        }));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn bounces_must_spread_over_unknown_users_or_senders() {
        // One correspondent writing again and again to one dead address.
        let mut h = Harness::<DefaultAddress>::new();
        let one = |n: u32, rcpt: &str, sender: &str| {
            backscatter(n, t(i64::from(n) * 60), rcpt, sender, "No Such User Here")
        };
        let v = h.feed((0..20).flat_map(|n| one(n, "old@blog.example", "friend@mail.example")));
        assert!(v.is_empty(), "{v:?}");

        // One dead address, many forged senders.
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed(
            (0..20).flat_map(|n| one(n, "old@blog.example", &format!("v{n}@forged.example"))),
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(evidence(&v[0], "unknown_recipients"), Some("1"));

        // Many guessed names, one forged sender.
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed(
            (0..20).flat_map(|n| one(n, &format!("n{n}@blog.example"), "victim@forged.example")),
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(evidence(&v[0], "remote_senders"), Some("1"));
    }

    #[test]
    fn local_bounces_and_retries_are_counted_as_they_should() {
        let mut h = Harness::<DefaultAddress>::with_settings(
            r#"{"backscatter_min_bounces": 2, "backscatter_min_spread": 1}"#,
        )
        .unwrap();
        // A bounce for a local sender is delivered to a mailbox here.
        let mut local = testing::delivery(
            &bounce_id(1),
            "",
            DeliveryOutcome::Delivered,
            "owner@shop.example",
        );
        local.router = Some(testing::text("virtual_user"));
        local.transport = Some(testing::text("dovecot_virtual_delivery"));
        local.identity.local_user = Some(testing::text("mailnull"));
        let (o1, o2) = (original_id(1), original_id(2));
        let (b1, b2) = (bounce_id(1), bounce_id(2));
        let v = h.feed([
            (
                t(0),
                failed(
                    &o1,
                    "a@blog.example",
                    "owner@shop.example",
                    "203.0.113.1",
                    "Unrouteable address",
                ),
            ),
            (t(0), bounce_arrival(&b1, &o1, "owner@shop.example")),
            (t(1), EventBody::Delivery(local)),
            // A remote bounce deferred, then delivered: one bounce sent.
            (
                t(2),
                failed(
                    &o2,
                    "b@blog.example",
                    "v@forged.example",
                    "203.0.113.2",
                    "Unrouteable address",
                ),
            ),
            (t(2), bounce_arrival(&b2, &o2, "v@forged.example")),
            (
                t(3),
                bounce_sent(&b2, "v@forged.example", DeliveryOutcome::Deferred),
            ),
            (
                t(900),
                bounce_sent(&b2, "v@forged.example", DeliveryOutcome::Delivered),
            ),
        ]);
        assert!(v.is_empty(), "{v:?}");
        // The next remote bounce is the second one sent.
        let v = h.feed(backscatter(
            3,
            t(901),
            "c@blog.example",
            "w@forged.example",
            "Unrouteable address",
        ));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(evidence(&v[0], "bounces_sent"), Some("2"));
        assert_eq!(evidence(&v[0], "unknown_recipients"), Some("3"));
    }

    #[test]
    fn failures_that_are_not_unknown_users_here_are_ignored() {
        let mut h = Harness::<DefaultAddress>::with_settings(
            r#"{"backscatter_min_bounces": 1, "backscatter_min_spread": 1}"#,
        )
        .unwrap();
        // Refused by a remote server (a forward to another provider).
        let mut remote = testing::delivery(
            &original_id(1),
            "a@far.example",
            DeliveryOutcome::Failed,
            "gone@gmail.example",
        );
        remote.router = Some(testing::text("lookuphost"));
        remote.transport = Some(testing::text("remote_smtp"));
        remote.remote_ip = Some(testing::text("192.0.2.25"));
        remote.error = Some(testing::text(
            "SMTP error from remote mail server after RCPT TO:<gone@gmail.example>: 550 5.1.1 User unknown",
        ));
        remote.identity.client_ip = Some(testing::text("203.0.113.1"));
        // Sent by a customer who mistyped: it bounces back to them.
        let mut customer = testing::delivery(
            &original_id(3),
            "staff@shop.example",
            DeliveryOutcome::Failed,
            "nobody@blog.example",
        );
        customer.error = Some(testing::text("Unrouteable address"));
        customer.identity.auth_id = Some(testing::text("staff@shop.example"));
        let events = vec![
            (t(0), EventBody::Delivery(remote)),
            (
                t(0),
                bounce_arrival(&bounce_id(1), &original_id(1), "a@far.example"),
            ),
            (
                t(1),
                bounce_sent(&bounce_id(1), "a@far.example", DeliveryOutcome::Delivered),
            ),
            // A full mailbox is no unknown user.
            (
                t(2),
                failed(
                    &original_id(2),
                    "full@blog.example",
                    "b@far.example",
                    "203.0.113.2",
                    "Mailbox quota exceeded",
                ),
            ),
            (
                t(2),
                bounce_arrival(&bounce_id(2), &original_id(2), "b@far.example"),
            ),
            (
                t(3),
                bounce_sent(&bounce_id(2), "b@far.example", DeliveryOutcome::Delivered),
            ),
            (t(4), EventBody::Delivery(customer)),
            (
                t(4),
                bounce_arrival(&bounce_id(3), &original_id(3), "staff@shop.example"),
            ),
            (
                t(5),
                bounce_sent(
                    &bounce_id(3),
                    "staff@shop.example",
                    DeliveryOutcome::Delivered,
                ),
            ),
            // A bounce that failed itself: Exim sends nothing back.
            (
                t(6),
                failed(
                    &original_id(4),
                    "x@blog.example",
                    "",
                    "203.0.113.4",
                    "Unrouteable address",
                ),
            ),
        ];
        let v = h.feed(events);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_domain_the_host_knows_is_remote_is_not_reported() {
        let mut h = Harness::<DefaultAddress>::with_settings(
            r#"{"backscatter_min_bounces": 1, "backscatter_min_spread": 1}"#,
        )
        .unwrap()
        .local_domain("shop.example");
        let v = h.feed(backscatter(
            1,
            t(0),
            "typo@far.example",
            "v@forged.example",
            "Unrouteable address",
        ));
        assert!(v.is_empty(), "{v:?}");
        let v = h.feed(backscatter(
            2,
            t(1),
            "nobody@shop.example",
            "v@forged.example",
            "Unrouteable address",
        ));
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn a_dictionary_attack_refused_at_rcpt_is_information_on_the_domain() {
        let mut h = Harness::<DefaultAddress>::new();
        let names = ["admin", "info", "sales", "billing", "support"];
        let v = h.feed((0..40u32).map(|n| {
            let rcpt = format!("{}{}@Shop.example", names[n as usize % 5], n / 5);
            let ip = format!("198.51.100.{}", n % 5 + 1);
            (t(i64::from(n)), refused(&rcpt, &ip, "No Such User Here"))
        }));
        assert_eq!(v.len(), 1, "{v:?}");
        let f = &v[0];
        assert_eq!(f.severity, Severity::Info);
        assert_eq!(f.target, Target::Domain("shop.example".into()));
        assert_eq!(evidence(f, "pattern"), Some("dictionary-attack"));
        assert_eq!(evidence(f, "unknown_local_parts"), Some("20"));
        assert_eq!(evidence(f, "clients"), Some("5"));
        assert_eq!(evidence(f, "accepted_unknown"), Some("0"));
        assert_eq!(evidence(f, "reason"), Some("No Such User Here"));
        assert!(f.summary.contains("all refused at RCPT"), "{}", f.summary);
        assert!(!f.summary.contains("backscatter"), "{}", f.summary);
        assert!(evidence(f, "fix").unwrap().starts_with("nothing to fix"));
    }

    #[test]
    fn a_dictionary_attack_on_a_domain_that_also_accepts_unknown_users_is_a_warning() {
        let mut h = Harness::<DefaultAddress>::new();
        let mut events: Vec<_> = (0..2u32)
            .flat_map(|n| {
                backscatter(
                    n,
                    t(i64::from(n)),
                    &format!("guess{n}@deb.example"),
                    "v@forged.example",
                    "Unknown user",
                )
            })
            .collect();
        events.extend((0..20u32).map(|n| {
            let ip = format!("198.51.100.{}", n % 3 + 1);
            (
                t(10 + i64::from(n)),
                refused(&format!("name{n}@deb.example"), &ip, "Unknown user"),
            )
        }));
        let v = h.feed(events);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Domain("deb.example".into()));
        assert_eq!(evidence(&v[0], "accepted_unknown"), Some("2"));
        assert!(
            evidence(&v[0], "fix")
                .unwrap()
                .contains("verify = recipient"),
            "{:?}",
            v[0]
        );
    }

    #[test]
    fn refusals_below_the_thresholds_or_for_other_reasons_are_quiet() {
        let mut h = Harness::<DefaultAddress>::new();
        // Many names from one client, few names from many clients.
        let mut events: Vec<_> = (0..40u32)
            .map(|n| {
                (
                    t(i64::from(n)),
                    refused(
                        &format!("a{n}@one.example"),
                        "198.51.100.1",
                        "Unrouteable address",
                    ),
                )
            })
            .collect();
        events.extend((0..19u32).map(|n| {
            let ip = format!("198.51.100.{n}");
            (
                t(i64::from(n)),
                refused(&format!("b{n}@two.example"), &ip, "User unknown"),
            )
        }));
        // Relay attempts and sender verification are other refusals.
        events.extend((0..40u32).map(|n| {
            let ip = format!("192.0.2.{n}");
            (
                t(i64::from(n)),
                refused(&format!("c{n}@far.example"), &ip, "relay not permitted"),
            )
        }));
        events.extend((0..40u32).map(|n| {
            let mut r = refused(
                &format!("d{n}@three.example"),
                &format!("192.0.2.{n}"),
                "Unrouteable address",
            );
            if let EventBody::Rejection(r) = &mut r {
                r.stage = SmtpStage::MailFrom;
            }
            (t(i64::from(n)), r)
        }));
        let v = h.feed(events);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn zero_limit_and_unknown_settings_are_refused() {
        let err = Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 0}"#).err();
        assert_eq!(
            err.as_deref(),
            Some("max_bounces_per_hour must be at least 1")
        );
        for name in [
            "backscatter_min_bounces",
            "backscatter_min_spread",
            "dictionary_min_local_parts",
            "dictionary_min_clients",
        ] {
            let err =
                Harness::<DefaultAddress>::with_settings(&format!(r#"{{"{name}": 0}}"#)).err();
            assert_eq!(err, Some(format!("{name} must be at least 1")));
        }
        let err = Harness::<DefaultAddress>::with_settings(r#"{"max_bounce_per_hour": 5}"#)
            .err()
            .unwrap();
        assert!(err.contains("max_bounce_per_hour"), "{err}");
    }
}
