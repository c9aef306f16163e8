//! The human findings table.

use std::fmt::Write as _;

use super::fit;
use super::terminal::escape;
use spamward_pipeline::policy::{Decision, Finding};

/// Renders findings as a table, most severe first, with evidence lines.
pub fn render_findings(findings: &[Finding]) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str("No findings.\n");
        return out;
    }
    let _ = writeln!(out, "{} finding(s):\n", findings.len());
    let _ = writeln!(
        out,
        "{:<9} {:<18} {:<42} {:<17} SUMMARY",
        "SEVERITY", "RULE", "TARGET", "ACTION"
    );
    for f in findings {
        let action = match f.decision {
            Decision::WouldRun => format!("would {}", f.action),
            Decision::Enforce => format!("enforce {}", f.action),
            Decision::RefusedUndeclared => format!("refused {}", f.action),
            Decision::RefusedNotGranted => format!("asks {}", f.action),
            Decision::AllowListed(_) => format!("spared {}", f.action),
        };
        let _ = writeln!(
            out,
            "{:<9} {:<18} {:<42} {:<17} {}",
            f.severity.to_string(),
            fit(&f.rule, 18),
            fit(&escape(&f.target.to_string()), 42),
            fit(&action, 17),
            escape(&f.summary)
        );
        let mut detail: Vec<String> = f
            .evidence
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        if f.count > 1 {
            detail.push(format!("verdicts={}", f.count));
        }
        if let (Some(a), Some(b)) = (f.first_seen, f.last_seen) {
            detail.push(if a == b {
                format!("at {a}")
            } else {
                format!("from {a} to {b}")
            });
        }
        if let Some(first) = f.lines.first() {
            detail.push(format!("{}:{}", first.file, first.line));
        }
        match &f.decision {
            Decision::Enforce => detail.push(format!(
                "enforce: `spamward run` carries {} out; this report did nothing",
                f.action
            )),
            Decision::RefusedNotGranted => detail.push(format!(
                "{} not granted: add it to [rules.{}] actions",
                f.action, f.rule
            )),
            Decision::AllowListed(entry) => detail.push(format!("allow-listed: {entry}")),
            Decision::WouldRun | Decision::RefusedUndeclared => {}
        }
        let _ = writeln!(out, "{:<9} {}", "", escape(&detail.join("  ")));
    }
    out
}
