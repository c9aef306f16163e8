//! Enforcement end to end, through the real binary on real files: `spamward
//! run` in enforce mode reads a log with a stolen login in it and puts the
//! login on the plain-Exim backend's suspend and hold lists (the files the
//! shipped ACL reads), spares what the allow-list covers, journals every
//! decision, and `spamward actions release` takes an action back — through
//! the running daemon, and by itself once the daemon has stopped.
//!
//! Everything it touches is under the test's temp dir.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use common::{enforcing_config, json_lines, spamward, start_run, stop_run as stop, workspace};

/// The sample log's stolen login (compromised-account and relay-volume name
/// it), its account and its domain (defer-fail-ratio names it).
const LOGIN: &str = "sales@bakery.example";
const ACCOUNT: &str = "bakery";
const DOMAIN: &str = "bakery.example";
/// Another domain defer-fail-ratio names: allow-listed here.
const ALLOWED: &str = "club.example";

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(s.path("root")).unwrap();
        fs::copy(
            workspace().join("examples/logs/mainlog-sample"),
            s.path("mainlog"),
        )
        .unwrap();
        fs::write(
            s.path("spamward.toml"),
            enforcing_config(
                &s.path("mainlog"),
                &s.hold(),
                &s.suspend(),
                ALLOWED,
                r#"[rules.compromised-account]
mode = "enforce"
actions = ["suspend-outgoing"]

[rules.relay-volume]
mode = "enforce"
actions = ["hold-outgoing", "alert"]
expire_after = "1h"

[rules.defer-fail-ratio]
mode = "enforce"
actions = ["hold-outgoing"]
"#,
            ),
        )
        .unwrap();
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn hold(&self) -> PathBuf {
        self.path("hold")
    }

    fn suspend(&self) -> PathBuf {
        self.path("suspend")
    }

    fn state(&self) -> PathBuf {
        self.path("state.db")
    }

    fn start(&self) -> Child {
        start_run(
            &self.path("cache"),
            &self.path("spamward.toml"),
            &self.path("root"),
            &self.state(),
            None,
        )
    }

    /// `spamward <args> --state <state>` with this setup's configuration.
    fn spamward(&self, args: &[&str]) -> Output {
        let state = self.state();
        let config = self.path("spamward.toml");
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend(["--state", state.to_str().unwrap()]);
        spamward(&all, &self.path("cache"))
    }

    fn journal(&self) -> Vec<serde_json::Value> {
        json_lines(&self.spamward(&["actions", "--json", "--last", "1000"]))
    }

    fn release(&self, selector: &str) -> Output {
        self.spamward(&["actions", "release", selector, "--by", "tester"])
    }
}

/// The entries of a list file, comments aside.
fn entries(list: &Path) -> Vec<String> {
    let mut entries: Vec<String> = fs::read_to_string(list)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    entries.sort();
    entries
}

/// The journal's `(decision, action, target value)` of each entry.
fn decisions(journal: &[serde_json::Value]) -> Vec<(String, String, String)> {
    journal
        .iter()
        .map(|e| {
            (
                e["outcome"]["decision"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["target"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(journal: &[(String, String, String)], decision: &str, action: &str, target: &str) -> bool {
    journal
        .iter()
        .any(|(d, a, t)| d == decision && a == action && t == target)
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn enforce_mode_holds_and_suspends_spares_the_allow_list_and_releases_on_request() {
    let s = Setup::new();
    let daemon = s.start();
    wait_for("the stolen login on the suspend list", || {
        entries(&s.suspend()) == [LOGIN]
    });
    wait_for(
        "the login, its account and its domain on the hold list",
        || entries(&s.hold()) == [ACCOUNT, DOMAIN, LOGIN],
    );

    let journal = decisions(&s.journal());
    assert!(
        has(&journal, "ran", "suspend-outgoing", LOGIN),
        "{journal:?}"
    );
    for target in [LOGIN, ACCOUNT, DOMAIN] {
        assert!(has(&journal, "ran", "hold-outgoing", target), "{journal:?}");
    }
    // Reported, never acted on.
    assert!(
        has(&journal, "refused-allow-listed", "hold-outgoing", ALLOWED),
        "{journal:?}"
    );
    assert!(!entries(&s.hold()).contains(&ALLOWED.to_owned()));
    // hourly-limit is granted alerts by default but runs in dry-run: only
    // recorded. nobody-sender's freeze was never granted.
    assert!(has(&journal, "dry-run", "alert", DOMAIN), "{journal:?}");
    assert!(
        journal
            .iter()
            .any(|(d, a, _)| d == "refused-not-granted" && a == "freeze-message"),
        "{journal:?}"
    );
    // One action per (target, action), whatever the number of verdicts.
    let ran = journal.iter().filter(|(d, _, _)| d == "ran").count();
    assert_eq!(ran, 4, "{journal:?}");
    let entry = s
        .journal()
        .into_iter()
        .find(|e| e["outcome"]["decision"] == "ran" && e["action"] == "suspend-outgoing")
        .unwrap();
    assert_eq!(entry["rule"], "compromised-account");
    assert!(!entry["rule_version"].as_str().unwrap().is_empty());
    assert!(entry["lines"][0]["line"].as_u64().unwrap() > 0, "{entry}");
    assert_eq!(entry["evidence"]["bot_helo"], "User", "{entry}");

    let active = json_lines(&s.spamward(&["actions", "--active", "--json"]));
    let in_force: Vec<_> = active.iter().filter(|a| a["dry_run"] == false).collect();
    assert_eq!(in_force.len(), 4, "{active:?}");
    assert!(
        in_force
            .iter()
            .all(|a| a["standing"]["state"] == "in-force")
    );
    let status = json_lines(&s.spamward(&["status", "--json"])).remove(0);
    assert_eq!(status["actions_in_force"], 4, "{status}");
    assert_eq!(status["actions_last_hour"], 4, "{status}");
    let listed = status["actions"].as_array().unwrap();
    assert_eq!(listed.len(), 4, "{status}");
    assert!(
        listed
            .iter()
            .any(|a| a["action"] == "suspend-outgoing" && a["target"] == format!("mailbox {LOGIN}")),
        "{status}"
    );
    let human = String::from_utf8_lossy(&s.spamward(&["actions", "--active"]).stdout).into_owned();
    assert!(
        human.contains("suspend-outgoing") && human.contains(LOGIN),
        "{human}"
    );

    // Released through the daemon: both its actions on the login undone.
    let out = s.release(LOGIN);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said.matches(" undone").count(), 2, "{said}");
    assert!(entries(&s.suspend()).is_empty());
    assert_eq!(entries(&s.hold()), [ACCOUNT, DOMAIN]);
    let journal = decisions(&s.journal());
    assert!(
        has(&journal, "released", "suspend-outgoing", LOGIN),
        "{journal:?}"
    );
    let released = s
        .journal()
        .into_iter()
        .find(|e| e["outcome"]["decision"] == "released")
        .unwrap();
    assert_eq!(released["outcome"]["detail"], "tester");

    // Nothing matches: a clear refusal, nothing changes.
    let out = s.release("nobody@nowhere.example");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no action in force matches"), "{err}");

    // With the daemon stopped, a release undoes the action itself.
    let log = stop(daemon);
    assert!(log.contains("acting"), "{log}");
    let out = s.release(ACCOUNT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries(&s.hold()), [DOMAIN]);
    let journal = decisions(&s.journal());
    assert!(
        has(&journal, "released", "hold-outgoing", ACCOUNT),
        "{journal:?}"
    );

    // A restarted daemon goes on from its checkpoint: what is in force
    // stays, what was released stays released.
    let daemon = s.start();
    std::thread::sleep(Duration::from_secs(2));
    stop(daemon);
    assert!(entries(&s.suspend()).is_empty());
    assert_eq!(entries(&s.hold()), [DOMAIN]);
}

#[test]
fn a_second_daemon_on_the_same_state_file_is_refused() {
    let s = Setup::new();
    let first = s.start();
    // Serving: it has acted on the log.
    wait_for("the first daemon acting", || {
        entries(&s.suspend()) == [LOGIN]
    });
    let second = s.start().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_ne!(second.status.code(), Some(0), "{err}");
    assert!(err.contains("another `spamward run` uses"), "{err}");
    assert!(err.contains("state.db.lock"), "{err}");
    stop(first);
    assert_eq!(
        entries(&s.suspend()),
        [LOGIN],
        "the refused one undid nothing"
    );
}
