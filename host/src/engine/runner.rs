//! Running one rule: its live instance, its host state, and its health.
//!
//! A trap (CPU budget exceeded, memory cap hit, panic, `unreachable`)
//! poisons the instance: it is dropped and re-created from the
//! pre-instantiated handle before the next batch, and the rule's host state
//! carries over. A rule that fails `QUARANTINE_AFTER` batches in a row is
//! quarantined: skipped for a number of batches that doubles each time it
//! fails again. The other rules never notice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use super::bindings::{Rule, wit};
use super::rule::{LoadedRule, action};
use super::sandbox::{Limits, StoreData};
use crate::policy::{self, Mode};
use crate::state::HostLookups;
use spamward_sdk::state::RuleState;

/// Consecutive failed batches before a rule is quarantined.
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
    live: Option<(Store<StoreData>, Rule)>,
    /// Held here while no instance is live.
    parked_state: Option<RuleState>,
    mode: Mode,
    health: Health,
}

/// How a rule has fared.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Health {
    /// Batches run successfully.
    pub batches: u64,
    /// Events delivered.
    pub events: u64,
    /// Verdicts returned.
    pub verdicts: u64,
    /// Failed batches in all.
    pub failures: u64,
    /// Failed batches in a row.
    pub consecutive_failures: u32,
    /// Times quarantined.
    pub quarantines: u32,
    /// Batch number until which the rule is skipped.
    #[serde(skip)]
    pub quarantined_until: Option<u64>,
    #[serde(skip)]
    backoff: u64,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// Time spent inside the rule.
    #[serde(serialize_with = "micros")]
    pub busy: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

/// What one batch call produced.
pub enum BatchOutcome {
    /// The rule ran; its verdicts.
    Verdicts(Vec<policy::Verdict>),
    /// The rule is quarantined; nothing ran.
    Skipped,
    /// The rule failed on this batch (the instance is gone).
    Failed(String),
}

impl RuleRunner {
    /// Instantiates `rule` and initialises it with `settings` (defaults
    /// already merged); an `Err` is the rule's own complaint about them.
    pub fn new(
        rule: Arc<LoadedRule>,
        settings: serde_json::Map<String, serde_json::Value>,
        mode: Mode,
        lookups: Arc<HostLookups>,
        limits: Limits,
    ) -> Result<Self, String> {
        let settings_json = serde_json::Value::Object(settings.clone()).to_string();
        let mut runner = RuleRunner {
            rule,
            settings_json,
            settings: Arc::new(settings),
            lookups,
            limits,
            live: None,
            parked_state: Some(RuleState::new()),
            mode,
            health: Health::default(),
        };
        runner.revive()?;
        Ok(runner)
    }

    /// The rule this runner runs.
    pub fn rule(&self) -> &LoadedRule {
        &self.rule
    }

    /// The rule's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How the rule has fared.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Builds a fresh instance around the parked state and runs `init`.
    fn revive(&mut self) -> Result<(), String> {
        let state = self.parked_state.take().unwrap_or_default();
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
            .map_err(|e| describe_failure(&e))
            .and_then(|instance| {
                instance
                    .spamward_rule_guest()
                    .call_init(&mut store, &self.settings_json)
                    .map_err(|e| describe_failure(&e))?
                    .map_err(|e| format!("rejected its settings: {e}"))?;
                Ok(instance)
            });
        match outcome {
            Ok(instance) => {
                self.live = Some((store, instance));
                Ok(())
            }
            Err(e) => {
                self.parked_state = Some(store.into_data().into_state());
                Err(e)
            }
        }
    }

    /// Runs batch number `batch_no`: `events` events (already filtered to
    /// the rule's subscriptions), encoded in `batch`.
    pub fn run_batch(&mut self, batch_no: u64, batch: &[u8], events: usize) -> BatchOutcome {
        if let Some(until) = self.health.quarantined_until {
            if batch_no < until {
                return BatchOutcome::Skipped;
            }
            self.health.quarantined_until = None;
            tracing::info!(rule = %self.rule.meta.name, "retrying after quarantine");
        }
        if self.live.is_none()
            && let Err(e) = self.revive()
        {
            return self.failed(batch_no, e);
        }
        let (store, instance) = self.live.as_mut().expect("revived above");
        store.set_epoch_deadline(self.limits.budget_ticks());
        let started = Instant::now();
        let result = instance
            .spamward_rule_guest()
            .call_on_events(&mut *store, batch);
        self.health.busy += started.elapsed();
        match result {
            Ok(verdicts) => {
                self.health.batches += 1;
                self.health.events += events as u64;
                self.health.verdicts += verdicts.len() as u64;
                self.health.consecutive_failures = 0;
                self.health.backoff = 0;
                BatchOutcome::Verdicts(verdicts.into_iter().map(verdict).collect())
            }
            Err(e) => {
                let reason = describe_failure(&e);
                // The instance may be mid-update: drop it, keep the state.
                let (store, _) = self.live.take().expect("was live");
                self.parked_state = Some(store.into_data().into_state());
                self.failed(batch_no, reason)
            }
        }
    }

    fn failed(&mut self, batch_no: u64, reason: String) -> BatchOutcome {
        let h = &mut self.health;
        h.failures += 1;
        h.consecutive_failures += 1;
        h.last_error = Some(reason.clone());
        tracing::warn!(rule = %self.rule.meta.name, "batch {batch_no} failed: {reason}");
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
                "quarantined for {} batches after {} failures in a row: {reason}",
                h.backoff,
                h.consecutive_failures
            );
        }
        BatchOutcome::Failed(reason)
    }

    /// The rule's host state, when no batch is running.
    pub fn state(&self) -> Option<&RuleState> {
        match &self.live {
            Some((store, _)) => Some(&store.data().state),
            None => self.parked_state.as_ref(),
        }
    }
}

/// A trap or error in plain words: what the admin needs to know.
fn describe_failure(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "exceeded its CPU budget for one batch (interrupted)".into(),
        Some(Trap::UnreachableCodeReached) => {
            "trapped: unreachable code reached (a panic or abort in the rule)".into()
        }
        Some(trap) => format!("trapped: {trap}"),
        None => {
            let text = format!("{e:#}");
            if text.contains("forcing trap when growing memory")
                || text.contains("memory") && text.contains("limit")
            {
                format!("hit its memory cap: {text}")
            } else {
                text
            }
        }
    }
}

/// The policy's verdict for a WIT verdict.
fn verdict(v: wit::Verdict) -> policy::Verdict {
    use policy::{Severity, Target};
    policy::Verdict {
        severity: match v.severity {
            wit::Severity::Info => Severity::Info,
            wit::Severity::Warning => Severity::Warning,
            wit::Severity::Critical => Severity::Critical,
        },
        target: match v.target {
            wit::Target::Account(s) => Target::Account(s),
            wit::Target::Mailbox(s) => Target::Mailbox(s),
            wit::Target::Domain(s) => Target::Domain(s),
            wit::Target::Ip(s) => Target::Ip(s),
            wit::Target::Message(s) => Target::Message(s),
            wit::Target::Script(s) => Target::Script(s),
            wit::Target::Setting(s) => Target::Setting(s),
        },
        action: action(v.action),
        summary: v.summary,
        evidence: v.evidence,
        events: v.events,
    }
}
