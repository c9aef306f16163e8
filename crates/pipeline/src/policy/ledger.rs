//! The ledger: the actions in force, the cool-downs operators' releases
//! set, the circuit breaker's count, and the journal of every decision.
//!
//! The policy ([`super::Policy`]) decides what a finding's rule may do at
//! all (declared, granted, enforce or dry-run, allow-listed). The ledger
//! decides what happens *now*:
//!
//! - **One action per (target, action).** A repeat verdict extends the
//!   action in force (and annotates it); it never runs the backend again.
//! - **Timed.** Each action runs for its rule's `expire_after`, on the wall
//!   clock from when it ran (windows use event time; actions happen now),
//!   then is undone ([`Ledger::due`]).
//! - **Released, then left alone.** After an operator's release the target
//!   is spared for `[policy] cooldown`, unless a critical verdict resting on
//!   events newer than the release arrives. Exim logs a held sender's queued
//!   messages again on every retry: evidence the release already answered
//!   never re-applies it.
//! - **A circuit breaker.** At most `max_actions_per_hour` enforcement
//!   actions in any hour; past it an action becomes an alert and a loud log
//!   line, so a buggy rule or a misparse cannot suspend a whole server.
//!
//! It does no I/O and reads no clock: callers pass the wall-clock second,
//! run the [`Job`]s it hands out through a backend, and report back with
//! [`Ledger::finished`]. Every decision becomes a [`JournalEntry`] the
//! caller stores ([`Ledger::take_journal`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Citation, Decision, Finding};
use spamward_contract::verdict::{Action, Severity, Target};

/// Actions tracked at once; past this a dry-run's "would run" is journaled
/// but not remembered (so memory stays bounded whatever the input).
pub const MAX_TRACKED: usize = 10_000;

/// How long a refusal is not journaled again for the same target and action
/// (a rule repeating itself would otherwise fill the journal).
const REFUSAL_QUIET_SECONDS: i64 = 3600;

/// How long after a failed undo it is tried again.
const UNDO_RETRY_SECONDS: i64 = 60;

/// How long an action stays in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expiry {
    /// Undone this many seconds after it ran.
    After(u64),
    /// Until an operator releases it.
    Never,
}

impl Default for Expiry {
    /// An hour: what the example grants, and long enough for an
    /// admin to look.
    fn default() -> Self {
        Expiry::After(3600)
    }
}

impl Expiry {
    fn deadline(self, now: i64) -> Option<i64> {
        match self {
            Expiry::After(seconds) => {
                Some(now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX)))
            }
            Expiry::Never => None,
        }
    }
}

/// What the ledger knows of a rule: its version (for the journal) and how
/// long its actions last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    /// The rule's version.
    pub version: String,
    /// Its `expire_after`.
    pub expire_after: Expiry,
}

/// `[policy]` numbers the ledger applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Safeguards {
    /// Enforcement actions (not alerts) allowed in any hour.
    pub max_actions_per_hour: u32,
    /// Seconds a released target is left alone.
    pub cooldown_seconds: i64,
}

impl Default for Safeguards {
    fn default() -> Self {
        Safeguards {
            max_actions_per_hour: 20,
            cooldown_seconds: 3600,
        }
    }
}

/// Where an action in force stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Standing {
    /// Handed to the backend, not yet answered.
    Starting,
    /// The backend ran it (or, in dry-run, would have).
    InForce,
    /// Its undo is with the backend.
    Undoing {
        /// The operator who released it, or none when it expired.
        released_by: Option<String>,
    },
}

/// One action in force (or, in dry-run, one that would be).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAction {
    /// Its id, as `spamward actions` shows it and `release` takes it.
    pub id: u64,
    /// What it acts on.
    pub target: Target,
    /// What it does.
    pub action: Action,
    /// The rule that asked first.
    pub rule: String,
    /// That rule's version.
    pub rule_version: String,
    /// Only recorded, never run.
    pub dry_run: bool,
    /// Wall-clock second it started.
    pub started_at: i64,
    /// Wall-clock second it is undone, or never.
    pub expires_at: Option<i64>,
    /// The strongest verdict behind it.
    pub severity: Severity,
    /// That verdict's summary.
    pub summary: String,
    /// The first verdict's evidence.
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// The log lines behind it.
    pub lines: Vec<Citation>,
    /// Verdicts that asked for it.
    pub verdicts: u64,
    /// Where it stands.
    pub standing: Standing,
    /// What its backend left to take back.
    #[serde(default)]
    pub memo: Option<String>,
}

/// Work for a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The action's id (report back with it).
    pub id: u64,
    /// Run it, or undo it.
    pub step: Step,
    /// What it acts on.
    pub target: Target,
    /// What it does.
    pub action: Action,
    /// Seconds it lasts (a backend with its own timeouts, such as an
    /// nftables set, uses it); none: until released.
    pub seconds: Option<u64>,
    /// The rule's summary, for alerts and command templates.
    pub summary: String,
    /// The rule that asked.
    pub rule: String,
    /// For an undo: what the run left to take back (the ids of the
    /// messages it froze).
    pub memo: Option<String>,
    /// For a run of `freeze-message` on a script: the ids of the messages
    /// the daemon saw it send, filled in by the daemon (a queue listing
    /// does not say which script sent a message; the log's `cwd=` lines
    /// and the spool's `X-PHP-Script` headers do). Empty otherwise.
    pub messages: Vec<String>,
}

/// Which way a job goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Carry the action out.
    Run,
    /// Take it back.
    Undo,
}

/// What became of a request, or of an action, as the journal says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", content = "detail", rename_all = "kebab-case")]
pub enum Outcome {
    /// The backend ran it.
    Ran,
    /// Dry-run: it would have run.
    DryRun,
    /// The rule did not declare the action.
    RefusedUndeclared,
    /// The admin did not grant it (`[rules.<name>] actions`).
    RefusedNotGranted,
    /// The target is on the allow-list (the entry that covers it).
    RefusedAllowListed(String),
    /// The breaker was open: an alert was raised instead.
    RefusedBreaker,
    /// An operator released the target; left alone until this second.
    RefusedCooldown(i64),
    /// The backend failed (its error).
    Failed(String),
    /// Its time ran out and it was undone.
    Expired,
    /// An operator released it (who).
    Released(String),
    /// Its undo failed (the backend's error); it is tried again.
    UndoFailed(String),
}

impl Outcome {
    /// The decision's name, as the journal's `decision` column holds it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::DryRun => "dry-run",
            Outcome::RefusedUndeclared => "refused-undeclared",
            Outcome::RefusedNotGranted => "refused-not-granted",
            Outcome::RefusedAllowListed(_) => "refused-allow-listed",
            Outcome::RefusedBreaker => "refused-breaker",
            Outcome::RefusedCooldown(_) => "refused-cooldown",
            Outcome::Failed(_) => "failed",
            Outcome::Expired => "expired",
            Outcome::Released(_) => "released",
            Outcome::UndoFailed(_) => "undo-failed",
        }
    }

    /// What else there is to say: the allow-list entry, the backend's
    /// error, the operator, the end of a cool-down.
    pub fn detail(&self) -> Option<String> {
        match self {
            Outcome::RefusedAllowListed(s)
            | Outcome::Failed(s)
            | Outcome::Released(s)
            | Outcome::UndoFailed(s) => Some(s.clone()),
            Outcome::RefusedCooldown(until) => Some(format!("until {until}")),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Some(detail) => write!(f, "{}: {detail}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// One decision, as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Wall-clock second of the decision.
    pub at: i64,
    /// The action it is about, when one was started.
    pub action_id: Option<u64>,
    /// The rule.
    pub rule: String,
    /// Its version.
    pub rule_version: String,
    /// The target.
    pub target: Target,
    /// The action.
    pub action: Action,
    /// Decided for a rule in dry-run.
    pub dry_run: bool,
    /// What became of it.
    pub outcome: Outcome,
    /// The verdict's severity.
    pub severity: Severity,
    /// The verdict's summary.
    pub summary: String,
    /// The verdict's evidence.
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// The log lines behind it.
    pub lines: Vec<Citation>,
    /// When the action is undone, if it runs and ends.
    pub expires_at: Option<i64>,
}

/// A target an operator released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cooldown {
    /// Wall-clock second it ends.
    until: i64,
    /// The newest event time seen at the release: evidence no newer was
    /// already answered by it.
    horizon: Option<i64>,
}

/// A release that matched nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no action in force matches {0:?} (see `spamward actions --active`)")]
pub struct NothingToRelease(pub String);

type Key = (Target, Action);

/// The actions in force and everything that decides the next one. See the
/// module documentation.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    next_id: u64,
    active: Vec<ActiveAction>,
    cooldowns: Vec<(Target, Action, Cooldown)>,
    /// Wall-clock seconds of the enforcement actions of the last hour.
    breaker: VecDeque<i64>,
    /// The newest event time of any finding considered.
    horizon: Option<i64>,
    #[serde(skip)]
    safeguards: Safeguards,
    #[serde(skip)]
    terms: HashMap<String, Terms>,
    #[serde(skip)]
    journal: Vec<JournalEntry>,
    /// When each (target, action, refusal) was last journaled.
    #[serde(skip)]
    refusals_said: HashMap<(Key, &'static str), i64>,
}

impl Ledger {
    /// An empty ledger applying `safeguards`.
    pub fn new(safeguards: Safeguards) -> Self {
        Ledger {
            next_id: 1,
            safeguards,
            ..Ledger::default()
        }
    }

    /// Applies new `[policy]` numbers (on a reload).
    pub fn set_safeguards(&mut self, safeguards: Safeguards) {
        self.safeguards = safeguards;
    }

    /// Sets what `rule`'s actions carry (on every load or reload).
    pub fn set_terms(&mut self, rule: &str, terms: Terms) {
        self.terms.insert(rule.to_owned(), terms);
    }

    /// Takes a finding the policy made or folded a verdict into, at
    /// wall-clock second `now`; the job to run, if any.
    pub fn consider(&mut self, finding: &Finding, now: i64) -> Option<Job> {
        let terms = self.terms.get(&finding.rule).cloned().unwrap_or_default();
        let event_time = finding.last_seen.map(|t| t.seconds);
        if let Some(t) = event_time {
            self.horizon = Some(self.horizon.map_or(t, |h| h.max(t)));
        }
        let key = (finding.target.clone(), finding.action);
        let dry_run = match &finding.decision {
            Decision::WouldRun => true,
            Decision::Enforce => false,
            Decision::RefusedUndeclared => {
                self.refuse(finding, &terms, Outcome::RefusedUndeclared, now);
                return None;
            }
            Decision::RefusedNotGranted => {
                self.refuse(finding, &terms, Outcome::RefusedNotGranted, now);
                return None;
            }
            Decision::AllowListed(entry) => {
                let outcome = Outcome::RefusedAllowListed(entry.clone());
                self.refuse(finding, &terms, outcome, now);
                return None;
            }
        };
        if let Some(i) = self.position(&key) {
            let a = &mut self.active[i];
            let now_enforced = a.dry_run && !dry_run;
            if !now_enforced {
                a.verdicts += 1;
                a.expires_at = match (a.expires_at, terms.expire_after.deadline(now)) {
                    (Some(old), Some(new)) => Some(old.max(new)),
                    _ => None,
                };
                if finding.last_severity >= a.severity {
                    a.severity = finding.last_severity;
                    a.summary.clone_from(&finding.summary);
                }
                return None;
            }
            // The rule moved from dry-run to enforce: what was only
            // recorded now runs.
            self.active.remove(i);
        }
        if let Some(i) = self
            .cooldowns
            .iter()
            .position(|(t, a, c)| (t, *a) == (&key.0, key.1) && now < c.until)
        {
            let c = &self.cooldowns[i].2;
            let newer = event_time.is_some_and(|t| c.horizon.is_none_or(|h| t > h));
            if finding.last_severity < Severity::Critical || !newer {
                let outcome = Outcome::RefusedCooldown(c.until);
                self.refuse(finding, &terms, outcome, now);
                return None;
            }
            self.cooldowns.remove(i);
        }
        if dry_run {
            let id = self.take_id();
            self.record(finding, &terms, Outcome::DryRun, Some(id), true, now);
            if self.active.len() < MAX_TRACKED {
                let mut a = self.new_action(id, finding, &terms, true, now);
                a.standing = Standing::InForce;
                self.active.push(a);
            }
            return None;
        }
        let mut action = finding.action;
        if action != Action::Alert {
            while self.breaker.front().is_some_and(|&t| t <= now - 3600) {
                self.breaker.pop_front();
            }
            if self.breaker.len() >= self.safeguards.max_actions_per_hour as usize {
                tracing::error!(
                    rule = %finding.rule,
                    target = %finding.target,
                    action = %finding.action,
                    "circuit breaker open: {} enforcement actions in the last hour \
                     (max_actions_per_hour = {}); raising an alert instead",
                    self.breaker.len(),
                    self.safeguards.max_actions_per_hour
                );
                self.record(finding, &terms, Outcome::RefusedBreaker, None, false, now);
                let alert = (finding.target.clone(), Action::Alert);
                if self.position(&alert).is_some() {
                    return None;
                }
                action = Action::Alert;
            } else {
                self.breaker.push_back(now);
            }
        }
        let id = self.take_id();
        let mut a = self.new_action(id, finding, &terms, false, now);
        a.action = action;
        let job = Job {
            id,
            step: Step::Run,
            target: a.target.clone(),
            action,
            seconds: a
                .expires_at
                .map(|t| u64::try_from(t - now).unwrap_or_default()),
            summary: a.summary.clone(),
            rule: a.rule.clone(),
            memo: None,
            messages: Vec::new(),
        };
        self.active.push(a);
        Some(job)
    }

    /// Hears how a job went, at wall-clock second `now`: a run that
    /// succeeded may leave a memo its undo gets back.
    pub fn finished(&mut self, job: &Job, result: Result<Option<String>, String>, now: i64) {
        let Some(i) = self.active.iter().position(|a| a.id == job.id) else {
            return;
        };
        match (job.step, result) {
            (Step::Run, Ok(memo)) => {
                self.active[i].standing = Standing::InForce;
                self.active[i].memo = memo;
                let a = self.active[i].clone();
                self.record_action(&a, Outcome::Ran, now);
            }
            (Step::Run, Err(e)) => {
                let a = self.active.remove(i);
                tracing::error!(id = a.id, target = %a.target, action = %a.action, "action failed: {e}");
                self.record_action(&a, Outcome::Failed(e), now);
            }
            (Step::Undo, Ok(_)) => {
                let a = self.active.remove(i);
                let outcome = match a.standing {
                    Standing::Undoing {
                        released_by: Some(ref by),
                    } => {
                        self.cool(&a, now);
                        Outcome::Released(by.clone())
                    }
                    _ => Outcome::Expired,
                };
                self.record_action(&a, outcome, now);
            }
            (Step::Undo, Err(e)) => {
                let a = &mut self.active[i];
                tracing::error!(id = a.id, target = %a.target, action = %a.action, "undo failed (tried again in {UNDO_RETRY_SECONDS} s): {e}");
                a.standing = Standing::InForce;
                a.expires_at = Some(now + UNDO_RETRY_SECONDS);
                let a = a.clone();
                self.record_action(&a, Outcome::UndoFailed(e), now);
            }
        }
    }

    /// The undo jobs of actions whose time ran out by `now`. Dry-run ones
    /// are only journaled as expired.
    pub fn due(&mut self, now: i64) -> Vec<Job> {
        self.cooldowns.retain(|(_, _, c)| now < c.until);
        self.refusals_said
            .retain(|_, at| now - *at < REFUSAL_QUIET_SECONDS);
        let mut jobs = Vec::new();
        let mut i = 0;
        while i < self.active.len() {
            let a = &self.active[i];
            let expired = a.standing == Standing::InForce && a.expires_at.is_some_and(|t| t <= now);
            if !expired {
                i += 1;
                continue;
            }
            if a.dry_run || !has_undo(a.action) {
                let a = self.active.remove(i);
                self.record_action(&a, Outcome::Expired, now);
                continue;
            }
            let a = &mut self.active[i];
            a.standing = Standing::Undoing { released_by: None };
            jobs.push(undo_job(a));
            i += 1;
        }
        jobs
    }

    /// Releases the actions `selector` names (an id, or a target as
    /// `spamward actions` prints it or just its value) on behalf of `by`:
    /// the undo jobs to run. Dry-run records and alerts end at once.
    pub fn release(
        &mut self,
        selector: &str,
        by: &str,
        now: i64,
    ) -> Result<Vec<Job>, NothingToRelease> {
        let selector = selector.trim();
        let matches = |a: &ActiveAction| {
            selector.parse::<u64>().is_ok_and(|id| id == a.id)
                || a.target.value().eq_ignore_ascii_case(selector)
                || a.target.to_string().eq_ignore_ascii_case(selector)
        };
        let mut jobs = Vec::new();
        let mut found = false;
        let mut i = 0;
        while i < self.active.len() {
            if !matches(&self.active[i]) {
                i += 1;
                continue;
            }
            found = true;
            let a = &mut self.active[i];
            if a.dry_run || !has_undo(a.action) {
                let a = self.active.remove(i);
                self.cool(&a, now);
                self.record_action(&a, Outcome::Released(by.to_owned()), now);
                continue;
            }
            if a.standing == Standing::InForce || a.standing == Standing::Starting {
                a.standing = Standing::Undoing {
                    released_by: Some(by.to_owned()),
                };
                jobs.push(undo_job(a));
            }
            i += 1;
        }
        if found {
            Ok(jobs)
        } else {
            Err(NothingToRelease(selector.to_owned()))
        }
    }

    /// The actions in force (and dry-run records), oldest first.
    pub fn active(&self) -> &[ActiveAction] {
        &self.active
    }

    /// Enforcement actions counted against the breaker in the hour before
    /// `now`.
    pub fn breaker_count(&self, now: i64) -> usize {
        self.breaker.iter().filter(|&&t| t > now - 3600).count()
    }

    /// The journal entries made since the last call.
    pub fn take_journal(&mut self) -> Vec<JournalEntry> {
        std::mem::take(&mut self.journal)
    }

    /// Puts back entries [`Ledger::take_journal`] gave that could not be
    /// stored, ahead of newer ones; past [`MAX_TRACKED`] the oldest go, said
    /// in the log.
    pub fn put_back_journal(&mut self, mut entries: Vec<JournalEntry>) {
        entries.append(&mut self.journal);
        if entries.len() > MAX_TRACKED {
            let lost = entries.len() - MAX_TRACKED;
            tracing::error!(
                "{lost} journal entries lost: the state file has refused them for a while"
            );
            entries.drain(..lost);
        }
        self.journal = entries;
    }

    /// What the ledger holds, for the state file.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the ledger always encodes")
    }

    /// A ledger from what [`Ledger::snapshot`] saved, applying `safeguards`;
    /// terms are set again by whoever loads the rules. An action that was
    /// still starting when it was saved may have run: it is counted in
    /// force, so it is undone in time.
    pub fn restore(bytes: &[u8], safeguards: Safeguards) -> Result<Self, serde_json::Error> {
        let mut ledger: Ledger = serde_json::from_slice(bytes)?;
        ledger.safeguards = safeguards;
        ledger.next_id = ledger.next_id.max(1);
        for a in &mut ledger.active {
            if a.standing == Standing::Starting {
                a.standing = Standing::InForce;
            }
        }
        Ok(ledger)
    }

    fn position(&self, key: &Key) -> Option<usize> {
        self.active
            .iter()
            .position(|a| a.action == key.1 && a.target == key.0)
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        id
    }

    fn new_action(
        &self,
        id: u64,
        finding: &Finding,
        terms: &Terms,
        dry_run: bool,
        now: i64,
    ) -> ActiveAction {
        ActiveAction {
            id,
            target: finding.target.clone(),
            action: finding.action,
            rule: finding.rule.clone(),
            rule_version: terms.version.clone(),
            dry_run,
            started_at: now,
            expires_at: terms.expire_after.deadline(now),
            severity: finding.last_severity,
            summary: finding.summary.clone(),
            evidence: finding.evidence.clone(),
            lines: finding.lines.clone(),
            verdicts: 1,
            standing: Standing::Starting,
            memo: None,
        }
    }

    fn cool(&mut self, a: &ActiveAction, now: i64) {
        self.cooldowns
            .retain(|(t, act, _)| !(t == &a.target && *act == a.action));
        self.cooldowns.push((
            a.target.clone(),
            a.action,
            Cooldown {
                until: now + self.safeguards.cooldown_seconds,
                horizon: self.horizon,
            },
        ));
    }

    /// Journals a refusal, unless the same one was journaled in the last
    /// hour.
    fn refuse(&mut self, finding: &Finding, terms: &Terms, outcome: Outcome, now: i64) {
        let said = ((finding.target.clone(), finding.action), outcome.name());
        if self
            .refusals_said
            .get(&said)
            .is_some_and(|&at| now - at < REFUSAL_QUIET_SECONDS)
        {
            return;
        }
        self.refusals_said.insert(said, now);
        let dry_run = finding.decision == Decision::WouldRun;
        self.record(finding, terms, outcome, None, dry_run, now);
    }

    fn record(
        &mut self,
        finding: &Finding,
        terms: &Terms,
        outcome: Outcome,
        action_id: Option<u64>,
        dry_run: bool,
        now: i64,
    ) {
        self.journal.push(JournalEntry {
            at: now,
            action_id,
            rule: finding.rule.clone(),
            rule_version: terms.version.clone(),
            target: finding.target.clone(),
            action: finding.action,
            dry_run,
            expires_at: match outcome {
                Outcome::DryRun => terms.expire_after.deadline(now),
                _ => None,
            },
            outcome,
            severity: finding.last_severity,
            summary: finding.summary.clone(),
            evidence: finding.evidence.clone(),
            lines: finding.lines.clone(),
        });
    }

    fn record_action(&mut self, a: &ActiveAction, outcome: Outcome, now: i64) {
        self.journal.push(JournalEntry {
            at: now,
            action_id: Some(a.id),
            rule: a.rule.clone(),
            rule_version: a.rule_version.clone(),
            target: a.target.clone(),
            action: a.action,
            dry_run: a.dry_run,
            expires_at: match outcome {
                Outcome::Ran => a.expires_at,
                _ => None,
            },
            outcome,
            severity: a.severity,
            summary: a.summary.clone(),
            evidence: a.evidence.clone(),
            lines: a.lines.clone(),
        });
    }
}

/// Whether an action leaves something to take back (an alert does not).
fn has_undo(action: Action) -> bool {
    action != Action::Alert
}

fn undo_job(a: &ActiveAction) -> Job {
    Job {
        id: a.id,
        step: Step::Undo,
        target: a.target.clone(),
        action: a.action,
        seconds: None,
        summary: a.summary.clone(),
        rule: a.rule.clone(),
        memo: a.memo.clone(),
        messages: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_model::Timestamp;

    const NOW: i64 = 1_800_000_000;

    fn finding(decision: Decision, severity: Severity, target: &str, event: i64) -> Finding {
        Finding {
            rule: "compromised-account".into(),
            severity,
            last_severity: severity,
            target: Target::Mailbox(target.into()),
            action: Action::HoldOutgoing,
            decision,
            summary: format!("{target} sends spam"),
            evidence: [("count".to_owned(), serde_json::json!("500"))]
                .into_iter()
                .collect(),
            count: 1,
            first_seen: Some(Timestamp::naive(event)),
            last_seen: Some(Timestamp::naive(event)),
            lines: vec![Citation {
                file: "/var/log/exim4/mainlog".into(),
                line: 7,
            }],
        }
    }

    fn enforced(target: &str, event: i64) -> Finding {
        finding(Decision::Enforce, Severity::Warning, target, event)
    }

    fn ledger(max_actions_per_hour: u32) -> Ledger {
        let mut l = Ledger::new(Safeguards {
            max_actions_per_hour,
            cooldown_seconds: 3600,
        });
        l.set_terms(
            "compromised-account",
            Terms {
                version: "1.2.0".into(),
                expire_after: Expiry::After(3600),
            },
        );
        l
    }

    fn decisions(l: &mut Ledger) -> Vec<String> {
        l.take_journal()
            .iter()
            .map(|e| e.outcome.to_string())
            .collect()
    }

    #[test]
    fn refusals_are_journaled_once_an_hour_and_run_nothing() {
        let mut l = ledger(20);
        let not_granted = finding(
            Decision::RefusedNotGranted,
            Severity::Critical,
            "a@x.example",
            1,
        );
        let allowed = finding(
            Decision::AllowListed("domain y.example".into()),
            Severity::Critical,
            "b@y.example",
            1,
        );
        let undeclared = finding(
            Decision::RefusedUndeclared,
            Severity::Critical,
            "c@x.example",
            1,
        );
        for f in [&not_granted, &allowed, &undeclared, &not_granted] {
            assert_eq!(l.consider(f, NOW), None);
        }
        assert_eq!(
            decisions(&mut l),
            [
                "refused-not-granted",
                "refused-allow-listed: domain y.example",
                "refused-undeclared"
            ]
        );
        assert!(l.active().is_empty());
        l.due(NOW + 3600);
        l.consider(&not_granted, NOW + 3600);
        assert_eq!(
            decisions(&mut l),
            ["refused-not-granted"],
            "said again an hour on"
        );
    }

    #[test]
    fn dry_run_records_what_would_run_once_until_it_would_expire() {
        let mut l = ledger(20);
        let f = finding(Decision::WouldRun, Severity::Warning, "a@x.example", 1);
        assert_eq!(l.consider(&f, NOW), None);
        assert_eq!(l.consider(&f, NOW + 60), None);
        let journal = l.take_journal();
        assert_eq!(journal.len(), 1, "a repeat is not a second dry-run");
        assert_eq!(journal[0].outcome, Outcome::DryRun);
        assert!(journal[0].dry_run);
        assert_eq!(journal[0].rule_version, "1.2.0");
        assert_eq!(journal[0].lines[0].line, 7);
        assert_eq!(journal[0].evidence["count"], "500");
        assert_eq!(l.due(NOW + 3600 + 59), vec![], "extended by the repeat");
        assert!(
            l.due(NOW + 3600 + 60).is_empty(),
            "dry-run has nothing to undo"
        );
        assert_eq!(decisions(&mut l), ["expired"]);
        assert_eq!(
            l.breaker_count(NOW),
            0,
            "dry-run is not counted by the breaker"
        );
    }

    #[test]
    fn an_enforced_action_runs_once_is_extended_by_repeats_and_undone_when_it_expires() {
        let mut l = ledger(20);
        let job = l.consider(&enforced("a@x.example", 1), NOW).expect("runs");
        assert_eq!(job.step, Step::Run);
        assert_eq!(job.action, Action::HoldOutgoing);
        assert_eq!(job.seconds, Some(3600));
        assert_eq!(l.active()[0].standing, Standing::Starting);
        l.finished(&job, Ok(None), NOW);
        assert_eq!(l.active()[0].standing, Standing::InForce);
        let journal = l.take_journal();
        assert_eq!(journal[0].outcome, Outcome::Ran);
        assert_eq!(journal[0].expires_at, Some(NOW + 3600));
        // Exim logs the held sender's queued mail again: a repeat verdict
        // extends the hold, it never runs the backend twice.
        assert_eq!(l.consider(&enforced("a@x.example", 2), NOW + 600), None);
        assert_eq!(l.active()[0].verdicts, 2);
        assert_eq!(l.active()[0].expires_at, Some(NOW + 600 + 3600));
        assert!(l.due(NOW + 3600).is_empty());
        let undo = l.due(NOW + 4200);
        assert_eq!(undo.len(), 1);
        assert_eq!((undo[0].id, undo[0].step), (job.id, Step::Undo));
        assert!(l.due(NOW + 4201).is_empty(), "one undo at a time");
        l.finished(&undo[0], Ok(None), NOW + 4201);
        assert_eq!(decisions(&mut l), ["expired"]);
        assert!(l.active().is_empty());
    }

    #[test]
    fn never_expiring_actions_stay_until_released() {
        let mut l = ledger(20);
        l.set_terms(
            "compromised-account",
            Terms {
                version: "1".into(),
                expire_after: Expiry::Never,
            },
        );
        let job = l.consider(&enforced("a@x.example", 1), NOW).unwrap();
        assert_eq!(job.seconds, None);
        l.finished(&job, Ok(None), NOW);
        assert!(l.due(NOW + 365 * 86_400).is_empty());
        assert_eq!(
            l.release(&job.id.to_string(), "admin", NOW).unwrap().len(),
            1
        );
    }

    #[test]
    fn a_release_cools_the_target_down_against_old_evidence_and_lesser_verdicts() {
        let mut l = ledger(20);
        let job = l.consider(&enforced("a@x.example", 100), NOW).unwrap();
        l.finished(&job, Ok(None), NOW);
        assert_eq!(
            l.release("nobody@x.example", "admin", NOW).unwrap_err(),
            NothingToRelease("nobody@x.example".into())
        );
        let undo = l.release("mailbox a@x.example", "admin", NOW + 10).unwrap();
        assert_eq!(undo.len(), 1);
        l.finished(&undo[0], Ok(None), NOW + 11);
        l.take_journal();
        // The held sender's queued mail logged again on retry: a warning,
        // and even a critical verdict resting on evidence the release
        // already answered, re-apply nothing.
        assert_eq!(l.consider(&enforced("a@x.example", 150), NOW + 20), None);
        let stale = finding(Decision::Enforce, Severity::Critical, "a@x.example", 100);
        assert_eq!(l.consider(&stale, NOW + 30), None);
        let until = NOW + 11 + 3600;
        assert_eq!(
            l.take_journal()
                .iter()
                .map(|e| e.outcome.clone())
                .collect::<Vec<_>>(),
            [Outcome::RefusedCooldown(until)],
            "said once"
        );
        // A critical verdict on newer evidence overrides the cool-down.
        let fresh = finding(Decision::Enforce, Severity::Critical, "a@x.example", 200);
        assert!(l.consider(&fresh, NOW + 40).is_some());
        // After the cool-down, a warning runs again.
        let mut l2 = ledger(20);
        let job = l2.consider(&enforced("b@x.example", 1), NOW).unwrap();
        l2.finished(&job, Ok(None), NOW);
        let undo = l2.release("b@x.example", "admin", NOW).unwrap();
        l2.finished(&undo[0], Ok(None), NOW);
        assert_eq!(decisions(&mut l2), ["ran", "released: admin"]);
        assert!(
            l2.consider(&enforced("b@x.example", 2), NOW + 3599)
                .is_none()
        );
        l2.due(NOW + 3600);
        assert!(
            l2.consider(&enforced("b@x.example", 3), NOW + 3600)
                .is_some()
        );
    }

    #[test]
    fn past_the_breaker_actions_become_one_alert_per_target() {
        let mut l = ledger(2);
        for (i, who) in ["a", "b"].iter().enumerate() {
            let job = l.consider(&enforced(&format!("{who}@x.example"), 1), NOW + i as i64);
            l.finished(&job.unwrap(), Ok(None), NOW);
        }
        assert_eq!(l.breaker_count(NOW + 2), 2);
        let job = l.consider(&enforced("c@x.example", 1), NOW + 2).unwrap();
        assert_eq!(
            job.action,
            Action::Alert,
            "the breaker turns it into an alert"
        );
        l.finished(&job, Ok(None), NOW + 2);
        assert_eq!(
            l.consider(&enforced("c@x.example", 2), NOW + 3),
            None,
            "alerted once"
        );
        assert_eq!(
            decisions(&mut l),
            ["ran", "ran", "refused-breaker", "ran", "refused-breaker"]
        );
        // An hour after the first two, the breaker lets actions through.
        assert_eq!(l.breaker_count(NOW + 3600), 1);
        let job = l.consider(&enforced("d@x.example", 1), NOW + 3601).unwrap();
        assert_eq!(job.action, Action::HoldOutgoing);
    }

    #[test]
    fn failures_are_journaled_with_the_backends_error_and_undo_is_retried() {
        let mut l = ledger(20);
        let job = l.consider(&enforced("a@x.example", 1), NOW).unwrap();
        l.finished(&job, Err("whmapi1: exited with status 1".into()), NOW);
        assert!(l.active().is_empty(), "a failed action is not in force");
        assert_eq!(decisions(&mut l), ["failed: whmapi1: exited with status 1"]);
        let job = l.consider(&enforced("a@x.example", 2), NOW + 5).unwrap();
        l.finished(&job, Ok(None), NOW + 5);
        let undo = l.due(NOW + 3605);
        l.finished(&undo[0], Err("timed out after 10 s".into()), NOW + 3605);
        assert_eq!(l.due(NOW + 3664), vec![]);
        assert_eq!(l.due(NOW + 3665).len(), 1, "tried again a minute on");
        assert_eq!(
            decisions(&mut l),
            ["ran", "undo-failed: timed out after 10 s"]
        );
    }

    #[test]
    fn what_a_run_left_to_take_back_reaches_its_undo_across_a_restart() {
        let mut l = ledger(20);
        let job = l.consider(&enforced("a@x.example", 1), NOW).unwrap();
        assert_eq!(job.memo, None);
        l.finished(
            &job,
            Ok(Some("1abcde-000001-AB 1abcde-000002-AB".into())),
            NOW,
        );
        let mut back = Ledger::restore(&l.snapshot(), Safeguards::default()).unwrap();
        let undo = back.release("a@x.example", "admin", NOW + 5).unwrap();
        assert_eq!(
            undo[0].memo.as_deref(),
            Some("1abcde-000001-AB 1abcde-000002-AB")
        );
    }

    #[test]
    fn a_rule_moved_from_dry_run_to_enforce_runs_what_it_only_recorded() {
        let mut l = ledger(20);
        let f = finding(Decision::WouldRun, Severity::Warning, "a@x.example", 1);
        assert_eq!(l.consider(&f, NOW), None);
        assert!(l.consider(&enforced("a@x.example", 2), NOW + 1).is_some());
        assert_eq!(l.active().len(), 1);
        assert!(!l.active()[0].dry_run);
    }

    #[test]
    fn a_restored_ledger_keeps_actions_cool_downs_and_the_breaker() {
        let mut l = ledger(2);
        let ran = l.consider(&enforced("a@x.example", 1), NOW).unwrap();
        l.finished(&ran, Ok(None), NOW);
        let starting = l.consider(&enforced("b@x.example", 1), NOW).unwrap();
        let mut back = Ledger::restore(&l.snapshot(), Safeguards::default()).unwrap();
        assert_eq!(back.active().len(), 2);
        assert!(
            back.active()
                .iter()
                .all(|a| a.standing == Standing::InForce)
        );
        assert_eq!(back.breaker_count(NOW), 2);
        let undo = back.due(NOW + 3600);
        assert_eq!(
            undo.iter().map(|j| j.id).collect::<Vec<_>>(),
            [ran.id, starting.id],
            "an action that may have run is undone in time"
        );
        let next = back.consider(&enforced("c@x.example", 1), NOW + 1).unwrap();
        assert!(next.id > starting.id, "ids are not reused");
        assert!(Ledger::restore(b"{", Safeguards::default()).is_err());
    }
}
