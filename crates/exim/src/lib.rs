//! Exim, read into events: its main log ([`log`], line by line through
//! [`log_file`]), its queue ([`queue`]: spool `-H` files and `exim -bp`
//! listings), and its answer to a relay probe ([`relay_probe`]).
//!
//! [`input`] opens what a user names (a file, a pipe, `-`) and [`detect`]
//! tells these formats apart by their first bytes; [`ingest`] reads any of
//! them to the end, counting what it could not read. Parsers never panic:
//! a line they cannot read is [`LineOutcome::Unparsed`], counted and
//! reported by the caller.

#![warn(missing_docs)]

pub mod detect;
pub mod ingest;
pub mod input;
pub mod log;
pub mod log_file;
pub mod queue;
pub mod relay_probe;

pub use log::{EximLogParser, SavedMessage};

/// What one input line turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// The line was understood. Its events may be emitted now or held back
    /// briefly to join later lines (cPanel's "Sender identification").
    Understood,
    /// A known line that carries nothing the rules need (queue runner
    /// start/stop, daemon start, TLS notes, ...). Counted, not reported.
    Ignored,
    /// The line could not be read. The caller counts and reports it.
    Unparsed,
}
