//! Policy: every verdict passes here before anything may act on it.
//!
//! Rules only *request* actions. The policy checks a request against what
//! the rule declared (a rule can't ask for an action it didn't list),
//! applies the rule's mode (dry-run by default), and folds repeated verdicts
//! about the same (rule, target, action) into one [`Finding`] with a count,
//! the time span and the strongest severity.
//!
//! A rule may make at most [`MAX_FINDINGS_PER_RULE`] findings: a rule that
//! speaks about every event it reads would bury the real ones and grow
//! memory with the input. Verdicts past that about new targets are dropped,
//! counted, and said once.

use std::collections::HashMap;

use serde::Serialize;

use crate::normalize::Timestamp;

pub use spamward_contract::verdict::{Action, Severity, Target, Verdict};

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

/// Where a cited event came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Citation {
    /// Input file.
    pub file: String,
    /// 1-based line.
    pub line: u64,
}

/// What the policy decided about a requested action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Dry-run: it would have run.
    WouldRun,
    /// Enforce mode, but this spamward cannot carry actions out yet:
    /// nothing was done.
    EnforcementNotAvailable,
    /// The rule did not declare this action; refused.
    RefusedUndeclared,
}

/// One finding: all verdicts of a rule about one target and action.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Rule name.
    pub rule: String,
    /// Strongest severity seen.
    pub severity: Severity,
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
    pub first_seen: Option<Timestamp>,
    /// Time of the last verdict's event.
    pub last_seen: Option<Timestamp>,
    /// Where the cited events came from (first few).
    pub lines: Vec<Citation>,
}

/// Cited lines kept per finding.
const MAX_CITATIONS: usize = 5;

/// Findings one rule may make.
pub const MAX_FINDINGS_PER_RULE: usize = 1000;

/// Folds verdicts into findings.
#[derive(Debug, Default)]
pub struct Policy {
    findings: Vec<Finding>,
    index: HashMap<(String, Target, Action), usize>,
    /// Per rule: findings made and verdicts dropped past the cap.
    per_rule: HashMap<String, (usize, u64)>,
}

/// What the policy needs to know about the rule that spoke.
pub struct RuleGrant<'a> {
    /// Rule name.
    pub name: &'a str,
    /// Actions the rule declared.
    pub declared: &'a [Action],
    /// The rule's mode.
    pub mode: Mode,
}

impl Policy {
    /// An empty policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one verdict of `rule` at event time `time` with its citations.
    pub fn admit(
        &mut self,
        rule: &RuleGrant<'_>,
        verdict: Verdict,
        time: Option<Timestamp>,
        citations: Vec<Citation>,
    ) {
        let decision = if !rule.declared.contains(&verdict.action) {
            tracing::warn!(
                rule = rule.name,
                action = %verdict.action,
                "refused an action the rule did not declare"
            );
            Decision::RefusedUndeclared
        } else {
            match rule.mode {
                Mode::DryRun => Decision::WouldRun,
                Mode::Enforce => Decision::EnforcementNotAvailable,
            }
        };
        // Sorted by name, so a finding reads the same whatever order the
        // rule added its figures in.
        let evidence: std::collections::BTreeMap<_, _> = verdict.evidence.into_iter().collect();
        let evidence: serde_json::Map<_, _> = evidence
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let key = (rule.name.to_owned(), verdict.target.clone(), verdict.action);
        match self.index.get(&key) {
            Some(&i) => {
                let f = &mut self.findings[i];
                f.count += 1;
                f.last_seen = time.or(f.last_seen);
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
            }
            None => {
                let (made, dropped) = self.per_rule.entry(key.0.clone()).or_default();
                if *made >= MAX_FINDINGS_PER_RULE {
                    if *dropped == 0 {
                        tracing::warn!(
                            rule = rule.name,
                            "made {MAX_FINDINGS_PER_RULE} findings; verdicts about further targets are dropped (said once)"
                        );
                    }
                    *dropped += 1;
                    return;
                }
                *made += 1;
                self.index.insert(key, self.findings.len());
                let mut lines = citations;
                lines.truncate(MAX_CITATIONS);
                self.findings.push(Finding {
                    rule: rule.name.to_owned(),
                    severity: verdict.severity,
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
            }
        }
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
        let mut p = Policy::new();
        let grant = RuleGrant {
            name: "r",
            declared: &[Action::HoldOutgoing],
            mode: Mode::DryRun,
        };
        p.admit(
            &grant,
            verdict(Severity::Warning, Action::HoldOutgoing),
            None,
            vec![],
        );
        p.admit(
            &grant,
            verdict(Severity::Critical, Action::HoldOutgoing),
            None,
            vec![],
        );
        p.admit(
            &grant,
            verdict(Severity::Warning, Action::HoldOutgoing),
            None,
            vec![],
        );
        let f = p.into_findings();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].count, 3);
        assert_eq!(f[0].severity, Severity::Critical);
        assert_eq!(f[0].summary, "critical");
        assert_eq!(f[0].decision, Decision::WouldRun);
    }

    #[test]
    fn undeclared_action_is_refused() {
        let mut p = Policy::new();
        let grant = RuleGrant {
            name: "r",
            declared: &[Action::Alert],
            mode: Mode::Enforce,
        };
        p.admit(
            &grant,
            verdict(Severity::Critical, Action::BlockIp),
            None,
            vec![],
        );
        assert_eq!(p.into_findings()[0].decision, Decision::RefusedUndeclared);
    }

    #[test]
    fn enforce_says_enforcement_is_not_available_yet() {
        let mut p = Policy::new();
        let grant = RuleGrant {
            name: "r",
            declared: &[Action::HoldOutgoing],
            mode: Mode::Enforce,
        };
        p.admit(
            &grant,
            verdict(Severity::Warning, Action::HoldOutgoing),
            None,
            vec![],
        );
        let f = p.into_findings();
        assert_eq!(f[0].decision, Decision::EnforcementNotAvailable);
        assert_eq!(
            serde_json::to_value(&f[0]).unwrap()["decision"],
            "enforcement-not-available"
        );
    }

    #[test]
    fn a_rule_past_its_findings_cap_is_cut_and_counted_others_are_not() {
        let mut p = Policy::new();
        let grant = |name| RuleGrant {
            name,
            declared: &[Action::Alert],
            mode: Mode::DryRun,
        };
        for i in 0..MAX_FINDINGS_PER_RULE + 10 {
            let mut v = verdict(Severity::Info, Action::Alert);
            v.target = Target::Ip(format!("192.0.2.{i}"));
            p.admit(&grant("chatty"), v, None, vec![]);
        }
        // A verdict about a target it already has still folds in.
        let mut v = verdict(Severity::Critical, Action::Alert);
        v.target = Target::Ip("192.0.2.0".into());
        p.admit(&grant("chatty"), v, None, vec![]);
        p.admit(
            &grant("quiet"),
            verdict(Severity::Info, Action::Alert),
            None,
            vec![],
        );
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
    fn target_serializes_as_kind_and_value() {
        let v = serde_json::to_value(Target::Mailbox("a@b.example".into())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "mailbox", "value": "a@b.example"})
        );
    }
}
