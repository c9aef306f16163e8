//! The `spamward` command line: argument parsing and the subcommands.
//!
//! Errors surface here as `anyhow` chains naming the file, line or setting
//! at fault; every subcommand returns them, and [`main`] prints them and
//! exits non-zero.

mod audit;
mod bench;
mod events;
mod rules;
mod scan;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::engine::{ComponentCache, RuleRunner, RuleSet, Sandbox};
use crate::state::HostLookups;

/// spamward: find and stop spam leaving a mail server.
#[derive(Debug, Parser)]
#[command(name = "spamward", version, about, long_about = None)]
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
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Scan(args) => scan::run(&cli, args),
        Command::Events(args) => events::run(args),
        Command::Audit(args) => audit::run(&cli, args),
        Command::Rules(cmd) => rules::run(&cli, cmd),
        Command::Bench(args) => bench::run(&cli, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spamward: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SPAMWARD_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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
}

/// Everything needed to run rules: the sandbox, the loaded rules and the
/// configuration they run with.
struct Engine {
    sandbox: Sandbox,
    rules: RuleSet,
    config: Config,
}

impl Engine {
    fn load(cli: &Cli) -> anyhow::Result<Self> {
        let config = cli.load_config()?;
        let sandbox =
            Sandbox::new(config.engine.limits()).context("cannot start the wasm engine")?;
        let cache = match cli
            .cache_dir
            .clone()
            .or_else(|| config.engine.cache_dir.clone())
        {
            Some(dir) => ComponentCache::new(dir),
            None => ComponentCache::default_dir()
                .map_or_else(ComponentCache::disabled, ComponentCache::new),
        };
        let rules_dir = cli
            .rules
            .clone()
            .or_else(|| config.engine.rules_dir.clone());
        let rules = RuleSet::load(&sandbox, &cache, rules_dir.as_deref())?;
        for e in &rules.errors {
            eprintln!("spamward: warning: rule not loaded: {e}");
        }
        config.check_rule_names(rules.rules.keys().map(String::as_str))?;
        Ok(Engine {
            sandbox,
            rules,
            config,
        })
    }

    /// Runners for every enabled rule, initialised with its settings.
    fn runners(&self, lookups: Arc<HostLookups>) -> anyhow::Result<Vec<RuleRunner>> {
        let mut runners = Vec::new();
        for (name, rule) in &self.rules.rules {
            let rc = self.config.rule(&rule.meta)?;
            if !rc.enabled {
                continue;
            }
            let runner = RuleRunner::new(
                rule.clone(),
                rc.settings,
                rc.mode,
                lookups.clone(),
                self.sandbox.limits(),
            )
            .map_err(|e| {
                let file = self
                    .config
                    .path
                    .as_ref()
                    .map_or("spamward.toml".into(), |p| p.display().to_string());
                anyhow::anyhow!("{file}: [rules.{name}]: {e}")
            })?;
            runners.push(runner);
        }
        Ok(runners)
    }
}
