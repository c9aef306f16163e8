//! `compromised-account`: an SMTP login used the way stolen logins are.
//!
//! A person sends from one or two places to people they know. A stolen login
//! is used from many client IPs at once, often follows a run of failed
//! password guesses, sends far more in an hour than the login ever did
//! before (a burst over its own baseline of the past week, judged only once
//! a day of its history is known), or is driven by a spam tool that greets
//! the server with a tell-tale HELO (`User`, `ylmf-pc`, Windows' default
//! `WIN-XXXXXXXXXXX`, `localhost` from afar): that is evidence of theft. Fanning out to many
//! recipient domains and having most deliveries fail (harvested addresses)
//! are what stolen logins also do, but so do an honest newsletter and a
//! stale mailing list: alone they accuse nobody (a failing sender is
//! `defer-fail-ratio`'s finding) and only make a theft finding more severe.
//! Each signal is counted per login over an hour, on event time; one theft
//! signal is a warning, two signals or more are critical. The login is
//! reported once per window, naming every signal.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.compromised-account]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Window length in minutes.
    pub window_minutes: u32,
    /// Messages a login must send in the window before it is judged.
    pub min_messages: u32,
    /// Distinct client IPs per login in the window.
    pub max_client_ips: u32,
    /// Distinct recipient domains per login in the window.
    pub max_recipient_domains: u32,
    /// Percentage of failed + deferred deliveries.
    pub max_failure_percent: u32,
    /// Deliveries needed before the failure ratio counts.
    pub min_deliveries: u32,
    /// Failed AUTH attempts for a login before a successful send.
    pub max_auth_failures: u32,
    /// Messages in the window that may make a burst; below it, any rise
    /// over the baseline is too small to accuse anyone.
    pub burst_min_messages: u32,
    /// How many times its hourly baseline a login must send in the window
    /// to be a burst.
    pub burst_factor: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_minutes: 60,
            min_messages: 10,
            max_client_ips: 5,
            max_recipient_domains: 50,
            max_failure_percent: 50,
            min_deliveries: 20,
            max_auth_failures: 10,
            burst_min_messages: 100,
            burst_factor: 10,
        }
    }
}

/// The host key of one of a login's counters (`msgs:<login>`), built in a
/// buffer reused for each counter.
struct Key<'l> {
    login: &'l str,
    buf: String,
}

impl<'l> Key<'l> {
    fn new(login: &'l str) -> Self {
        Key {
            login,
            buf: String::with_capacity(login.len() + 10),
        }
    }

    fn of(&mut self, counter: &str) -> &str {
        self.buf.clear();
        self.buf.push_str(counter);
        self.buf.push(':');
        self.buf.push_str(self.login);
        &self.buf
    }
}

/// The host counters, per login: messages, recipients (delivery
/// attempts), distinct client IPs and distinct recipient domains.
const MESSAGES: &str = "msgs";
const DELIVERIES: &str = "dlv";
const CLIENT_IPS: &str = "ips";
const RECIPIENT_DOMAINS: &str = "doms";
/// Messages over the past week, by the hour: the login's baseline.
const WEEK_MESSAGES: &str = "week";

/// HELO names spam tools greet with, as host filter patterns: the host
/// hands the rule only the arrivals that match, and [`is_bot_helo`] (which
/// also wants Windows' name in upper case) has the last word.
const BOT_HELOS: [&str; 5] = [
    "User",
    "ylmf-pc",
    "localhost",
    "localhost.localdomain",
    "WIN-???????????",
];

/// The seconds of history a baseline looks back over, and how much of it
/// must be known before a burst counts: a new login has no baseline.
const WEEK: u32 = 7 * 86_400;
const DAY: i64 = 86_400;

/// The start of the hour `at` is in.
/// HELO names that spam tools send and mail programs do not: the bot that
/// drives a stolen login gives itself away. Outlook and Thunderbird send
/// the computer's own name or address literal, so only names no real
/// client uses are here.
fn is_bot_helo(helo: &str) -> bool {
    let windows_default = helo.len() == 15
        && helo.starts_with("WIN-")
        && helo[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    windows_default
        || ["User", "ylmf-pc", "localhost", "localhost.localdomain"]
            .iter()
            .any(|b| helo.eq_ignore_ascii_case(b))
}

/// The rule.
pub struct CompromisedAccount {
    settings: Settings,
}

impl CompromisedAccount {
    fn window(&self) -> u32 {
        self.settings.window_minutes.max(1) * 60
    }

    /// The login's usual messages per window, when `messages` in this
    /// window is a burst over it: at least `burst_min_messages` and
    /// `burst_factor` times the average window of the past week, with a
    /// day of history known.
    fn burst(&self, key: &mut Key<'_>, messages: u64, at: i64) -> Option<f64> {
        let s = &self.settings;
        if messages < u64::from(s.burst_min_messages) {
            return None;
        }
        let first: i64 = host::kv_get(key.of("first"))?.parse().ok()?;
        let history = at - first;
        if history < DAY {
            return None;
        }
        let week = counter::total(WEEK_MESSAGES, key.login, at);
        let windows = history.min(i64::from(WEEK)) as f64 / f64::from(self.window());
        // The past, without the window being judged.
        let baseline = week.saturating_sub(messages) as f64 / (windows - 1.0).max(1.0);
        (messages as f64 >= f64::from(s.burst_factor) * baseline.max(1.0)).then_some(baseline)
    }

    /// Judges `login` at `at` on everything counted so far.
    fn judge(&self, cx: &mut Context<'_>, login: &str, at: i64) {
        let w = self.window();
        let s = &self.settings;
        let mut key = Key::new(login);
        let messages = counter::total(MESSAGES, login, at);
        if messages < u64::from(s.min_messages) {
            return;
        }
        let ips = counter::total(CLIENT_IPS, login, at);
        let domains = counter::total(RECIPIENT_DOMAINS, login, at);
        let deliveries = counter::total(DELIVERIES, login, at);
        let failures = host::window_total(key.of("fail"), at, w);
        let guesses: u64 = host::kv_get(key.of("guesses"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bot_helo = if host::window_total(key.of("bot"), at, w) > 0 {
            host::kv_get(key.of("bothelo"))
        } else {
            None
        };
        let burst = self.burst(&mut key, messages, at);

        // Evidence of theft first; what only makes it worse after.
        let mut signals = Vec::new();
        if ips > u64::from(s.max_client_ips) {
            signals.push(format!("{ips} client IPs"));
        }
        if guesses >= u64::from(s.max_auth_failures) {
            signals.push(format!("{guesses} failed logins before it sent"));
        }
        if let Some(baseline) = burst {
            signals.push(format!(
                "{messages} messages against its usual {baseline:.1} an hour"
            ));
        }
        if let Some(helo) = &bot_helo {
            signals.push(format!("a spam tool's HELO \"{helo}\""));
        }
        if signals.is_empty() {
            return;
        }
        if domains > u64::from(s.max_recipient_domains) {
            signals.push(format!("{domains} recipient domains"));
        }
        if deliveries >= u64::from(s.min_deliveries)
            && failures * 100 > deliveries * u64::from(s.max_failure_percent)
        {
            signals.push(format!("{failures} of {deliveries} deliveries failed"));
        }
        // Report once per window per login, unless it got worse.
        let last = host::kv_get(key.of("reported")).and_then(|v| {
            let (t, n) = v.split_once(' ')?;
            Some((t.parse::<i64>().ok()?, n.parse::<usize>().ok()?))
        });
        if let Some((t, n)) = last
            && at - t < i64::from(w)
            && n >= signals.len()
        {
            return;
        }
        host::kv_set(key.of("reported"), Some(&format!("{at} {}", signals.len())));
        let severity = if signals.len() >= 2 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        // The password was guessed: the client that guessed it is the
        // attacker, and blocking it stops the next guess too.
        if guesses >= u64::from(s.max_auth_failures)
            && let Some(ip) = host::kv_get(key.of("guessedby"))
        {
            cx.report(
                Finding::new(
                    severity,
                    Target::Ip(ip.clone()),
                    Action::BlockIp,
                    format!(
                        "{ip} guessed the password of {login} ({guesses} failed logins) before the login sent spam"
                    ),
                )
                .evidence("login", login)
                .evidence("auth_failures_before", guesses),
            );
        }
        cx.report(
            Finding::new(
                severity,
                Target::Mailbox(login.to_owned()),
                Action::SuspendOutgoing,
                format!(
                    "login {login} looks stolen: {} in {} min ({messages} messages)",
                    signals.join(", "),
                    w / 60
                ),
            )
            .evidence("messages", messages)
            .evidence("client_ips", ips)
            .evidence("recipient_domains", domains)
            .evidence("deliveries", deliveries)
            .evidence("failed_or_deferred", failures)
            .evidence("auth_failures_before", guesses)
            .evidence("bot_helo", bot_helo.as_deref().unwrap_or("-"))
            .evidence(
                "fix",
                format!("Suspend outgoing mail for {login} and change its password"),
            ),
        );
    }
}

impl Rule for CompromisedAccount {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "compromised-account",
            "SMTP logins used from many IPs or after password guessing (fan-out and failures make it worse)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        // Only arrivals from a spam tool's HELO cross the boundary: the
        // login's messages are counted by the host.
        .subscribe_matching(filter::all(EventKind::MessageReceived).all_of([
            filter::has(IdentityField::AuthId),
            filter::matches(IdentityField::ClientHost, &BOT_HELOS),
        ]))
        // Only failures cross the boundary: attempts are counted from the
        // recipients of each message, so delivered mail costs nothing here.
        .subscribe_matching(filter::all(EventKind::Delivery).all_of([
            filter::has(IdentityField::AuthId),
            filter::outcome(&[DeliveryOutcome::Failed, DeliveryOutcome::Deferred]),
        ]))
        .subscribe(EventKind::AuthFailure)
        .action(Action::SuspendOutgoing)
        .action(Action::ResetPassword)
        .action(Action::BlockIp)
        .setting("window_minutes", "window length in minutes")
        .setting(
            "min_messages",
            "messages a login must send in the window before it is judged",
        )
        .setting(
            "max_client_ips",
            "distinct client IPs per login in the window",
        )
        .setting(
            "max_recipient_domains",
            "distinct recipient domains per login in the window",
        )
        .setting(
            "max_failure_percent",
            "percentage of failed + deferred deliveries",
        )
        .setting(
            "min_deliveries",
            "deliveries needed before the failure ratio counts",
        )
        .setting(
            "max_auth_failures",
            "failed AUTH attempts for a login before it sent",
        )
        .setting(
            "burst_min_messages",
            "messages in the window that may make a burst over the login's baseline",
        )
        .setting(
            "burst_factor",
            "times its hourly baseline a login must send in the window to be a burst",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.burst_min_messages == 0 || settings.burst_factor < 2 {
            return Err("burst_min_messages must be at least 1 and burst_factor at least 2".into());
        }
        Ok(CompromisedAccount { settings })
    }

    /// What a login sends, counted by the host: messages (the rule hears
    /// at `min_messages` and at each `burst_min_messages`), recipients,
    /// client IPs and recipient domains (heard when one passes its
    /// limit).
    fn counters(&self) -> Vec<Counter> {
        let (s, w) = (&self.settings, self.window());
        let sent =
            || filter::all(EventKind::MessageReceived).all_of([filter::has(IdentityField::AuthId)]);
        let login = IdentityField::AuthId;
        // The first message of a window too: the guesses before it count.
        let mut lines = vec![
            1,
            u64::from(s.min_messages),
            u64::from(s.burst_min_messages),
        ];
        lines.sort_unstable();
        lines.dedup();
        let mut messages = counter::of(MESSAGES, sent(), login)
            .window(w)
            .then_every(u64::from(s.burst_min_messages));
        for line in lines.into_iter().filter(|&l| l > 0) {
            messages = messages.threshold(line);
        }
        vec![
            messages,
            // Counted by the hour: a week of a busy login is 168 entries,
            // not one per message. Its first message of a week starts its
            // history again.
            counter::of(WEEK_MESSAGES, sent(), login)
                .window(WEEK)
                .step(3600)
                .threshold(1),
            counter::of(DELIVERIES, sent(), login)
                .count(CountOf::Recipients)
                .window(w),
            counter::of(CLIENT_IPS, sent(), login)
                .count(CountOf::DistinctIdentity(IdentityField::ClientIp))
                .window(w)
                .threshold(u64::from(s.max_client_ips) + 1),
            counter::of(RECIPIENT_DOMAINS, sent(), login)
                .count(CountOf::DistinctRecipientDomains)
                .window(w)
                .threshold(u64::from(s.max_recipient_domains) + 1),
        ]
    }

    fn on_counter(&mut self, cx: &mut Context<'_>, c: &Crossing) {
        let (at, login) = (cx.time(), c.key.as_str());
        if c.counter == WEEK_MESSAGES {
            // A login not seen for a week starts its history again.
            host::kv_set(Key::new(login).of("first"), Some(&at.to_string()));
            return;
        }
        if c.counter == MESSAGES && c.threshold == 1 {
            // The first message after a run of guesses: remember how many.
            let mut key = Key::new(login);
            let failed = host::window_total(key.of("authfail"), at, self.window());
            if failed > 0 {
                host::kv_set(key.of("guesses"), Some(&failed.to_string()));
                let guesser = host::kv_get(key.of("guesser"));
                host::kv_set(key.of("guessedby"), guesser.as_deref());
            }
        }
        // A burst is judged as it grows (at each further
        // `burst_min_messages`), so a baseline that rose is caught.
        if [MESSAGES, CLIENT_IPS, RECIPIENT_DOMAINS].contains(&c.counter.as_str()) {
            self.judge(cx, login, at);
        }
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        let Some(login) = m.identity.auth_id.as_deref() else {
            return;
        };
        let (at, w, s) = (cx.time(), self.window(), &self.settings);
        let mut key = Key::new(login);
        if let Some(helo) = m.identity.client_host.as_deref()
            && is_bot_helo(helo)
            && host::window_add(key.of("bot"), at, w, 1) == 1
        {
            // Named once a window; the count says whether it is recent.
            host::kv_set(key.of("bothelo"), Some(helo));
            if counter::total(MESSAGES, login, at) >= u64::from(s.min_messages) {
                self.judge(cx, login, at);
            }
        }
    }

    fn on_delivery(&mut self, cx: &mut Context<'_>, d: &Delivery) {
        let Some(login) = d.identity.auth_id.as_deref() else {
            return;
        };
        if d.outcome == DeliveryOutcome::Delivered {
            return;
        }
        let (at, w, s) = (cx.time(), self.window(), &self.settings);
        let mut key = Key::new(login);
        let failures = host::window_add(key.of("fail"), at, w, 1);
        let attempts = counter::total(DELIVERIES, login, at);
        let tripped = attempts >= u64::from(s.min_deliveries)
            && failures * 100 > attempts * u64::from(s.max_failure_percent);
        // Judge when the ratio first trips in a window, not on each failure.
        if tripped && host::once_per_window(key.of("failing"), at, w) {
            self.judge(cx, login, at);
        }
    }

    fn on_auth_failure(&mut self, cx: &mut Context<'_>, a: &AuthFailure) {
        if let Some(login) = a.set_id.as_deref() {
            let mut key = Key::new(login);
            host::window_add(key.of("authfail"), cx.time(), self.window(), 1);
            if let Some(ip) = a.client_ip.as_deref() {
                host::kv_set(key.of("guesser"), Some(ip));
            }
        }
    }
}

spamward_sdk::export_rule!(CompromisedAccount);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness};

    const T0: &str = "2024-05-01 10:00:00";

    fn sent(i: i64, login: &str, ip: &str, rcpt: &str) -> (i64, EventBody<'static>) {
        let mut m = testing::received(&format!("m{i}"), login);
        m.identity.auth_id = Some(testing::text(login));
        m.identity.client_ip = Some(testing::text(ip));
        m.recipients = vec![testing::text(rcpt)];
        (testing::at(T0) + i * 20, EventBody::MessageReceived(m))
    }

    #[test]
    fn a_burst_far_over_the_logins_own_week_is_theft_and_a_steady_sender_is_not() {
        let mut h = Harness::<CompromisedAccount>::new();
        let login = "sales@bakery.example";
        let start = testing::at(T0) - 3 * DAY;
        // Three days of 5 messages an hour from the office.
        let usual = (0..72 * 5).map(|i| {
            let (_, e) = sent(i, login, "192.0.2.10", "a@friend.example");
            (start + i * 720, e)
        });
        // Then 300 in an hour, from the same IP.
        let burst = (0..300).map(|i| {
            let (_, e) = sent(1000 + i, login, "192.0.2.10", "a@friend.example");
            (testing::at(T0) + i * 10, e)
        });
        let v = h.feed(usual.chain(burst));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Mailbox(login.into()));
        assert!(
            v[0].summary.contains("against its usual"),
            "{}",
            v[0].summary
        );

        // A newsletter sender that always sends 300 an hour is its usual.
        let mut h = Harness::<CompromisedAccount>::new();
        let steady = (0..48 * 300).map(|i| {
            let (_, e) = sent(i, "news@shop.example", "192.0.2.11", "b@far.example");
            (start + i * 12, e)
        });
        assert!(h.feed(steady).is_empty());

        // A new login has no baseline: its first busy hour accuses nobody.
        let mut h = Harness::<CompromisedAccount>::new();
        let fresh = (0..300).map(|i| sent(i, "new@shop.example", "192.0.2.12", "c@far.example"));
        assert!(h.feed(fresh).is_empty());
    }

    #[test]
    fn a_spam_tools_helo_is_theft_and_an_office_pc_name_is_not() {
        let with_helo = |i: i64, login: &str, helo: &str| {
            let (t, mut e) = sent(i, login, "45.1.2.3", "a@friend.example");
            if let EventBody::MessageReceived(m) = &mut e {
                m.identity.client_host = Some(testing::text(helo));
            }
            (t, e)
        };
        let mut h = Harness::<CompromisedAccount>::new();
        let v = h.feed((0..12).map(|i| with_helo(i, "info@shop.example", "User")));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].summary.contains("HELO \"User\""), "{}", v[0].summary);
        assert_eq!(testing::evidence(&v[0], "bot_helo"), Some("User"));

        let mut h = Harness::<CompromisedAccount>::new();
        let office = (0..12).map(|i| with_helo(i, "staff@shop.example", "DESKTOP-7H2K9QL"));
        let windows = (0..12).map(|i| with_helo(i, "boss@shop.example", "WIN-CLJ1B0GQ6JP"));
        let v = h.feed(office.chain(windows));
        let targets: Vec<_> = v.iter().map(|v| v.target.clone()).collect();
        assert_eq!(targets, [Target::Mailbox("boss@shop.example".into())]);
    }

    #[test]
    fn many_client_ips_is_a_warning_naming_the_login() {
        let mut h = Harness::<CompromisedAccount>::new();
        let v = h.feed((0..20).map(|i| {
            sent(
                i,
                "sales@bakery.example",
                &format!("45.0.0.{i}"),
                "a@friend.example",
            )
        }));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Mailbox("sales@bakery.example".into()));
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].action, Action::SuspendOutgoing);
        assert!(v[0].summary.contains("client IPs"), "{}", v[0].summary);
    }

    #[test]
    fn ips_plus_failures_plus_guessing_is_critical() {
        let mut h = Harness::<CompromisedAccount>::new();
        let login = "info@shop.example";
        let mut events: Vec<(i64, EventBody)> = (0..12)
            .map(|i| {
                (
                    testing::at(T0) - 600 + i,
                    EventBody::AuthFailure(AuthFailure {
                        client_ip: Some("203.0.113.9".into()),
                        client_host: None,
                        authenticator: "dovecot_login".into(),
                        set_id: Some(login.into()),
                        reason: None,
                    }),
                )
            })
            .collect();
        for i in 0..30 {
            events.push(sent(
                i,
                login,
                &format!("45.0.1.{i}"),
                &format!("u{i}@d{i}.example"),
            ));
            let mut d = testing::delivery(
                &format!("m{i}"),
                login,
                DeliveryOutcome::Failed,
                "x@y.example",
            );
            d.identity.auth_id = Some(login.into());
            events.push((testing::at(T0) + i * 20, EventBody::Delivery(d)));
        }
        let v = h.feed(events);
        let last = v.last().expect("reported");
        assert_eq!(last.severity, Severity::Critical, "{v:?}");
        assert!(
            last.summary.contains("failed logins before it sent"),
            "{}",
            last.summary
        );
        assert!(
            last.summary.contains("deliveries failed"),
            "{}",
            last.summary
        );
        // The client that guessed the password is to be blocked, once per
        // report of the login.
        let blocks: Vec<_> = v.iter().filter(|v| v.action == Action::BlockIp).collect();
        assert!(!blocks.is_empty(), "{v:?}");
        assert!(blocks.len() <= v.len() - blocks.len(), "{v:?}");
        for b in blocks {
            assert_eq!(b.target, Target::Ip("203.0.113.9".into()));
            assert_eq!(testing::evidence(b, "login"), Some(login));
            assert!(
                b.summary
                    .contains("guessed the password of info@shop.example (12 failed logins)"),
                "{}",
                b.summary
            );
        }
    }

    /// Sends of `login` from one IP, each to its own domain, every one of
    /// them failing: a stale list, or a newsletter to a dead audience.
    fn failing_list(login: &str, n: i64) -> Vec<(i64, EventBody<'static>)> {
        let mut events = Vec::new();
        for i in 0..n {
            events.push(sent(
                i,
                login,
                "192.0.2.20",
                &format!("old{i}@gone{i}.example"),
            ));
            let mut d = testing::delivery(
                &format!("m{i}"),
                login,
                DeliveryOutcome::Failed,
                &format!("old{i}@gone{i}.example"),
            );
            d.identity.auth_id = Some(testing::text(login));
            events.push((testing::at(T0) + i * 20, EventBody::Delivery(d)));
        }
        events
    }

    #[test]
    fn a_stale_list_sent_from_one_place_is_no_stolen_login() {
        // Fan-out to 60 domains and every delivery failing, from the
        // login's own office: no theft (defer-fail-ratio says it fails).
        let mut h = Harness::<CompromisedAccount>::new();
        let v = h.feed(failing_list("news@club.example", 60));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn fan_out_and_failures_make_a_theft_critical() {
        let mut h = Harness::<CompromisedAccount>::new();
        let login = "news@club.example";
        let mut events = failing_list(login, 60);
        // The same login, meanwhile, from six other places.
        events.extend((0..6).map(|i| sent(100 + i, login, &format!("45.0.2.{i}"), "a@b.example")));
        let v = h.feed(events);
        let last = v.last().expect("a theft is reported");
        assert_eq!(last.severity, Severity::Critical, "{v:?}");
        assert!(last.summary.contains("client IPs"), "{}", last.summary);
        assert!(
            last.summary.contains("deliveries failed"),
            "{}",
            last.summary
        );
    }

    #[test]
    fn a_person_sending_from_one_place_is_fine() {
        let mut h = Harness::<CompromisedAccount>::new();
        let v = h.feed((0..40).map(|i| {
            sent(
                i,
                "me@shop.example",
                "192.0.2.10",
                &format!("c{}@client.example", i % 5),
            )
        }));
        assert!(v.is_empty(), "{v:?}");
    }
}
