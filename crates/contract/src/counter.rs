//! Counters the host keeps for a rule (interface 0.2.2): the one
//! implementation of what a counter counts and when it tells the rule.
//!
//! Most checks are "N of something per key per window": messages per
//! sending domain an hour, recipients per login a day, delivery attempts
//! per domain. Counted in the rule, every message of a busy server crosses
//! the wasm boundary and makes a host call, only for the rule to find that
//! nothing crossed a line. A [`CounterSpec`] lets the host do that counting
//! and call the rule only when a total reaches its threshold: on a busy
//! server that is a handful of events instead of one per message.
//!
//! The totals live in the rule's [`RuleState`] (under keys a rule's own
//! calls cannot spell, see [`state_key`]), so they share its quota, its
//! expiry and its snapshot: a daemon restart or a rule reload keeps them.
//! The host runs this module on the events a rule does not see; the SDK's
//! native harness runs it on the events a test feeds, so a rule behaves
//! under `cargo test` as it does in the host.

use std::fmt;

use crate::event::{EventBody, Extension, Text, Timestamp, extension_kind};
use crate::filter::{self, IdentityField, Subscription};
use crate::state::{RuleState, StateFull};

/// What a counter adds up for each event it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOf {
    /// One per event.
    Events,
    /// The recipients of a received or queued message (at least one); one
    /// for other events.
    Recipients,
    /// Distinct values of an identity field.
    DistinctIdentity(IdentityField),
    /// Distinct recipient domains.
    DistinctRecipientDomains,
    /// Distinct (message id, recipient) pairs.
    DistinctMessageRecipients,
}

impl CountOf {
    fn is_distinct(self) -> bool {
        !matches!(self, CountOf::Events | CountOf::Recipients)
    }
}

/// A counter a rule asks the host to keep (`counter-spec` in the WIT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSpec {
    /// Names it in crossings and in [`Counters::total`].
    pub name: String,
    /// The events it counts.
    pub events: Subscription,
    /// The identity field totals are kept per.
    pub per: IdentityField,
    /// What an event adds.
    pub count: CountOf,
    /// The sliding window, in seconds.
    pub window_seconds: u32,
    /// The totals at which the rule is told, ascending; empty: never.
    pub thresholds: Vec<u64>,
    /// Past the last threshold, tell the rule again at each further step
    /// of this size; 0: not again.
    pub then_every: u64,
    /// The window is kept in steps of this many seconds (0 or 1: to the
    /// second): an event counts from the start of its step and leaves the
    /// window with it, so a long window of a busy key holds one entry per
    /// step. (0.3.0)
    pub step_seconds: u32,
}

impl CounterSpec {
    /// `at` at the start of its step.
    fn stepped(&self, at: Timestamp) -> Timestamp {
        match i64::from(self.step_seconds) {
            0 | 1 => at,
            step => at - at.rem_euclid(step),
        }
    }
}

/// Why a counter cannot be declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// A key's total that reached a counter's threshold (or a further step):
/// what the rule is handed, as an `extension` event of kind
/// [`extension_kind::COUNTER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    /// The counter's name.
    pub counter: String,
    /// The key whose total crossed.
    pub key: String,
    /// The total after the event.
    pub total: u64,
    /// The highest line the event took the total over: one of the
    /// thresholds, or a step past the last.
    pub threshold: u64,
    /// The counter's window.
    pub window_seconds: u32,
    /// The message id of the event that crossed, if it had one.
    pub message_id: Option<String>,
    /// The envelope sender of the event that crossed, if it had one.
    pub sender: Option<String>,
    /// The error of the delivery that crossed, if it had one.
    pub error: Option<String>,
}

impl Crossing {
    /// The event the rule is handed.
    pub fn to_event(&self) -> EventBody<'static> {
        let field = |name: &str, value: String| (Text::from(name.to_owned()), Text::from(value));
        let mut fields = vec![
            field("counter", self.counter.clone()),
            field("key", self.key.clone()),
            field("total", self.total.to_string()),
            field("threshold", self.threshold.to_string()),
            field("window_seconds", self.window_seconds.to_string()),
        ];
        for (name, value) in [
            ("message_id", &self.message_id),
            ("sender", &self.sender),
            ("error", &self.error),
        ] {
            if let Some(v) = value {
                fields.push(field(name, v.clone()));
            }
        }
        EventBody::Extension(Extension {
            kind: Text::from(extension_kind::COUNTER.to_owned()),
            fields,
        })
    }

    /// The crossing an extension event carries, if it is one.
    pub fn from_extension(e: &Extension<'_>) -> Option<Crossing> {
        if e.kind != extension_kind::COUNTER {
            return None;
        }
        Some(Crossing {
            counter: e.field("counter")?.to_owned(),
            key: e.field("key")?.to_owned(),
            total: e.field("total")?.parse().ok()?,
            threshold: e.field("threshold")?.parse().ok()?,
            window_seconds: e.field("window_seconds")?.parse().ok()?,
            message_id: e.field("message_id").map(str::to_owned),
            sender: e.field("sender").map(str::to_owned),
            error: e.field("error").map(str::to_owned),
        })
    }
}

/// Counters one rule may declare. The host matches every event against each
/// of them outside the rule's CPU budget, so a rule must not be able to
/// make that unbounded.
pub const MAX_COUNTERS: usize = 64;

/// The longest counter name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Every counter one rule declared.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    specs: Vec<CounterSpec>,
    /// For each spec, the first spec counting the same events (itself if
    /// none before it does): counters that share a subscription, as a
    /// rule's per-hour and per-day pairs do, match each event once.
    first_alike: Vec<usize>,
    /// [`EventKind::bit`]s of the kinds any counter counts.
    kinds: u32,
    /// The state key being built (reused: no allocation per event).
    key: String,
    /// A (message id, recipient) member being built.
    member: String,
}

/// The [`RuleState`] key of counter `name`'s total for `key`. A rule's own
/// keys come through WIT strings and the SDK's key builders; the control
/// character keeps the two apart.
pub fn state_key(buf: &mut String, name: &str, key: &str) {
    buf.clear();
    buf.push('\u{1}');
    buf.push_str(name);
    buf.push('\u{1}');
    buf.push_str(key);
}

/// The highest line a total that went from `before` to `total` crossed:
/// one of `thresholds`, or a step of `then_every` past the last.
fn crossed(before: u64, total: u64, thresholds: &[u64], then_every: u64) -> Option<u64> {
    let last = *thresholds.last()?;
    let step = |x: u64| x.checked_sub(last).map(|past| past / then_every);
    if then_every > 0 && total > last && step(total) > step(before) {
        return Some(last + step(total)? * then_every);
    }
    thresholds
        .iter()
        .rev()
        .find(|&&t| before < t && t <= total)
        .copied()
}

impl Counters {
    /// No counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `spec`; counters of one name share totals, so they must agree on
    /// what they count and over which window.
    pub fn declare(&mut self, spec: CounterSpec) -> Result<(), SpecError> {
        if spec.name.is_empty() || spec.name.len() > MAX_NAME_BYTES {
            return Err(SpecError(format!(
                "a counter needs a name of 1 to {MAX_NAME_BYTES} bytes"
            )));
        }
        if self.specs.len() >= MAX_COUNTERS {
            return Err(SpecError(format!(
                "counter {:?}: a rule may declare at most {MAX_COUNTERS} counters",
                spec.name
            )));
        }
        if spec.thresholds.first() == Some(&0) {
            return Err(SpecError(format!(
                "counter {:?}: a threshold of 0 is crossed by nothing",
                spec.name
            )));
        }
        if !spec.thresholds.is_sorted_by(|a, b| a < b) {
            return Err(SpecError(format!(
                "counter {:?}: thresholds must be ascending",
                spec.name
            )));
        }
        if spec.window_seconds == 0 {
            return Err(SpecError(format!(
                "counter {:?}: window_seconds must be at least 1",
                spec.name
            )));
        }
        if let Some(other) = self.specs.iter().find(|s| s.name == spec.name)
            && (other.count != spec.count
                || other.window_seconds != spec.window_seconds
                || other.step_seconds.max(1) != spec.step_seconds.max(1))
        {
            return Err(SpecError(format!(
                "counter {:?} is declared twice with different counts, windows or steps",
                spec.name
            )));
        }
        self.kinds |= spec.events.kind.bit();
        let alike = self.specs.iter().position(|s| s.events == spec.events);
        self.first_alike.push(alike.unwrap_or(self.specs.len()));
        self.specs.push(spec);
        Ok(())
    }

    /// The declared counters, in order.
    pub fn specs(&self) -> &[CounterSpec] {
        &self.specs
    }

    /// Whether no counter is declared.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// [`EventKind::bit`]s of the kinds counted.
    pub fn kinds(&self) -> u32 {
        self.kinds
    }

    /// Counts `body` at `at` in every counter that matches it, and hands
    /// each crossing to `crossed`. `is_local_domain` answers filters as for
    /// subscriptions. On a full state the event is counted no further.
    pub fn observe(
        &mut self,
        state: &mut RuleState,
        body: &EventBody<'_>,
        at: Timestamp,
        is_local_domain: impl Fn(&str) -> Option<bool>,
        mut on_crossing: impl FnMut(Crossing),
    ) -> Result<(), StateFull> {
        if self.kinds & body.kind().bit() == 0 {
            return Ok(());
        }
        let Some(identity) = body.identity() else {
            return Ok(());
        };
        let mut matched = [None::<bool>; MAX_COUNTERS];
        for (spec, &alike) in self.specs.iter().zip(&self.first_alike) {
            // The key first: most events lack most keys, and it is cheaper
            // than the filters.
            let Some(key) = identity.field(spec.per) else {
                continue;
            };
            let wanted = *matched[alike].get_or_insert_with(|| {
                spec.events.kind == body.kind()
                    && filter::wants(std::slice::from_ref(&spec.events), body, &is_local_domain)
            });
            if !wanted {
                continue;
            }
            state_key(&mut self.key, &spec.name, key);
            let (window, at) = (spec.window_seconds, spec.stepped(at));
            let (before, total) = if spec.count.is_distinct() {
                let (mut before, mut total) = (None, 0);
                let key = &self.key;
                each_member(spec.count, body, &mut self.member, |member| {
                    let (count, new) = state.distinct_insert(key, member, at, window)?;
                    before.get_or_insert(count - u32::from(new));
                    total = u64::from(count);
                    Ok(())
                })?;
                // No member (no recipient): nothing changed, nothing crossed.
                (before.map_or(total, u64::from), total)
            } else {
                let n = match (spec.count, body) {
                    (CountOf::Recipients, EventBody::MessageReceived(m)) => m.recipients.len(),
                    (CountOf::Recipients, EventBody::QueuedMessage(q)) => q.recipients.len(),
                    _ => 1,
                };
                let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
                let total = state.window_add(&self.key, at, window, n)?;
                (total - u64::from(n), total)
            };
            if let Some(threshold) = crossed(before, total, &spec.thresholds, spec.then_every) {
                on_crossing(Crossing {
                    counter: spec.name.clone(),
                    key: key.to_owned(),
                    total,
                    threshold,
                    window_seconds: window,
                    message_id: body.message_id().map(str::to_owned),
                    sender: identity.sender.as_deref().map(str::to_owned),
                    error: match body {
                        EventBody::Delivery(d) => d.error.as_deref().map(str::to_owned),
                        _ => None,
                    },
                });
            }
        }
        Ok(())
    }

    /// Counter `name`'s total for `key` over `(at - window, at]`; 0 for an
    /// unknown counter or key.
    pub fn total(&mut self, state: &mut RuleState, name: &str, key: &str, at: Timestamp) -> u64 {
        let Some(spec) = self.specs.iter().find(|s| s.name == name) else {
            return 0;
        };
        let (count, window, at) = (spec.count, spec.window_seconds, spec.stepped(at));
        state_key(&mut self.key, name, key);
        if count.is_distinct() {
            u64::from(state.distinct_count(&self.key, at, window))
        } else {
            state.window_total(&self.key, at, window)
        }
    }
}

/// Hands `add` each distinct member an event adds to a counter of
/// `count`, built in `buf` (reused: no allocation per event).
fn each_member(
    count: CountOf,
    body: &EventBody<'_>,
    buf: &mut String,
    mut add: impl FnMut(&str) -> Result<(), StateFull>,
) -> Result<(), StateFull> {
    let recipients: &[Text<'_>] = match body {
        EventBody::MessageReceived(m) => &m.recipients,
        EventBody::QueuedMessage(q) => &q.recipients,
        EventBody::Delivery(d) => std::slice::from_ref(&d.recipient),
        _ => &[],
    };
    match count {
        CountOf::DistinctIdentity(field) => {
            if let Some(value) = body.identity().and_then(|id| id.field(field)) {
                add(value)?;
            }
        }
        CountOf::DistinctRecipientDomains => {
            for r in recipients {
                let domain = r.rsplit_once('@').map_or("", |(_, d)| d);
                if !domain.is_empty() {
                    buf.clear();
                    buf.push_str(domain);
                    buf.make_ascii_lowercase();
                    add(buf)?;
                }
            }
        }
        CountOf::DistinctMessageRecipients => {
            let id = body.message_id().unwrap_or("");
            for r in recipients {
                buf.clear();
                buf.push_str(id);
                buf.push(' ');
                buf.push_str(r);
                add(buf)?;
            }
        }
        CountOf::Events | CountOf::Recipients => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Delivery, DeliveryOutcome, EventKind, Identity, MessageReceived};

    fn received(id: &str, domain: &str, recipients: usize) -> EventBody<'static> {
        EventBody::MessageReceived(MessageReceived {
            message_id: Text::from(id.to_owned()),
            identity: Identity {
                sender: Some(Text::from(format!("info@{domain}"))),
                sender_domain: Some(Text::from(domain.to_owned())),
                ..Identity::default()
            },
            recipients: (0..recipients)
                .map(|i| Text::from(format!("r{i}@d{i}.example")))
                .collect(),
            ..MessageReceived::default()
        })
    }

    fn per_domain(threshold: u64, then_every: u64) -> CounterSpec {
        let thresholds = if threshold == 0 {
            vec![]
        } else {
            vec![threshold]
        };
        CounterSpec {
            name: "sent".into(),
            events: filter::all(EventKind::MessageReceived),
            per: IdentityField::SenderDomain,
            count: CountOf::Recipients,
            window_seconds: 3600,
            thresholds,
            then_every,
            step_seconds: 0,
        }
    }

    fn run(
        counters: &mut Counters,
        state: &mut RuleState,
        events: &[(i64, EventBody<'_>)],
    ) -> Vec<Crossing> {
        let mut out = Vec::new();
        for (at, body) in events {
            counters
                .observe(state, body, *at, |_| None, |c| out.push(c))
                .unwrap();
        }
        out
    }

    #[test]
    fn a_total_is_told_once_at_its_threshold_and_then_at_each_step() {
        let mut c = Counters::new();
        c.declare(per_domain(10, 10)).unwrap();
        let mut state = RuleState::new();
        let events: Vec<_> = (0..25)
            .map(|i| (i, received(&format!("m{i}"), "shop.example", 1)))
            .collect();
        let crossings = run(&mut c, &mut state, &events);
        let totals: Vec<(u64, u64)> = crossings.iter().map(|c| (c.total, c.threshold)).collect();
        assert_eq!(totals, [(10, 10), (20, 20)]);
        assert_eq!(crossings[0].key, "shop.example");
        assert_eq!(crossings[0].message_id.as_deref(), Some("m9"));
        assert_eq!(crossings[0].sender.as_deref(), Some("info@shop.example"));
        assert_eq!(c.total(&mut state, "sent", "shop.example", 24), 25);
        // An hour after the last message, the window is empty.
        assert_eq!(c.total(&mut state, "sent", "shop.example", 24 + 3600), 0);
    }

    #[test]
    fn a_stepped_window_holds_an_entry_per_step_and_leaves_with_its_step() {
        const WEEK: u32 = 7 * 86_400;
        let mut c = Counters::new();
        c.declare(CounterSpec {
            window_seconds: WEEK,
            step_seconds: 3600,
            ..per_domain(1, 0)
        })
        .unwrap();
        let mut state = RuleState::new();
        // 300 messages spread over one hour (10:00:00 to 10:59:48).
        let hour = 100 * 3600;
        let events: Vec<_> = (0..300)
            .map(|i| (hour + i * 12, received(&format!("m{i}"), "shop.example", 1)))
            .collect();
        let crossings = run(&mut c, &mut state, &events);
        assert_eq!(crossings.len(), 1, "the first message of the week");
        let one_entry = state.bytes();
        run(
            &mut c,
            &mut state,
            &[(hour + 3599, received("m", "shop.example", 1))],
        );
        assert_eq!(state.bytes(), one_entry, "the same step: no new entry");
        assert_eq!(
            c.total(&mut state, "sent", "shop.example", hour + 3599),
            301
        );
        // The hour leaves the window a week after its start, not after its
        // last message.
        let week = i64::from(WEEK);
        assert_eq!(
            c.total(&mut state, "sent", "shop.example", hour + week - 1),
            301
        );
        assert_eq!(c.total(&mut state, "sent", "shop.example", hour + week), 0);
        // One name, one step.
        let err = c
            .declare(CounterSpec {
                window_seconds: WEEK,
                ..per_domain(1, 0)
            })
            .unwrap_err();
        assert!(err.to_string().contains("steps"), "{err}");
    }

    #[test]
    fn recipients_count_and_a_jump_past_the_threshold_is_one_crossing() {
        let mut c = Counters::new();
        c.declare(per_domain(10, 0)).unwrap();
        let mut state = RuleState::new();
        let crossings = run(&mut c, &mut state, &[(0, received("m1", "a.example", 25))]);
        assert_eq!(crossings.len(), 1);
        assert_eq!(crossings[0].total, 25);
        // Past it with no step: told no more.
        assert!(run(&mut c, &mut state, &[(1, received("m2", "a.example", 25))]).is_empty());
    }

    #[test]
    fn filters_decide_what_counts_and_keys_are_kept_apart() {
        let mut c = Counters::new();
        let mut spec = per_domain(2, 0);
        spec.events =
            filter::all(EventKind::MessageReceived).all_of([filter::has(IdentityField::AuthId)]);
        c.declare(spec).unwrap();
        let mut state = RuleState::new();
        let mut authed = received("m1", "a.example", 1);
        if let EventBody::MessageReceived(m) = &mut authed {
            m.identity.auth_id = Some(Text::from("info@a.example".to_owned()));
        }
        let crossings = run(
            &mut c,
            &mut state,
            &[
                (0, received("m0", "a.example", 1)),
                (1, authed.clone()),
                (2, received("x", "b.example", 5)),
                (3, authed),
            ],
        );
        assert_eq!(crossings.len(), 1);
        assert_eq!(crossings[0].total, 2);
        assert_eq!(c.total(&mut state, "sent", "b.example", 3), 0);
    }

    #[test]
    fn counters_sharing_a_subscription_each_count_what_they_count() {
        let mut c = Counters::new();
        let hourly = per_domain(3, 0);
        let daily = CounterSpec {
            name: "daily".into(),
            window_seconds: 86_400,
            count: CountOf::Events,
            ..per_domain(2, 0)
        };
        let authed = CounterSpec {
            name: "authed".into(),
            events: filter::all(EventKind::MessageReceived)
                .all_of([filter::has(IdentityField::AuthId)]),
            ..per_domain(1, 0)
        };
        for spec in [hourly, daily, authed] {
            c.declare(spec).unwrap();
        }
        let mut state = RuleState::new();
        let events: Vec<_> = (0..2)
            .map(|i| (i, received(&format!("m{i}"), "shop.example", 2)))
            .collect();
        let crossings = run(&mut c, &mut state, &events);
        let told: Vec<(&str, u64)> = crossings
            .iter()
            .map(|c| (c.counter.as_str(), c.total))
            .collect();
        assert_eq!(told, [("sent", 4), ("daily", 2)]);
        assert_eq!(c.total(&mut state, "authed", "shop.example", 1), 0);
    }

    #[test]
    fn distinct_attempts_count_a_retry_once() {
        let mut c = Counters::new();
        c.declare(CounterSpec {
            name: "attempts".into(),
            events: filter::all(EventKind::Delivery),
            per: IdentityField::SenderDomain,
            count: CountOf::DistinctMessageRecipients,
            window_seconds: 3600,
            thresholds: vec![],
            then_every: 0,
            step_seconds: 0,
        })
        .unwrap();
        let mut state = RuleState::new();
        let delivery = |id: &str, rcpt: &str| {
            EventBody::Delivery(Delivery {
                message_id: Text::from(id.to_owned()),
                recipient: Text::from(rcpt.to_owned()),
                outcome: DeliveryOutcome::Deferred,
                identity: Identity {
                    sender_domain: Some(Text::from("a.example".to_owned())),
                    ..Identity::default()
                },
                router: None,
                transport: None,
                remote_host: None,
                remote_ip: None,
                error: None,
            })
        };
        run(
            &mut c,
            &mut state,
            &[
                (0, delivery("m1", "x@r.example")),
                (60, delivery("m1", "x@r.example")),
                (90, delivery("m2", "x@r.example")),
            ],
        );
        assert_eq!(c.total(&mut state, "attempts", "a.example", 90), 2);
    }

    #[test]
    fn one_name_shares_totals_only_with_a_matching_declaration() {
        let mut c = Counters::new();
        c.declare(per_domain(5, 0)).unwrap();
        let mut owner = per_domain(5, 0);
        owner.per = IdentityField::Owner;
        c.declare(owner).unwrap();
        let mut other_window = per_domain(5, 0);
        other_window.window_seconds = 60;
        assert!(c.declare(other_window).is_err());
        let mut no_window = per_domain(5, 0);
        no_window.name = "x".into();
        no_window.window_seconds = 0;
        assert!(c.declare(no_window).is_err());
        let mut unsorted = per_domain(5, 0);
        unsorted.name = "y".into();
        unsorted.thresholds = vec![10, 5];
        assert!(c.declare(unsorted).is_err());
    }

    #[test]
    fn a_rule_cannot_make_the_hosts_counting_unbounded() {
        let mut c = Counters::new();
        for i in 0..MAX_COUNTERS {
            let mut spec = per_domain(5, 0);
            spec.name = format!("c{i}");
            c.declare(spec).unwrap();
        }
        let mut one_more = per_domain(5, 0);
        one_more.name = "one-more".into();
        let err = c.declare(one_more).unwrap_err();
        assert!(err.to_string().contains("at most 64 counters"), "{err}");
        let mut long = per_domain(5, 0);
        long.name = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(Counters::new().declare(long).is_err());
    }

    #[test]
    fn a_jump_over_two_thresholds_names_the_higher_one() {
        let mut c = Counters::new();
        let mut spec = per_domain(0, 0);
        spec.thresholds = vec![10, 20];
        c.declare(spec).unwrap();
        let mut state = RuleState::new();
        let crossings = run(
            &mut c,
            &mut state,
            &[
                (0, received("m1", "a.example", 9)),
                (1, received("m2", "a.example", 30)),
            ],
        );
        assert_eq!(crossings.len(), 1);
        assert_eq!((crossings[0].total, crossings[0].threshold), (39, 20));
    }

    #[test]
    fn a_crossing_survives_the_trip_through_an_extension_event() {
        let crossing = Crossing {
            counter: "sent".into(),
            key: "shop.example".into(),
            total: 500,
            threshold: 500,
            window_seconds: 3600,
            message_id: Some("1abc".into()),
            sender: None,
            error: Some("550 no such user".into()),
        };
        let EventBody::Extension(e) = crossing.to_event() else {
            panic!("an extension event")
        };
        assert_eq!(Crossing::from_extension(&e), Some(crossing));
    }
}
