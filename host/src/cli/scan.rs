//! `spamward scan`: replay logs through every enabled rule.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Cli, Engine};
use crate::engine::Dispatcher;
use crate::ingest::{FileSummary, ingest_file};
use crate::normalize::Timestamp;
use crate::report::{TopSenders, render_findings};
use crate::sources::{queue, relay_probe};
use crate::state::HostLookups;

/// `scan` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Inputs, told apart by content: Exim mainlogs (plain or .gz), spool
    /// `-H` files, spool directories, saved `exim -bp` output.
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
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let engine = Engine::load(cli)?;
    let lookups = Arc::new(
        HostLookups::load(&args.root)
            .with_context(|| format!("cannot read server state under {}", args.root.display()))?,
    );
    let mut dispatcher = Dispatcher::new(
        engine.runners(lookups.clone())?,
        engine.config.engine.dispatch(),
        lookups,
    );
    let mut senders = TopSenders::new();
    let mut summaries: Vec<FileSummary> = Vec::new();

    for path in &args.files {
        let bar = progress_bar(path, args.json);
        let summary = ingest_file(
            path,
            &mut |event| {
                senders.observe(&event);
                dispatcher.push(event);
            },
            &mut |done, total| {
                bar.set_length(total.max(done));
                bar.set_position(done);
            },
        )?;
        bar.finish_and_clear();
        summaries.push(summary);
    }
    if args.queue {
        let exim = args
            .exim
            .clone()
            .or_else(relay_probe::find_exim)
            .context("--queue: no Exim binary found (give one with --exim)")?;
        let now = Timestamp::from_system_time(SystemTime::now());
        let mut events = Vec::new();
        let problems = queue::run_exim_bp(&exim, now, &mut events)?;
        for p in &problems {
            eprintln!("spamward: warning: {p}");
        }
        eprintln!("{} -bp: {} queued messages", exim.display(), events.len());
        for event in events {
            senders.observe(&event);
            dispatcher.push(event);
        }
    }
    let (findings, reports) = dispatcher.finish();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        for f in &findings {
            serde_json::to_writer(&mut out, f)?;
            out.write_all(b"\n")?;
        }
    } else {
        out.write_all(render_findings(&findings).as_bytes())?;
        out.write_all(b"\n")?;
        out.write_all(senders.render(args.top).as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;

    // Input and rule health go to stderr so `--json` output stays clean.
    for s in &summaries {
        eprintln!(
            "{} ({}): {} lines, {} events, {} ignored, {} unparsed",
            s.file, s.kind, s.lines, s.events, s.ignored, s.unparsed
        );
        for (line, text) in &s.unparsed_samples {
            eprintln!("  unparsed {}:{line}: {text}", s.file);
        }
    }
    for r in &reports {
        if r.health.failures > 0 {
            eprintln!(
                "rule {}: {} failed batch(es){}; last: {}",
                r.rule,
                r.health.failures,
                if r.quarantined { ", quarantined" } else { "" },
                r.health.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
    bar.set_message(path.display().to_string());
    bar
}
