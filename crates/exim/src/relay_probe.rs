//! The offline open-relay probe: `exim -bh <ip>` runs a fake SMTP session
//! through Exim's real ACLs without delivering anything, so asking it to
//! relay from a stranger's IP to a stranger's domain shows whether the
//! server is an open relay. The answer becomes an `extension` event of kind
//! `relay-probe` that the `open-relay` rule judges.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spamward_model::event::extension_kind;
use spamward_model::{Event, EventBody, Extension, Origin, Timestamp};

/// A documentation address (RFC 5737): never a real client.
const PROBE_CLIENT: &str = "192.0.2.77";
const PROBE_SENDER: &str = "probe@relay-test.invalid";
const PROBE_RECIPIENT: &str = "probe@relay-target.invalid";
/// `-bh` may try reverse DNS; don't wait for it forever.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Why the probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Exim could not be started.
    #[error("cannot run {exim}: {source}")]
    Spawn {
        /// The binary.
        exim: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It ran but said nothing we could read.
    #[error("{exim} -bh gave no answer to RCPT TO (output: {output})")]
    NoAnswer {
        /// The binary.
        exim: PathBuf,
        /// What it printed, shortened.
        output: String,
    },
}

/// The Exim binary at its usual places, if any.
pub fn find_exim() -> Option<PathBuf> {
    ["/usr/sbin/exim", "/usr/sbin/exim4", "/usr/local/sbin/exim"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs the probe with `exim` (and its `-C config`, if given) and returns
/// the event at time `at`.
pub fn probe(exim: &Path, config: Option<&Path>, at: Timestamp) -> Result<Event, ProbeError> {
    let mut cmd = Command::new(exim);
    if let Some(config) = config {
        cmd.arg("-C").arg(config);
    }
    cmd.args(["-bh", PROBE_CLIENT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |source| ProbeError::Spawn {
        exim: exim.to_owned(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A broken pipe only means Exim hung up early; its output says why.
        let _ = write!(
            stdin,
            "EHLO relay-probe.invalid\r\nMAIL FROM:<{PROBE_SENDER}>\r\nRCPT TO:<{PROBE_RECIPIENT}>\r\nQUIT\r\n"
        );
    }
    let started = Instant::now();
    while child.try_wait().map_err(spawn_err)?.is_none() {
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut output = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut output);
    }
    let _ = child.wait();
    let response = rcpt_response(&output).ok_or_else(|| ProbeError::NoAnswer {
        exim: exim.to_owned(),
        output: output.chars().take(300).collect(),
    })?;
    let accepted = response.starts_with('2');
    let origin = Origin {
        file: format!("{} -bh {PROBE_CLIENT}", exim.display()).into(),
        line: 0,
    };
    Ok(Event::new(
        at,
        &origin,
        EventBody::Extension(Extension {
            kind: extension_kind::RELAY_PROBE.into(),
            fields: vec![
                ("client_ip".into(), PROBE_CLIENT.into()),
                ("sender".into(), PROBE_SENDER.into()),
                ("recipient".into(), PROBE_RECIPIENT.into()),
                ("response".into(), response.into()),
                ("accepted".into(), accepted.to_string().into()),
            ],
        }),
    ))
}

/// The final SMTP reply to the RCPT command: the fourth final reply line
/// (greeting, EHLO, MAIL, RCPT). `-bh` interleaves debug lines starting with
/// `>>>`, `LOG:` or `**`; replies are `NNN text` (a `NNN-` line continues).
fn rcpt_response(output: &str) -> Option<String> {
    output
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' '
        })
        .nth(3)
        .map(|l| l.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rcpt_reply_among_debug_lines() {
        let out = "\n**** SMTP testing session as if from host 192.0.2.77\n\
                   220 host ESMTP Exim 4.96 Thu, 26 Nov 2026\n\
                   250-host Hello relay-probe.invalid [192.0.2.77]\n250-SIZE 52428800\n250 HELP\n\
                   >>> using ACL \"acl_check_mail\"\n250 OK\n\
                   >>> using ACL \"acl_check_rcpt\"\nLOG: H=(relay-probe.invalid) [192.0.2.77] F=<probe@relay-test.invalid> rejected RCPT <probe@relay-target.invalid>: relay not permitted\n\
                   550 relay not permitted\n221 host closing connection\n";
        assert_eq!(
            rcpt_response(out).as_deref(),
            Some("550 relay not permitted")
        );
        assert_eq!(rcpt_response("220 hi\n250 ok\n"), None);
    }
}
