//! `freeze-message`: a queued message by its id, or every queued message of
//! a mailbox, an account or a domain (`exim -bp` lists them, `exim -Mf`
//! freezes them). The ids frozen are the run's memo, so the undo thaws
//! exactly those still in the queue, and never one frozen for another
//! reason (a held sender's mail, a bounce).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use spamward_contract::verdict::Target;
use spamward_exim::queue::parse_queue_listing;
use spamward_model::{EventBody, QueuedMessage, Timestamp};
use spamward_pipeline::policy::ledger::{Job, Step};

use crate::command;

/// How long an Exim command may take (a long queue lists slowly).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Exim's queue on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The Exim command line (`-bp`, `-Mf`, `-Mt` are added to it).
    exim: Option<Vec<String>>,
    /// The server root, where `etc/userdomains` names the domains' owners.
    root: PathBuf,
}

impl Queue {
    /// The queue of the Exim that `exim` runs (none: no Exim found).
    pub fn new(exim: Option<Vec<String>>, root: impl Into<PathBuf>) -> Self {
        Queue {
            exim,
            root: root.into(),
        }
    }

    /// Freezes (or thaws) what `job` names; the ids it froze.
    pub fn carry_out(&self, job: &Job) -> Result<Option<String>, String> {
        let ids = match (job.step, &job.target) {
            (_, Target::Message(id)) => vec![id.clone()],
            (Step::Run, target) => self.messages_of(target)?,
            // Only what the run froze and is still queued and frozen.
            (Step::Undo, _) => {
                let froze: Vec<&str> = job
                    .memo
                    .as_deref()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                self.listing()?
                    .into_iter()
                    .filter(|m| m.frozen && froze.contains(&m.message_id.as_ref()))
                    .map(|m| m.message_id.to_string())
                    .collect()
            }
        };
        if ids.is_empty() {
            return Ok(None);
        }
        let flag = if job.step == Step::Run { "-Mf" } else { "-Mt" };
        let mut cmd = self.exim()?;
        cmd.arg(flag).args(&ids);
        command::run(&mut cmd, TIMEOUT).map_err(|e| e.to_string())?;
        Ok(Some(ids.join(" ")))
    }

    /// The ids of the queued messages `target` sent that are not frozen
    /// yet (bounces aside: they have no sender to blame).
    fn messages_of(&self, target: &Target) -> Result<Vec<String>, String> {
        let owners = matches!(target, Target::Account(_))
            .then(|| spamward_cpanel::domain_lookups(&self.root).0);
        let sent = |m: &QueuedMessage| {
            let id = &m.identity;
            let is = |v: &Option<spamward_model::Text>, want: &str| {
                v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(want))
            };
            match target {
                Target::Mailbox(address) => is(&id.sender, address) || is(&id.auth_id, address),
                Target::Domain(domain) => is(&id.sender_domain, domain),
                Target::Account(account) => {
                    is(&id.local_user, account)
                        || id.sender_domain.as_deref().is_some_and(|d| {
                            owners
                                .as_ref()
                                .and_then(|o| o.domain_owner(d))
                                .is_some_and(|o| o.eq_ignore_ascii_case(account))
                        })
                }
                _ => false,
            }
        };
        if !matches!(
            target,
            Target::Mailbox(_) | Target::Domain(_) | Target::Account(_)
        ) {
            return Err(format!(
                "freeze-message acts on a message, or the queued mail of a mailbox, account or domain, not a {}",
                target.kind()
            ));
        }
        Ok(self
            .listing()?
            .into_iter()
            .filter(|m| !m.frozen && !m.bounce && sent(m))
            .map(|m| m.message_id.to_string())
            .collect())
    }

    /// The queue, as `exim -bp` lists it.
    fn listing(&self) -> Result<Vec<QueuedMessage>, String> {
        let mut cmd = self.exim()?;
        cmd.arg("-bp");
        let text = command::run(&mut cmd, TIMEOUT).map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        parse_queue_listing(&text, "exim -bp", Timestamp::naive(0), &mut events);
        Ok(events
            .into_iter()
            .filter_map(|e| match e.body {
                EventBody::QueuedMessage(m) => Some(m),
                _ => None,
            })
            .collect())
    }

    fn exim(&self) -> Result<Command, String> {
        let (program, args) = self
            .exim
            .as_ref()
            .and_then(|c| c.split_first())
            .ok_or("no Exim binary found (set [actions] exim_command)")?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_contract::verdict::Action;

    /// An `exim -bp` as Exim prints it: two of the stolen login's messages
    /// (one frozen already), a bounce to it, a customer's, a local user's.
    const LISTING: &str = "\
25m  2.9K 1xZbc2-0003XX-29 <victim@bakery.example>
          lead0@target0.example

 3h  1.2K 1xZbc3-0003XY-2a <victim@bakery.example> *** frozen ***
          lead1@target0.example

 1m   500 1xZbc4-0003XZ-2b <>
          victim@bakery.example

 2m   700 1xZbc5-0003Y0-2c <staff@shop.example>
          a@partner.example

 4m   800 1xZbc6-0003Y1-2d <formsite@host.example> (formsite)
          a@partner.example

";

    /// A stand-in Exim: `-bp` prints `listing`; `-Mf`/`-Mt` are recorded.
    fn exim(dir: &std::path::Path, listing: &str) -> Queue {
        std::fs::write(dir.join("listing"), listing).unwrap();
        let script = format!(
            "if [ \"$1\" = -bp ]; then cat {d}/listing; else echo \"$*\" >> {d}/calls; fi",
            d = dir.display()
        );
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(
            dir.join("etc/userdomains"),
            "bakery.example: bakery\nshop.example: shop\n",
        )
        .unwrap();
        Queue::new(
            Some(vec!["/bin/sh".into(), "-c".into(), script, "exim".into()]),
            dir,
        )
    }

    fn job(step: Step, target: Target, memo: Option<&str>) -> Job {
        Job {
            id: 3,
            step,
            target,
            action: Action::FreezeMessage,
            seconds: Some(3600),
            summary: "queued spam".into(),
            rule: "queue-health".into(),
            memo: memo.map(str::to_owned),
        }
    }

    fn calls(dir: &std::path::Path) -> String {
        std::fs::read_to_string(dir.join("calls")).unwrap_or_default()
    }

    #[test]
    fn a_senders_queued_mail_is_frozen_and_only_that_is_thawed() {
        let dir = tempfile::tempdir().unwrap();
        let queue = exim(dir.path(), LISTING);
        let mailbox = Target::Mailbox("Victim@Bakery.example".into());
        let memo = queue
            .carry_out(&job(Step::Run, mailbox.clone(), None))
            .unwrap();
        assert_eq!(
            memo.as_deref(),
            Some("1xZbc2-0003XX-29"),
            "not the frozen one, not the bounce"
        );
        assert_eq!(calls(dir.path()), "-Mf 1xZbc2-0003XX-29\n");
        // Exim froze it; the one frozen before stays frozen on undo.
        let frozen = LISTING.replace(
            "1xZbc2-0003XX-29 <victim@bakery.example>",
            "1xZbc2-0003XX-29 <victim@bakery.example> *** frozen ***",
        );
        std::fs::write(dir.path().join("listing"), frozen).unwrap();
        let thawed = queue
            .carry_out(&job(Step::Undo, mailbox, memo.as_deref()))
            .unwrap();
        assert_eq!(thawed.as_deref(), Some("1xZbc2-0003XX-29"));
        assert_eq!(
            calls(dir.path()),
            "-Mf 1xZbc2-0003XX-29\n-Mt 1xZbc2-0003XX-29\n"
        );
    }

    #[test]
    fn an_account_is_its_local_user_and_its_domains_a_domain_its_senders() {
        let dir = tempfile::tempdir().unwrap();
        let queue = exim(dir.path(), LISTING);
        let ran = |target: Target| queue.carry_out(&job(Step::Run, target, None)).unwrap();
        assert_eq!(
            ran(Target::Account("formsite".into())).as_deref(),
            Some("1xZbc6-0003Y1-2d")
        );
        assert_eq!(
            ran(Target::Account("shop".into())).as_deref(),
            Some("1xZbc5-0003Y0-2c")
        );
        assert_eq!(
            ran(Target::Domain("shop.example".into())).as_deref(),
            Some("1xZbc5-0003Y0-2c")
        );
        assert_eq!(
            ran(Target::Mailbox("nobody@nowhere.example".into())),
            None,
            "nothing queued: nothing run"
        );
        let e = queue
            .carry_out(&job(
                Step::Run,
                Target::Script("/home/u/public_html".into()),
                None,
            ))
            .unwrap_err();
        assert!(e.contains("not a script"), "{e}");
        // A message by its id, whatever the queue holds.
        let id = Target::Message("1xZbc5-0003Y0-2c".into());
        assert_eq!(
            queue
                .carry_out(&job(Step::Undo, id, None))
                .unwrap()
                .as_deref(),
            Some("1xZbc5-0003Y0-2c")
        );
        assert!(
            calls(dir.path()).ends_with("-Mt 1xZbc5-0003Y0-2c\n"),
            "{}",
            calls(dir.path())
        );
    }
}
