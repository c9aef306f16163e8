//! `spamward run`: the daemon, in the foreground (systemd runs it so; see
//! `examples/systemd/spamward.service`).

use std::path::PathBuf;
use std::process::ExitCode;

use super::Cli;
use spamward_runtime::DaemonOptions;

/// `run` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server root: domains are read from `<root>/etc`, and the main log is
    /// looked for under `<root>/var/log` unless `[daemon] mainlog` names it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// The state file (default `[daemon] state`, /var/lib/spamward/state.db).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| config.daemon.state.clone());
    let rules_dir = cli
        .rules
        .clone()
        .or_else(|| config.engine.rules_dir.clone());
    let cache_dir = cli
        .cache_dir
        .clone()
        .or_else(|| config.engine.cache_dir.clone());
    let config_path = config.path.clone();
    spamward_runtime::run(DaemonOptions {
        config,
        config_path,
        rules_dir,
        cache_dir,
        root: args.root.clone(),
        state,
    })?;
    Ok(ExitCode::SUCCESS)
}
