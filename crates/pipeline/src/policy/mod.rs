//! Policy: the stage after the engine. Every verdict passes here before
//! anything may act on it.
//!
//! Rules only *request* actions. The policy checks a request against what
//! the rule declared (a rule can't ask for an action it didn't list), what
//! the admin granted it (`[rules.<name>] actions`, `alert` alone unless
//! more is given), its mode (dry-run by default) and the allow-list
//! ([`allow`]); and folds repeated verdicts about the same (rule, target,
//! action) into one [`Finding`] with a count, the time span and the
//! strongest severity. What a granted finding does *now* (whether an action
//! is already in force, a cool-down, the breaker) is the [`ledger`]'s.
//!
//! A rule may make at most [`MAX_FINDINGS_PER_RULE`] findings: a rule that
//! speaks about every event it reads would bury the real ones and grow
//! memory with the input. Verdicts past that about new targets are dropped,
//! counted, and said once.

pub mod allow;
pub mod ledger;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use spamward_model::Timestamp;

use allow::AllowList;

pub use spamward_contract::verdict::{Action, Severity, Target, Verdict};
pub use spamward_engine::{Citation, RuleVerdict};

/// Whether a rule's requested actions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Report what would be done; do nothing (the default).
    #[default]
    DryRun,
    /// Carry the actions out.
    Enforce,
}

/// What the policy decided about a requested action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Granted, in dry-run: it would run; the journal records it.
    WouldRun,
    /// Granted, in enforce: `spamward run` carries it out (a `scan` only
    /// reports).
    Enforce,
    /// The rule did not declare this action; refused.
    RefusedUndeclared,
    /// Declared, but the admin did not grant it to the rule
    /// (`[rules.<name>] actions`).
    RefusedNotGranted,
    /// The target is on the allow-list: reported, never acted on. Holds the
    /// entry that covers it.
    AllowListed(String),
}

/// One finding: all verdicts of a rule about one target and action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// Rule name.
    pub rule: String,
    /// Strongest severity seen.
    pub severity: Severity,
    /// Severity of the latest verdict folded in (a cool-down yields only to
    /// a critical one, whatever came before).
    #[serde(skip, default = "lowest")]
    pub last_severity: Severity,
    /// Target.
    pub target: Target,
    /// Requested action.
    pub action: Action,
    /// What the policy decided.
    pub decision: Decision,
    /// Summary of the strongest (latest among equals) verdict.
    pub summary: String,
    /// Evidence of that verdict, as a JSON object.
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// How many verdicts were folded in.
    pub count: u64,
    /// Time of the first verdict's event.
    #[serde(skip_deserializing)]
    pub first_seen: Option<Timestamp>,
    /// Time of the last verdict's event.
    #[serde(skip_deserializing)]
    pub last_seen: Option<Timestamp>,
    /// Where the cited events came from (first few).
    pub lines: Vec<Citation>,
}

fn lowest() -> Severity {
    Severity::Info
}

/// Cited lines kept per finding.
const MAX_CITATIONS: usize = 5;

/// Findings one rule may make.
pub const MAX_FINDINGS_PER_RULE: usize = 1000;

/// What the policy knows of a rule: what it declared and how the admin set
/// it. Updated when a rule or its settings are (re)loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Actions the rule declared.
    pub declared: Vec<Action>,
    /// Actions the admin granted it (`[rules.<name>] actions`).
    pub granted: Vec<Action>,
    /// The rule's mode.
    pub mode: Mode,
}

/// The policy stage: folds the verdicts the engine hands over into
/// findings, deciding for each what its requested action may do.
///
/// Its memory is bounded two ways: a rule holds at most
/// [`MAX_FINDINGS_PER_RULE`] findings, and with a [`Policy::forgetting`]
/// window a finding nobody repeated for that long (in event time) is
/// forgotten, so a later verdict about the same target starts a new one.
#[derive(Debug, Default)]
pub struct Policy {
    grants: HashMap<Arc<str>, Grant>,
    allow: AllowList,
    findings: Vec<Finding>,
    index: HashMap<(Arc<str>, Target, Action), usize>,
    /// Per rule: findings held and verdicts dropped past the cap.
    per_rule: HashMap<Arc<str>, (usize, u64)>,
    /// Forget findings quiet for this many seconds of event time.
    forget_after: Option<i64>,
    /// The newest event time seen, and when the last sweep ran.
    newest: Option<i64>,
    swept_at: i64,
}

/// The policy as a checkpoint keeps it.
#[derive(Serialize, Deserialize)]
struct Saved {
    findings: Vec<SavedFinding>,
    dropped: Vec<(String, u64)>,
    newest: Option<i64>,
}

/// A finding with its times exact (its JSON form shows them as written).
#[derive(Serialize, Deserialize)]
struct SavedFinding {
    finding: Finding,
    first: Option<Stamp>,
    last: Option<Stamp>,
}

/// A [`Timestamp`] in full.
#[derive(Serialize, Deserialize)]
struct Stamp(i64, i16, bool);

impl From<Timestamp> for Stamp {
    fn from(t: Timestamp) -> Self {
        Stamp(t.seconds, t.offset_minutes, t.offset_written)
    }
}

impl From<Stamp> for Timestamp {
    fn from(s: Stamp) -> Self {
        Timestamp::local(s.0, s.1, s.2)
    }
}

/// What became of one verdict.
#[derive(Debug)]
pub enum Admission<'a> {
    /// It made a new finding.
    New(&'a Finding),
    /// It folded into a finding already held.
    Repeat(&'a Finding),
    /// Dropped: its rule already holds [`MAX_FINDINGS_PER_RULE`] findings.
    Dropped,
}

impl Policy {
    /// A policy that keeps every finding of a run (up to the per-rule cap):
    /// what a replay reports.
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy that forgets a finding after `seconds` of event time
    /// without a repeat: what a daemon that runs for months needs.
    pub fn forgetting(seconds: u32) -> Self {
        Policy {
            forget_after: Some(i64::from(seconds)),
            ..Self::default()
        }
    }

    /// Sets what `rule` declared and how it runs (on every load or reload).
    pub fn grant(&mut self, rule: &str, grant: Grant) {
        self.grants.insert(rule.into(), grant);
    }

    /// Sets what no action touches (on every load or reload).
    pub fn set_allow_list(&mut self, allow: AllowList) {
        self.allow = allow;
    }

    /// Takes one verdict.
    pub fn admit(&mut self, v: RuleVerdict) -> Admission<'_> {
        let RuleVerdict {
            rule,
            verdict,
            time,
            citations,
        } = v;
        if let Some(t) = time {
            self.newest = Some(self.newest.map_or(t.seconds, |n| n.max(t.seconds)));
            self.sweep();
        }
        let decision = match self.grants.get(&rule) {
            Some(g) if g.declared.contains(&verdict.action) => {
                if let Some(allowed) = self.allow.covering(&verdict.target) {
                    Decision::AllowListed(allowed.to_string())
                } else if !g.granted.contains(&verdict.action) {
                    Decision::RefusedNotGranted
                } else {
                    match g.mode {
                        Mode::DryRun => Decision::WouldRun,
                        Mode::Enforce => Decision::Enforce,
                    }
                }
            }
            _ => {
                tracing::warn!(
                    rule = &*rule,
                    action = %verdict.action,
                    "refused an action the rule did not declare"
                );
                Decision::RefusedUndeclared
            }
        };
        // Sorted by name, so a finding reads the same whatever order the
        // rule added its figures in.
        let evidence: std::collections::BTreeMap<_, _> = verdict.evidence.into_iter().collect();
        let evidence: serde_json::Map<_, _> = evidence
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let key = (rule.clone(), verdict.target.clone(), verdict.action);
        if let Some(&i) = self.index.get(&key) {
            let f = &mut self.findings[i];
            f.count += 1;
            f.last_seen = time.or(f.last_seen);
            f.last_severity = verdict.severity;
            // A reload may have changed the grant or the allow-list.
            f.decision = decision;
            if verdict.severity >= f.severity {
                f.severity = verdict.severity;
                f.summary = verdict.summary;
                f.evidence = evidence;
            }
            for c in citations {
                if f.lines.len() >= MAX_CITATIONS {
                    break;
                }
                if !f.lines.contains(&c) {
                    f.lines.push(c);
                }
            }
            return Admission::Repeat(f);
        }
        let (held, dropped) = self.per_rule.entry(rule.clone()).or_default();
        if *held >= MAX_FINDINGS_PER_RULE {
            if *dropped == 0 {
                tracing::warn!(
                    rule = &*rule,
                    "holds {MAX_FINDINGS_PER_RULE} findings; verdicts about further targets are dropped (said once)"
                );
            }
            *dropped += 1;
            return Admission::Dropped;
        }
        *held += 1;
        self.index.insert(key, self.findings.len());
        let mut lines = citations;
        lines.truncate(MAX_CITATIONS);
        self.findings.push(Finding {
            rule: rule.to_string(),
            severity: verdict.severity,
            last_severity: verdict.severity,
            target: verdict.target,
            action: verdict.action,
            decision,
            summary: verdict.summary,
            evidence,
            count: 1,
            first_seen: time,
            last_seen: time,
            lines,
        });
        Admission::New(self.findings.last().expect("just pushed"))
    }

    /// Forgets findings whose last verdict is older than the window, once
    /// event time has moved a quarter of the window since the last sweep
    /// (so a sweep's cost is spread over the verdicts between sweeps).
    fn sweep(&mut self) {
        let (Some(window), Some(newest)) = (self.forget_after, self.newest) else {
            return;
        };
        if newest - self.swept_at < (window / 4).max(1) {
            return;
        }
        self.swept_at = newest;
        let cutoff = newest - window;
        let before = self.findings.len();
        let per_rule = &mut self.per_rule;
        self.findings.retain(|f| {
            let keep = f.last_seen.is_none_or(|t| t.seconds > cutoff);
            if !keep && let Some((held, _)) = per_rule.get_mut(f.rule.as_str()) {
                *held -= 1;
            }
            keep
        });
        if self.findings.len() != before {
            self.index = self
                .findings
                .iter()
                .enumerate()
                .map(|(i, f)| ((f.rule.as_str().into(), f.target.clone(), f.action), i))
                .collect();
        }
    }

    /// What the policy holds, as bytes for a daemon's checkpoint: the open
    /// findings (with their exact times) and the per-rule counts.
    pub fn snapshot(&self) -> Vec<u8> {
        let saved = Saved {
            findings: self
                .findings
                .iter()
                .map(|f| SavedFinding {
                    first: f.first_seen.map(Stamp::from),
                    last: f.last_seen.map(Stamp::from),
                    finding: f.clone(),
                })
                .collect(),
            dropped: self
                .per_rule
                .iter()
                .map(|(rule, (_, dropped))| (rule.to_string(), *dropped))
                .collect(),
            newest: self.newest,
        };
        serde_json::to_vec(&saved).expect("findings always encode")
    }

    /// Puts back what [`Policy::snapshot`] saved; grants are given again
    /// by whoever loads the rules.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        let saved: Saved = serde_json::from_slice(bytes)?;
        self.findings.clear();
        self.index.clear();
        self.per_rule.clear();
        for (rule, dropped) in saved.dropped {
            self.per_rule.insert(rule.into(), (0, dropped));
        }
        for s in saved.findings {
            let mut f = s.finding;
            f.first_seen = s.first.map(Timestamp::from);
            f.last_seen = s.last.map(Timestamp::from);
            let rule: Arc<str> = f.rule.as_str().into();
            self.per_rule.entry(rule.clone()).or_default().0 += 1;
            self.index
                .insert((rule, f.target.clone(), f.action), self.findings.len());
            self.findings.push(f);
        }
        self.newest = saved.newest;
        self.swept_at = saved.newest.unwrap_or_default();
        Ok(())
    }

    /// Findings held now.
    pub fn len(&self) -> usize {
        self.findings.len()
    }

    /// Whether it holds no finding.
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// Verdicts of `rule` dropped because it had made
    /// [`MAX_FINDINGS_PER_RULE`] findings.
    pub fn dropped(&self, rule: &str) -> u64 {
        self.per_rule.get(rule).map_or(0, |(_, dropped)| *dropped)
    }

    /// The findings, most severe first, then by rule and target.
    pub fn into_findings(mut self) -> Vec<Finding> {
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.rule.cmp(&b.rule))
                .then_with(|| a.target.cmp(&b.target))
        });
        self.findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(rule: &str, declared: &[Action], mode: Mode) -> Policy {
        let mut p = Policy::new();
        p.grant(
            rule,
            Grant {
                declared: declared.to_vec(),
                granted: declared.to_vec(),
                mode,
            },
        );
        p
    }

    /// A dry-run rule that declared and was granted alerts.
    fn alerts() -> Grant {
        Grant {
            declared: vec![Action::Alert],
            granted: vec![Action::Alert],
            mode: Mode::DryRun,
        }
    }

    fn said(rule: &str, verdict: Verdict) -> RuleVerdict {
        RuleVerdict {
            rule: rule.into(),
            verdict,
            time: None,
            citations: vec![],
        }
    }

    fn verdict(severity: Severity, action: Action) -> Verdict {
        Verdict {
            severity,
            target: Target::Domain("spam.example".into()),
            action,
            summary: format!("{severity}"),
            evidence: vec![("n".into(), "1".into())],
            events: vec![],
        }
    }

    #[test]
    fn repeated_verdicts_fold_into_one_finding_with_the_strongest_severity() {
        let mut p = granted("r", &[Action::HoldOutgoing], Mode::DryRun);
        p.admit(said("r", verdict(Severity::Warning, Action::HoldOutgoing)));
        p.admit(said("r", verdict(Severity::Critical, Action::HoldOutgoing)));
        p.admit(said("r", verdict(Severity::Warning, Action::HoldOutgoing)));
        let f = p.into_findings();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].count, 3);
        assert_eq!(f[0].severity, Severity::Critical);
        assert_eq!(f[0].summary, "critical");
        assert_eq!(f[0].decision, Decision::WouldRun);
    }

    #[test]
    fn undeclared_action_is_refused() {
        let mut p = granted("r", &[Action::Alert], Mode::Enforce);
        p.admit(said("r", verdict(Severity::Critical, Action::BlockIp)));
        assert_eq!(p.into_findings()[0].decision, Decision::RefusedUndeclared);
    }

    #[test]
    fn a_granted_action_in_enforce_mode_is_to_be_enforced() {
        let mut p = granted("r", &[Action::HoldOutgoing], Mode::Enforce);
        p.admit(said("r", verdict(Severity::Warning, Action::HoldOutgoing)));
        let f = p.into_findings();
        assert_eq!(f[0].decision, Decision::Enforce);
        assert_eq!(serde_json::to_value(&f[0]).unwrap()["decision"], "enforce");
    }

    #[test]
    fn a_declared_action_the_admin_did_not_grant_is_refused_in_either_mode() {
        for mode in [Mode::DryRun, Mode::Enforce] {
            let mut p = Policy::new();
            p.grant(
                "r",
                Grant {
                    declared: vec![Action::HoldOutgoing, Action::Alert],
                    granted: vec![Action::Alert],
                    mode,
                },
            );
            p.admit(said("r", verdict(Severity::Critical, Action::HoldOutgoing)));
            let f = p.into_findings();
            assert_eq!(f[0].decision, Decision::RefusedNotGranted, "{mode:?}");
            assert_eq!(
                serde_json::to_value(&f[0]).unwrap()["decision"],
                "refused-not-granted"
            );
        }
    }

    #[test]
    fn an_allow_listed_target_is_reported_and_names_the_entry() {
        let mut p = granted("r", &[Action::HoldOutgoing], Mode::Enforce);
        let mut allow = AllowList::defaults([]);
        allow.add("spam.example").unwrap();
        p.set_allow_list(allow);
        p.admit(said("r", verdict(Severity::Critical, Action::HoldOutgoing)));
        let f = p.into_findings();
        assert_eq!(
            f[0].decision,
            Decision::AllowListed("domain spam.example".into())
        );
    }

    #[test]
    fn a_rule_past_its_findings_cap_is_cut_and_counted_others_are_not() {
        let mut p = granted("chatty", &[Action::Alert], Mode::DryRun);
        p.grant("quiet", alerts());
        for i in 0..MAX_FINDINGS_PER_RULE + 10 {
            let mut v = verdict(Severity::Info, Action::Alert);
            v.target = Target::Ip(format!("192.0.2.{i}"));
            p.admit(said("chatty", v));
        }
        // A verdict about a target it already has still folds in.
        let mut v = verdict(Severity::Critical, Action::Alert);
        v.target = Target::Ip("192.0.2.0".into());
        assert!(matches!(p.admit(said("chatty", v)), Admission::Repeat(_)));
        let quiet = p.admit(said("quiet", verdict(Severity::Info, Action::Alert)));
        assert!(matches!(quiet, Admission::New(f) if f.rule == "quiet"));
        assert_eq!(p.dropped("chatty"), 10);
        assert_eq!(p.dropped("quiet"), 0);
        let f = p.into_findings();
        assert_eq!(
            f.iter().filter(|f| f.rule == "chatty").count(),
            MAX_FINDINGS_PER_RULE
        );
        assert_eq!(f[0].severity, Severity::Critical);
        assert_eq!(f.iter().filter(|f| f.rule == "quiet").count(), 1);
    }

    #[test]
    fn a_forgetting_policy_lets_quiet_findings_go_and_starts_anew() {
        let mut p = Policy::forgetting(3600);
        p.grant("r", alerts());
        let at = |seconds, target: &str| {
            let mut v = verdict(Severity::Info, Action::Alert);
            v.target = Target::Ip(target.into());
            RuleVerdict {
                time: Some(Timestamp::naive(seconds)),
                ..said("r", v)
            }
        };
        assert!(matches!(p.admit(at(0, "192.0.2.1")), Admission::New(_)));
        assert!(matches!(
            p.admit(at(1800, "192.0.2.1")),
            Admission::Repeat(_)
        ));
        // A day of other targets, one an hour: the first is forgotten an
        // hour after its last repeat, and memory stays at a few findings.
        for hour in 1..=24 {
            p.admit(at(1800 + hour * 3600, &format!("198.51.100.{hour}")));
            assert!(p.len() <= 3, "hour {hour}: {} findings held", p.len());
        }
        match p.admit(at(30 * 3600, "192.0.2.1")) {
            Admission::New(f) => assert_eq!(f.count, 1, "a new finding, not the old one"),
            other => panic!("expected a new finding, got {other:?}"),
        }
        // Forgotten findings free their rule's room under the cap.
        assert_eq!(p.dropped("r"), 0);
    }

    #[test]
    fn target_serializes_as_kind_and_value() {
        let v = serde_json::to_value(Target::Mailbox("a@b.example".into())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "mailbox", "value": "a@b.example"})
        );
    }

    #[test]
    fn a_restored_policy_folds_repeats_into_the_findings_it_held() {
        let mut p = Policy::forgetting(3600);
        let grant = alerts();
        p.grant("r", grant.clone());
        let mut v = said("r", verdict(Severity::Warning, Action::Alert));
        v.time = Some(Timestamp::local(1000, 120, true));
        p.admit(v.clone());
        let mut restored = Policy::forgetting(3600);
        restored.grant("r", grant);
        restored.restore(&p.snapshot()).unwrap();
        v.time = Some(Timestamp::local(1060, 120, true));
        match restored.admit(v) {
            Admission::Repeat(f) => {
                assert_eq!(f.count, 2);
                assert_eq!(f.first_seen, Some(Timestamp::local(1000, 120, true)));
                assert_eq!(
                    f.last_seen.unwrap().to_string(),
                    "1970-01-01T02:17:40+02:00"
                );
            }
            other => panic!("expected a repeat, got {other:?}"),
        }
        assert!(restored.restore(b"{").is_err());
    }
}
