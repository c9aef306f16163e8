//! Helpers shared by the end-to-end tests: run the real `spamward` binary
//! and read what it prints.

#![allow(dead_code)]

pub mod labelled;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The real-world corpus the repository carries (`tests/corpus/`: data
/// nobody here wrote, each folder with its source and licence).
pub fn corpus() -> PathBuf {
    workspace().join("tests/corpus")
}

/// Runs `spamward` with `args`, with an isolated cache directory.
pub fn spamward(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spamward"))
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env("SPAMWARD_LOG", "warn")
        .output()
        .expect("run spamward")
}

/// stdout as JSON Lines.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `(rule, target kind, target value)` of each finding.
pub fn finding_keys(findings: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut keys: Vec<_> = findings
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["target"]["kind"].as_str().unwrap().to_owned(),
                f["target"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// A finding's key, as [`finding_keys`] gives them.
pub fn key(rule: &str, kind: &str, value: &str) -> (String, String, String) {
    (rule.into(), kind.into(), value.into())
}

/// The time a generated log line writes, `second` seconds after
/// 2024-05-01 10:00:00.
pub fn clock(second: u32) -> String {
    let s = 10 * 3600 + second;
    format!(
        "2024-05-01 {:02}:{:02}:{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Asserts the process succeeded, showing its stderr if not.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "spamward failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `spamward run` on `config`, its server root `root`, state file
/// `state` and, when given, rules directory `rules`; its log (stderr) is
/// piped, at info level.
pub fn start_run(
    cache: &Path,
    config: &Path,
    root: &Path,
    state: &Path,
    rules: Option<&Path>,
) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spamward"));
    cmd.arg("--cache-dir").arg(cache);
    if let Some(rules) = rules {
        cmd.arg("--rules").arg(rules);
    }
    cmd.arg("--config")
        .arg(config)
        .args(["run", "--root"])
        .arg(root)
        .arg("--state")
        .arg(state)
        .env("SPAMWARD_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start spamward run")
}

/// Sends SIGTERM to a `spamward run` and waits: a clean stop is exit 0.
/// Its log.
pub fn stop_run(child: std::process::Child) -> String {
    // SAFETY: kill(2) on a child the test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "run did not stop cleanly:\n{stderr}"
    );
    stderr
}

/// A `spamward run` configuration that follows `mainlog` (in this
/// machine's time zone) from its start
/// and enforces through the plain-Exim backend's lists `hold` and
/// `suspend`, sparing `allow`; `rules` are the rule tables that grant.
pub fn enforcing_config(
    mainlog: &Path,
    hold: &Path,
    suspend: &Path,
    allow: &str,
    rules: &str,
) -> String {
    format!(
        r#"[daemon]
mainlog = [{log:?}]
start_at = "beginning"
flush_ms = 50
checkpoint_every = "1s"

[policy]
allow = ["{allow}"]

[actions]
backend = "exim"
exim_hold_list = {hold:?}
exim_suspend_list = {suspend:?}

{rules}"#,
        log = mainlog.display().to_string(),
        hold = hold.display().to_string(),
        suspend = suspend.display().to_string(),
    )
}
