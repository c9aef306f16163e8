//! A native test harness: run a rule under `cargo test` with an in-memory
//! host that behaves like the real one.
//!
//! ```text
//! use spamward_sdk::testing::{self, Harness};
//! let mut h = Harness::<MyRule>::new();
//! let mut m = testing::received("1abc23-000456-AB", "nobody@host.example");
//! m.identity.local_user = Some("nobody".into());
//! let verdicts = h.feed([(testing::at("2024-05-01 10:00:00"), EventBody::MessageReceived(m))]);
//! assert_eq!(verdicts.len(), 1);
//! ```
//!
//! The host state lives in a thread-local, as the rule does: each test runs on
//! its own thread, so tests don't see each other. Creating a [`Harness`]
//! resets the thread's host and rule.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;

use crate::host::LogLevel;
use crate::rule::Rule;
use crate::runtime;
use crate::state::RuleState;
use crate::types::{
    Delivery, DeliveryOutcome, Event, EventBody, Identity, MessageReceived, Setting, Text,
    Timestamp, Verdict,
};
use spamward_contract::counter::Counters;

/// The in-memory host of one test thread.
#[derive(Debug, Default)]
pub struct MemoryHost {
    /// Windows, distinct sets and kv pairs, with the host's semantics.
    pub state: RuleState,
    /// Settings as the host would serve them (after defaults).
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// `domain-owner` answers.
    pub domain_owners: HashMap<String, String>,
    /// `is-local-domain` answers.
    pub local_domains: HashSet<String>,
    /// Everything the rule logged.
    pub logs: Vec<(LogLevel, String)>,
    /// The event the rule said it is judging.
    pub judging: Option<u64>,
    /// Verdicts reported and not yet returned by [`Harness::feed`].
    pub reported: Vec<Verdict>,
    /// The counters the rule declared at its last `init`.
    pub counters: Counters,
}

/// `is-local-domain` as the host answers it, from the harness's answers.
fn is_local(
    local_domains: &HashSet<String>,
    domain_owners: &HashMap<String, String>,
    domain: &str,
) -> Option<bool> {
    (!local_domains.is_empty() || !domain_owners.is_empty())
        .then(|| local_domains.contains(&domain.to_ascii_lowercase()))
}

thread_local! {
    static HOST: RefCell<MemoryHost> = RefCell::new(MemoryHost::default());
}

fn with_host<T>(f: impl FnOnce(&mut MemoryHost) -> T) -> T {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// Runs a rule natively on events, as the host would.
pub struct Harness<R: Rule> {
    next_id: u64,
    _rule: PhantomData<R>,
}

impl<R: Rule> Harness<R> {
    /// A harness with the rule's default settings.
    pub fn new() -> Self {
        Self::with_settings("{}").expect("default settings are valid")
    }

    /// A harness with settings given as a JSON object (missing keys take
    /// their defaults); `Err` is what the rule's `init` said.
    pub fn with_settings(settings_json: &str) -> Result<Self, String> {
        runtime::reset();
        let settings = merged_settings::<R>(settings_json)?;
        with_host(|h| {
            *h = MemoryHost {
                settings,
                ..MemoryHost::default()
            }
        });
        runtime::init::<R>(settings_json)?;
        Ok(Harness {
            next_id: 1,
            _rule: PhantomData,
        })
    }

    /// Answer `domain-owner(domain)` with `owner` (the domain is then local,
    /// as with the host's `/etc/userdomains`).
    pub fn domain_owner(self, domain: &str, owner: &str) -> Self {
        with_host(|h| {
            let domain = domain.to_ascii_lowercase();
            h.local_domains.insert(domain.clone());
            h.domain_owners.insert(domain, owner.to_owned())
        });
        self
    }

    /// Answer `is-local-domain(domain)` with true (and every domain not
    /// listed with false, instead of "unknown").
    pub fn local_domain(self, domain: &str) -> Self {
        with_host(|h| h.local_domains.insert(domain.to_ascii_lowercase()));
        self
    }

    /// Feed events `(time, body)` as one batch; returns the verdicts. Events
    /// the rule did not subscribe to are dropped, as the host drops them
    /// (they still take an id), after its counters counted them; a counter
    /// crossing is handed over right after its event and ends a call, as in
    /// the host. The rest are encoded and decoded as they are across the
    /// wasm boundary.
    pub fn feed<'a>(
        &mut self,
        events: impl IntoIterator<Item = (Timestamp, EventBody<'a>)>,
    ) -> Vec<Verdict> {
        // Filter and count as the host does, with the same code.
        let subscriptions = R::info().subscriptions;
        let mut batch = Vec::new();
        let mut crossings = Vec::new();
        for (time, body) in events {
            let id = self.next_id;
            self.next_id += 1;
            let event = Event { id, time, body };
            if crate::filter::wants(&subscriptions, &event.body, crate::host::is_local_domain) {
                crate::event::encode(&event, &mut batch);
            }
            with_host(|h| {
                let MemoryHost {
                    counters,
                    state,
                    local_domains,
                    domain_owners,
                    ..
                } = h;
                let local = |d: &str| is_local(local_domains, domain_owners, d);
                counters
                    .observe(state, &event.body, time, local, |c| crossings.push(c))
                    .unwrap_or_else(|e| panic!("the rule's host state is full: {e}"))
            });
            if crossings.is_empty() {
                continue;
            }
            for crossing in crossings.drain(..) {
                crate::event::encode(
                    &Event {
                        id,
                        time,
                        body: crossing.to_event(),
                    },
                    &mut batch,
                );
            }
            runtime::on_events::<R>(&batch);
            batch.clear();
        }
        runtime::on_events::<R>(&batch);
        with_host(|h| std::mem::take(&mut h.reported))
    }

    /// Reloads the rule with new settings, as the host does on a settings
    /// change or a new version: guest memory starts over, host state stays.
    pub fn reload(&mut self, settings_json: &str) -> Result<(), String> {
        let settings = merged_settings::<R>(settings_json)?;
        with_host(|h| {
            h.settings = settings;
            h.counters = Counters::new();
        });
        runtime::reset();
        runtime::init::<R>(settings_json)
    }

    /// Inspect the in-memory host (state, logs).
    pub fn host<T>(&self, f: impl FnOnce(&MemoryHost) -> T) -> T {
        HOST.with(|h| f(&h.borrow()))
    }
}

impl<R: Rule> Default for Harness<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// The settings object the host would serve: defaults overlaid with `json`.
fn merged_settings<R: Rule>(
    json: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut merged = match serde_json::to_value(R::Settings::default()) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let given: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("invalid settings JSON: {e}"))?;
    if let serde_json::Value::Object(given) = given {
        merged.extend(given);
    }
    Ok(merged)
}

/// Parses `YYYY-MM-DD HH:MM:SS` (as Exim writes it) into a [`Timestamp`].
///
/// # Panics
/// On a malformed time: this is for tests.
pub fn at(text: &str) -> Timestamp {
    let parse = |s: &str| -> i64 { s.parse().unwrap_or_else(|_| panic!("bad time {text:?}")) };
    let (date, time) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("bad time {text:?}"));
    let d: Vec<i64> = date.split('-').map(parse).collect();
    let t: Vec<i64> = time.split(':').map(parse).collect();
    assert!(d.len() == 3 && t.len() == 3, "bad time {text:?}");
    // days_from_civil (Howard Hinnant), as the host computes it.
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1])
    } else {
        (d[0], d[1])
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]
}

/// The value of evidence `key` in `verdict`.
pub fn evidence<'a>(verdict: &'a Verdict, key: &str) -> Option<&'a str> {
    verdict
        .evidence
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// An owned [`Text`], for events built in tests.
pub fn text(s: &str) -> Text<'static> {
    s.to_owned().into()
}

/// An identity with only the envelope sender (and its domain) set.
pub fn sender(address: &str) -> Identity<'static> {
    let address = address.trim_start_matches('<').trim_end_matches('>');
    Identity {
        sender: (!address.is_empty()).then(|| text(address)),
        sender_domain: address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase().into()),
        ..Identity::default()
    }
}

/// A received message from `from` (use `""` for a bounce) to one recipient.
pub fn received(message_id: &str, from: &str) -> MessageReceived<'static> {
    MessageReceived {
        message_id: text(message_id),
        identity: sender(from),
        protocol: None,
        size: None,
        recipients: vec![text("someone@remote.example")],
        subject: None,
        bounce: from.trim_matches(|c| c == '<' || c == '>').is_empty(),
        bounce_of: None,
    }
}

/// A configuration setting (`value: None` = present but unset).
pub fn setting(
    source: &str,
    scope: Option<&str>,
    key: &str,
    value: Option<&str>,
) -> Setting<'static> {
    Setting {
        source: text(source),
        scope: scope.map(text),
        key: text(key),
        value: value.map(text),
    }
}

/// A delivery attempt of `message_id` from `from` to `recipient`.
pub fn delivery(
    message_id: &str,
    from: &str,
    outcome: DeliveryOutcome,
    recipient: &str,
) -> Delivery<'static> {
    Delivery {
        message_id: text(message_id),
        outcome,
        recipient: text(recipient),
        router: None,
        transport: None,
        remote_host: None,
        remote_ip: None,
        error: None,
        identity: sender(from),
    }
}

/// The native stand-ins for the host imports ([`crate::host`] calls these
/// when not compiled to wasm).
#[doc(hidden)]
pub mod native {
    use super::{LogLevel, with_host};

    pub fn log(level: LogLevel, message: &str) {
        with_host(|h| h.logs.push((level, message.to_owned())))
    }
    pub fn judging(event: u64) {
        with_host(|h| h.judging = Some(event))
    }
    pub fn report(verdict: crate::types::Verdict) {
        with_host(|h| h.reported.push(verdict))
    }
    // A full state traps the rule in the host; here it fails the test.
    fn full<T>(r: Result<T, crate::state::StateFull>) -> T {
        r.unwrap_or_else(|e| panic!("the rule's host state is full: {e}"))
    }
    pub fn window_add(key: &str, at: i64, window: u32, n: u32) -> u64 {
        full(with_host(|h| h.state.window_add(key, at, window, n)))
    }
    pub fn window_total(key: &str, at: i64, window: u32) -> u64 {
        with_host(|h| h.state.window_total(key, at, window))
    }
    pub fn distinct_add(key: &str, member: &str, at: i64, window: u32) -> u32 {
        full(with_host(|h| h.state.distinct_add(key, member, at, window)))
    }
    pub fn distinct_count(key: &str, at: i64, window: u32) -> u32 {
        with_host(|h| h.state.distinct_count(key, at, window))
    }
    pub fn kv_get(key: &str) -> Option<String> {
        with_host(|h| h.state.kv_get(key))
    }
    pub fn kv_set(key: &str, value: Option<&str>) {
        full(with_host(|h| h.state.kv_set(key, value)))
    }
    pub fn setting(name: &str) -> Option<String> {
        with_host(|h| h.settings.get(name).map(|v| v.to_string()))
    }
    pub fn domain_owner(domain: &str) -> Option<String> {
        with_host(|h| h.domain_owners.get(&domain.to_ascii_lowercase()).cloned())
    }
    pub fn is_local_domain(domain: &str) -> Option<bool> {
        with_host(|h| super::is_local(&h.local_domains, &h.domain_owners, domain))
    }
    pub fn declare_counter(spec: &crate::counter::CounterSpec) -> Result<(), String> {
        with_host(|h| h.counters.declare(spec.clone()).map_err(|e| e.to_string()))
    }
    pub fn counter_total(name: &str, key: &str, at: i64) -> u64 {
        with_host(|h| h.counters.total(&mut h.state, name, key, at))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reports every message it is given with a remote recipient.
    struct Outbound;

    impl Rule for Outbound {
        type Settings = crate::NoSettings;
        fn info() -> crate::Info {
            crate::Info::new("outbound", "says which messages leave").subscribe_where(
                crate::types::EventKind::MessageReceived,
                [crate::filter::remote_recipient()],
            )
        }
        fn new(_: crate::NoSettings) -> Result<Self, String> {
            Ok(Outbound)
        }
        fn on_message_received(&mut self, cx: &mut crate::Context<'_>, m: &MessageReceived<'_>) {
            cx.report(crate::Finding::new(
                crate::types::Severity::Info,
                crate::types::Target::Message(m.message_id.to_string()),
                crate::types::Action::Alert,
                "leaves",
            ));
        }
    }

    #[test]
    fn the_harness_filters_with_the_hosts_local_domains() {
        let mut m = received("m1", "x@stranger.example");
        m.recipients = vec!["a@far.example".into()];
        let t = at("2024-05-01 10:00:00");
        let mut h = Harness::<Outbound>::new();
        let verdicts = h.feed([(t, EventBody::MessageReceived(m.clone()))]);
        assert!(
            verdicts.is_empty(),
            "no local domains known: none is remote"
        );
        let mut h = Harness::<Outbound>::new().local_domain("shop.example");
        let verdicts = h.feed([(t, EventBody::MessageReceived(m.clone()))]);
        assert_eq!(verdicts.len(), 1);
        m.recipients = vec!["info@shop.example".into()];
        assert!(h.feed([(t, EventBody::MessageReceived(m))]).is_empty());
    }

    #[test]
    fn at_matches_unix_time() {
        assert_eq!(at("1970-01-01 00:00:00"), 0);
        assert_eq!(at("2019-04-21 04:33:14"), 1_555_821_194);
        assert_eq!(at("2024-02-29 12:00:00"), 1_709_208_000);
    }
}
