//! The actions stage, last in the pipeline: what the ledger
//! ([`spamward_pipeline::policy::ledger`]) decided to run, carried out by
//! the server's own tools, and taken back again.
//!
//! - [`alert`]: the log line, the webhook and the mail;
//! - [`command`]: every command runs without a shell, with a time-out, its
//!   exit status and output checked;
//! - [`cpanel`]: `whmapi1` and `uapi`, their JSON answers checked;
//! - [`list_file`]: the hold and suspend lists the shipped Exim ACL reads;
//! - [`freeze`]: a message, or every queued message of a sender, frozen;
//! - [`firewall`]: `block-ip`, in spamward's own nftables table or through
//!   the admin's command template.
//!
//! [`Backends::carry_out`] runs one [`Job`]. It never assumes success: an
//! action it cannot do on this server, or a command that fails, is an error
//! the ledger journals as `failed`.

#![warn(missing_docs)]

pub mod alert;
pub mod command;
pub mod cpanel;
pub mod firewall;
pub mod freeze;
pub mod list_file;

use std::path::Path;

use spamward_contract::verdict::{Action, Target};
use spamward_pipeline::config::{ActionsConfig, Backend};
use spamward_pipeline::policy::ledger::{Job, Step};

use alert::Alerts;
use cpanel::Cpanel;
use firewall::Firewall;
use freeze::Queue;
use list_file::ListFile;

/// Which server's tools act, as chosen for this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// cPanel's `whmapi1` and `uapi`.
    Cpanel,
    /// spamward's lists, read by the shipped ACL, and Exim's own commands.
    Exim,
}

/// The backends of one server.
#[derive(Debug, Clone)]
pub struct Backends {
    chosen: Chosen,
    hold: ListFile,
    suspend: ListFile,
    queue: Queue,
    firewall: Firewall,
    cpanel: Cpanel,
    alerts: Alerts,
}

impl Backends {
    /// The backends `[actions]` asks for; `auto` is cPanel's when `whmapi1`
    /// is installed.
    pub fn new(config: &ActionsConfig) -> Self {
        let chosen = match config.backend {
            Backend::Cpanel => Chosen::Cpanel,
            Backend::Exim => Chosen::Exim,
            Backend::Auto if cpanel::is_installed(Path::new("/")) => Chosen::Cpanel,
            Backend::Auto => Chosen::Exim,
        };
        let exim = if config.exim_command.is_empty() {
            spamward_exim::relay_probe::find_exim().map(|p| vec![p.to_string_lossy().into_owned()])
        } else {
            Some(config.exim_command.clone())
        };
        Backends {
            chosen,
            hold: ListFile::new(&config.exim_hold_list),
            suspend: ListFile::new(&config.exim_suspend_list),
            queue: Queue::new(exim, "/"),
            firewall: Firewall::new(config),
            cpanel: Cpanel::installed(),
            alerts: Alerts::new(config),
        }
    }

    /// Which tools were chosen.
    pub fn chosen(&self) -> Chosen {
        self.chosen
    }

    /// Readies what the backends need before the first action: the plain
    /// Exim lists must exist for the ACL to read them.
    pub fn prepare(&self) -> Result<(), String> {
        if self.chosen == Chosen::Exim {
            for list in [&self.hold, &self.suspend] {
                list.ensure()
                    .map_err(|e| format!("cannot create the list: {e}"))?;
            }
        }
        Ok(())
    }

    /// Carries `job` out; what a run leaves for its undo (the ids it
    /// froze), or an error that says what failed, for the journal.
    pub fn carry_out(&self, job: &Job) -> Result<Option<String>, String> {
        if job.action == Action::FreezeMessage {
            return self.queue.carry_out(job);
        }
        self.act(job).map(|()| None)
    }

    fn act(&self, job: &Job) -> Result<(), String> {
        match job.action {
            Action::Alert => {
                if job.step == Step::Run {
                    self.alerts.raise(job, "");
                }
                Ok(())
            }
            Action::HoldOutgoing => self.listed(&self.hold, job),
            Action::SuspendOutgoing => self.listed(&self.suspend, job),
            Action::FreezeMessage => unreachable!("carried out by the queue"),
            Action::ResetPassword => match self.chosen {
                // Plain Exim has no password store spamward may change:
                // the admin is told.
                Chosen::Exim => {
                    if job.step == Step::Run {
                        self.alerts.raise(job, "change this mailbox's password: ");
                    }
                    Ok(())
                }
                Chosen::Cpanel => {
                    let suspended = self.cpanel.carry_out(job);
                    if suspended.is_ok() && job.step == Step::Run {
                        self.alerts
                            .raise(job, "login suspended until a new password is set: ");
                    }
                    suspended
                }
            },
            Action::BlockIp => match job.step {
                Step::Run => self
                    .firewall
                    .prepare()
                    .and_then(|()| self.firewall.block(job)),
                Step::Undo => self.firewall.unblock(job),
            },
        }
    }

    /// Hold or suspend by putting the target on a list the ACL reads.
    fn listed(&self, list: &ListFile, job: &Job) -> Result<(), String> {
        if self.chosen == Chosen::Cpanel {
            return self.cpanel.carry_out(job);
        }
        let entry = match &job.target {
            Target::Account(v) | Target::Mailbox(v) | Target::Domain(v) => v,
            other => {
                return Err(format!(
                    "{} acts on an account, mailbox or domain, not a {}",
                    job.action,
                    other.kind()
                ));
            }
        };
        let done = match job.step {
            Step::Run => list.add(entry),
            Step::Undo => list.remove(entry),
        };
        done.map(|_| ()).map_err(|e| e.to_string())
    }
}
