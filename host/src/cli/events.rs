//! `spamward events`: the normalized events of logs, as JSON Lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::ingest::ingest_file;

/// `events` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exim mainlogs (plain or .gz).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    for path in &args.files {
        let summary = ingest_file(
            path,
            &mut |event| {
                if write_error.is_none()
                    && let Err(e) = serde_json::to_writer(&mut out, &event)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"))
                {
                    write_error = Some(e);
                }
            },
            &mut |_, _| {},
        )?;
        if let Some(e) = write_error.take() {
            return Err(e.into());
        }
        eprintln!(
            "{}: {} lines, {} events, {} ignored, {} unparsed",
            summary.file, summary.lines, summary.events, summary.ignored, summary.unparsed
        );
        for (line, text) in &summary.unparsed_samples {
            eprintln!("  unparsed {}:{line}: {text}", summary.file);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
