//! `spamward scan`: replay logs through every enabled rule.
//!
//! Every input is read as far as it can be: a damaged one keeps what came
//! before the damage and the others are still read, and the exit status
//! says an input failed. A SIGINT or SIGTERM stops the reading, and what was
//! found so far is printed, marked partial.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::exit::Outcome;
use super::signals::Interrupt;
use super::{Cli, Setup, print_summary, server_root_read, warn};
use crate::report::{TopSenders, render_findings, terminal};
use spamward_exim::ingest::{FileSummary, ingest_file};
use spamward_exim::{queue, relay_probe};
use spamward_pipeline::policy::Severity;

/// `scan` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Inputs, told apart by content: Exim mainlogs (plain or .gz), spool
    /// `-H` files, spool directories, saved `exim -bp` output; `-` reads
    /// standard input.
    #[arg(required_unless_present = "queue", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Also read the live queue by running `exim -bp`.
    #[arg(long)]
    queue: bool,
    /// The Exim binary for `--queue` (default: found in /usr/sbin).
    #[arg(long, value_name = "FILE")]
    exim: Option<PathBuf>,
    /// One JSON object per finding per line on stdout.
    #[arg(long)]
    json: bool,
    /// Server root to read /etc/userdomains and /etc/localdomains from.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Rows per top-senders table.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Exit with status 1 when a finding is at least this severe.
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<Severity>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    // First: a signal while the rules load must not lose the run either.
    let interrupt = Interrupt::install().context("cannot install signal handlers")?;
    let mut setup = Setup::load(cli)?;
    setup.ingest.stop = Some(interrupt.flag());
    let (lookups, report) = spamward_cpanel::domain_lookups(&args.root);
    let mut outcome = Outcome {
        incomplete: server_root_read(&args.root, &report)?,
        ..Outcome::default()
    };
    let lookups = Arc::new(lookups);
    let mut pipeline = setup.pipeline(lookups)?;
    outcome.incomplete |= setup.rules_failed(&pipeline);
    let mut senders = TopSenders::new();
    let mut summaries: Vec<FileSummary> = Vec::new();

    for path in &args.files {
        if interrupt.received().is_some() {
            break;
        }
        let bar = progress_bar(path, args.json);
        let summary = ingest_file(
            path,
            &setup.ingest,
            &mut |event| {
                senders.observe(&event);
                pipeline.push(event);
            },
            &mut |done, total| {
                if let Some(total) = total {
                    bar.set_length(total.max(done));
                }
                bar.set_position(done);
            },
        );
        bar.finish_and_clear();
        summaries.push(summary);
    }
    if args.queue && interrupt.received().is_none() {
        let exim = args
            .exim
            .clone()
            .or_else(relay_probe::find_exim)
            .context("--queue: no Exim binary found (give one with --exim)")?;
        let now = setup.ingest.zone.at_system_time(SystemTime::now());
        let mut events = Vec::new();
        match queue::run_exim_bp(&exim, now, &mut events) {
            Ok(problems) => {
                for p in &problems {
                    warn(&p.to_string());
                }
                eprintln!("{} -bp: {} queued messages", exim.display(), events.len());
            }
            Err(e) => {
                warn(&e.to_string());
                outcome.incomplete = true;
            }
        }
        for event in events {
            senders.observe(&event);
            pipeline.push(event);
        }
    }
    let disabled = pipeline.disabled().to_vec();
    let (findings, reports) = pipeline.finish();
    outcome.signal = interrupt.received();
    outcome.findings = Outcome::fails_on(&findings, args.fail_on);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        for f in &findings {
            serde_json::to_writer(&mut out, f)?;
            out.write_all(b"\n")?;
        }
    } else {
        if let Some(signal) = outcome.signal {
            writeln!(
                out,
                "PARTIAL: stopped by signal {signal} before every input was read; \
                 these are the findings so far.\n"
            )?;
        }
        out.write_all(render_findings(&findings).as_bytes())?;
        out.write_all(b"\n")?;
        out.write_all(senders.render(args.top).as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;

    // Input and rule health go to stderr so `--json` output stays clean.
    if outcome.signal.is_some() {
        eprintln!("spamward: partial results: stopped by a signal");
    }
    for s in &summaries {
        print_summary(s);
        outcome.incomplete |= s.error.is_some();
    }
    for (name, failure) in &disabled {
        eprintln!(
            "rule {name}: disabled: it {}",
            terminal::escape(&failure.to_string())
        );
    }
    for r in &reports {
        if r.health.failures > 0 || r.health.skipped_events > 0 {
            outcome.incomplete = true;
            eprintln!(
                "rule {}: {} failure(s){}, {} event(s) not judged; last: {}",
                r.rule,
                r.health.failures,
                if r.quarantined { ", quarantined" } else { "" },
                r.health.skipped_events,
                terminal::escape(r.health.last_error.as_deref().unwrap_or("-"))
            );
        }
        if r.health.dropped_verdicts > 0 || r.dropped_findings > 0 {
            eprintln!(
                "rule {}: {} verdict(s) dropped (more than {} in one batch, or more than {} findings)",
                r.rule,
                r.health.dropped_verdicts + r.dropped_findings,
                spamward_engine::MAX_VERDICTS_PER_BATCH,
                spamward_pipeline::policy::MAX_FINDINGS_PER_RULE
            );
        }
    }
    Ok(outcome.code())
}

fn progress_bar(path: &std::path::Path, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(terminal::escape(&path.display().to_string()).into_owned());
    bar
}
