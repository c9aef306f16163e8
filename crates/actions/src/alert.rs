//! Alerts: always a log line; and, when `[actions]` says where, a JSON POST
//! to a webhook (retried with back-off) and a mail through the local
//! sendmail. Those two go out on a thread of their own, so a slow or dead
//! webhook never delays an action behind it; one that still fails after
//! its retries is an error line in the log.

use std::process::Command;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use spamward_pipeline::config::ActionsConfig;
use spamward_pipeline::policy::ledger::Job;

use crate::command;

/// Alerts waiting for the webhook or the mail, at most; past it they are
/// dropped (the log line was written) and said.
const QUEUE: usize = 1000;
/// Tries of a webhook POST, and the wait before each retry.
const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// Time-out of one POST, and of sendmail.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where alerts go besides the log.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    outlets: Option<SyncSender<serde_json::Value>>,
}

/// The webhook and the mail recipient.
struct Outlets {
    webhook: Option<String>,
    email: Option<String>,
    sendmail: Vec<String>,
}

impl Alerts {
    /// Alerts as `[actions]` configures them; the thread starts when there
    /// is a webhook or a mail recipient.
    pub fn new(config: &ActionsConfig) -> Self {
        if config.webhook.is_none() && config.alert_email.is_none() {
            return Alerts::default();
        }
        let outlets = Outlets {
            webhook: config.webhook.clone(),
            email: config.alert_email.clone(),
            sendmail: config.sendmail_command.clone(),
        };
        let (tx, rx) = sync_channel::<serde_json::Value>(QUEUE);
        std::thread::Builder::new()
            .name("spamward-alerts".into())
            .spawn(move || {
                for alert in rx {
                    outlets.send(&alert);
                }
            })
            .expect("a thread starts");
        Alerts { outlets: Some(tx) }
    }

    /// Raises an alert about `job`: the log line now, the webhook and the
    /// mail from the alert thread.
    pub fn raise(&self, job: &Job, prefix: &str) {
        tracing::warn!(
            target: "spamward::alert",
            rule = %job.rule,
            target = %job.target,
            action = %job.action,
            "ALERT {prefix}{}",
            job.summary
        );
        let Some(tx) = &self.outlets else { return };
        let alert = serde_json::json!({
            "id": job.id,
            "rule": job.rule,
            "target": job.target,
            "action": job.action,
            "summary": format!("{prefix}{}", job.summary),
        });
        match tx.try_send(alert) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::error!(
                    "{QUEUE} alerts wait for the webhook or mail: alert #{} only logged",
                    job.id
                );
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!(
                    "the alert thread has stopped: alert #{} only logged",
                    job.id
                );
            }
        }
    }
}

impl Outlets {
    fn send(&self, alert: &serde_json::Value) {
        if let Some(url) = &self.webhook
            && let Err(e) = post(url, alert)
        {
            tracing::error!(
                "webhook {url}: alert #{} not delivered after {} tries: {e}",
                alert["id"],
                BACKOFF.len() + 1
            );
        }
        if let Some(to) = &self.email
            && let Err(e) = self.mail(to, alert)
        {
            tracing::error!("alert #{} not mailed to {to}: {e}", alert["id"]);
        }
    }

    fn mail(&self, to: &str, alert: &serde_json::Value) -> Result<(), String> {
        // Text from a log must not start a header of its own.
        let line =
            |v: &serde_json::Value| v.as_str().unwrap_or_default().replace(['\r', '\n'], " ");
        let target = format!(
            "{} {}",
            line(&alert["target"]["kind"]),
            line(&alert["target"]["value"])
        );
        let message = format!(
            "To: {to}\nSubject: [spamward] {}: {} {target}\nAuto-Submitted: auto-generated\n\
             Content-Type: text/plain; charset=utf-8\n\n{}\n\nrule: {}\ntarget: {target}\naction: {}\n",
            line(&alert["rule"]),
            line(&alert["action"]),
            line(&alert["summary"]),
            line(&alert["rule"]),
            line(&alert["action"]),
        );
        let (program, args) = self.sendmail.split_first().ok_or("no sendmail command")?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        command::run_with_input(&mut cmd, Some(message.as_bytes()), TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// POSTs `alert` to `url`, retrying after each wait of [`BACKOFF`].
fn post(url: &str, alert: &serde_json::Value) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
    let body = alert.to_string();
    let mut waits = BACKOFF.iter();
    loop {
        let tried = agent
            .post(url)
            .set("Content-Type", "application/json")
            .send_string(&body);
        let e = match tried {
            Ok(_) => return Ok(()),
            Err(ureq::Error::Status(code, _)) => format!("HTTP {code}"),
            Err(e) => e.to_string(),
        };
        match waits.next() {
            Some(wait) => std::thread::sleep(*wait),
            None => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_contract::verdict::{Action, Target};
    use spamward_pipeline::policy::ledger::Step;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    fn job() -> Job {
        Job {
            id: 7,
            step: Step::Run,
            target: Target::Mailbox("sales@bakery.example\nBcc: x@evil.example".into()),
            action: Action::Alert,
            seconds: None,
            summary: "login looks stolen".into(),
            rule: "compromised-account".into(),
            memo: None,
            messages: Vec::new(),
        }
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_webhook_that_fails_once_gets_the_alert_on_the_retry() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(String::from_utf8(body).unwrap());
                let status = if n == 0 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
            }
        });
        let config = ActionsConfig {
            webhook: Some(url),
            ..ActionsConfig::default()
        };
        Alerts::new(&config).raise(&job(), "");
        wait_for("two POSTs", || bodies.lock().unwrap().len() == 2);
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies[0], bodies[1], "the retry sends the same alert");
        let alert: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
        assert_eq!(alert["rule"], "compromised-account");
        assert_eq!(alert["target"]["kind"], "mailbox");
        assert_eq!(alert["summary"], "login looks stolen");
        assert_eq!(alert["id"], 7);
    }

    #[test]
    fn a_mail_goes_through_sendmail_with_no_header_smuggled_in() {
        let dir = tempfile::tempdir().unwrap();
        let mail = dir.path().join("mail");
        let config = ActionsConfig {
            alert_email: Some("admin@host.example".into()),
            sendmail_command: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "cat > {}.new && mv {}.new {}",
                    mail.display(),
                    mail.display(),
                    mail.display()
                ),
            ],
            ..ActionsConfig::default()
        };
        Alerts::new(&config).raise(&job(), "");
        wait_for("the mail", || mail.exists());
        let text = std::fs::read_to_string(&mail).unwrap();
        assert!(text.starts_with("To: admin@host.example\nSubject: [spamward] compromised-account: alert mailbox sales@bakery.example Bcc: x@evil.example\n"), "{text}");
        assert!(!text.contains("\nBcc:"), "{text}");
        assert!(text.contains("\n\nlogin looks stolen\n"), "{text}");
    }
}
