//! Counters the host keeps for a rule (interface 0.2.2; steps 0.3.0).
//!
//! A check of the form "N of something per key per window" need not see
//! every event: declare a [`Counter`] in [`crate::Rule::counters`] and the
//! host counts the matching events itself, calling the rule only when a
//! key's total reaches the threshold ([`crate::Rule::on_counter`]). On a
//! busy server that is a handful of calls instead of one per message, and
//! the totals are host state: they survive a reload and a trap.
//!
//! ```text
//! fn counters(&self) -> Vec<Counter> {
//!     vec![counter::of("sent", filter::all(EventKind::MessageReceived), IdentityField::SenderDomain)
//!         .count(CountOf::Recipients)
//!         .window(3600)
//!         .threshold(500)]
//! }
//! fn on_counter(&mut self, cx: &mut Context<'_>, c: &Crossing) {
//!     // c.key sent c.total emails in the last hour
//! }
//! ```

pub use spamward_contract::counter::{CountOf, CounterSpec, Crossing};

use crate::types::{IdentityField, Subscription, Timestamp};

/// A counter being declared; built with chained calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter(pub(crate) CounterSpec);

/// A counter called `name` of the events `events` matches, kept per value
/// of `per`: one per event, over an hour, telling the rule nothing until
/// [`Counter::threshold`] is set.
pub fn of(name: &str, events: Subscription, per: IdentityField) -> Counter {
    Counter(CounterSpec {
        name: name.to_owned(),
        events,
        per,
        count: CountOf::Events,
        window_seconds: 3600,
        thresholds: Vec::new(),
        then_every: 0,
        step_seconds: 0,
    })
}

impl Counter {
    /// What each event adds (default: one).
    pub fn count(mut self, count: CountOf) -> Self {
        self.0.count = count;
        self
    }

    /// The sliding window, in seconds of event time (default: an hour).
    pub fn window(mut self, seconds: u32) -> Self {
        self.0.window_seconds = seconds;
        self
    }

    /// Keep the window in steps of `seconds` (default: to the second): an
    /// event counts from the start of its step and leaves the window with
    /// it, so a week counted by the hour holds at most 168 entries per key
    /// however busy the key, at the price of leaving up to a step early.
    pub fn step(mut self, seconds: u32) -> Self {
        self.0.step_seconds = seconds;
        self
    }

    /// Tell the rule when a key's total reaches `total` (a further call
    /// adds a higher line: a warning and a critical level, say).
    pub fn threshold(mut self, total: u64) -> Self {
        self.0.thresholds.push(total);
        self
    }

    /// Past the last threshold, tell the rule again each time the total
    /// grows by `step`.
    pub fn then_every(mut self, step: u64) -> Self {
        self.0.then_every = step;
        self
    }

    /// The spec the host is given.
    pub fn spec(&self) -> &CounterSpec {
        &self.0
    }
}

/// Counter `name`'s total for `key` over its window ending at `at`: the
/// events counted so far, up to the crossing being judged.
pub fn total(name: &str, key: &str, at: Timestamp) -> u64 {
    crate::host::counter_total(name, key, at)
}
