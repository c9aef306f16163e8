//! `spamward findings`: the findings the daemon stored, newest first; with
//! `--json`, one object per line in the shape `scan --json` prints, so a
//! live run and a replay of the same log can be compared.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::Cli;
use super::status::{state_path, utc};
use crate::report::terminal;
use spamward_pipeline::config::parse_duration;
use spamward_state::Store;

/// `findings` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The state file (default `[daemon] state`).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Only findings stored or updated this recently (`30m`, `1h`, `2d`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    since: Option<std::time::Duration>,
    /// One JSON object per finding per line.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let path = state_path(cli, args.state.as_ref())?;
    let since = args.since.map(|d| {
        let now = jiff::Timestamp::now().as_second();
        now - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
    });
    let rows = Store::open_read_only(&path)?.findings(since)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for row in &rows {
        if args.json {
            out.write_all(row.json.as_bytes())?;
            out.write_all(b"\n")?;
            continue;
        }
        let f: serde_json::Value = serde_json::from_str(&row.json)?;
        let text = |key: &str| f[key].as_str().unwrap_or("-").to_owned();
        writeln!(
            out,
            "{:<8} {:<20} {} {}: {} (x{}, {} .. {}, stored {})",
            text("severity"),
            terminal::escape(&row.rule),
            f["target"]["kind"].as_str().unwrap_or("-"),
            terminal::escape(f["target"]["value"].as_str().unwrap_or("-")),
            terminal::escape(&text("summary")),
            f["count"],
            text("first_seen"),
            text("last_seen"),
            utc(row.updated_at)
        )?;
    }
    if rows.is_empty() && !args.json {
        writeln!(
            out,
            "no findings stored{}",
            if since.is_some() { " in that time" } else { "" }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
