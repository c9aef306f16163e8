//! Running a backend's command: never through a shell, always with a
//! time-out, and its exit status and output checked. A command that did
//! not answer, or answered with a failure, is an error that quotes it; it
//! is never assumed to have worked.

use std::fmt;
use std::process::{Command, Stdio};
use std::time::Duration;

use process_control::{ChildExt, Control};

/// Output quoted in an error, at most.
const QUOTED: usize = 300;

/// A command that did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started (not installed, not executable).
    #[error("{command}: cannot start: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// It ran past its time-out and was killed.
    #[error("{command}: no answer after {seconds} s (killed)")]
    TimedOut {
        /// The command line.
        command: String,
        /// The time-out.
        seconds: u64,
    },
    /// It exited with a failure.
    #[error("{command}: {status}: {output}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The start of what it printed.
        output: String,
    },
}

/// A command line as the journal quotes it.
pub struct Shown<'a>(pub &'a Command);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.get_program().to_string_lossy())?;
        for arg in self.0.get_args() {
            write!(f, " {}", arg.to_string_lossy())?;
        }
        Ok(())
    }
}

/// Runs `command` (no shell, no input) for at most `timeout`; what it
/// printed on standard output when it exited with success.
pub fn run(command: &mut Command, timeout: Duration) -> Result<String, CommandError> {
    run_with_input(command, None, timeout)
}

/// [`run`], with `input` on the command's standard input (a mail for
/// sendmail).
pub fn run_with_input(
    command: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<String, CommandError> {
    let shown = Shown(command).to_string();
    let answer = answer(command, input, timeout)?;
    if answer.succeeded {
        return Ok(answer.stdout);
    }
    let said = if answer.stderr.trim().is_empty() {
        answer.stdout.trim()
    } else {
        answer.stderr.trim()
    };
    Err(CommandError::Failed {
        command: shown,
        status: answer.status,
        output: said.chars().take(QUOTED).collect(),
    })
}

/// What a command that ran to its end said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// It exited with success.
    pub succeeded: bool,
    /// Its exit status, as the journal quotes it.
    pub status: String,
    /// What it printed on standard output.
    pub stdout: String,
    /// What it printed on standard error.
    pub stderr: String,
}

/// Runs `command` (no shell) for at most `timeout`, whatever its exit
/// status says: for commands that answer for each of their arguments
/// (`exim -Mf id...` fails when one id did, yet acts on the others), whose
/// caller reads the answer. An error only when it did not run to its end.
pub fn answer(
    command: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Answer, CommandError> {
    let shown = Shown(command).to_string();
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            command: shown.clone(),
            source,
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Written on a thread: a command that does not read would
        // otherwise block us past the time-out. A write error shows in its
        // exit status.
        let input = input.to_vec();
        std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = stdin.write_all(&input);
        });
    }
    let output = child
        .controlled_with_output()
        .time_limit(timeout)
        .terminate_for_timeout()
        .wait()
        .map_err(|source| CommandError::Spawn {
            command: shown.clone(),
            source,
        })?
        .ok_or(CommandError::TimedOut {
            command: shown,
            seconds: timeout.as_secs(),
        })?;
    Ok(Answer {
        succeeded: output.status.success(),
        status: output.status.to_string(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn success_gives_the_output() {
        let out = run(&mut sh("echo held; echo noise >&2"), Duration::from_secs(5)).unwrap();
        assert_eq!(out, "held\n");
    }

    #[test]
    fn a_failure_quotes_the_command_its_status_and_what_it_said() {
        let e = run(
            &mut sh("echo 'no such user' >&2; exit 3"),
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/bin/sh -c "), "{e}");
        assert!(e.contains(": exit code: 3: "), "{e}");
        assert!(e.ends_with("no such user"), "{e}");
    }

    #[test]
    fn an_answer_is_read_whatever_the_exit_status() {
        let a = answer(
            &mut sh("echo 'Message 1a is now frozen'; echo 'Message 1b is locked'; exit 1"),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(!a.succeeded);
        assert_eq!(a.status, "exit code: 1");
        assert_eq!(a.stdout, "Message 1a is now frozen\nMessage 1b is locked\n");
    }

    #[test]
    fn a_command_that_hangs_is_killed_at_its_time_out() {
        let started = std::time::Instant::now();
        let e = run(&mut sh("sleep 30"), Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn input_reaches_the_command() {
        let out = run_with_input(
            &mut sh("tr a-z A-Z"),
            Some(b"to: admin\n"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out, "TO: ADMIN\n");
    }

    #[test]
    fn a_missing_program_says_it_cannot_start() {
        let e = run(
            &mut Command::new("/nonexistent/whmapi1"),
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/nonexistent/whmapi1: cannot start: "), "{e}");
    }
}
