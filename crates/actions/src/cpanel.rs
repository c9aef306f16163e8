//! cPanel's own tools: `whmapi1` for accounts, `uapi` (as the mailbox's
//! owner) for mailboxes. Each answer's JSON is checked (`metadata.result`
//! of WHM API 1, `result.status` of UAPI): a command that exits 0 but says
//! it failed has failed, with cPanel's own reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spamward_contract::verdict::{Action, Target};
use spamward_pipeline::policy::ledger::{Job, Step};

use crate::command;

/// How long a cPanel command may take (whmapi1 can be slow to start).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where cPanel installs its command-line APIs.
pub const WHMAPI1: &str = "/usr/local/cpanel/bin/whmapi1";
/// See [`WHMAPI1`].
pub const UAPI: &str = "/usr/local/cpanel/bin/uapi";

/// cPanel's APIs on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpanel {
    whmapi1: PathBuf,
    uapi: PathBuf,
    /// The server root, where `etc/userdomains` names each domain's owner.
    root: PathBuf,
}

impl Cpanel {
    /// The server's own tools.
    pub fn installed() -> Self {
        Cpanel::new(WHMAPI1, UAPI, "/")
    }

    /// These tools, with domain owners read under `root`.
    pub fn new(
        whmapi1: impl Into<PathBuf>,
        uapi: impl Into<PathBuf>,
        root: impl Into<PathBuf>,
    ) -> Self {
        Cpanel {
            whmapi1: whmapi1.into(),
            uapi: uapi.into(),
            root: root.into(),
        }
    }

    /// Carries out (or takes back) a hold, a suspension or a login
    /// suspension.
    pub fn carry_out(&self, job: &Job) -> Result<(), String> {
        use Action::{HoldOutgoing, ResetPassword, SuspendOutgoing};
        // (WHM API 1 for an account, else UAPI for a mailbox; the function
        // that runs the action; the one that undoes it.)
        let (whm, run, undo) = match (&job.target, job.action) {
            (Target::Account(_), HoldOutgoing) => {
                (true, "hold_outgoing_email", "release_outgoing_email")
            }
            (Target::Account(_), SuspendOutgoing) => {
                (true, "suspend_outgoing_email", "unsuspend_outgoing_email")
            }
            (Target::Mailbox(_), HoldOutgoing) => (false, "hold_outgoing", "release_outgoing"),
            (Target::Mailbox(_), SuspendOutgoing) => {
                (false, "suspend_outgoing", "unsuspend_outgoing")
            }
            (Target::Mailbox(_), ResetPassword) => (false, "suspend_login", "unsuspend_login"),
            (target, action) => {
                return Err(format!(
                    "{action} on cPanel acts on {}, not a {}",
                    if action == ResetPassword {
                        "a mailbox"
                    } else {
                        "an account or a mailbox"
                    },
                    target.kind()
                ));
            }
        };
        let function = if job.step == Step::Run { run } else { undo };
        if whm {
            self.whm(function, job.target.value())
        } else {
            self.email(function, job.target.value())
        }
    }

    /// `whmapi1 --output=json <function> user=<user>`.
    fn whm(&self, function: &str, user: &str) -> Result<(), String> {
        let mut cmd = Command::new(&self.whmapi1);
        cmd.args(["--output=json", function, &format!("user={user}")]);
        let answer = self.answer(&mut cmd)?;
        match answer["metadata"]["result"].as_i64() {
            Some(1) => Ok(()),
            _ => Err(format!(
                "whmapi1 {function} user={user}: {}",
                answer["metadata"]["reason"]
                    .as_str()
                    .unwrap_or("failed, no reason given")
            )),
        }
    }

    /// `uapi --output=json --user=<owner> Email <function> email=<address>`.
    fn email(&self, function: &str, address: &str) -> Result<(), String> {
        let owner = self.owner(address)?;
        let mut cmd = Command::new(&self.uapi);
        cmd.args([
            "--output=json",
            &format!("--user={owner}"),
            "Email",
            function,
            &format!("email={address}"),
        ]);
        let answer = self.answer(&mut cmd)?;
        match answer["result"]["status"].as_i64() {
            Some(1) => Ok(()),
            _ => {
                let errors: Vec<&str> = answer["result"]["errors"]
                    .as_array()
                    .map(|e| e.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                Err(format!(
                    "uapi Email {function} email={address}: {}",
                    if errors.is_empty() {
                        "failed, no reason given".to_owned()
                    } else {
                        errors.join("; ")
                    }
                ))
            }
        }
    }

    /// The cPanel account that owns `address`'s domain.
    fn owner(&self, address: &str) -> Result<String, String> {
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .ok_or_else(|| format!("{address:?} is not an address"))?;
        let (lookups, _) = spamward_cpanel::domain_lookups(&self.root);
        lookups
            .domain_owner(domain)
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "no cPanel account owns {domain} ({} has no line for it)",
                    self.root.join("etc/userdomains").display()
                )
            })
    }

    /// Runs a cPanel command; its JSON answer.
    fn answer(&self, cmd: &mut Command) -> Result<serde_json::Value, String> {
        let shown = command::Shown(cmd).to_string();
        let out = command::run(cmd, TIMEOUT).map_err(|e| e.to_string())?;
        serde_json::from_str(&out).map_err(|e| {
            format!(
                "{shown}: not a JSON answer ({e}): {}",
                out.chars().take(200).collect::<String>()
            )
        })
    }
}

/// Whether cPanel's tools are installed under `root`.
pub fn is_installed(root: &Path) -> bool {
    root.join(WHMAPI1.trim_start_matches('/')).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for whmapi1 or uapi: records its arguments and prints the
    /// recorded answer `fixture`.
    fn tool(dir: &Path, name: &str, fixture: &str) -> PathBuf {
        let answer = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cpanel")
            .join(fixture);
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}/calls\ncat {}\n",
                dir.display(),
                answer.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn server(whm: &str, uapi: &str) -> (tempfile::TempDir, Cpanel) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/userdomains"),
            "shop.example: shopacct\n",
        )
        .unwrap();
        let cpanel = Cpanel::new(
            tool(dir.path(), "whmapi1", whm),
            tool(dir.path(), "uapi", uapi),
            dir.path(),
        );
        (dir, cpanel)
    }

    fn job(step: Step, action: Action, target: Target) -> Job {
        Job {
            id: 1,
            step,
            target,
            action,
            seconds: Some(3600),
            summary: "sends spam".into(),
            rule: "relay-volume".into(),
            memo: None,
            messages: Vec::new(),
        }
    }

    fn calls(dir: &tempfile::TempDir) -> Vec<String> {
        std::fs::read_to_string(dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn accounts_go_through_whmapi1_and_mailboxes_through_uapi_as_their_owner() {
        let (dir, cpanel) = server("whmapi1-ok.json", "uapi-ok.json");
        let account = Target::Account("shopacct".into());
        let mailbox = Target::Mailbox("sales@shop.example".into());
        for (step, action, target) in [
            (Step::Run, Action::HoldOutgoing, &account),
            (Step::Undo, Action::HoldOutgoing, &account),
            (Step::Run, Action::SuspendOutgoing, &account),
            (Step::Undo, Action::SuspendOutgoing, &account),
            (Step::Run, Action::HoldOutgoing, &mailbox),
            (Step::Undo, Action::HoldOutgoing, &mailbox),
            (Step::Run, Action::SuspendOutgoing, &mailbox),
            (Step::Undo, Action::SuspendOutgoing, &mailbox),
            (Step::Run, Action::ResetPassword, &mailbox),
            (Step::Undo, Action::ResetPassword, &mailbox),
        ] {
            cpanel
                .carry_out(&job(step, action, target.clone()))
                .unwrap();
        }
        let mb = "--output=json --user=shopacct Email";
        assert_eq!(
            calls(&dir),
            [
                "--output=json hold_outgoing_email user=shopacct".to_owned(),
                "--output=json release_outgoing_email user=shopacct".into(),
                "--output=json suspend_outgoing_email user=shopacct".into(),
                "--output=json unsuspend_outgoing_email user=shopacct".into(),
                format!("{mb} hold_outgoing email=sales@shop.example"),
                format!("{mb} release_outgoing email=sales@shop.example"),
                format!("{mb} suspend_outgoing email=sales@shop.example"),
                format!("{mb} unsuspend_outgoing email=sales@shop.example"),
                format!("{mb} suspend_login email=sales@shop.example"),
                format!("{mb} unsuspend_login email=sales@shop.example"),
            ]
        );
    }

    #[test]
    fn a_failure_cpanel_reports_in_its_json_is_a_failure_with_its_reason() {
        let (_dir, cpanel) = server("whmapi1-no-such-user.json", "uapi-no-such-mailbox.json");
        let e = cpanel
            .carry_out(&job(
                Step::Run,
                Action::HoldOutgoing,
                Target::Account("nosuch".into()),
            ))
            .unwrap_err();
        assert_eq!(
            e,
            "whmapi1 hold_outgoing_email user=nosuch: The user “nosuch” does not exist."
        );
        let e = cpanel
            .carry_out(&job(
                Step::Run,
                Action::HoldOutgoing,
                Target::Mailbox("ghost@shop.example".into()),
            ))
            .unwrap_err();
        assert_eq!(
            e,
            "uapi Email hold_outgoing email=ghost@shop.example: The email account “ghost@shop.example” does not exist."
        );
    }

    #[test]
    fn what_cpanel_cannot_do_is_refused_before_any_command_runs() {
        let (dir, cpanel) = server("whmapi1-ok.json", "uapi-ok.json");
        let e = cpanel
            .carry_out(&job(
                Step::Run,
                Action::HoldOutgoing,
                Target::Mailbox("a@unknown.example".into()),
            ))
            .unwrap_err();
        assert!(
            e.starts_with("no cPanel account owns unknown.example"),
            "{e}"
        );
        let e = cpanel
            .carry_out(&job(
                Step::Run,
                Action::HoldOutgoing,
                Target::Domain("shop.example".into()),
            ))
            .unwrap_err();
        assert_eq!(
            e,
            "hold-outgoing on cPanel acts on an account or a mailbox, not a domain"
        );
        assert!(calls(&dir).is_empty());
        // A tool that answers with something else than JSON.
        let garbled = Cpanel::new("/bin/echo", "/bin/echo", dir.path());
        let e = garbled
            .carry_out(&job(
                Step::Run,
                Action::HoldOutgoing,
                Target::Account("shopacct".into()),
            ))
            .unwrap_err();
        assert!(
            e.starts_with(
                "/bin/echo --output=json hold_outgoing_email user=shopacct: not a JSON answer"
            ),
            "{e}"
        );
    }
}
