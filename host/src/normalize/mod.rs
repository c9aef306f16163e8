//! Normalizer: turns raw source records into typed [`Event`]s.
//!
//! Each source format has its own parser module; all of them produce the
//! same event model (`event`). Parsers never panic: a line they cannot read
//! is reported as [`LineOutcome::Unparsed`] and counted by the caller.

pub mod clock;
pub mod event;
pub mod exim_log;

pub use clock::{LocalClock, LocalZone, WrittenTime};
pub use event::*;
pub use exim_log::EximLogParser;

/// Local users that submit mail for the MTA or the system rather than for a
/// customer: never an owning account.
pub const SYSTEM_USERS: &[&str] = &[
    "root",
    "mailnull",
    "exim",
    "Debian-exim",
    "mail",
    "mailman",
    "cpanel",
];

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
