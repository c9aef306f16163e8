//! `spamward rules`: what rules are available and what they do.

use std::io::Write;
use std::process::ExitCode;

use super::{Cli, Setup};
use spamward_engine::RuleMeta;

/// `rules` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Name, version, summary, subscriptions, actions and source of each rule.
    List {
        /// One JSON object per rule per line.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one rule, settings and defaults included.
    Info {
        /// Rule name.
        name: String,
    },
}

pub fn run(cli: &Cli, cmd: &Command) -> anyhow::Result<ExitCode> {
    let setup = Setup::load(cli)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        Command::List { json: true } => {
            for rule in setup.rules.all().values() {
                serde_json::to_writer(&mut out, &rule.meta)?;
                out.write_all(b"\n")?;
            }
        }
        Command::List { json: false } => {
            writeln!(
                out,
                "{:<18} {:<8} {:<8} {:<40} SUMMARY",
                "RULE", "VERSION", "SOURCE", "SUBSCRIBES"
            )?;
            for rule in setup.rules.all().values() {
                let m = &rule.meta;
                writeln!(
                    out,
                    "{:<18} {:<8} {:<8} {:<40} {}",
                    m.name,
                    m.version,
                    if matches!(m.source, spamward_engine::RuleOrigin::Bundled) {
                        "bundled"
                    } else {
                        "file"
                    },
                    subscriptions(m),
                    m.summary
                )?;
            }
        }
        Command::Info { name } => {
            let Some(rule) = setup.rules.all().get(name) else {
                anyhow::bail!(
                    "no rule named {name:?} (available: {})",
                    setup
                        .rules
                        .all()
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            let m = &rule.meta;
            writeln!(
                out,
                "{} {} ({})\n{}\n",
                m.name, m.version, m.source, m.summary
            )?;
            writeln!(out, "subscribes to: {}", subscriptions(m))?;
            writeln!(
                out,
                "may request:   {}",
                m.actions
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            writeln!(
                out,
                "built with:    spamward-sdk {}\n\nsettings ([rules.{}]):",
                m.sdk_version, m.name
            )?;
            for s in &m.settings {
                writeln!(out, "  {} = {}    # {}", s.name, s.default, s.description)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn subscriptions(m: &RuleMeta) -> String {
    m.subscriptions
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(",")
}
