//! `relay-volume`: outgoing mail per sending identity over sliding windows.
//!
//! The host's relay limit (typically 1,000 emails per 24 h) and a per-hour
//! ceiling are the lines a compromised login or a hijacked script crosses
//! first. Counting only by IP or only by domain misses them, so every
//! outgoing message is counted for each identity it carries: the SMTP login
//! (`A=`), the submitting script, and the owning account. The first identity
//! to cross a ceiling is reported, naming it — WHM's "View Relayers" top line.
//!
//! Outgoing means submitted by someone local: an authenticated login, a local
//! user or a script. Mail arriving from the Internet for local users and the
//! MTA's own bounces are not counted.
//!
//! An open relay's abusers have no login: mail relayed for an
//! unauthenticated client is counted under the client's IP, one email per
//! recipient delivered to a remote host (the SDK's [`relay`] decides what
//! was relayed, as `open-relay` does; forwards are not). A client whose
//! relayed mail went to one domain only (a backup MX's or smarthost's work)
//! is counted but not reported. This reads the log alone; the local
//! domains, when known, only sharpen it.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;
use spamward_sdk::relay;

/// `[rules.relay-volume]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Emails per identity per 24 h (the host's relay limit).
    pub daily_limit: u32,
    /// Emails per identity per hour.
    pub hourly_limit: u32,
    /// Count each recipient as one email (as cPanel's limits do); otherwise
    /// count messages.
    pub count_recipients: bool,
    /// Local users that are the MTA or the system, not customers.
    pub system_users: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            daily_limit: 1000,
            hourly_limit: 250,
            count_recipients: true,
            system_users: spamward_sdk::SYSTEM_USERS
                .iter()
                .map(|u| (*u).to_owned())
                .collect(),
        }
    }
}

/// The rule.
pub struct RelayVolume {
    settings: Settings,
}

const HOUR: u32 = 3600;
const DAY: u32 = 86_400;

/// An identity an outgoing message is counted under.
#[derive(Clone, Copy)]
enum Counted<'a> {
    Login(&'a str),
    Script(&'a str),
    Account(&'a str),
    /// An unauthenticated client mail was relayed for.
    Client(&'a str),
}

impl<'a> Counted<'a> {
    /// What kind of identity it is, and its name.
    fn parts(self) -> (&'static str, &'a str) {
        match self {
            Counted::Login(l) => ("login", l),
            Counted::Script(s) => ("script", s),
            Counted::Account(a) => ("account", a),
            Counted::Client(ip) => ("client", ip),
        }
    }

    /// Its window key in the host (`login:<id>`).
    fn key(self) -> String {
        let (kind, name) = self.parts();
        format!("{kind}:{name}")
    }

    /// The identity in a sentence (`login <id>`).
    fn describe(self) -> String {
        let (kind, name) = self.parts();
        format!("{kind} {name}")
    }

    /// Who to hold, built only when reporting.
    fn target(self) -> Target {
        let name = self.parts().1.to_owned();
        match self {
            Counted::Login(_) => Target::Mailbox(name),
            Counted::Script(_) => Target::Script(name),
            Counted::Account(_) => Target::Account(name),
            Counted::Client(_) => Target::Ip(name),
        }
    }
}

/// The kinds of local identity outgoing mail is counted under.
#[derive(Clone, Copy)]
enum Kind {
    Login,
    Script,
    Account,
}

/// The name of the host counter of `kind` over `window` (`login-3600`).
fn counter_name(kind: Kind, window: u32) -> String {
    let kind = match kind {
        Kind::Login => "login",
        Kind::Script => "script",
        Kind::Account => "account",
    };
    format!("{kind}-{window}")
}

impl Rule for RelayVolume {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "relay-volume",
            "Outgoing emails per login, script and account over the hourly and daily ceilings",
        )
        .version(env!("CARGO_PKG_VERSION"))
        // Deliveries only for what may have been relayed for a stranger.
        .subscribe_matching(
            filter::all(EventKind::Delivery)
                .all_of([
                    filter::outcome(&[DeliveryOutcome::Delivered]),
                    filter::has(IdentityField::ClientIp),
                ])
                .none_of(filter::local_sender()),
        )
        .subscribe(EventKind::Extension)
        .action(Action::HoldOutgoing)
        .setting(
            "daily_limit",
            "emails per identity per 24 h (the host's relay limit)",
        )
        .setting("hourly_limit", "emails per identity per hour")
        .setting(
            "count_recipients",
            "count each recipient as one email (as cPanel does)",
        )
        .setting(
            "system_users",
            "local users that are the MTA or the system, never counted",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.daily_limit == 0 || settings.hourly_limit == 0 {
            return Err("daily_limit and hourly_limit must be at least 1".into());
        }
        Ok(RelayVolume { settings })
    }

    /// Outgoing mail per login, script and account, counted by the host
    /// over the hour and the day: the rule hears of an identity when it
    /// reaches a ceiling (a warning) or twice it (critical).
    fn counters(&self) -> Vec<Counter> {
        let s = &self.settings;
        // Outgoing: submitted by someone local, not a bounce.
        let outgoing = || {
            filter::all(EventKind::MessageReceived)
                .any_of(filter::local_sender())
                .all_of([filter::has(IdentityField::Sender)])
        };
        let system_users: Vec<&str> = s.system_users.iter().map(String::as_str).collect();
        let per = [
            (Kind::Login, outgoing(), IdentityField::AuthId),
            (Kind::Script, outgoing(), IdentityField::Script),
            (Kind::Account, outgoing(), IdentityField::Owner),
            // No owner known: the local user, unless it is the system.
            (
                Kind::Account,
                outgoing().none_of([
                    filter::has(IdentityField::Owner),
                    filter::equals(IdentityField::LocalUser, &system_users),
                ]),
                IdentityField::LocalUser,
            ),
        ];
        let count = if s.count_recipients {
            CountOf::Recipients
        } else {
            CountOf::Events
        };
        let mut counters = Vec::new();
        for (window, limit) in [(HOUR, s.hourly_limit), (DAY, s.daily_limit)] {
            let limit = u64::from(limit);
            for (kind, events, field) in &per {
                counters.push(
                    counter::of(&counter_name(*kind, window), events.clone(), *field)
                        .count(count)
                        .window(window)
                        .threshold(limit)
                        .threshold(2 * limit),
                );
            }
        }
        counters
    }

    fn on_counter(&mut self, cx: &mut Context<'_>, c: &Crossing) {
        let Some((kind, window)) = [Kind::Login, Kind::Script, Kind::Account]
            .into_iter()
            .flat_map(|k| [(k, HOUR), (k, DAY)])
            .find(|(k, w)| counter_name(*k, *w) == c.counter)
        else {
            return;
        };
        let counted = match kind {
            Kind::Login => Counted::Login(&c.key),
            Kind::Script => Counted::Script(&c.key),
            Kind::Account => Counted::Account(&c.key),
        };
        let limit = u64::from(self.limit(window));
        let severity = if c.threshold >= 2 * limit {
            Severity::Critical
        } else {
            Severity::Warning
        };
        self.report(
            cx,
            counted,
            severity,
            c.total,
            window,
            c.message_id.as_deref().unwrap_or("-"),
        );
    }

    fn on_delivery(&mut self, cx: &mut Context<'_>, d: &Delivery) {
        let at = cx.time();
        let Some(ip) = relay::relayed_for(d, at) else {
            return;
        };
        let domain = d.recipient.rsplit_once('@').map_or("", |(_, dom)| dom);
        // Mail for one domain only is a backup MX's or smarthost's work
        // (as `open-relay` judges it): counted, never reported.
        let spread = relay::domains_reached(ip, domain, at);
        self.count(cx, Counted::Client(ip), 1, &d.message_id, spread >= 2);
    }

    fn on_extension(&mut self, cx: &mut Context<'_>, e: &Extension) {
        relay::note_redirect(e, cx.time());
    }
}

impl RelayVolume {
    /// The ceiling over `window`.
    fn limit(&self, window: u32) -> u32 {
        if window == HOUR {
            self.settings.hourly_limit
        } else {
            self.settings.daily_limit
        }
    }

    /// Adds `n` emails to `counted`'s windows and, when `may_report`,
    /// reports each ceiling the addition crosses: a warning at the limit,
    /// critical at twice it.
    fn count(
        &self,
        cx: &mut Context<'_>,
        counted: Counted<'_>,
        n: u32,
        message_id: &str,
        may_report: bool,
    ) {
        let key = counted.key();
        for window in [HOUR, DAY] {
            let total = host::window_add(&key, cx.time(), window, n);
            let before = total - u64::from(n);
            let limit = u64::from(self.limit(window));
            if !may_report {
                continue;
            }
            let severity = if before < 2 * limit && total >= 2 * limit {
                Severity::Critical
            } else if before < limit && total >= limit {
                Severity::Warning
            } else {
                continue;
            };
            self.report(cx, counted, severity, total, window, message_id);
        }
    }

    /// Reports `counted` for `total` emails over `window`.
    fn report(
        &self,
        cx: &mut Context<'_>,
        counted: Counted<'_>,
        severity: Severity,
        total: u64,
        window: u32,
        message_id: &str,
    ) {
        let limit = self.limit(window);
        let label = if window == HOUR { "hour" } else { "24 h" };
        cx.report(
            Finding::new(
                severity,
                counted.target(),
                Action::HoldOutgoing,
                format!(
                    "{} sent {total} emails in the last {label} (limit {limit})",
                    counted.describe()
                ),
            )
            .evidence("emails", total)
            .evidence("limit", limit)
            .evidence("window", label)
            .evidence("sample_message", message_id),
        );
    }
}

spamward_sdk::export_rule!(RelayVolume);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness};

    fn authed(id: &str, login: &str, recipients: usize) -> EventBody<'static> {
        let mut m = testing::received(id, login);
        m.identity.auth_id = Some(testing::text(login));
        m.recipients = (0..recipients)
            .map(|i| format!("r{i}@remote.example").into())
            .collect();
        EventBody::MessageReceived(m)
    }

    #[test]
    fn login_over_hourly_limit_is_named() {
        let mut h = Harness::<RelayVolume>::with_settings(r#"{"hourly_limit": 10}"#).unwrap();
        let t = testing::at("2024-05-01 10:00:00");
        let v =
            h.feed((0..12).map(|i| (t + i * 60, authed(&format!("m{i}"), "info@shop.example", 1))));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Mailbox("info@shop.example".into()));
        assert_eq!(v[0].severity, Severity::Warning);
        assert!(
            v[0].summary.contains("10 emails in the last hour"),
            "{}",
            v[0].summary
        );
    }

    #[test]
    fn spread_over_the_day_stays_under_the_hourly_limit_but_hits_the_daily_one() {
        let mut h =
            Harness::<RelayVolume>::with_settings(r#"{"hourly_limit": 100, "daily_limit": 200}"#)
                .unwrap();
        let t = testing::at("2024-05-01 00:00:00");
        // 210 emails, one every 6 minutes: 10 an hour.
        let v = h.feed((0..210).map(|i| (t + i * 360, authed(&format!("m{i}"), "a@b.example", 1))));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].summary.contains("24 h"));
    }

    #[test]
    fn recipients_count_unless_told_otherwise() {
        let mut h = Harness::<RelayVolume>::with_settings(r#"{"hourly_limit": 10}"#).unwrap();
        let v = h.feed([(0, authed("m1", "a@b.example", 25))]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Critical);

        let mut h = Harness::<RelayVolume>::with_settings(
            r#"{"hourly_limit": 10, "count_recipients": false}"#,
        )
        .unwrap();
        assert!(h.feed([(0, authed("m1", "a@b.example", 25))]).is_empty());
    }

    #[test]
    fn inbound_mail_and_bounces_are_not_outgoing() {
        let mut h = Harness::<RelayVolume>::with_settings(r#"{"hourly_limit": 1}"#).unwrap();
        let mut inbound = testing::received("m1", "someone@remote.example");
        inbound.identity.client_ip = Some("192.0.2.1".into());
        let bounce = testing::received("m2", "");
        let mut mta = testing::received("m3", "");
        mta.bounce = false;
        mta.identity.local_user = Some("mailnull".into());
        let v = h.feed([
            (0, EventBody::MessageReceived(inbound)),
            (1, EventBody::MessageReceived(bounce)),
            (2, EventBody::MessageReceived(mta)),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn mail_relayed_for_an_unauthenticated_client_is_counted_by_its_ip() {
        let mut h = Harness::<RelayVolume>::with_settings(r#"{"hourly_limit": 10}"#).unwrap();
        let relayed = |i: u32, ip: &str| {
            let mut d = testing::delivery(
                &format!("1abc{i:02}-000456-AB"),
                "x@stranger.example",
                DeliveryOutcome::Delivered,
                &format!("v{i}@far{}.example", i % 3),
            );
            d.identity.client_ip = Some(testing::text(ip));
            d.remote_ip = Some("192.0.2.25".into());
            (i64::from(i), EventBody::Delivery(d))
        };
        // Ten relayed for one stranger; ten deliveries from another client
        // to this machine's own content filter are no relaying.
        let to_filter = (0..10).map(|i| {
            let (t, mut e) = relayed(i, "198.51.100.7");
            if let EventBody::Delivery(d) = &mut e {
                d.remote_ip = Some("127.0.0.1".into());
                d.transport = Some("amavis".into());
            }
            (t, e)
        });
        let v = h.feed((0..10).map(|i| relayed(i, "203.0.113.5")).chain(to_filter));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Ip("203.0.113.5".into()));
        assert!(
            v[0].summary.contains("client 203.0.113.5 sent 10 emails"),
            "{}",
            v[0].summary
        );
    }

    #[test]
    fn a_backup_mx_relaying_much_for_one_domain_names_no_client() {
        // The big sender of a customer whose mail this unlisted backup MX
        // passes on: 50 messages, one domain.
        let mut h = Harness::<RelayVolume>::with_settings(r#"{"hourly_limit": 10}"#).unwrap();
        let v = h.feed((0..50).map(|i| {
            let mut d = testing::delivery(
                &format!("1abc{i:02}-000456-AB"),
                "news@big-sender.example",
                DeliveryOutcome::Delivered,
                &format!("staff{i}@customer.example"),
            );
            d.identity.client_ip = Some("209.85.220.41".into());
            d.transport = Some("remote_smtp".into());
            d.remote_ip = Some("192.0.2.25".into());
            (i64::from(i), EventBody::Delivery(d))
        }));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn script_and_account_are_counted_too() {
        let mut h = Harness::<RelayVolume>::with_settings(r#"{"hourly_limit": 2}"#).unwrap();
        let make = |id: &str| {
            let mut m = testing::received(id, "shop@shop.example");
            m.identity.local_user = Some("shopacct".into());
            m.identity.script = Some("/home/shopacct/public_html/contact".into());
            EventBody::MessageReceived(m)
        };
        let v = h.feed([(0, make("a")), (1, make("b"))]);
        let targets: Vec<_> = v.iter().map(|v| v.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                Target::Script("/home/shopacct/public_html/contact".into()),
                Target::Account("shopacct".into())
            ]
        );
    }
}
