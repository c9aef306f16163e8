//! `hourly-limit`: the panel's hourly sending limits, and domains at them.
//!
//! cPanel's mail governor caps what each domain may send per hour
//! (`maxemailsperhour`) and the share of its mail that may fail or defer
//! (`email_send_limits_max_defer_fail_percentage`). With either unset, a
//! compromised account can send until the server's IP is on every blocklist.
//! The rule reports, from the server's configuration:
//!
//! - the server-wide hourly limit unset, empty or `0`;
//! - the server-wide failed/deferred percentage unset, empty, `0` or `100`;
//! - a domain (`/etc/email_send_limits`) or account (`/var/cpanel/users`)
//!   made unlimited while the server has a limit (for information: it may be
//!   deliberate, for a newsletter sender).
//!
//! And from the log alone, once per sender per hour each:
//!
//! - a domain that reaches its hourly limit (the governor's "has exceeded
//!   the max emails per hour" line), asking to hold its outgoing mail;
//! - a sender Exim's own `ratelimit` ACL refused (`rejected RCPT <..>:
//!   Sender rate 45.2 / 1h`, "rate limit exceeded"...: the wording is the
//!   ACL's, so any refusal speaking of a rate and a limit), with its rate;
//! - a domain sending more than `report_rate_above` (500) in an hour
//!   while no server limit is known (cPanel's default is unlimited, and a
//!   replayed log comes without `cpanel.config`): nothing will stop it, so
//!   the finding names the domain, its rate and the limit to set.
//!
//! Configuration is judged only as far as it was seen: a server with no
//! `cpanel.config` or no `maxemailsperhour` line is not reported for it.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.hourly-limit]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Hourly limit per domain the fix suggests.
    pub suggested_max_emails_per_hour: u32,
    /// Failed or deferred percentage the fix suggests.
    pub suggested_max_defer_fail_percentage: u32,
    /// Report domains and accounts made unlimited while the server has a
    /// limit (severity info).
    pub report_unlimited_domains: bool,
    /// Emails a domain must send in an hour, while no server limit is
    /// known, to be reported: well above the suggested limit, so a busy
    /// honest domain is not named for what is the configuration's gap.
    pub report_rate_above: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            suggested_max_emails_per_hour: 200,
            suggested_max_defer_fail_percentage: 25,
            report_unlimited_domains: true,
            report_rate_above: 500,
        }
    }
}

const HOUR: u32 = 3600;
/// The counter of emails a sending domain sent in the last hour.
const SENT: &str = "sent";

/// Most per-domain findings kept waiting for the server's limit to be seen.
const MAX_PENDING: usize = 10_000;

/// The two limits the governor applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// Emails per domain per hour.
    Hourly,
    /// Percentage of failed or deferred messages per domain per hour.
    DeferFail,
}

impl Limit {
    /// The limit `key` of `source` sets, if any.
    fn of_key(source: &str, key: &str) -> Option<Limit> {
        match (source, key) {
            ("cpanel.config", "maxemailsperhour")
            | ("email_send_limits", "max_emails_per_hour")
            | ("cpanel-users", "MAX_EMAIL_PER_HOUR") => Some(Limit::Hourly),
            ("cpanel.config", "email_send_limits_max_defer_fail_percentage")
            | ("email_send_limits", "max_defer_fail_percentage")
            | ("cpanel-users", "MAX_DEFER_FAIL_PERCENTAGE") => Some(Limit::DeferFail),
            _ => None,
        }
    }

    /// Whether `value` sets no limit: `Some(true)` for none, `Some(false)`
    /// for a limit, `None` when it can't be read (not judged).
    fn is_unlimited(self, value: Option<&str>) -> Option<bool> {
        let value = value.map(str::trim).unwrap_or("");
        if value.is_empty() || value.eq_ignore_ascii_case("unlimited") {
            return Some(true);
        }
        let n: u64 = value.parse().ok()?;
        Some(match self {
            Limit::Hourly => n == 0,
            // 100 % failed can never be exceeded: no protection either.
            Limit::DeferFail => n == 0 || n >= 100,
        })
    }

    /// Host kv key of the server limit as read from `source`.
    fn server_key(self, source: &str) -> String {
        match self {
            Limit::Hourly => format!("server:hourly:{source}"),
            Limit::DeferFail => format!("server:defer-fail:{source}"),
        }
    }

    /// The server's limit, if either source set one.
    fn server_limit(self) -> Option<String> {
        host::kv_get(&self.server_key("cpanel.config"))
            .or_else(|| host::kv_get(&self.server_key("*")))
    }

    /// The limit as a person reads it.
    fn show(self, value: &str) -> String {
        match self {
            Limit::Hourly => format!("{value} emails per hour"),
            Limit::DeferFail => format!("{value}% failed or deferred"),
        }
    }

    /// WHM's name for the per-account setting.
    fn account_setting(self) -> &'static str {
        match self {
            Limit::Hourly => "Maximum Hourly Email by Domain Relayed",
            Limit::DeferFail => {
                "Maximum percentage of failed or deferred messages a domain may send per hour"
            }
        }
    }
}

/// Whether a refusal is an Exim `ratelimit` ACL's. Its words are the
/// ACL's own, so this looks for a rate and a limit in them.
fn is_rate_limit(reason: &str) -> bool {
    (reason.contains("rate") || reason.contains("Rate"))
        && (reason.contains("limit") || reason.contains("exceed"))
}

/// The rate an ACL message shows (`Sender rate 45.2 / 1h` → `("45.2",
/// "1h")`): `$sender_rate / $sender_rate_period`, as most configurations
/// and Exim's documentation write it.
fn rate_of(reason: &str) -> Option<(&str, &str)> {
    let (before, after) = reason.split_once(" / ")?;
    let rate = before.rsplit(' ').next()?;
    let period = after.split([' ', '/', ';', ',', ')']).next()?;
    let is_rate = !rate.is_empty() && rate.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let is_period = period.bytes().next().is_some_and(|b| b.is_ascii_digit());
    (is_rate && is_period).then_some((rate, period))
}

/// A domain or account with no limit of its own, waiting to learn whether
/// the server has one.
#[derive(Debug, Clone)]
struct Unlimited {
    limit: Limit,
    target: Target,
    /// Account whose settings to change.
    account: Option<String>,
    key: String,
    value: String,
    event: u64,
}

/// The rule.
pub struct HourlyLimit {
    settings: Settings,
    /// Per-domain findings seen before the server's limit (guest memory: a
    /// snapshot is read in order, so this only bridges a `*` line that
    /// comes after the domains in `/etc/email_send_limits`).
    pending: Vec<Unlimited>,
}

impl HourlyLimit {
    fn suggested(&self, limit: Limit) -> u32 {
        match limit {
            Limit::Hourly => self.settings.suggested_max_emails_per_hour,
            Limit::DeferFail => self.settings.suggested_max_defer_fail_percentage,
        }
    }

    /// A server-wide `cpanel.config` limit.
    fn server_setting(&mut self, cx: &mut Context<'_>, limit: Limit, s: &Setting) {
        let Some(unlimited) = limit.is_unlimited(s.value.as_deref()) else {
            return;
        };
        let key = limit.server_key("cpanel.config");
        if !unlimited {
            let value = s.value.as_deref().unwrap_or("").trim();
            host::kv_set(&key, Some(value));
            self.flush(cx, limit, value);
            return;
        }
        host::kv_set(&key, None);
        let shown = match s.value.as_deref().map(str::trim) {
            None => "unset".to_owned(),
            Some("") => "empty".to_owned(),
            Some(v) => v.to_owned(),
        };
        let suggested = self.suggested(limit);
        let (summary, fix) = match limit {
            Limit::Hourly => (
                "no per-domain hourly sending limit: a compromised account can send without end",
                format!(
                    "WHM → Tweak Settings → Mail → Max hourly emails per domain: e.g. {suggested}"
                ),
            ),
            Limit::DeferFail => (
                "no limit on the share of a domain's mail that may fail or defer: a spamming domain is never stopped",
                format!(
                    "WHM → Tweak Settings → Mail → Maximum percentage of failed or deferred messages a domain may send per hour: e.g. {suggested}"
                ),
            ),
        };
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Setting(format!("cpanel.config:{}", s.key)),
                Action::Alert,
                summary,
            )
            .evidence(&s.key, shown)
            .evidence("fix", fix),
        );
    }

    /// The server default line (`*`) of `/etc/email_send_limits`: what
    /// Exim enforces. Remembered, never reported (the `cpanel.config`
    /// setting is what the admin changes).
    fn server_default(&mut self, cx: &mut Context<'_>, limit: Limit, s: &Setting) {
        let key = limit.server_key("*");
        match limit.is_unlimited(s.value.as_deref()) {
            Some(false) => {
                let value = s.value.as_deref().unwrap_or("").trim();
                host::kv_set(&key, Some(value));
                self.flush(cx, limit, value);
            }
            Some(true) => host::kv_set(&key, None),
            None => {}
        }
    }

    /// A domain's or account's own limit.
    fn own_setting(&mut self, cx: &mut Context<'_>, limit: Limit, s: &Setting, scope: &str) {
        if !self.settings.report_unlimited_domains {
            return;
        }
        // No value of its own: the domain takes the server's.
        let Some(value) = s.value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
            return;
        };
        if limit.is_unlimited(Some(value)) != Some(true) {
            return;
        }
        let (target, account) = if s.source == "cpanel-users" {
            (Target::Account(scope.to_owned()), Some(scope.to_owned()))
        } else {
            let domain = scope.to_ascii_lowercase();
            let owner = host::domain_owner(&domain);
            (Target::Domain(domain), owner)
        };
        let unlimited = Unlimited {
            limit,
            target,
            account,
            key: s.key.to_string(),
            value: value.to_owned(),
            event: cx.event_id(),
        };
        match limit.server_limit() {
            Some(server) => self.report_unlimited(cx, &unlimited, &server),
            None if self.pending.len() < MAX_PENDING => self.pending.push(unlimited),
            None => {}
        }
    }

    /// Report what waited for the server's `limit`, now known to be `server`.
    fn flush(&mut self, cx: &mut Context<'_>, limit: Limit, server: &str) {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|u| u.limit == limit);
        self.pending = later;
        for u in now {
            self.report_unlimited(cx, &u, server);
        }
    }

    fn report_unlimited(&self, cx: &mut Context<'_>, u: &Unlimited, server: &str) {
        let who = match &u.target {
            Target::Account(a) => format!("account {a}"),
            Target::Domain(d) => d.clone(),
            _ => unreachable!("own_setting builds only these"),
        };
        let what = match u.limit {
            Limit::Hourly => "may send unlimited mail per hour",
            Limit::DeferFail => "has no limit on failed or deferred mail",
        };
        let account = u
            .account
            .as_deref()
            .map_or_else(|| format!("the account that owns {who}"), str::to_owned);
        let fix = format!(
            "WHM → Account Functions → Modify an Account → {account} → {}: e.g. {}, not Unlimited",
            u.limit.account_setting(),
            self.suggested(u.limit)
        );
        let mut finding = Finding::new(
            Severity::Info,
            u.target.clone(),
            Action::Alert,
            format!(
                "{who} {what} although the server limit is {}",
                u.limit.show(server)
            ),
        )
        .evidence(&u.key, &u.value)
        .evidence("server_limit", server)
        .evidence("fix", fix)
        .event(u.event);
        if u.event != cx.event_id() {
            finding = finding.event(cx.event_id());
        }
        cx.report(finding);
    }
}

impl Rule for HourlyLimit {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "hourly-limit",
            "Hourly sending limits unset (server, domain, account) and domains that reach theirs",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::Setting)
        .subscribe(EventKind::GovernorAction)
        .subscribe(EventKind::Rejection)
        .action(Action::Alert)
        .action(Action::HoldOutgoing)
        .setting(
            "suggested_max_emails_per_hour",
            "hourly limit per domain the fix suggests",
        )
        .setting(
            "suggested_max_defer_fail_percentage",
            "failed or deferred percentage the fix suggests",
        )
        .setting(
            "report_rate_above",
            "emails per hour a domain must send, with no server limit known, to be reported",
        )
        .setting(
            "report_unlimited_domains",
            "report domains and accounts made unlimited while the server has a limit (info)",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.suggested_max_emails_per_hour == 0 || settings.report_rate_above == 0 {
            return Err(
                "suggested_max_emails_per_hour and report_rate_above must be at least 1".into(),
            );
        }
        if !(1..100).contains(&settings.suggested_max_defer_fail_percentage) {
            return Err(format!(
                "suggested_max_defer_fail_percentage must be 1..=99, not {}",
                settings.suggested_max_defer_fail_percentage
            ));
        }
        Ok(HourlyLimit {
            settings,
            pending: Vec::new(),
        })
    }

    fn on_setting(&mut self, cx: &mut Context<'_>, s: &Setting) {
        let Some(limit) = Limit::of_key(&s.source, &s.key) else {
            return;
        };
        match s.scope.as_deref() {
            None if s.source == "cpanel.config" => self.server_setting(cx, limit, s),
            Some("*") if s.source == "email_send_limits" => self.server_default(cx, limit, s),
            Some(scope) if s.source != "cpanel.config" => self.own_setting(cx, limit, s, scope),
            _ => {}
        }
    }

    /// Outgoing mail per sending domain, counted by the host: the rule
    /// hears of a domain only when its hour reaches `report_rate_above`.
    fn counters(&self) -> Vec<Counter> {
        vec![
            counter::of(
                SENT,
                // What a local sender submitted; a bounce (null sender) is
                // nobody's sending, even when charged to a domain.
                filter::all(EventKind::MessageReceived)
                    .any_of(filter::local_sender())
                    .all_of([filter::has(IdentityField::Sender)]),
                IdentityField::SenderDomain,
            )
            .count(CountOf::Recipients)
            .window(HOUR)
            .threshold(u64::from(self.settings.report_rate_above)),
        ]
    }

    fn on_counter(&mut self, cx: &mut Context<'_>, c: &Crossing) {
        if c.counter != SENT {
            return;
        }
        let (domain, sent, at) = (c.key.as_str(), c.total, cx.time());
        if Limit::Hourly.server_limit().is_some()
            || !host::once_per_window(&format!("unlimited-rate:{domain}"), at, HOUR)
        {
            // With a limit, the governor speaks when the domain reaches it.
            return;
        }
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Domain(domain.to_owned()),
                Action::Alert,
                format!(
                    "{domain} sent {sent} emails in the last hour and no hourly limit is known to stop it (cPanel's default is unlimited)"
                ),
            )
            .evidence("emails_in_hour", sent)
            .evidence("sender", c.sender.as_deref().unwrap_or("<>"))
            .evidence("sample_message", c.message_id.as_deref().unwrap_or("-"))
            .evidence(
                "fix",
                format!(
                    "WHM → Tweak Settings → Mail → Max hourly emails per domain: e.g. {}; then find out why {domain} sends {sent} an hour",
                    self.settings.suggested_max_emails_per_hour
                ),
            ),
        );
    }

    fn on_rejection(&mut self, cx: &mut Context<'_>, r: &Rejection) {
        if !is_rate_limit(&r.reason) {
            return;
        }
        let sender = r.sender.as_deref().filter(|s| s.contains('@'));
        let (target, who) = match (sender, r.client_ip.as_deref()) {
            (Some(s), _) => (Target::Mailbox(s.to_owned()), s),
            (None, Some(ip)) => (Target::Ip(ip.to_owned()), ip),
            (None, None) => return,
        };
        if !host::once_per_window(&format!("ratelimited:{who}"), cx.time(), HOUR) {
            return;
        }
        let rate = rate_of(&r.reason);
        let shown = rate.map_or_else(String::new, |(n, period)| format!(" at {n} per {period}"));
        cx.report(
            Finding::new(
                Severity::Warning,
                target,
                Action::HoldOutgoing,
                format!("Exim's rate limit refused mail from {who}{shown}"),
            )
            .evidence("client_ip", r.client_ip.as_deref().unwrap_or("?"))
            .evidence("rate", rate.map_or("?", |(n, _)| n))
            .evidence("period", rate.map_or("?", |(_, p)| p))
            .evidence("reason", &r.reason)
            .evidence(
                "fix",
                format!(
                    "Exim is holding {who} back; find out why it sends so fast (a stolen password, a script) before raising the limit"
                ),
            ),
        );
    }

    fn on_governor_action(&mut self, cx: &mut Context<'_>, g: &GovernorAction) {
        if g.limit != GovernorLimit::MaxEmailsPerHour {
            return;
        }
        let Some(domain) = g.domain.as_deref().filter(|d| !d.is_empty()) else {
            return;
        };
        let domain = domain.to_ascii_lowercase();
        let at = cx.time();
        // One report per domain per hour: remember when we last spoke.
        if !host::once_per_window(&format!("reported:{domain}"), at, HOUR) {
            return;
        }
        let reached = match (g.count, g.maximum) {
            (Some(c), Some(m)) => format!(" ({c}/{m})"),
            (None, Some(m)) => format!(" ({m})"),
            (Some(c), None) => format!(" ({c})"),
            (None, None) => String::new(),
        };
        let fate = if g.discarded {
            "further mail is discarded"
        } else {
            "further mail is queued and retried"
        };
        let show = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Domain(domain.clone()),
                Action::HoldOutgoing,
                format!("{domain} reached its hourly limit{reached}; {fate}"),
            )
            .evidence("count", show(g.count))
            .evidence("maximum", show(g.maximum))
            .evidence("discarded", g.discarded)
            .evidence("sender", g.identity.sender.as_deref().unwrap_or("<>"))
            .evidence(
                "fix",
                format!(
                    "Find who sends from {domain} (WHM → Email → Mail Delivery Reports) and stop it before raising its Maximum Hourly Email by Domain Relayed"
                ),
            ),
        );
    }
}

spamward_sdk::export_rule!(HourlyLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness, evidence};

    fn setting(
        source: &str,
        scope: Option<&str>,
        key: &str,
        value: Option<&str>,
    ) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::Setting(testing::setting(source, scope, key, value)),
        )
    }

    fn config(key: &str, value: Option<&str>) -> (i64, EventBody<'static>) {
        setting("cpanel.config", None, key, value)
    }

    fn governor(at: &str, domain: &str, limit: GovernorLimit) -> (i64, EventBody<'static>) {
        (
            testing::at(at),
            EventBody::GovernorAction(GovernorAction {
                message_id: Some("1abc23-000456-AB".into()),
                domain: Some(testing::text(domain)),
                limit,
                count: Some(200),
                maximum: Some(200),
                discarded: true,
                recipient: Some("x@remote.example".into()),
                identity: testing::sender("news@shop.example"),
            }),
        )
    }

    #[test]
    fn no_hourly_limit_is_a_warning_with_the_fix() {
        let mut h = Harness::<HourlyLimit>::new();
        let v = h.feed([config("maxemailsperhour", None)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(
            v[0].target,
            Target::Setting("cpanel.config:maxemailsperhour".into())
        );
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary
                .starts_with("no per-domain hourly sending limit"),
            "{}",
            v[0].summary
        );
        assert_eq!(evidence(&v[0], "maxemailsperhour"), Some("unset"));
        assert_eq!(
            evidence(&v[0], "fix"),
            Some("WHM → Tweak Settings → Mail → Max hourly emails per domain: e.g. 200")
        );
    }

    #[test]
    fn zero_and_empty_hourly_limits_are_none_and_a_number_is_fine() {
        for value in ["0", "", " 0 "] {
            let mut h = Harness::<HourlyLimit>::new();
            let v = h.feed([config("maxemailsperhour", Some(value))]);
            assert_eq!(v.len(), 1, "{value:?}: {v:?}");
        }
        let mut h = Harness::<HourlyLimit>::new();
        assert!(h.feed([config("maxemailsperhour", Some("200"))]).is_empty());
        // Unreadable: not judged.
        assert!(
            h.feed([config("maxemailsperhour", Some("lots"))])
                .is_empty()
        );
    }

    #[test]
    fn no_defer_fail_percentage_is_a_warning_with_the_fix() {
        for value in [None, Some(""), Some("0"), Some("100")] {
            let mut h = Harness::<HourlyLimit>::new();
            let v = h.feed([config("email_send_limits_max_defer_fail_percentage", value)]);
            assert_eq!(v.len(), 1, "{value:?}: {v:?}");
            assert_eq!(v[0].severity, Severity::Warning);
            assert_eq!(
                v[0].target,
                Target::Setting("cpanel.config:email_send_limits_max_defer_fail_percentage".into())
            );
            assert!(v[0].summary.contains("fail or defer"), "{}", v[0].summary);
            assert_eq!(
                evidence(&v[0], "fix"),
                Some(
                    "WHM → Tweak Settings → Mail → Maximum percentage of failed or deferred messages a domain may send per hour: e.g. 25"
                )
            );
        }
        let mut h = Harness::<HourlyLimit>::new();
        let v = h.feed([config(
            "email_send_limits_max_defer_fail_percentage",
            Some("25"),
        )]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn unrelated_and_absent_keys_are_not_judged() {
        let mut h = Harness::<HourlyLimit>::new();
        let v = h.feed([
            config("nobodyspam", Some("0")),
            config("email_send_limits_defer_cutoff", Some("0")),
            config(
                "email_send_limits_min_defer_fail_to_trigger_protection",
                None,
            ),
            setting(
                "email_send_limits",
                Some("shop.example"),
                "min_defer_fail_to_trigger_protection",
                Some("0"),
            ),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn unlimited_domain_and_account_under_a_server_limit_are_info() {
        let mut h = Harness::<HourlyLimit>::new().domain_owner("shop.example", "shopacct");
        let v = h.feed([
            config("maxemailsperhour", Some("200")),
            config("email_send_limits_max_defer_fail_percentage", Some("25")),
            setting(
                "email_send_limits",
                Some("shop.example"),
                "max_emails_per_hour",
                Some("0"),
            ),
            setting(
                "email_send_limits",
                Some("other.example"),
                "max_emails_per_hour",
                None,
            ),
            setting(
                "cpanel-users",
                Some("bulkacct"),
                "MAX_EMAIL_PER_HOUR",
                Some("unlimited"),
            ),
            setting(
                "cpanel-users",
                Some("bulkacct"),
                "MAX_DEFER_FAIL_PERCENTAGE",
                Some("100"),
            ),
            setting(
                "cpanel-users",
                Some("okacct"),
                "MAX_EMAIL_PER_HOUR",
                Some("500"),
            ),
        ]);
        let seen: Vec<_> = v
            .iter()
            .map(|v| (v.severity, v.target.clone(), v.action))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    Severity::Info,
                    Target::Domain("shop.example".into()),
                    Action::Alert
                ),
                (
                    Severity::Info,
                    Target::Account("bulkacct".into()),
                    Action::Alert
                ),
                (
                    Severity::Info,
                    Target::Account("bulkacct".into()),
                    Action::Alert
                ),
            ]
        );
        assert_eq!(
            v[0].summary,
            "shop.example may send unlimited mail per hour although the server limit is 200 emails per hour"
        );
        assert_eq!(
            evidence(&v[0], "fix"),
            Some(
                "WHM → Account Functions → Modify an Account → shopacct → Maximum Hourly Email by Domain Relayed: e.g. 200, not Unlimited"
            )
        );
        assert_eq!(
            v[2].summary,
            "account bulkacct has no limit on failed or deferred mail although the server limit is 25% failed or deferred"
        );
        assert_eq!(v[0].events, vec![3]);
    }

    #[test]
    fn unlimited_domains_on_an_unlimited_server_add_nothing() {
        let mut h = Harness::<HourlyLimit>::new();
        let v = h.feed([
            config("maxemailsperhour", None),
            setting(
                "email_send_limits",
                Some("shop.example"),
                "max_emails_per_hour",
                Some("0"),
            ),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(
            v[0].target,
            Target::Setting("cpanel.config:maxemailsperhour".into())
        );
    }

    #[test]
    fn a_server_default_line_after_the_domains_still_counts() {
        let mut h = Harness::<HourlyLimit>::new();
        let v = h.feed([setting(
            "email_send_limits",
            Some("shop.example"),
            "max_emails_per_hour",
            Some("unlimited"),
        )]);
        assert!(v.is_empty(), "{v:?}");
        // A later batch brings the `*` line: the domain is reported then,
        // citing both lines.
        let v = h.feed([setting(
            "email_send_limits",
            Some("*"),
            "max_emails_per_hour",
            Some("300"),
        )]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Domain("shop.example".into()));
        assert!(
            v[0].summary.contains("300 emails per hour"),
            "{}",
            v[0].summary
        );
        assert_eq!(v[0].events, vec![1, 2]);
        assert!(
            evidence(&v[0], "fix")
                .unwrap()
                .contains("the account that owns shop.example")
        );
    }

    #[test]
    fn the_server_limit_is_remembered_in_the_host_across_a_reload() {
        let mut h = Harness::<HourlyLimit>::new();
        h.feed([config("maxemailsperhour", Some("200"))]);
        assert_eq!(
            h.host(|host| host.state.kv_get("server:hourly:cpanel.config")),
            Some("200".to_owned())
        );
        // A reload builds a new rule instance; the host state stays.
        h.reload("{}").unwrap();
        let v = h.feed([setting(
            "cpanel-users",
            Some("bulkacct"),
            "MAX_EMAIL_PER_HOUR",
            Some("0"),
        )]);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn unlimited_domains_can_be_left_unreported() {
        let mut h = Harness::<HourlyLimit>::with_settings(r#"{"report_unlimited_domains": false}"#)
            .unwrap();
        let v = h.feed([
            config("maxemailsperhour", Some("200")),
            setting(
                "cpanel-users",
                Some("bulkacct"),
                "MAX_EMAIL_PER_HOUR",
                Some("unlimited"),
            ),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_domain_at_its_limit_is_held_once_an_hour() {
        let mut h = Harness::<HourlyLimit>::new();
        let v = h.feed([
            governor(
                "2024-05-01 10:00:00",
                "Shop.example",
                GovernorLimit::MaxEmailsPerHour,
            ),
            governor(
                "2024-05-01 10:20:00",
                "shop.example",
                GovernorLimit::MaxEmailsPerHour,
            ),
            governor(
                "2024-05-01 10:30:00",
                "other.example",
                GovernorLimit::MaxEmailsPerHour,
            ),
            governor(
                "2024-05-01 11:00:00",
                "shop.example",
                GovernorLimit::MaxEmailsPerHour,
            ),
        ]);
        let seen: Vec<_> = v.iter().map(|v| (v.target.clone(), v.events[0])).collect();
        assert_eq!(
            seen,
            vec![
                (Target::Domain("shop.example".into()), 1),
                (Target::Domain("other.example".into()), 3),
                (Target::Domain("shop.example".into()), 4),
            ]
        );
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].action, Action::HoldOutgoing);
        assert_eq!(
            v[0].summary,
            "shop.example reached its hourly limit (200/200); further mail is discarded"
        );
        assert_eq!(evidence(&v[0], "count"), Some("200"));
        assert!(
            evidence(&v[0], "fix")
                .unwrap()
                .starts_with("Find who sends from shop.example")
        );
    }

    #[test]
    fn other_governor_actions_and_domainless_ones_are_ignored() {
        let mut h = Harness::<HourlyLimit>::new();
        let (t, mut no_domain) =
            governor("2024-05-01 10:00:00", "x", GovernorLimit::MaxEmailsPerHour);
        if let EventBody::GovernorAction(g) = &mut no_domain {
            g.domain = None;
        }
        let v = h.feed([
            governor(
                "2024-05-01 10:00:00",
                "shop.example",
                GovernorLimit::MaxDefersAndFailures,
            ),
            governor(
                "2024-05-01 10:00:00",
                "shop.example",
                GovernorLimit::OutgoingHold,
            ),
            (t, no_domain),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn partial_governor_figures_still_read_well() {
        let mut h = Harness::<HourlyLimit>::new();
        let (t, mut body) = governor(
            "2024-05-01 10:00:00",
            "shop.example",
            GovernorLimit::MaxEmailsPerHour,
        );
        if let EventBody::GovernorAction(g) = &mut body {
            g.count = None;
            g.maximum = None;
            g.discarded = false;
        }
        let v = h.feed([(t, body)]);
        assert_eq!(
            v[0].summary,
            "shop.example reached its hourly limit; further mail is queued and retried"
        );
        assert_eq!(evidence(&v[0], "count"), Some("-"));
    }

    #[test]
    fn exim_ratelimit_refusals_name_the_sender_and_its_rate_once_an_hour() {
        let mut h = Harness::<HourlyLimit>::new();
        let refused = |reason: &str, sender: Option<&str>| {
            EventBody::Rejection(Rejection {
                client_ip: Some("203.0.113.5".into()),
                client_host: Some("(pc)".into()),
                sender: sender.map(testing::text),
                recipient: Some("x@far.example".into()),
                stage: SmtpStage::RcptTo,
                reason: testing::text(reason),
                message_id: None,
            })
        };
        let t = testing::at("2024-05-01 10:00:00");
        let v = h.feed([
            (
                t,
                refused(
                    "Sender rate exceeds SMTP limit - 45.2 / 1h",
                    Some("info@shop.example"),
                ),
            ),
            (
                t + 60,
                refused(
                    "Sender rate exceeds SMTP limit - 46.0 / 1h",
                    Some("info@shop.example"),
                ),
            ),
            (
                t + 61,
                refused(
                    "Local host ratelimit ( 203.0.113.5 ) exceeds 101.0 emails per 1m",
                    None,
                ),
            ),
            (
                t + 62,
                refused("relay not permitted", Some("other@far.example")),
            ),
        ]);
        assert_eq!(v.len(), 2, "{v:?} {:?}", h.host(|h| h.logs.clone()));
        assert_eq!(v[0].target, Target::Mailbox("info@shop.example".into()));
        assert_eq!(evidence(&v[0], "rate"), Some("45.2"));
        assert_eq!(evidence(&v[0], "period"), Some("1h"));
        assert!(v[0].summary.contains("45.2 per 1h"), "{}", v[0].summary);
        assert_eq!(v[1].target, Target::Ip("203.0.113.5".into()));
        assert_eq!(evidence(&v[1], "rate"), Some("?"));
    }

    fn sent(domain: &str, i: u32) -> EventBody<'static> {
        let mut m = testing::received(&format!("1abc{i:02}-000456-AB"), &format!("news@{domain}"));
        m.identity.auth_id = Some(testing::text(&format!("news@{domain}")));
        EventBody::MessageReceived(m)
    }

    #[test]
    fn a_domain_sending_fast_with_no_limit_known_is_named_with_its_rate() {
        let mut h = Harness::<HourlyLimit>::with_settings(r#"{"report_rate_above": 50}"#).unwrap();
        let t = testing::at("2024-05-01 10:00:00");
        let fast = (0..80).map(|i| (t + i64::from(i) * 10, sent("news.example", i)));
        let slow = (0..49).map(|i| (t + i64::from(i) * 60, sent("quiet.example", i)));
        let v = h.feed(fast.chain(slow));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Domain("news.example".into()));
        assert_eq!(evidence(&v[0], "emails_in_hour"), Some("50"));
        assert!(evidence(&v[0], "fix").unwrap().contains("e.g. 200"));
    }

    #[test]
    fn with_a_server_limit_the_governor_speaks_instead() {
        let mut h = Harness::<HourlyLimit>::with_settings(r#"{"report_rate_above": 50}"#).unwrap();
        let t = testing::at("2024-05-01 10:00:00");
        let limit = config("maxemailsperhour", Some("100"));
        let fast = (0..80).map(|i| (t + i64::from(i) * 10, sent("news.example", i)));
        let v = h.feed(std::iter::once(limit).chain(fast));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn settings_are_checked() {
        let mut h =
            Harness::<HourlyLimit>::with_settings(r#"{"suggested_max_emails_per_hour": 100}"#)
                .unwrap();
        let v = h.feed([config("maxemailsperhour", Some("0"))]);
        assert!(evidence(&v[0], "fix").unwrap().ends_with("e.g. 100"));
        let err = Harness::<HourlyLimit>::with_settings(
            r#"{"suggested_max_defer_fail_percentage": 100}"#,
        )
        .err();
        assert_eq!(
            err.as_deref(),
            Some("suggested_max_defer_fail_percentage must be 1..=99, not 100")
        );
        let err = Harness::<HourlyLimit>::with_settings(r#"{"max_emails_per_hour": 1}"#)
            .err()
            .unwrap();
        assert!(err.contains("max_emails_per_hour"), "{err}");
    }
}
