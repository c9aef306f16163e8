//! Running one rule: its live instance, its host state, and its health.
//!
//! A trap (CPU budget exceeded, memory cap hit, full state, panic,
//! `unreachable`) poisons the instance: it is dropped and re-created from
//! the pre-instantiated handle, and the rule's host state carries over.
//!
//! A rule built for interface 0.2.1 says which event it is judging and hands
//! each verdict over as it makes it, so a trap costs one event: the verdicts
//! of the events before it are kept, the event at fault is skipped and
//! counted, and the events after it are judged by a fresh instance. Nothing
//! is judged twice: the host's windows already counted what the earlier
//! events added. A rule built for 0.2.0 loses the rest of the batch, counted
//! as skipped.
//!
//! A rule that fails `QUARANTINE_AFTER` times in a row (a batch with a trap
//! is a failure) is quarantined: skipped for a number of batches that
//! doubles each time it fails again. The other rules never notice.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use crate::bindings::Guest;
use crate::convert::verdict;
use crate::failure::RuleFailure;
use crate::rule::LoadedRule;
use crate::sandbox::{Limits, MAX_VERDICTS_PER_BATCH, StoreData};
use spamward_contract::counter::Crossing;
use spamward_contract::event::EventBody;
use spamward_contract::state::RuleState;
use spamward_contract::verdict::Verdict;
use spamward_model::HostLookups;

/// Consecutive failed batches before a rule is quarantined; also the most
/// traps one batch may cost before its remaining events are skipped.
pub const QUARANTINE_AFTER: u32 = 3;
/// Batches skipped on the first quarantine; doubles each time.
const FIRST_BACKOFF: u64 = 16;
const MAX_BACKOFF: u64 = 4096;

/// A rule's instance and everything that outlives it.
pub struct RuleRunner {
    rule: Arc<LoadedRule>,
    settings_json: String,
    settings: Arc<serde_json::Map<String, serde_json::Value>>,
    lookups: Arc<HostLookups>,
    limits: Limits,
    live: Option<(Store<StoreData>, Guest)>,
    /// Held here while no instance is live.
    parked_state: Option<RuleState>,
    /// [`spamward_contract::event::EventKind::bit`]s of the kinds the
    /// rule's counters count (declared by its last `init`).
    counted_kinds: u32,
    health: Health,
}

/// How a rule has fared.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Health {
    /// Batches run successfully.
    pub batches: u64,
    /// Events judged.
    pub events: u64,
    /// Verdicts returned.
    pub verdicts: u64,
    /// Traps and failed starts in all.
    pub failures: u64,
    /// Failed batches in a row.
    pub consecutive_failures: u32,
    /// Times quarantined.
    pub quarantines: u32,
    /// Events not judged: the event a trap happened on, the rest of a batch
    /// a rule could not resume, and batches skipped in quarantine.
    pub skipped_events: u64,
    /// Verdicts dropped because a batch handed over more than
    /// [`MAX_VERDICTS_PER_BATCH`].
    pub dropped_verdicts: u64,
    /// Events the rule's counters could not count: its host state was
    /// full.
    pub uncounted_events: u64,
    /// Batch number until which the rule is skipped.
    #[serde(skip)]
    pub quarantined_until: Option<u64>,
    #[serde(skip)]
    backoff: u64,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// Time spent on the rule: its calls, and the host counting its
    /// counters (its subscriptions are tested where batches are built).
    #[serde(serialize_with = "micros")]
    pub busy: Duration,
    /// CPU time of the thread while on the rule: `busy` without the time
    /// the thread waited for a CPU on a loaded machine.
    #[serde(serialize_with = "micros")]
    pub cpu: Duration,
}

/// CPU time the calling thread has used.
///
/// Not cheap: the kernel answers it, not the vDSO (0.7 µs on a 2-CPU VM),
/// so it is read once per rule per batch, not per call into the rule.
pub(crate) fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

/// The events of one batch that one rule is given, encoded back to back.
#[derive(Debug, Default)]
pub struct RuleBatch {
    /// The encodings, one after another.
    pub bytes: Vec<u8>,
    /// Where each event's encoding ends.
    pub ends: Vec<usize>,
    /// Each event's id.
    pub ids: Vec<u64>,
}

impl RuleBatch {
    /// Empties it for reuse.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.ids.clear();
    }

    /// Appends one encoded event.
    pub fn push(&mut self, id: u64, encoded: &[u8]) {
        self.bytes.extend_from_slice(encoded);
        self.ends.push(self.bytes.len());
        self.ids.push(id);
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The encodings of the events from index `from` on.
    fn from(&self, from: usize) -> &[u8] {
        let start = from.checked_sub(1).map_or(0, |i| self.ends[i]);
        &self.bytes[start..]
    }
}

/// What one batch produced.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The verdicts, in the order they were made.
    pub verdicts: Vec<Verdict>,
    /// Events of the batch not judged.
    pub skipped: usize,
    /// The failures the batch met, in order.
    pub failures: Vec<RuleFailure>,
}

impl RuleRunner {
    /// Instantiates `rule` and initialises it with `settings` (defaults
    /// already merged); an `Err` says why it could not start, the rule's own
    /// complaint about its settings included.
    pub fn new(
        rule: Arc<LoadedRule>,
        settings: serde_json::Map<String, serde_json::Value>,
        lookups: Arc<HostLookups>,
        limits: Limits,
    ) -> Result<Self, RuleFailure> {
        let state = RuleState::with_limit(limits.state_bytes);
        Self::resume(rule, settings, lookups, limits, state)
    }

    /// [`RuleRunner::new`] around existing host state: the state a daemon
    /// saved, or the one the rule's previous version or settings left (a
    /// reload keeps what the rule counted).
    pub fn resume(
        rule: Arc<LoadedRule>,
        settings: serde_json::Map<String, serde_json::Value>,
        lookups: Arc<HostLookups>,
        limits: Limits,
        state: RuleState,
    ) -> Result<Self, RuleFailure> {
        let settings_json = serde_json::Value::Object(settings.clone()).to_string();
        let mut runner = RuleRunner {
            rule,
            settings_json,
            settings: Arc::new(settings),
            lookups,
            limits,
            live: None,
            parked_state: Some(state),
            counted_kinds: 0,
            health: Health::default(),
        };
        runner.revive()?;
        Ok(runner)
    }

    /// Answers domain questions from `lookups` from now on (the server's
    /// domains were read again).
    pub fn set_lookups(&mut self, lookups: Arc<HostLookups>) {
        if let Some((store, _)) = &mut self.live {
            store.data_mut().lookups = lookups.clone();
        }
        self.lookups = lookups;
    }

    /// The rule this runner runs.
    pub fn rule(&self) -> &LoadedRule {
        &self.rule
    }

    /// The rule this runner runs, shared.
    pub fn shared_rule(&self) -> Arc<LoadedRule> {
        self.rule.clone()
    }

    /// How the rule has fared.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Builds a fresh instance around the parked state and runs `init`.
    fn revive(&mut self) -> Result<(), RuleFailure> {
        let state = self
            .parked_state
            .take()
            .unwrap_or_else(|| RuleState::with_limit(self.limits.state_bytes));
        let data = StoreData::new(
            self.rule.meta.name.as_str().into(),
            self.limits,
            state,
            self.settings.clone(),
            self.lookups.clone(),
        );
        let mut store = Store::new(self.rule.pre.engine(), data);
        store.limiter(|d| &mut d.limits);
        store.set_epoch_deadline(self.limits.budget_ticks());
        let outcome = self
            .rule
            .pre
            .instantiate(&mut store)
            .map_err(|e| RuleFailure::from_call(&e))
            .and_then(|instance| {
                instance
                    .init(&mut store, &self.settings_json)
                    .map_err(|e| RuleFailure::from_call(&e))?
                    .map_err(RuleFailure::Settings)?;
                Ok(instance)
            });
        match outcome {
            Ok(instance) => {
                self.counted_kinds = store.data().counters.kinds();
                self.live = Some((store, instance));
                Ok(())
            }
            Err(e) => {
                self.parked_state = Some(store.into_data().into_state());
                Err(e)
            }
        }
    }

    /// [`spamward_contract::event::EventKind::bit`]s of the kinds of event
    /// the rule's counters count: the host counts these even where the
    /// rule did not subscribe.
    pub fn counted_kinds(&self) -> u32 {
        self.counted_kinds
    }

    /// The counters the rule declared when it started (none while it
    /// cannot start).
    pub fn counters(&self) -> Vec<spamward_contract::counter::CounterSpec> {
        self.live
            .as_ref()
            .map(|(store, _)| store.data().counters.specs().to_vec())
            .unwrap_or_default()
    }

    /// Counts `body` at `at` in the rule's counters, handing each total
    /// that crossed its threshold to `crossed`. A rule that cannot start
    /// counts nothing (its failure is reported by the next batch).
    pub fn count(&mut self, body: &EventBody<'_>, at: i64, crossed: impl FnMut(Crossing)) {
        if self.counted_kinds & body.kind().bit() == 0
            || (self.live.is_none() && self.revive().is_err())
        {
            return;
        }
        let (store, _) = self.live.as_mut().expect("revived above");
        let StoreData {
            counters,
            state,
            lookups,
            ..
        } = store.data_mut();
        let counted = counters.observe(state, body, at, |d| lookups.is_local_domain(d), crossed);
        if let Err(full) = counted {
            if self.health.uncounted_events == 0 {
                tracing::warn!(
                    rule = %self.rule.meta.name,
                    "its counters stop counting while its host state is full: {full} (said once)"
                );
            }
            self.health.uncounted_events += 1;
        }
    }

    /// Drops the instance after a trap, keeping its state.
    fn park(&mut self) {
        if let Some((store, _)) = self.live.take() {
            self.parked_state = Some(store.into_data().into_state());
        }
    }

    /// Runs batch number `batch_no`: the events of `batch`, already
    /// filtered to the rule's subscriptions.
    pub fn run_batch(&mut self, batch_no: u64, batch: &RuleBatch) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let n = batch.len();
        if let Some(until) = self.health.quarantined_until {
            if batch_no < until {
                outcome.skipped = n;
                self.health.skipped_events += n as u64;
                return outcome;
            }
            self.health.quarantined_until = None;
            tracing::info!(rule = %self.rule.meta.name, "retrying after quarantine");
        }
        let mut next = 0;
        while next < n {
            if self.live.is_none()
                && let Err(e) = self.revive()
            {
                self.trapped(batch_no, &e);
                outcome.failures.push(e);
                outcome.skipped += n - next;
                break;
            }
            match self.call(batch, next, &mut outcome) {
                Ok(()) => break,
                Err((e, judging)) => {
                    self.park();
                    self.trapped(batch_no, &e);
                    outcome.failures.push(e);
                    if !self.rule.reports_progress {
                        // No way to tell which event failed: the rest is lost.
                        outcome.skipped += n - next;
                        break;
                    }
                    // A counter crossing carries the id of the event that
                    // made it and comes right after it: a trap on either
                    // skips both, never judging the event twice.
                    let at_fault = judging
                        .and_then(|id| batch.ids[next..].iter().rposition(|&i| i == id))
                        .map_or(next, |i| next + i);
                    outcome.skipped += 1;
                    self.health.events += (at_fault - next) as u64;
                    next = at_fault + 1;
                    if outcome.failures.len() >= QUARANTINE_AFTER as usize {
                        outcome.skipped += n - next;
                        break;
                    }
                }
            }
        }
        self.health.skipped_events += outcome.skipped as u64;
        self.health.verdicts += outcome.verdicts.len() as u64;
        if outcome.failures.is_empty() {
            self.health.batches += 1;
            self.health.consecutive_failures = 0;
            self.health.backoff = 0;
        } else {
            self.batch_failed(batch_no);
        }
        outcome
    }

    /// Adds `busy` (wall) and `cpu` time spent on the rule to its health.
    pub fn charge(&mut self, busy: Duration, cpu: Duration) {
        self.health.busy += busy;
        self.health.cpu += cpu;
    }

    /// One call with the events from index `from` on; the verdicts go to
    /// `outcome` whether or not it traps. On a trap, the failure and the
    /// event the rule said it was judging.
    fn call(
        &mut self,
        batch: &RuleBatch,
        from: usize,
        outcome: &mut BatchOutcome,
    ) -> Result<(), (RuleFailure, Option<u64>)> {
        let (store, instance) = self.live.as_mut().expect("revived by the caller");
        store.set_epoch_deadline(self.limits.budget_ticks());
        let data = store.data_mut();
        data.judging = None;
        data.dropped = 0;
        let result = instance.on_events(&mut *store, batch.from(from));
        let data = store.data_mut();
        let room = MAX_VERDICTS_PER_BATCH.saturating_sub(outcome.verdicts.len());
        let reported = std::mem::take(&mut data.reported);
        let mut dropped = data.dropped + reported.len().saturating_sub(room) as u64;
        outcome.verdicts.extend(reported.into_iter().take(room));
        match result {
            Ok(returned) => {
                let room = MAX_VERDICTS_PER_BATCH.saturating_sub(outcome.verdicts.len());
                dropped += returned.len().saturating_sub(room) as u64;
                outcome
                    .verdicts
                    .extend(returned.into_iter().take(room).map(verdict));
                self.health.events += (batch.len() - from) as u64;
                self.dropped(dropped);
                Ok(())
            }
            Err(e) => {
                let judging = store.data().judging;
                self.dropped(dropped);
                Err((RuleFailure::from_call(&e), judging))
            }
        }
    }

    fn dropped(&mut self, dropped: u64) {
        if dropped == 0 {
            return;
        }
        if self.health.dropped_verdicts == 0 {
            tracing::warn!(
                rule = %self.rule.meta.name,
                "handed over more than {MAX_VERDICTS_PER_BATCH} verdicts for one batch; the rest are dropped (said once)"
            );
        }
        self.health.dropped_verdicts += dropped;
    }

    fn trapped(&mut self, batch_no: u64, failure: &RuleFailure) {
        self.health.failures += 1;
        self.health.last_error = Some(failure.to_string());
        tracing::warn!(rule = %self.rule.meta.name, "batch {batch_no} failed: {failure}");
    }

    fn batch_failed(&mut self, batch_no: u64) {
        let h = &mut self.health;
        h.consecutive_failures += 1;
        if h.consecutive_failures >= QUARANTINE_AFTER {
            h.backoff = if h.backoff == 0 {
                FIRST_BACKOFF
            } else {
                (h.backoff * 2).min(MAX_BACKOFF)
            };
            h.quarantined_until = Some(batch_no + 1 + h.backoff);
            h.quarantines += 1;
            tracing::error!(
                rule = %self.rule.meta.name,
                "quarantined for {} batches after {} failed batches in a row: {}",
                h.backoff,
                h.consecutive_failures,
                h.last_error.as_deref().unwrap_or("-")
            );
        }
    }

    /// Ends the runner, handing over its host state (for the rule's next
    /// version or settings).
    pub fn into_state(mut self) -> RuleState {
        self.park();
        self.parked_state
            .take()
            .unwrap_or_else(|| RuleState::with_limit(self.limits.state_bytes))
    }

    /// The rule's host state, when no batch is running.
    pub fn state(&self) -> Option<&RuleState> {
        match &self.live {
            Some((store, _)) => Some(&store.data().state),
            None => self.parked_state.as_ref(),
        }
    }
}
