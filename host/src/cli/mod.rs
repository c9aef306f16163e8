//! The `spamward` command line: argument parsing and the subcommands.
//!
//! Errors surface here as `anyhow` chains naming the file, line or setting
//! at fault; every subcommand returns them, and [`main`] prints them and
//! exits with the usage status. What a run's exit status means is [`exit`]'s.

mod actions;
mod audit;
mod bench;
mod bench_daemon;
mod events;
mod exit;
mod findings;
mod rules;
mod run;
mod scan;
mod signals;
mod status;
pub mod synthetic;

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::report::terminal;
use spamward_cpanel::ServerStateReport;
use spamward_exim::ingest::{FileSummary, IngestOptions};
use spamward_model::HostLookups;
use spamward_model::LocalZone;
use spamward_pipeline::config::Config;
use spamward_pipeline::{Pipeline, Rules};

/// spamward: find and stop spam leaving a mail server.
#[derive(Debug, Parser)]
#[command(
    name = "spamward",
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 done; 1 a finding at or above --fail-on; 2 usage or \
                  configuration error; 3 an input could not be read or a rule failed \
                  (results may be incomplete); 130/143 stopped by SIGINT/SIGTERM \
                  (partial results printed)."
)]
struct Cli {
    /// Configuration file (default: ./spamward.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Extra rules: every `*.wasm` in DIR (a rule with a bundled rule's name
    /// replaces it).
    #[arg(long, global = true, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Compiled-rule cache directory (default: ~/.cache/spamward).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// The time zone logs write local time in: `system` (default), `UTC` or
    /// an IANA name such as `Europe/Berlin` (overrides `[input] timezone`).
    #[arg(long, global = true, value_name = "ZONE")]
    timezone: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay logs through every enabled rule and report findings and top
    /// senders.
    Scan(scan::Args),
    /// Print the normalized events of logs as JSON Lines.
    Events(events::Args),
    /// Check the server's configuration posture: a checklist with fixes.
    Audit(audit::Args),
    /// Inspect the available rules.
    #[command(subcommand)]
    Rules(rules::Command),
    /// Measure throughput on a generated log: parse-only vs all rules.
    Bench(bench::Args),
    /// Run as a daemon: follow Exim's main log, store findings (see
    /// `status` and `findings`).
    Run(run::Args),
    /// What the daemon's state file says: logs, rules, events, findings.
    Status(status::Args),
    /// The findings the daemon stored, newest first.
    Findings(findings::Args),
    /// What enforcement decided and what is in force; `release` undoes an
    /// action now.
    Actions(actions::Args),
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Run(_)));
    let result = match &cli.command {
        Command::Scan(args) => scan::run(&cli, args),
        Command::Events(args) => events::run(&cli, args),
        Command::Audit(args) => audit::run(&cli, args),
        Command::Rules(cmd) => rules::run(&cli, cmd),
        Command::Bench(args) => bench::run(&cli, args),
        Command::Run(args) => run::run(&cli, args),
        Command::Status(args) => status::run(&cli, args),
        Command::Findings(args) => findings::run(&cli, args),
        Command::Actions(args) => actions::run(&cli, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                // Whoever read the output has gone (`| head`): nothing to say.
                return ExitCode::SUCCESS;
            }
            eprintln!("spamward: error: {}", terminal::escape(&format!("{e:#}")));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Logs go to stderr, one line per event with its fields (`rule=...`):
/// warnings for a one-shot command, what it does as well for the daemon;
/// `SPAMWARD_LOG` (e.g. `debug`) overrides.
fn init_tracing(daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if daemon { "info" } else { "warn" };
    let filter =
        EnvFilter::try_from_env("SPAMWARD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        // Colour codes only for a person at a terminal, not for a log file.
        .with_ansi(io::stderr().is_terminal())
        .with_target(false);
    // Under systemd, journald stamps each line itself.
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// Whether `e` is a write to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

impl Cli {
    fn load_config(&self) -> anyhow::Result<Config> {
        match &self.config {
            Some(path) => Ok(Config::load(path)?),
            None if Path::new("spamward.toml").exists() => {
                Ok(Config::load(Path::new("spamward.toml"))?)
            }
            None => Ok(Config::default()),
        }
    }

    /// The zone logs are read in: `--timezone`, else the configuration's.
    fn zone(&self, config: &Config) -> anyhow::Result<LocalZone> {
        match &self.timezone {
            Some(name) => LocalZone::named(name).map_err(|e| anyhow::anyhow!("--timezone: {e}")),
            None => Ok(config.zone()?),
        }
    }
}

/// Everything needed to run rules: the sandbox, the loaded rules and the
/// configuration they run with.
/// What every command that runs rules starts from: the configuration,
/// the rules it names, and how inputs are read.
struct Setup {
    config: Config,
    rules: Rules,
    ingest: IngestOptions,
}

impl Setup {
    /// Loads the configuration (flags over `spamward.toml`) and the rules,
    /// warning about each rule that could not be loaded.
    fn load(cli: &Cli) -> anyhow::Result<Self> {
        let config = cli.load_config()?;
        let zone = cli.zone(&config)?;
        let rules_dir = cli.rules.as_deref().or(config.engine.rules_dir.as_deref());
        let cache_dir = cli
            .cache_dir
            .as_deref()
            .or(config.engine.cache_dir.as_deref());
        let rules = Rules::load(&config, rules_dir, cache_dir)?;
        for e in rules.errors() {
            warn(&format!("rule not loaded: {e}"));
        }
        Ok(Setup {
            config,
            rules,
            ingest: IngestOptions { zone, stop: None },
        })
    }

    /// The pipeline of every enabled rule on `lookups`, warning about each
    /// rule that failed to start.
    fn pipeline(&self, lookups: Arc<HostLookups>) -> anyhow::Result<Pipeline> {
        let pipeline = Pipeline::from_config(&self.config, &self.rules, lookups)?;
        for (name, e) in pipeline.disabled() {
            warn(&format!("rule {name} disabled: it {e}"));
        }
        Ok(pipeline)
    }

    /// Whether a rule could not be loaded or started: the run's results may
    /// be incomplete.
    fn rules_failed(&self, pipeline: &Pipeline) -> bool {
        !self.rules.errors().is_empty() || !pipeline.disabled().is_empty()
    }
}

fn server_root_read(root: &Path, report: &ServerStateReport) -> anyhow::Result<bool> {
    if report.root_missing {
        anyhow::bail!(
            "--root {}: {}",
            root.display(),
            report
                .problems
                .first()
                .map_or_else(String::new, |p| p.message.clone())
        );
    }
    for problem in &report.problems {
        warn(&problem.to_string());
    }
    Ok(report.problems.iter().any(|p| p.line.is_none()))
}

/// A warning on stderr, escaped for the terminal.
fn warn(message: &str) {
    eprintln!("spamward: warning: {}", terminal::escape(message));
}

/// The per-input lines on stderr: counts, what could not be read, and why
/// reading stopped early.
fn print_summary(s: &FileSummary) {
    let mut line = format!(
        "{} ({}): {} lines, {} events, {} ignored, {} unparsed",
        s.file,
        if s.kind.is_empty() { "-" } else { &s.kind },
        s.lines,
        s.events,
        s.ignored,
        s.unparsed
    );
    if s.truncated > 0 {
        line.push_str(&format!(
            ", {} cut at {} KiB",
            s.truncated,
            spamward_exim::log_file::MAX_LINE >> 10
        ));
    }
    if s.capped > 0 {
        line.push_str(&format!(
            ", {} with more than {} recipients (cut)",
            s.capped,
            spamward_model::MAX_RECIPIENTS
        ));
    }
    if s.interrupted {
        line.push_str(", stopped early");
    }
    eprintln!("{}", terminal::escape(&line));
    for (number, text) in &s.unparsed_samples {
        eprintln!(
            "  unparsed {}:{number}: {}",
            terminal::escape(&s.file),
            terminal::escape(text)
        );
    }
    if let Some(e) = &s.error {
        eprintln!(
            "spamward: error: {} (what came before was read)",
            terminal::escape(e)
        );
    }
}
