//! `spamward events`: the normalized events of logs, as JSON Lines.
//!
//! Streaming output: when whoever reads it stops (`| head`), reading stops
//! too, quietly.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::exit::Outcome;
use super::signals::Interrupt;
use super::{Cli, print_summary};
use spamward_exim::ingest::{IngestOptions, ingest_file};

/// `events` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Inputs (as for `scan`); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let interrupt = Interrupt::install().context("cannot install signal handlers")?;
    let options = IngestOptions {
        zone: cli.zone(&config)?,
        stop: Some(interrupt.flag()),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut write_error: Option<io::Error> = None;
    let mut outcome = Outcome::default();
    for path in &args.files {
        let summary = ingest_file(
            path,
            &options,
            &mut |event| {
                if write_error.is_some() {
                    return;
                }
                let written = serde_json::to_writer(&mut out, &event)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(e) = written {
                    // Nobody reads any more (or cannot): stop reading too.
                    interrupt.stop();
                    write_error = Some(e);
                }
            },
            &mut |_, _| {},
        );
        if let Some(e) = write_error.take() {
            return Err(e.into());
        }
        print_summary(&summary);
        outcome.incomplete |= summary.error.is_some();
        if interrupt.received().is_some() {
            break;
        }
    }
    out.flush()?;
    outcome.signal = interrupt.received();
    Ok(outcome.code())
}
