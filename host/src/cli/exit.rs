//! Exit statuses, so cron jobs and CI can tell what happened without
//! reading the output:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done: every input read, every rule ran |
//! | 1 | done, and `--fail-on` asked to fail on a finding this severe |
//! | 2 | usage or configuration error: nothing was run |
//! | 3 | done, but an input could not be (wholly) read or a rule failed (did not load, rejected its settings, trapped, was quarantined): the results may be incomplete; for `actions release`, an undo failed |
//! | 130, 143 | stopped by SIGINT or SIGTERM: the results so far were printed, marked partial |
//!
//! When several apply, the later rows win: an incomplete run says so even
//! if it also found something.

use std::process::ExitCode;

use spamward_pipeline::policy::{Finding, Severity};

/// Usage or configuration error.
pub const USAGE: u8 = 2;

/// Done, but not wholly: an input or a rule failed, or an undo did not
/// take.
pub const INCOMPLETE: u8 = 3;

/// How a run went, for its exit status.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// A finding at or above the `--fail-on` severity.
    pub findings: bool,
    /// An input or a rule failed.
    pub incomplete: bool,
    /// The signal that stopped the run.
    pub signal: Option<i32>,
}

impl Outcome {
    /// Whether `findings` hold one at `fail_on` or worse.
    pub fn fails_on(findings: &[Finding], fail_on: Option<Severity>) -> bool {
        fail_on.is_some_and(|min| findings.iter().any(|f| f.severity >= min))
    }

    /// The exit status.
    pub fn code(self) -> ExitCode {
        ExitCode::from(self.status())
    }

    fn status(self) -> u8 {
        match self.signal {
            Some(signal) => 128u8.saturating_add(u8::try_from(signal).unwrap_or(0)),
            None if self.incomplete => INCOMPLETE,
            None if self.findings => 1,
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_rows_win() {
        let o = |findings, incomplete, signal| {
            Outcome {
                findings,
                incomplete,
                signal,
            }
            .status()
        };
        assert_eq!(o(false, false, None), 0);
        assert_eq!(o(true, false, None), 1);
        assert_eq!(o(true, true, None), 3);
        assert_eq!(o(true, true, Some(libc::SIGINT)), 130);
        assert_eq!(o(false, false, Some(libc::SIGTERM)), 143);
    }
}
