//! `spamward rules`: what rules are available and what they do.

use std::io::Write;
use std::process::ExitCode;

use super::{Cli, Setup};
use std::sync::Arc;

use spamward_contract::counter::CounterSpec;
use spamward_engine::{LoadedRule, RuleMeta, RuleRunner};

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
                let mut value = serde_json::to_value(&rule.meta)?;
                value["counters"] = counted(&setup, rule).into();
                serde_json::to_writer(&mut out, &value)?;
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
                    [subscriptions(m), counted_kinds(&setup, rule)]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" "),
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
            writeln!(out, "counts:        {}", counted(&setup, rule).join(", "))?;
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

/// The counters the host keeps for `rule`. A rule declares them when it
/// starts, from its settings, so it is started here with the configured
/// ones; a rule that cannot start counts nothing.
fn counters(setup: &Setup, rule: &Arc<LoadedRule>) -> Vec<CounterSpec> {
    let Ok(config) = setup.config.rule(&rule.meta) else {
        return Vec::new();
    };
    let limits = setup.config.engine.limits();
    RuleRunner::new(rule.clone(), config.settings, Arc::default(), limits)
        .map(|runner| runner.counters())
        .unwrap_or_default()
}

/// Each of `rule`'s counters in words: `delivery:attempts per SenderDomain`.
fn counted(setup: &Setup, rule: &Arc<LoadedRule>) -> Vec<String> {
    counters(setup, rule)
        .iter()
        .map(|c| format!("{}:{} per {:?}", c.events.kind.name(), c.name, c.per))
        .collect()
}

/// The kinds `rule`'s counters count, for the list (`counts:delivery`).
fn counted_kinds(setup: &Setup, rule: &Arc<LoadedRule>) -> String {
    let mut kinds: Vec<&str> = counters(setup, rule)
        .iter()
        .map(|c| c.events.kind.name())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.is_empty() {
        String::new()
    } else {
        format!("counts:{}", kinds.join(","))
    }
}
