//! `spamward run` end to end, through the real binary on real files: the
//! daemon follows a log as it is written and rotated, stores its findings,
//! stops cleanly on SIGTERM, and a restart goes on where it stopped. What
//! it stored must equal what `scan` finds in the same lines.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{json_lines, spamward, start_run, stop_run as stop, workspace};

/// A daemon's own directory: its log, configuration, state and cache.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = Setup { dir };
        fs::create_dir_all(s.root()).unwrap();
        fs::write(
            s.path("spamward.toml"),
            format!(
                "[input]\ntimezone = \"UTC\"\n\n[daemon]\nmainlog = [{:?}]\nstart_at = \"beginning\"\nflush_ms = 50\ncheckpoint_every = \"1s\"\n",
                s.log().display().to_string()
            ),
        )
        .unwrap();
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> PathBuf {
        self.path("mainlog")
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn state(&self) -> PathBuf {
        self.path("state.db")
    }

    fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    fn rules(&self) -> PathBuf {
        self.path("rules")
    }

    fn config(&self) -> PathBuf {
        self.path("spamward.toml")
    }

    /// Replaces the configuration in one step, as an editor saves.
    fn set_config(&self, text: &str) {
        let staged = self.path("spamward.toml.new");
        fs::write(&staged, text).unwrap();
        fs::rename(&staged, self.config()).unwrap();
    }

    /// Waits until `status` shows what `shown` looks for.
    fn wait_for_status(
        &self,
        what: &str,
        shown: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The file may exist before the daemon has set it up: `status`
            // then says so, and the wait goes on.
            let status = self.try_read_state("status").map(|mut s| s.remove(0));
            if let Ok(status) = &status
                && shown(status)
            {
                return status.clone();
            }
            assert!(
                Instant::now() < deadline,
                "status never showed {what}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start(&self) -> Child {
        fs::create_dir_all(self.rules()).unwrap();
        start_run(
            &self.cache(),
            &self.config(),
            &self.root(),
            &self.state(),
            Some(&self.rules()),
        )
    }

    fn append(&self, lines: &[&str]) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        for line in lines {
            writeln!(f, "{line}").unwrap();
        }
    }

    /// What `spamward <command> --json --state <state>` prints, one JSON
    /// value a line.
    fn read_state(&self, command: &str) -> Vec<serde_json::Value> {
        self.try_read_state(command)
            .unwrap_or_else(|e| panic!("spamward {command}: {e}"))
    }

    /// [`Setup::read_state`], or what `spamward` said when it could not
    /// (the daemon may still be creating the file).
    fn try_read_state(&self, command: &str) -> Result<Vec<serde_json::Value>, String> {
        let state = self.state();
        let out = spamward(
            &[command, "--json", "--state", state.to_str().unwrap()],
            &self.cache(),
        );
        if out.status.success() {
            Ok(json_lines(&out))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `status --json` of the state file.
    fn status(&self) -> serde_json::Value {
        self.read_state("status").remove(0)
    }

    /// What `findings --json` prints, as comparable keys.
    fn findings(&self) -> Vec<String> {
        keys(&self.read_state("findings"))
    }

    /// Waits until the daemon has handed `events` events to its rules and
    /// saved that in a checkpoint.
    fn wait_for_events(&self, events: u64) {
        self.wait_for_status(&format!("{events} events"), |st| {
            st["events"].as_u64() == Some(events)
        });
    }
}

/// Every field of a finding a live run and a replay must agree on.
fn keys(findings: &[serde_json::Value]) -> Vec<String> {
    let mut keys: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {} {} {} {} {}",
                f["rule"],
                f["severity"],
                f["target"],
                f["action"],
                f["count"],
                f["first_seen"],
                f["last_seen"],
                f["summary"]
            )
        })
        .collect();
    keys.sort();
    keys
}

fn sample() -> String {
    fs::read_to_string(workspace().join("examples/logs/mainlog-sample")).unwrap()
}

/// What `scan` and `events` make of `text` as one log, on the daemon's
/// server root.
fn replay(text: &str, s: &Setup) -> (Vec<String>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("whole");
    fs::write(&log, text).unwrap();
    let log = log.to_str().unwrap();
    let cache = s.cache();
    let cache = cache.as_path();
    let root = s.root();
    let scan = spamward(
        &[
            "--timezone",
            "UTC",
            "scan",
            "--json",
            "--root",
            root.to_str().unwrap(),
            log,
        ],
        cache,
    );
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let events = spamward(&["--timezone", "UTC", "events", log], cache);
    (keys(&json_lines(&scan)), json_lines(&events).len() as u64)
}

#[test]
fn run_follows_a_rotated_log_and_stores_what_scan_finds_in_it() {
    let s = Setup::new();
    let text = sample();
    let lines: Vec<&str> = text.lines().collect();
    let (expected, events) = replay(&text, &s);
    assert!(
        expected.len() >= 6,
        "the sample makes findings: {expected:?}"
    );

    let daemon = s.start();
    let (first, rest) = lines.split_at(lines.len() / 2);
    for chunk in first.chunks(250) {
        s.append(chunk);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Rotation as logrotate and cPanel do it: rename, then a new file.
    fs::rename(s.log(), s.path("mainlog.1")).unwrap();
    for chunk in rest.chunks(250) {
        s.append(chunk);
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = stop(daemon);
    assert!(
        stderr.contains("finding:"),
        "findings are logged as made:\n{stderr}"
    );

    assert_eq!(s.findings(), expected, "the daemon stored what scan finds");
    let status = s.status();
    assert_eq!(status["events"].as_u64(), Some(events), "{status}");
    assert_eq!(status["findings"].as_u64(), Some(expected.len() as u64));
    let source = &status["sources"][0];
    assert_eq!(source["path"], s.log().display().to_string());
    assert_eq!(source["lines"].as_u64(), Some(lines.len() as u64));
    assert_eq!(source["unparsed"].as_u64(), Some(0));
    let rules = status["rules"].as_array().unwrap();
    assert!(rules.len() >= 13, "{rules:?}");
    assert!(rules.iter().all(|r| r["status"] == "running"), "{rules:?}");
    assert!(status["checkpoint_at"].as_i64().is_some());
}

#[test]
fn a_restarted_daemon_goes_on_where_it_stopped() {
    let s = Setup::new();
    let text = sample();
    let lines: Vec<&str> = text.lines().collect();
    let (expected, events) = replay(&text, &s);
    let (first, rest) = lines.split_at(lines.len() / 3);

    s.append(first);
    let daemon = s.start();
    s.wait_for_events_at_least_once();
    stop(daemon);
    // Written while it was stopped.
    s.append(&rest[..rest.len() / 2]);
    let daemon = s.start();
    s.append(&rest[rest.len() / 2..]);
    s.wait_for_events(events);
    stop(daemon);

    assert_eq!(
        s.findings(),
        expected,
        "nothing lost, nothing counted twice"
    );
    assert_eq!(s.status()["events"].as_u64(), Some(events));
}

impl Setup {
    /// Waits until a first checkpoint was saved.
    fn wait_for_events_at_least_once(&self) {
        self.wait_for_status("a checkpoint", |st| st["checkpoint_at"].is_i64());
    }
}

/// The status row of rule `name`.
fn rule<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
}

#[test]
fn configuration_and_rules_reload_while_it_runs_and_mistakes_leave_the_running_rules() {
    let s = Setup::new();
    let text = sample();
    let lines: Vec<&str> = text.lines().collect();
    let good = fs::read_to_string(s.config()).unwrap();
    let daemon = s.start();
    s.wait_for_status("a first checkpoint", |st| st["checkpoint_at"].is_i64());

    // A rule turned off in the configuration stops.
    s.set_config(&format!("{good}\n[rules.mailman]\nenabled = false\n"));
    s.wait_for_status("mailman off", |st| {
        rule(st, "mailman").is_some_and(|r| r["status"] == "off")
    });

    // Invalid TOML: refused, said in status, the rules go on.
    s.set_config("[daemon\nflush_ms = 50\n");
    let st = s.wait_for_status("the refused reload", |st| rule(st, "(reload)").is_some());
    let refused = rule(&st, "(reload)").unwrap();
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("spamward.toml"),
        "{refused}"
    );
    assert_eq!(rule(&st, "mailman").unwrap()["status"], "off");
    s.append(&lines[..1000]);
    s.wait_for_events_seen(1);

    // Truncated, as `>` does before it writes: not taken for the defaults.
    fs::write(s.config(), "").unwrap();
    let st = s.wait_for_status("the empty file refused", |st| {
        rule(st, "(reload)")
            .is_some_and(|r| r["reason"].as_str().is_some_and(|w| w.contains("is empty")))
    });
    assert_eq!(rule(&st, "mailman").unwrap()["status"], "off");

    // A third party's rule dropped in starts; a corrupt one is named.
    s.set_config(&good);
    let wasm = Path::new(spamward_engine::GUEST_WASM_DIR).join("example_auth_failure_burst.wasm");
    fs::copy(&wasm, s.rules().join("auth-failure-burst.wasm")).unwrap();
    fs::write(s.rules().join("broken.wasm"), b"\0asm but not really").unwrap();
    let st = s.wait_for_status("the new rules", |st| {
        rule(st, "auth-failure-burst").is_some_and(|r| r["status"] == "running")
            && rule(st, "mailman").is_some_and(|r| r["status"] == "running")
    });
    assert!(
        rule(&st, "(reload)").is_none(),
        "the good configuration clears it: {st}"
    );
    let broken = st["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "failed to load")
        .unwrap_or_else(|| panic!("the broken rule is shown: {st}"));
    assert!(
        broken["origin"].as_str().unwrap().ends_with("broken.wasm"),
        "{broken}"
    );

    // Removed again: it stops.
    fs::remove_file(s.rules().join("auth-failure-burst.wasm")).unwrap();
    s.wait_for_status("auth-failure-burst gone", |st| {
        rule(st, "auth-failure-burst").is_none()
    });
    stop(daemon);
}

impl Setup {
    /// Waits until a checkpoint counted at least `events` events.
    fn wait_for_events_seen(&self, events: u64) {
        self.wait_for_status("events", |st| {
            st["events"].as_u64().is_some_and(|e| e >= events)
        });
    }
}

#[test]
fn kill_9_at_any_moment_loses_and_repeats_nothing() {
    let s = Setup::new();
    let text = sample();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let (expected, events) = replay(&text, &s);

    let writer = {
        let log = s.log();
        std::thread::spawn(move || {
            for chunk in lines.chunks(40) {
                let mut f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                for line in chunk {
                    writeln!(f, "{line}").unwrap();
                }
                drop(f);
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let mut daemon = s.start();
    // Killed at uneven moments, checkpoints (every second) or not between.
    let mut seed = 0x2545_f491_u64;
    let mut kills = 0;
    let mut resumed_mid_log = 0;
    while !writer.is_finished() {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis(300 + (seed >> 33) % 900));
        // What the next start resumes from: a checkpoint part way through.
        if s.try_read_state("status").is_ok_and(|st| {
            st[0]["events"]
                .as_u64()
                .is_some_and(|e| e > 0 && e < events)
        }) {
            resumed_mid_log += 1;
        }
        // SAFETY: kill(2) on a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGKILL) }, 0);
        daemon.wait().unwrap();
        kills += 1;
        daemon = s.start();
    }
    writer.join().unwrap();
    assert!(kills >= 3, "killed {kills} times while the log was written");
    assert!(
        resumed_mid_log >= 1,
        "no restart resumed from a checkpoint part way"
    );
    s.wait_for_events(events);
    stop(daemon);

    assert_eq!(s.findings(), expected, "after {kills} kills");
    assert_eq!(s.status()["events"].as_u64(), Some(events));
}

/// `bytes` (a component) with a custom section naming `version` appended:
/// the same rule, another build as far as its content hash goes.
fn build(bytes: &[u8], version: u32) -> Vec<u8> {
    let name = b"spamward-test-build";
    let payload = version.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push(section.len() as u8); // its size (LEB128, < 128)
    out.extend_from_slice(&section);
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

#[test]
fn twenty_reloads_while_lines_stream_in_give_every_event_to_exactly_one_version() {
    let s = Setup::new();
    let text = sample();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let counter =
        fs::read(Path::new(spamward_engine::GUEST_WASM_DIR).join("fixture_counter.wasm")).unwrap();
    fs::create_dir_all(s.rules()).unwrap();
    fs::write(s.rules().join("counter.wasm"), build(&counter, 0)).unwrap();
    let daemon = s.start();
    s.wait_for_status("the counter running", |st| {
        rule(st, "fixture-counter").is_some_and(|r| r["status"] == "running")
    });
    // The sample, over and over, until the reloads are done: lines keep
    // arriving through every swap however long the swaps take.
    let reloads_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let log = s.log();
        let done = reloads_done.clone();
        std::thread::spawn(move || {
            loop {
                for chunk in lines.chunks(10) {
                    let mut f = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .unwrap();
                    for line in chunk {
                        writeln!(f, "{line}").unwrap();
                    }
                    drop(f);
                    std::thread::sleep(Duration::from_millis(30));
                }
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
            }
        })
    };
    for version in 1..=20 {
        let bytes = build(&counter, version);
        let hash = sha256_hex(&bytes);
        // Written beside, then renamed in: the directory never holds half a rule.
        let staged = s.path("counter.wasm.new");
        fs::write(&staged, &bytes).unwrap();
        fs::rename(&staged, s.rules().join("counter.wasm")).unwrap();
        s.wait_for_status(&format!("version {version}"), |st| {
            rule(st, "fixture-counter")
                .is_some_and(|r| r["hash"] == hash.as_str() && r["status"] == "running")
        });
    }
    assert!(!writer.is_finished(), "lines were still being written");
    reloads_done.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();

    let events = spamward(
        &["--timezone", "UTC", "events", s.log().to_str().unwrap()],
        &s.cache(),
    );
    let all = json_lines(&events);
    let counted = all
        .iter()
        .filter(|e| e["kind"] == "message_received" || e["kind"] == "delivery")
        .count() as u64;
    s.wait_for_events(all.len() as u64);
    stop(daemon);
    let findings = s.read_state("findings");
    let count = findings
        .iter()
        .find(|f| f["rule"] == "fixture-counter")
        .map(|f| f["count"].as_u64().unwrap());
    assert_eq!(
        count,
        Some(counted),
        "every event judged by exactly one version"
    );
}

/// Copies the directory tree `from` to `to` (files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_server_state_file_changed_while_it_runs_is_judged_at_once() {
    let s = Setup::new();
    copy_tree(&workspace().join("tests/fixtures/servers/good"), &s.root());
    s.append(&[]);
    let daemon = s.start();
    // The well configured server: read once caught up, nothing to say.
    s.wait_for_status("a checkpoint", |st| st["checkpoint_at"].is_i64());
    std::thread::sleep(Duration::from_secs(2));
    let before = s.findings();

    // An admin's typo turns a domain's catch-all into backscatter; cPanel
    // replaces the file whole. The server is read again (1 s after the
    // change), not at the 5-minute timer.
    let aliases = s.root().join("etc/valiases/goodco.example");
    let staged = s.root().join("etc/valiases/.goodco.example.new");
    fs::write(
        &staged,
        "*: :fail: No Such User Here\nsales@goodco.example: alice@goodco.example\n",
    )
    .unwrap();
    fs::rename(&staged, &aliases).unwrap();
    let changed = Instant::now();
    let deadline = changed + Duration::from_secs(30);
    let found = loop {
        let findings = s.read_state("findings");
        if let Some(f) = findings
            .iter()
            .find(|f| f["rule"] == "default-address" && f["target"]["value"] == "goodco.example")
        {
            break f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no default-address finding 30 s after the change: {findings:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = stop(daemon);
    assert!(
        before.is_empty(),
        "the good server has findings: {before:?}"
    );
    assert!(
        found["evidence"]["fix"]
            .as_str()
            .is_some_and(|f| !f.is_empty()),
        "{found}"
    );
    assert!(log.contains("server state read"), "{log}");
}
