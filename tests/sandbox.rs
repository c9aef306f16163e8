//! The sandbox holds: deliberately bad rules (built from
//! `tests/fixtures/rules/` by the host's build script) loop, panic, hoard
//! memory and trap, and in each case the bad rule is contained, the next
//! batch runs, and the bundled rules' findings are exactly what they are
//! without the bad rule.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{finding_keys, json_lines, spamward};

/// Where the build script put the compiled fixture rules.
fn fixture(name: &str) -> PathBuf {
    let path = Path::new(spamward_engine::GUEST_WASM_DIR)
        .join(format!("fixture_{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "fixture rule not built: {}", path.display());
    path
}

/// A log where fixture messages (`hello` subjects, then the trigger, then
/// more `hello`s) sit amid abuse the bundled rules report.
fn log(trigger: &str) -> String {
    let mut log = String::new();
    for i in 0..20u32 {
        let t = format!("2024-05-01 10:{:02}:00", i);
        let subject = match i {
            5 => trigger,
            2 | 12 | 18 => "hello",
            _ => "news",
        };
        log.push_str(&format!(
            "{t} 1abc{i:02}-000001-AA <= nobody@server.example U=nobody P=local S=900 T=\"{subject}\" for x{i}@site{i}.example\n"
        ));
        log.push_str(&format!(
            "{t} 1abc{i:02}-000001-AA ** x{i}@site{i}.example R=dnslookup T=remote_smtp: SMTP error from remote mail server after RCPT TO:<x{i}@site{i}.example>: 550 No such user\n"
        ));
    }
    log
}

struct Run {
    keys: Vec<(String, String, String)>,
    stderr: String,
}

/// Scans `log(trigger)` with the bundled rules plus `extra_rule`, a `.wasm`,
/// one event per batch (so "the next batch" is the next message), with a
/// short CPU budget and a small memory cap to keep the test quick.
fn scan(dir: &Path, trigger: &str, extra_rule: Option<&Path>) -> Run {
    scan_with(
        dir,
        trigger,
        extra_rule,
        "[engine]\nbatch_size = 1\nbatch_budget_ms = 200\nmemory_limit_mb = 32\n",
    )
}

/// [`scan`] with the configuration `toml`.
fn scan_with(dir: &Path, trigger: &str, extra_rule: Option<&Path>, toml: &str) -> Run {
    let log_path = dir.join(format!("mainlog-{trigger}"));
    fs::write(&log_path, log(trigger)).unwrap();
    let config = dir.join("spamward.toml");
    fs::write(&config, toml).unwrap();
    let file_name = extra_rule.map(|p| p.file_name().unwrap().to_str().unwrap());
    let rules = dir.join(format!("rules-{}", file_name.unwrap_or("none")));
    fs::create_dir_all(&rules).unwrap();
    if let (Some(path), Some(file_name)) = (extra_rule, file_name) {
        fs::copy(path, rules.join(file_name)).unwrap();
    }
    let out = spamward(
        &[
            "scan",
            "--json",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            log_path.to_str().unwrap(),
        ],
        &dir.join("cache"),
    );
    // A rule that fails makes the results incomplete, and the status says
    // so; the bundled rules alone run clean.
    let expected = if extra_rule.is_some() {
        Some(3)
    } else {
        Some(0)
    };
    assert_eq!(
        out.status.code(),
        expected,
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        keys: finding_keys(&json_lines(&out)),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn bundled_only(keys: &[(String, String, String)]) -> Vec<(String, String, String)> {
    keys.iter()
        .filter(|(rule, _, _)| !rule.starts_with("fixture-"))
        .cloned()
        .collect()
}

fn hellos(keys: &[(String, String, String)]) -> Vec<String> {
    keys.iter()
        .filter(|(rule, _, _)| rule.starts_with("fixture-"))
        .map(|(_, _, v)| v.clone())
        .collect()
}

fn check_contained(bad: &str, trigger: &str, expect_in_stderr: &str) {
    let dir = tempfile::tempdir().unwrap();
    let baseline = scan(dir.path(), trigger, None);
    assert!(
        !baseline.keys.is_empty(),
        "the bundled rules should find the abuse"
    );
    let run = scan(dir.path(), trigger, Some(&fixture(bad)));
    assert_eq!(
        bundled_only(&run.keys),
        baseline.keys,
        "other rules' findings changed; stderr:\n{}",
        run.stderr
    );
    // The hello before the trigger and both after it were reported: the
    // rule was re-created and kept running.
    assert_eq!(
        hellos(&run.keys),
        ["1abc02-000001-AA", "1abc12-000001-AA", "1abc18-000001-AA"],
        "stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(expect_in_stderr),
        "expected {expect_in_stderr:?} in:\n{}",
        run.stderr
    );
}

#[test]
fn infinite_loop_is_interrupted_and_the_next_batch_runs() {
    check_contained("looper", "loop", "exceeded its CPU budget");
}

#[test]
fn panic_is_contained_and_its_message_logged() {
    check_contained("panicker", "panic", "fixture panic on purpose");
}

#[test]
fn memory_bomb_hits_the_cap() {
    check_contained("memory-bomb", "bomb", "memory");
}

#[test]
fn rule_that_always_traps_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = scan(dir.path(), "news", None);
    let run = scan(dir.path(), "news", Some(&fixture("trapper")));
    assert_eq!(
        bundled_only(&run.keys),
        baseline.keys,
        "stderr:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("quarantined"), "{}", run.stderr);
    assert!(
        run.stderr.contains("rule fixture-trapper"),
        "{}",
        run.stderr
    );
}

/// A rule built with an older spamward-sdk: the `trapper` fixture as built
/// for interface 0.1.0 (typed event records), kept byte for byte.
#[test]
fn rule_built_for_an_older_interface_is_refused_by_name_and_the_rest_run() {
    let old = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/prebuilt/trapper-interface-0.1.0.wasm");
    let dir = tempfile::tempdir().unwrap();
    let baseline = scan(dir.path(), "news", None);
    let run = scan(dir.path(), "news", Some(&old));
    assert_eq!(
        bundled_only(&run.keys),
        baseline.keys,
        "stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("rule not loaded")
            && run.stderr.contains("trapper-interface-0.1.0.wasm")
            && run.stderr.contains(
                "needs spamward interface 0.1.0; this spamward serves 0.2.0, 0.2.1, 0.2.2 and 0.3.0 (rebuild it with a matching spamward-sdk"
            ),
        "{}",
        run.stderr
    );
}

/// Regression: a trap lost the whole batch: the verdicts made for earlier
/// events died with the call, and the events after the trapping one were
/// never judged. Now, in one batch of 20 events, the hello before the panic
/// and both after it are reported, and one event is counted as not judged.
#[test]
fn a_trap_mid_batch_costs_only_the_event_it_happened_on() {
    for (bad, trigger) in [("panicker", "panic"), ("memory-bomb", "bomb")] {
        let dir = tempfile::tempdir().unwrap();
        // The default batch size: all 20 messages in one batch.
        let run = scan_with(
            dir.path(),
            trigger,
            Some(&fixture(bad)),
            "[engine]\nmemory_limit_mb = 32\n",
        );
        assert_eq!(
            hellos(&run.keys),
            ["1abc02-000001-AA", "1abc12-000001-AA", "1abc18-000001-AA"],
            "{bad}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!(
                "rule fixture-{bad}: 1 failure(s), 1 event(s) not judged"
            )),
            "{bad}: {}",
            run.stderr
        );
    }
}

/// A rule kept byte for byte in `tests/fixtures/prebuilt/` as an older SDK
/// built it, dropped into a rules directory as `<installed_as>.wasm`.
struct Prebuilt {
    dir: tempfile::TempDir,
    rules: PathBuf,
    cache: PathBuf,
}

impl Prebuilt {
    fn install(file: &str, installed_as: &str) -> Self {
        let old = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/prebuilt")
            .join(file);
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        fs::create_dir_all(&rules).unwrap();
        fs::copy(&old, rules.join(format!("{installed_as}.wasm"))).unwrap();
        let cache = dir.path().join("cache");
        Prebuilt { dir, rules, cache }
    }

    /// `spamward <args> --rules <its directory>`.
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut args = args.to_vec();
        args.extend(["--rules", self.rules.to_str().unwrap()]);
        spamward(&args, &self.cache)
    }

    /// `scan --json` of a log holding `log`: the findings' keys and stderr,
    /// the scan having exited 0.
    fn scan(&self, log: &str) -> (Vec<(String, String, String)>, String) {
        let path = self.dir.path().join("mainlog");
        fs::write(&path, log).unwrap();
        let out = self.run(&["scan", "--json", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        (finding_keys(&json_lines(&out)), stderr)
    }
}

/// A rule built with the SDK for interface 0.2.0 (before `judging` and
/// `report`) still loads and finds what it finds: 0.2.1 only added to it.
#[test]
fn a_rule_built_for_interface_0_2_0_still_runs() {
    let prebuilt = Prebuilt::install(
        "auth-failure-burst-interface-0.2.0.wasm",
        "auth-failure-burst",
    );
    let mut log = String::new();
    for i in 0..12 {
        log.push_str(&format!(
            "2024-05-01 10:00:{i:02} dovecot_login authenticator failed for (x) [198.51.100.7]:4321: 535 Incorrect authentication data (set_id=u{i}@shop.example)\n"
        ));
    }
    let (keys, stderr) = prebuilt.scan(&log);
    assert!(
        keys.iter()
            .any(|(rule, kind, value)| rule == "auth-failure-burst"
                && kind == "ip"
                && value == "198.51.100.7"),
        "{keys:?}\n{stderr}"
    );
}

/// A rule built for interface 0.2.2, whose counters the host keeps (it
/// hears only of their crossings), loads in place of the bundled rule of its
/// name and finds what it finds: kept byte for byte so that later interface
/// versions are shown to still serve it.
#[test]
fn a_counting_rule_built_for_interface_0_2_2_still_runs() {
    let prebuilt = Prebuilt::install("defer-fail-ratio-interface-0.2.2.wasm", "defer-fail-ratio");
    let listed = prebuilt.run(&["rules", "list"]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with("defer-fail-ratio "))
        .unwrap_or_else(|| panic!("not listed:\n{listing}"));
    assert!(
        line.contains(" file "),
        "the bundled rule ran instead: {line}"
    );

    // A newsletter domain whose deliveries to many domains mostly fail.
    let mut log = String::new();
    for i in 0..12u32 {
        let (m, s) = (i * 30 / 60, i * 30 % 60);
        let t = format!("2024-05-01 10:{m:02}:{s:02}");
        let id = format!("1ddd{i:02}-000004-DD");
        log.push_str(&format!(
            "{t} {id} <= news@club.example U=clubadm P=local S=3000 T=\"News\" for old{i}@site{i}.example\n"
        ));
        log.push_str(&format!(
            "{t} {id} ** old{i}@site{i}.example R=dnslookup T=remote_smtp H=mx.site{i}.example [203.0.113.2]: SMTP error from remote mail server after RCPT TO:<old{i}@site{i}.example>: 550 5.1.1 No such user\n"
        ));
    }
    let (keys, stderr) = prebuilt.scan(&log);
    assert!(
        keys.iter()
            .any(|(rule, kind, value)| rule == "defer-fail-ratio"
                && kind == "domain"
                && value == "club.example"),
        "{keys:?}\n{stderr}"
    );
}
