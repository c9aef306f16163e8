//! `freeze-message`: a queued message by its id, or every queued message of
//! a mailbox, an account, a domain or a web script (`exim -bp` lists them,
//! `exim -Mf` freezes them). The ids frozen are the run's memo, so the undo
//! thaws exactly those still in the queue, and never one frozen for another
//! reason (a held sender's mail, a bounce).
//!
//! A queue listing does not say which script sent a message: a script's
//! messages are those the daemon saw it send ([`Job::messages`]) that are
//! still queued.
//!
//! Exim answers for each id: a message being delivered at that moment is
//! locked and is tried again a few times; one delivered or removed in the
//! meantime is passed over.

use std::collections::HashSet;
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
/// Tries at a message Exim says is locked (a delivery attempt holds it).
const LOCKED_TRIES: usize = 4;
/// The wait between them: a delivery attempt takes well under a second.
const LOCKED_WAIT: Duration = Duration::from_millis(300);

/// Exim's queue on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The Exim command line (`-bp`, `-Mf`, `-Mt` are added to it).
    exim: Option<Vec<String>>,
    /// The server root, where `etc/userdomains` names the domains' owners.
    root: PathBuf,
}

/// What Exim said of one id given to `-Mf` or `-Mt`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Frozen (or thawed) as asked.
    Done,
    /// Nothing to do: frozen (or thawed) already, or no longer queued.
    Moot,
    /// A delivery attempt holds it: try again.
    Locked,
    /// Anything else Exim said (permission denied, a spool error).
    Failed(String),
}

impl Queue {
    /// The queue of the Exim that `exim` runs (none: no Exim found).
    pub fn new(exim: Option<Vec<String>>, root: impl Into<PathBuf>) -> Self {
        Queue {
            exim,
            root: root.into(),
        }
    }

    /// Freezes (or thaws) what `job` names; the ids it froze (or thawed).
    /// An error when it acted on none of them and one failed; when some
    /// were frozen and others failed, the frozen ones are the result and
    /// the failures are logged.
    pub fn carry_out(&self, job: &Job) -> Result<Option<String>, String> {
        let ids = match (job.step, &job.target) {
            (_, Target::Message(id)) => vec![id.clone()],
            // Not frozen yet, and not a bounce: it has no sender to blame.
            (Step::Run, target) => {
                let sent = self.sent_by(target, &job.messages)?;
                self.queued_where(|m| !m.frozen && !m.bounce && sent(m))?
            }
            // Only what the run froze and is still queued and frozen.
            (Step::Undo, _) => {
                let froze: HashSet<&str> = job
                    .memo
                    .as_deref()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                self.queued_where(|m| m.frozen && froze.contains(m.message_id.as_ref()))?
            }
        };
        if ids.is_empty() {
            return Ok(None);
        }
        let (done, failed) = self.act_on(job.step, ids)?;
        if !failed.is_empty() {
            let failed = failed.join("; ");
            if done.is_empty() || job.step == Step::Undo {
                // An undo that left some frozen is tried again; the ids it
                // thawed are no longer frozen then, and are passed over.
                return Err(failed);
            }
            tracing::warn!(id = job.id, target = %job.target, "some messages not frozen: {failed}");
        }
        Ok((!done.is_empty()).then(|| done.join(" ")))
    }

    /// Runs `-Mf` (or `-Mt`) on `ids`, again on those locked; the ids
    /// acted on, and what failed.
    fn act_on(
        &self,
        step: Step,
        mut ids: Vec<String>,
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let flag = if step == Step::Run { "-Mf" } else { "-Mt" };
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for attempt in 1..=LOCKED_TRIES {
            let mut cmd = self.exim()?;
            cmd.arg(flag).args(&ids);
            let answer = command::answer(&mut cmd, None, TIMEOUT).map_err(|e| e.to_string())?;
            let (said, other) = answers(&answer.stdout);
            let mut locked = Vec::new();
            for id in ids {
                match said.iter().find(|(i, _)| *i == id).map(|(_, a)| a) {
                    Some(Answer::Done) => done.push(id),
                    Some(Answer::Moot) => {}
                    Some(Answer::Locked) if attempt < LOCKED_TRIES => locked.push(id),
                    Some(Answer::Locked) => failed.push(format!("{id}: locked")),
                    Some(Answer::Failed(why)) => failed.push(format!("{id}: {why}")),
                    None => failed.push(format!(
                        "{id}: exim {flag}: {}: {}",
                        answer.status,
                        other.join(" ") + answer.stderr.trim()
                    )),
                }
            }
            if locked.is_empty() {
                break;
            }
            ids = locked;
            std::thread::sleep(LOCKED_WAIT);
        }
        Ok((done, failed))
    }

    /// Whether `target` sent a queued message: a mailbox by its sender or
    /// login, a domain by its senders, an account by its local user or a
    /// domain it owns, a script by the messages the daemon saw it send
    /// (`script_messages`).
    fn sent_by<'a>(
        &self,
        target: &'a Target,
        script_messages: &'a [String],
    ) -> Result<impl Fn(&QueuedMessage) -> bool + 'a, String> {
        if !matches!(
            target,
            Target::Mailbox(_) | Target::Domain(_) | Target::Account(_) | Target::Script(_)
        ) {
            return Err(format!(
                "freeze-message acts on a message, or the queued mail of a mailbox, account, domain or script, not a {}",
                target.kind()
            ));
        }
        let owners = matches!(target, Target::Account(_))
            .then(|| spamward_cpanel::domain_lookups(&self.root).0);
        let script: HashSet<&str> = script_messages.iter().map(String::as_str).collect();
        Ok(move |m: &QueuedMessage| {
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
                Target::Script(_) => script.contains(m.message_id.as_ref()),
                _ => false,
            }
        })
    }

    /// The ids of the queued messages `keep` keeps, as `exim -bp` lists
    /// them.
    fn queued_where(&self, keep: impl Fn(&QueuedMessage) -> bool) -> Result<Vec<String>, String> {
        Ok(self
            .listing()?
            .into_iter()
            .filter(|m| keep(m))
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

/// Exim's answer for each id in the output of `-Mf` or `-Mt` (lines
/// `Message <id> is now frozen`, `Message <id> is locked`, `Spool data file
/// for <id> does not exist`), and the lines about no id (`Permission
/// denied`, a spool read error).
fn answers(stdout: &str) -> (Vec<(&str, Answer)>, Vec<&str>) {
    let mut said = Vec::new();
    let mut other = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(id) = line
            .strip_prefix("Spool data file for ")
            .and_then(|rest| rest.strip_suffix(" does not exist"))
        {
            said.push((id, Answer::Moot));
            continue;
        }
        let Some((id, what)) = line
            .strip_prefix("Message ")
            .and_then(|rest| rest.split_once(' '))
        else {
            other.push(line);
            continue;
        };
        let answer = match what.trim() {
            "is now frozen" | "is no longer frozen" => Answer::Done,
            "is already frozen" | "is not frozen" => Answer::Moot,
            "is locked" => Answer::Locked,
            what => Answer::Failed(what.to_owned()),
        };
        said.push((id, answer));
    }
    (said, other)
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

    /// A stand-in Exim: `-bp` prints `listing`; `-Mf`/`-Mt` are recorded
    /// and answered as Exim answers, id by id: `locked-<id>` makes an id
    /// locked once, `locked-forever-<id>` always; an id in `gone` was
    /// delivered in the meantime.
    fn exim(dir: &std::path::Path, listing: &str) -> Queue {
        std::fs::write(dir.join("listing"), listing).unwrap();
        let script = format!(
            r#"d={d}
if [ "$1" = -bp ]; then cat $d/listing; exit 0; fi
echo "$*" >> $d/calls
flag=$1; shift; rc=0
for id; do
  if [ -e $d/locked-$id ]; then rm $d/locked-$id; echo "Message $id is locked"; rc=1
  elif [ -e $d/locked-forever-$id ]; then echo "Message $id is locked"; rc=1
  elif grep -qx "$id" $d/gone 2>/dev/null; then echo "Spool data file for $id does not exist"; rc=1
  elif [ "$flag" = -Mf ]; then echo "Message $id is now frozen"
  else echo "Message $id is no longer frozen"; fi
done
exit $rc"#,
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
            messages: Vec::new(),
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
            .carry_out(&job(Step::Run, Target::Ip("192.0.2.7".into()), None))
            .unwrap_err();
        assert!(e.contains("not a ip"), "{e}");
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

    #[test]
    fn a_scripts_queued_mail_is_the_mail_the_daemon_saw_it_send() {
        let dir = tempfile::tempdir().unwrap();
        let queue = exim(dir.path(), LISTING);
        let script = Target::Script("/home/formsite/public_html/contact".into());
        let mut run = job(Step::Run, script.clone(), None);
        // Its message still queued, one frozen already, one delivered.
        run.messages = vec![
            "1xZbc6-0003Y1-2d".into(),
            "1xZbc3-0003XY-2a".into(),
            "1xZbb0-0003AA-01".into(),
        ];
        let memo = queue.carry_out(&run).unwrap();
        assert_eq!(memo.as_deref(), Some("1xZbc6-0003Y1-2d"));
        assert_eq!(calls(dir.path()), "-Mf 1xZbc6-0003Y1-2d\n");
        // Seen sending nothing (a restart since): nothing to freeze.
        let none = queue.carry_out(&job(Step::Run, script, None)).unwrap();
        assert_eq!(none, None);
        assert_eq!(
            calls(dir.path()),
            "-Mf 1xZbc6-0003Y1-2d\n",
            "Exim not asked"
        );
    }

    #[test]
    fn a_message_being_delivered_is_tried_again_and_one_delivered_meanwhile_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let queue = exim(dir.path(), LISTING);
        std::fs::write(dir.path().join("locked-1xZbc5-0003Y0-2c"), "").unwrap();
        std::fs::write(dir.path().join("gone"), "1xZbc6-0003Y1-2d\n").unwrap();
        let mut run = job(Step::Run, Target::Script("/home/x".into()), None);
        run.messages = vec!["1xZbc5-0003Y0-2c".into(), "1xZbc6-0003Y1-2d".into()];
        let memo = queue.carry_out(&run).unwrap();
        assert_eq!(memo.as_deref(), Some("1xZbc5-0003Y0-2c"));
        assert_eq!(
            calls(dir.path()),
            "-Mf 1xZbc5-0003Y0-2c 1xZbc6-0003Y1-2d\n-Mf 1xZbc5-0003Y0-2c\n"
        );
    }

    #[test]
    fn a_message_locked_on_every_try_fails_the_run_only_when_nothing_froze() {
        let dir = tempfile::tempdir().unwrap();
        let queue = exim(dir.path(), LISTING);
        std::fs::write(dir.path().join("locked-forever-1xZbc5-0003Y0-2c"), "").unwrap();
        let mut run = job(Step::Run, Target::Script("/home/x".into()), None);
        run.messages = vec!["1xZbc5-0003Y0-2c".into(), "1xZbc6-0003Y1-2d".into()];
        assert_eq!(
            queue.carry_out(&run).unwrap().as_deref(),
            Some("1xZbc6-0003Y1-2d"),
            "what froze is the memo, for the undo"
        );
        run.messages = vec!["1xZbc5-0003Y0-2c".into()];
        let e = queue.carry_out(&run).unwrap_err();
        assert_eq!(e, "1xZbc5-0003Y0-2c: locked");
        assert_eq!(
            calls(dir.path()).matches("-Mf 1xZbc5-0003Y0-2c\n").count(),
            2 * LOCKED_TRIES - 1,
            "tried {LOCKED_TRIES} times each run (the first run's first call with both ids)"
        );
    }

    #[test]
    fn exims_answers_are_read_id_by_id() {
        let (said, other) = answers(
            "Message 1a is now frozen\nMessage 1b is locked\nSpool data file for 1c does not exist\n\
             Message 1d is already frozen\nPermission denied\nMessage 1e could not be frozen: disk full\n",
        );
        assert_eq!(
            said,
            [
                ("1a", Answer::Done),
                ("1b", Answer::Locked),
                ("1c", Answer::Moot),
                ("1d", Answer::Moot),
                (
                    "1e",
                    Answer::Failed("could not be frozen: disk full".into())
                ),
            ]
        );
        assert_eq!(other, ["Permission denied"]);
    }
}
