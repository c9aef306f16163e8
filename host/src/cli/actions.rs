//! `spamward actions`: what enforcement decided (the journal) and what is in
//! force now; `spamward actions release` undoes an action at once, through
//! the running daemon or, when none runs, here.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Cli;
use super::status::{state_path, utc};
use crate::report::{fit, terminal};
use spamward_actions::Backends;
use spamward_pipeline::policy::ledger::{ActiveAction, JournalEntry};
use spamward_runtime::enforcement::{Locked, StateLock, release_here};
use spamward_state::Store;

/// `actions` arguments.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The state file (default `[daemon] state`).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Only the actions in force (and dry-run records), not the journal.
    #[arg(long)]
    active: bool,
    /// One JSON object a line.
    #[arg(long)]
    json: bool,
    /// Journal entries shown, the newest.
    #[arg(long, default_value_t = 50, value_name = "N")]
    last: u32,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Undo an action now (by its id, or every action on a target) and
    /// leave the target alone for `[policy] cooldown`.
    Release(ReleaseArgs),
}

#[derive(Debug, clap::Args)]
struct ReleaseArgs {
    /// An action's id, or a target (`mailbox bob@example.com`, or just
    /// `bob@example.com`).
    selector: String,
    /// The state file (default `[daemon] state`).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Who releases it, for the journal (default: the login that ran sudo,
    /// else this user).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// How long to wait for a running daemon's answer.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    wait: u64,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(Command::Release(release)) = &args.command {
        return self::release(cli, release);
    }
    let path = state_path(cli, args.state.as_ref())?;
    let store = Store::open_read_only(&path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.active {
        let rows: Vec<String> = store.actions()?.into_iter().map(|r| r.json).collect();
        if args.json {
            write_lines(&mut out, &rows)?;
        } else {
            let actions: Vec<ActiveAction> = decode(&rows, &path, "an action")?;
            write_active(&mut out, &actions)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<String> = store
        .journal(args.last)?
        .into_iter()
        .map(|r| r.json)
        .collect();
    if args.json {
        write_lines(&mut out, &rows)?;
    } else {
        let entries: Vec<JournalEntry> = decode(&rows, &path, "a journal entry")?;
        write_journal(&mut out, &entries)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON rows of the state file, read back.
fn decode<T: serde::de::DeserializeOwned>(
    rows: &[String],
    path: &std::path::Path,
    what: &str,
) -> anyhow::Result<Vec<T>> {
    rows.iter()
        .map(|json| {
            serde_json::from_str(json)
                .with_context(|| format!("{}: {what} is not readable", path.display()))
        })
        .collect()
}

fn write_lines(out: &mut impl Write, rows: &[String]) -> std::io::Result<()> {
    for row in rows {
        writeln!(out, "{row}")?;
    }
    Ok(())
}

fn write_active(out: &mut impl Write, actions: &[ActiveAction]) -> std::io::Result<()> {
    if actions.is_empty() {
        return writeln!(out, "No action in force.");
    }
    writeln!(
        out,
        "{:<6} {:<17} {:<36} {:<20} {:<21} {:<21} SUMMARY",
        "ID", "ACTION", "TARGET", "RULE", "SINCE", "UNTIL"
    )?;
    for a in actions {
        let action = if a.dry_run {
            format!("({})", a.action)
        } else {
            a.action.to_string()
        };
        writeln!(
            out,
            "{:<6} {:<17} {:<36} {:<20} {:<21} {:<21} {}",
            a.id,
            fit(&action, 17),
            fit(&terminal::escape(&a.target.to_string()), 36),
            fit(&a.rule, 20),
            utc(a.started_at),
            a.expires_at.map_or_else(|| "released".into(), utc),
            terminal::escape(&a.summary)
        )?;
    }
    if actions.iter().any(|a| a.dry_run) {
        writeln!(
            out,
            "\n(action): dry-run, recorded only; `mode = \"enforce\"` in the rule's table makes it run."
        )?;
    }
    Ok(())
}

fn write_journal(out: &mut impl Write, entries: &[JournalEntry]) -> std::io::Result<()> {
    if entries.is_empty() {
        return writeln!(
            out,
            "The journal is empty: no rule has asked for an action."
        );
    }
    writeln!(
        out,
        "{:<21} {:<6} {:<21} {:<17} {:<36} {:<20} WHY",
        "TIME", "ID", "DECISION", "ACTION", "TARGET", "RULE"
    )?;
    for e in entries {
        let why = match e.outcome.detail() {
            Some(detail) => format!("{detail} — {}", e.summary),
            None => e.summary.clone(),
        };
        writeln!(
            out,
            "{:<21} {:<6} {:<21} {:<17} {:<36} {:<20} {}",
            utc(e.at),
            e.action_id.map_or_else(|| "-".into(), |id| id.to_string()),
            e.outcome.name(),
            e.action.to_string(),
            fit(&terminal::escape(&e.target.to_string()), 36),
            fit(&e.rule, 20),
            terminal::escape(&why)
        )?;
    }
    Ok(())
}

fn release(cli: &Cli, args: &ReleaseArgs) -> anyhow::Result<ExitCode> {
    let path = state_path(cli, args.state.as_ref())?;
    if !path.exists() {
        anyhow::bail!(
            "state file {}: does not exist (has `spamward run` run with this --state?)",
            path.display()
        );
    }
    let by = args.by.clone().unwrap_or_else(operator);
    let answer = match StateLock::try_take(&path)? {
        Locked::Held(_lock) => {
            // No daemon: undo it here, holding the lock so none starts
            // meanwhile.
            let config = cli.load_config()?;
            let mut store = Store::open(&path)?;
            let backends = Backends::new(&config.actions);
            release_here(
                &mut store,
                config.policy.safeguards(),
                &backends,
                &args.selector,
                &by,
            )
            .map_err(anyhow::Error::msg)?
        }
        Locked::Busy => {
            let mut store = Store::open(&path)?;
            let request =
                store.request_release(&args.selector, &by, spamward_runtime::checkpoint::now())?;
            let deadline = Instant::now() + Duration::from_secs(args.wait);
            loop {
                if let Some(answer) = store.release_answer(request)? {
                    break answer;
                }
                if Instant::now() >= deadline {
                    anyhow::bail!(
                        "the daemon has not answered release request {request} in {} s; it carries it out when it can (see `spamward actions`)",
                        args.wait
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    if let Some(refusal) = answer.strip_prefix("refused: ") {
        anyhow::bail!("{refusal}");
    }
    println!("{}", terminal::escape(&answer));
    Ok(if answer.contains("NOT undone") {
        ExitCode::from(super::exit::INCOMPLETE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Who is releasing: the login behind sudo, else this user, else the uid.
fn operator() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid {}", uid()))
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail and touches no memory.
    unsafe { libc::getuid() }
}
