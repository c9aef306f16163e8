//! `spamward status`: what the daemon's state file says — each log and how
//! far it was read, each rule and how it fares, events, findings and the
//! last checkpoint, the actions in force and the circuit breaker's count.
//! Works while the daemon runs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::Cli;
use crate::report::terminal;
use spamward_pipeline::policy::ledger::Ledger;
use spamward_runtime::checkpoint::now;
use spamward_state::Store;

/// `status` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The state file (default `[daemon] state`).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let path = state_path(cli, args.state.as_ref())?;
    let store = Store::open_read_only(&path)?;
    let status = store.status()?;
    let safeguards = cli.load_config()?.policy.safeguards();
    // The breaker's count is the ledger's: an unreadable one counts none
    // (the daemon says why when it starts).
    let breaker = store
        .ledger()?
        .and_then(|bytes| Ledger::restore(&bytes, safeguards).ok())
        .map_or(0, |l| l.breaker_count(now()));
    let in_force: Vec<_> = store
        .actions()?
        .into_iter()
        .filter(|a| !a.dry_run)
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let value = serde_json::json!({
            "state": path.display().to_string(),
            "checkpoint_at": status.checkpoint_at,
            "events": status.events,
            "findings": status.findings,
            "actions_in_force": status.actions_in_force,
            "actions": in_force.iter().map(|a| serde_json::json!({
                "id": a.id,
                "action": a.action,
                "target": a.target,
                "rule": a.rule,
                "started_at": a.started_at,
                "expires_at": a.expires_at,
            })).collect::<Vec<_>>(),
            "actions_last_hour": breaker,
            "max_actions_per_hour": safeguards.max_actions_per_hour,
            "sources": status.sources.iter().map(|s| serde_json::json!({
                "path": s.path,
                "inode": s.inode,
                "offset": s.offset,
                "lines": s.lines,
                "unparsed": s.unparsed,
            })).collect::<Vec<_>>(),
            "rules": status.rules.iter().map(|r| serde_json::json!({
                "name": r.name,
                "version": r.version,
                "hash": r.hash,
                "origin": r.origin,
                "status": r.status,
                "reason": r.reason,
            })).collect::<Vec<_>>(),
        });
        serde_json::to_writer(&mut out, &value)?;
        out.write_all(b"\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let checkpoint = status.checkpoint_at.map_or_else(|| "never".to_owned(), utc);
    writeln!(out, "state file: {}", path.display())?;
    writeln!(out, "last checkpoint: {checkpoint}")?;
    writeln!(
        out,
        "events processed: {}   findings stored: {}",
        status.events, status.findings
    )?;
    writeln!(
        out,
        "actions in force: {}   enforcement actions in the last hour: {breaker} (breaker at {})",
        status.actions_in_force, safeguards.max_actions_per_hour
    )?;
    for a in &in_force {
        writeln!(
            out,
            "  #{} {} {} ({}) until {}",
            a.id,
            a.action,
            terminal::escape(&a.target),
            a.rule,
            a.expires_at.map_or_else(|| "released".into(), utc)
        )?;
    }
    writeln!(out, "\nlogs:")?;
    for s in &status.sources {
        writeln!(
            out,
            "  {}  inode {}  offset {}  lines {}  unparsed {}",
            terminal::escape(&s.path),
            s.inode,
            s.offset,
            s.lines,
            s.unparsed
        )?;
    }
    writeln!(out, "\nrules:")?;
    for r in &status.rules {
        let hash = r.hash.get(..12).unwrap_or(&r.hash);
        write!(
            out,
            "  {:<22} {:<8} {:<12} {:<16} {}",
            terminal::escape(&r.name),
            terminal::escape(&r.version),
            hash,
            r.status,
            terminal::escape(&r.origin)
        )?;
        if let Some(why) = &r.reason {
            write!(out, "  ({})", terminal::escape(why))?;
        }
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The state file: `--state`, else `[daemon] state` of the configuration.
pub(super) fn state_path(cli: &Cli, given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match given {
        Some(p) => p.clone(),
        None => cli.load_config()?.daemon.state,
    })
}

/// Unix seconds as RFC 3339 UTC.
pub(super) fn utc(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}
