//! `spamward audit`: the server's posture as a checklist.
//!
//! Reads the configuration state under `--root` (and, on a live server, asks
//! Exim itself whether it relays for strangers), runs every rule that judges
//! configuration once, and prints each check as failed (with the fix),
//! passed, or not applicable (nothing for it to look at on this server: then
//! it says what it looked for).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use super::exit::Outcome;
use super::{Cli, Setup, server_root_read, warn};
use crate::report::terminal;
use spamward_cpanel::{looked_for, read_server_state};
use spamward_exim::relay_probe;
use spamward_model::EventKind;
use spamward_model::HostLookups;
use spamward_pipeline::policy::{Finding, Severity};

/// `audit` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server root to read (`/`, or a copy of a server).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// One JSON object per finding per line (the shape `scan --json` prints).
    #[arg(long)]
    json: bool,
    /// Exim binary for the open-relay probe (default: found on a live root).
    #[arg(long, value_name = "FILE")]
    exim: Option<PathBuf>,
    /// Exim configuration for the probe (`exim -C`).
    #[arg(long, value_name = "FILE", requires = "exim")]
    exim_config: Option<PathBuf>,
    /// Exit with status 1 when a failed check is at least this severe.
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<Severity>,
}

/// Event kinds that describe configuration: rules subscribing to any of
/// them are the audit's checks.
const CONFIG_KINDS: [EventKind; 5] = [
    EventKind::Setting,
    EventKind::MailAlias,
    EventKind::MailboxStats,
    EventKind::ServiceState,
    EventKind::Extension,
];

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Failed,
    Passed,
    NotApplicable,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let setup = Setup::load(cli)?;
    let now = setup.ingest.zone.at_system_time(SystemTime::now());
    let mut events = Vec::new();
    let report = read_server_state(&args.root, now, &mut events);
    let mut outcome = Outcome {
        incomplete: server_root_read(&args.root, &report)?,
        ..Outcome::default()
    };
    let lookups = Arc::new(HostLookups::from_events(&events));

    let exim = args.exim.clone().or_else(|| {
        // Probe the live Exim only when auditing the live server.
        (args.root == std::path::Path::new("/"))
            .then(relay_probe::find_exim)
            .flatten()
    });
    if let Some(exim) = exim {
        match relay_probe::probe(&exim, args.exim_config.as_deref(), now) {
            Ok(event) => events.push(event),
            Err(e) => warn(&format!("open-relay probe skipped: {e}")),
        }
    }

    let checks: Vec<String> = setup
        .rules
        .all()
        .values()
        .filter(|r| {
            r.meta
                .subscriptions
                .iter()
                .any(|k| CONFIG_KINDS.contains(k))
        })
        .map(|r| r.meta.name.clone())
        .collect();
    let mut pipeline = setup.pipeline(lookups)?;
    outcome.incomplete |= setup.rules_failed(&pipeline);
    let disabled: Vec<String> = pipeline.disabled().iter().map(|(n, _)| n.clone()).collect();
    for event in events {
        pipeline.push(event);
    }
    let (findings, reports) = pipeline.finish();
    let findings: Vec<Finding> = findings
        .into_iter()
        .filter(|f| checks.contains(&f.rule))
        .collect();
    outcome.findings = Outcome::fails_on(&findings, args.fail_on);
    outcome.incomplete |= reports
        .iter()
        .any(|r| checks.contains(&r.rule) && r.health.failures > 0);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        for f in &findings {
            serde_json::to_writer(&mut out, f)?;
            out.write_all(b"\n")?;
        }
        return Ok(outcome.code());
    }

    writeln!(out, "spamward audit of {} at {now}\n", args.root.display())?;
    let mut counts = [0usize; 3];
    for name in &checks {
        let mine: Vec<&Finding> = findings.iter().filter(|f| &f.rule == name).collect();
        let report = reports.iter().find(|r| &r.rule == name);
        let status = if !mine.is_empty() {
            Status::Failed
        } else if report.is_some_and(|r| r.health.events > 0) {
            Status::Passed
        } else {
            Status::NotApplicable
        };
        let rule = setup.rules.all().get(name);
        let summary = rule.map_or("", |r| r.meta.summary.as_str());
        let (label, index) = match status {
            Status::Failed => ("FAIL", 0),
            Status::Passed => ("ok", 1),
            Status::NotApplicable => ("n/a", 2),
        };
        counts[index] += 1;
        writeln!(out, "  {label:<5} {name:<20} {summary}")?;
        for f in mine {
            let line = format!("{}: {}", f.target, f.summary);
            writeln!(out, "        {}", terminal::escape(&line))?;
            if let Some(fix) = f.evidence.get("fix").and_then(|v| v.as_str()) {
                writeln!(out, "        fix: {}", terminal::escape(fix))?;
            }
        }
        if status == Status::NotApplicable
            && let Some(rule) = rule
        {
            let mut sought: Vec<&str> = rule
                .meta
                .subscriptions
                .iter()
                .flat_map(|k| looked_for(*k).iter().copied())
                .collect();
            sought.dedup();
            if !sought.is_empty() {
                writeln!(
                    out,
                    "        nothing to check: found none of {}",
                    sought.join(", ")
                )?;
            }
        }
        if disabled.contains(name) {
            writeln!(out, "        (the rule could not start)")?;
        }
        if let Some(r) = report.filter(|r| r.health.failures > 0) {
            writeln!(
                out,
                "        (the rule failed: {})",
                r.health.last_error.as_deref().unwrap_or("-")
            )?;
        }
    }
    writeln!(
        out,
        "\n{} failed, {} passed, {} not applicable ({} files read)",
        counts[0],
        counts[1],
        counts[2],
        report.files_read.len()
    )?;
    Ok(outcome.code())
}
