//! The dispatcher: gathers normalized events into batches, hands each rule
//! only the kinds it subscribed to, and passes verdicts to the policy with
//! the lines they cite.
//!
//! One crossing of the wasm boundary per rule per batch; a rule that wants
//! none of a batch's kinds is not called at all.

use std::collections::VecDeque;
use std::sync::Arc;

use super::bindings::wit;
use super::convert;
use super::runner::{BatchOutcome, Health, RuleRunner};
use crate::normalize::{Event, Timestamp};
use crate::policy::{Citation, Finding, Policy, RuleGrant};
use crate::state::HostLookups;

/// Events per batch unless configured.
pub const DEFAULT_BATCH: usize = 256;

/// How many recent events can still be cited by id.
const CITABLE: usize = 1 << 16;

/// Feeds events to rules and collects findings.
pub struct Dispatcher {
    runners: Vec<RuleRunner>,
    pending: Vec<Event>,
    batch_size: usize,
    next_id: u64,
    batch_no: u64,
    recent: VecDeque<(Arc<str>, u64, Timestamp)>,
    first_recent_id: u64,
    policy: Policy,
    scratch: Vec<wit::Event>,
    lookups: Arc<HostLookups>,
}

/// A rule's end-of-run report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleReport {
    /// Rule name.
    pub rule: String,
    /// How it fared.
    #[serde(flatten)]
    pub health: Health,
    /// Whether it ended the run quarantined.
    pub quarantined: bool,
}

impl Dispatcher {
    /// A dispatcher over `runners`, batching `batch_size` events; `lookups`
    /// answer subscription filters about local domains.
    pub fn new(runners: Vec<RuleRunner>, batch_size: usize, lookups: Arc<HostLookups>) -> Self {
        Dispatcher {
            runners,
            pending: Vec::with_capacity(batch_size.max(1)),
            batch_size: batch_size.max(1),
            next_id: 1,
            batch_no: 0,
            recent: VecDeque::with_capacity(CITABLE),
            first_recent_id: 1,
            policy: Policy::new(),
            scratch: Vec::with_capacity(batch_size.max(1)),
            lookups,
        }
    }

    /// Queues one event; runs a batch when enough are queued.
    pub fn push(&mut self, event: Event) {
        self.pending.push(event);
        if self.pending.len() >= self.batch_size {
            self.flush();
        }
    }

    /// Runs whatever is queued.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let first_id = self.next_id;
        self.next_id += self.pending.len() as u64;
        for event in &self.pending {
            if self.recent.len() == CITABLE {
                self.recent.pop_front();
                self.first_recent_id += 1;
            }
            self.recent
                .push_back((event.file.clone(), event.line, event.time));
        }
        let kinds_present = self.pending.iter().fold(0u32, |m, e| m | e.kind().bit());

        for i in 0..self.runners.len() {
            let rule = self.runners[i].rule();
            let mask = rule.subscriptions;
            if mask & kinds_present == 0 {
                continue;
            }
            self.scratch.clear();
            for (offset, event) in self.pending.iter().enumerate() {
                let wanted = mask & event.kind().bit() != 0
                    && (!rule.filtered
                        || spamward_sdk::filter::wants(
                            &rule.filters,
                            &convert::FilterView(event, &self.lookups),
                        ));
                if wanted {
                    self.scratch
                        .push(convert::event(first_id + offset as u64, event));
                }
            }
            if self.scratch.is_empty() {
                continue;
            }
            let outcome = self.runners[i].run_batch(self.batch_no, &self.scratch);
            if let BatchOutcome::Verdicts(verdicts) = outcome {
                let runner = &self.runners[i];
                let grant = RuleGrant {
                    name: &runner.rule().meta.name,
                    declared: &runner.rule().meta.actions,
                    mode: runner.mode(),
                };
                for verdict in verdicts {
                    let mut time = None;
                    let mut citations = Vec::new();
                    for id in &verdict.events {
                        if let Some((file, line, t)) = id
                            .checked_sub(self.first_recent_id)
                            .and_then(|i| self.recent.get(i as usize))
                        {
                            time = Some(time.map_or(*t, |old: Timestamp| old.max(*t)));
                            citations.push(Citation {
                                file: file.to_string(),
                                line: *line,
                            });
                        }
                    }
                    self.policy.admit(&grant, verdict, time, citations);
                }
            }
        }
        self.pending.clear();
        self.batch_no += 1;
    }

    /// Runs what is queued and returns the findings and each rule's report.
    pub fn finish(mut self) -> (Vec<Finding>, Vec<RuleReport>) {
        self.flush();
        let reports = self
            .runners
            .iter()
            .map(|r| RuleReport {
                rule: r.rule().meta.name.clone(),
                health: r.health().clone(),
                quarantined: r.health().quarantined_until.is_some(),
            })
            .collect();
        (self.policy.into_findings(), reports)
    }
}
