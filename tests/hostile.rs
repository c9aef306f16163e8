//! Bad, hostile and endless input, end to end through the real binary: each
//! test reproduces a failure an earlier `spamward` had (lost data, unbounded
//! memory, a hang, a silent exit 0) and asserts what a user now sees.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{finding_keys, json_lines, spamward, workspace};

fn sample_log() -> PathBuf {
    workspace().join("examples/logs/mainlog-sample")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn command(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spamward"));
    cmd.arg("--cache-dir")
        .arg(cache)
        .env("SPAMWARD_LOG", "warn");
    cmd
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo does not keep it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// `(message id, owner)` of every arrival `events` prints for `path`.
fn owners(path: &Path, cache: &Path) -> Vec<(String, Option<String>)> {
    let out = spamward(&["events", path.to_str().unwrap()], cache);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json_lines(&out)
        .into_iter()
        .filter(|e| e["kind"] == "message_received")
        .map(|e| {
            (
                e["message_id"].as_str().unwrap().to_owned(),
                e["owner"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Item 1: shifting the first 2,000 lines of the sample log an hour ahead
/// (a clock that later steps back) cost every later arrival its owner.
#[test]
fn a_clock_stepping_back_loses_no_sender_attribution() {
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(sample_log()).unwrap();
    let mut shifted = String::new();
    for (i, line) in text.lines().enumerate() {
        if i < 2000 && line.len() > 19 {
            let hour: u32 = line[11..13].parse().unwrap();
            let _ = writeln!(shifted, "{}{:02}{}", &line[..11], hour + 1, &line[13..]);
        } else {
            let _ = writeln!(shifted, "{line}");
        }
    }
    let path = dir.path().join("shifted");
    fs::write(&path, shifted).unwrap();
    let cache = dir.path().join("cache");
    let before = owners(&sample_log(), &cache);
    let after = owners(&path, &cache);
    let known = |v: &[(String, Option<String>)]| v.iter().filter(|(_, o)| o.is_some()).count();
    assert!(known(&before) > 300, "{}", known(&before));
    assert_eq!(after, before);
}

/// `n` authenticated messages from `login`, one every `every` seconds from
/// `start` (`HH:MM:SS` on 2024-11-03 or the day given).
fn messages(log: &mut String, day: &str, start: (u32, u32), n: u32, every: u32, tag: &str) {
    for i in 0..n {
        let s = start.0 * 3600 + start.1 * 60 + i * every;
        let id = format!("1{tag}{i:04}-000001-AA");
        let _ = writeln!(
            log,
            "{day} {:02}:{:02}:{:02} {id} <= staff@shop.example H=(pc) [192.0.2.10]:5000 P=esmtpa A=dovecot_login:staff@shop.example S=900 T=\"note\" for c{i}@remote.example",
            s / 3600,
            (s / 60) % 60,
            s % 60
        );
    }
}

fn relay_volume_hourly(log: &str, zone: &str, dir: &Path) -> bool {
    let path = dir.join(format!("log-{}", zone.replace('/', "-")));
    fs::write(&path, log).unwrap();
    let out = spamward(
        &["scan", "--json", "--timezone", zone, path.to_str().unwrap()],
        &dir.join("cache"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json_lines(&out).iter().any(|f| {
        f["rule"] == "relay-volume" && f["summary"].as_str().unwrap().contains("last hour")
    })
}

/// Item 1: windows count real elapsed time across daylight saving changes
/// in the log's zone (Exim writes local time).
#[test]
fn hourly_windows_stay_right_across_daylight_saving_changes() {
    let dir = tempfile::tempdir().unwrap();
    // New York falls back at 02:00 EDT on 2024-11-03: 01:00-01:59 comes
    // twice. 150 messages in each pass are two hours of 150, not one of 300.
    let mut fall = String::new();
    messages(&mut fall, "2024-11-03", (1, 0), 150, 23, "a");
    messages(&mut fall, "2024-11-03", (1, 0), 150, 23, "b");
    assert!(
        relay_volume_hourly(&fall, "UTC", dir.path()),
        "read as UTC, the repeat looks like 300 in an hour"
    );
    assert!(!relay_volume_hourly(&fall, "America/New_York", dir.path()));

    // It springs forward at 02:00 EST on 2024-03-10: 01:30-01:59 and
    // 03:00-03:29 are one real hour of 400 messages.
    let mut spring = String::new();
    messages(&mut spring, "2024-03-10", (1, 30), 200, 9, "c");
    messages(&mut spring, "2024-03-10", (3, 0), 200, 9, "d");
    assert!(!relay_volume_hourly(&spring, "UTC", dir.path()));
    assert!(relay_volume_hourly(&spring, "America/New_York", dir.path()));
}

/// Item 2: one truncated `.gz` discarded the whole scan, good inputs too.
#[test]
fn a_damaged_input_keeps_what_came_before_it_and_the_others_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read(sample_log()).unwrap();
    let data = gz(&text);
    let cut = dir.path().join("truncated.gz");
    fs::write(&cut, &data[..data.len() * 2 / 3]).unwrap();
    let padded = dir.path().join("padded.gz");
    let mut zeros = data.clone();
    zeros.extend([0u8; 8192]);
    fs::write(&padded, zeros).unwrap();
    let cache = dir.path().join("cache");

    let good = spamward(&["scan", "--json", sample_log().to_str().unwrap()], &cache);
    let good_keys = finding_keys(&json_lines(&good));
    assert!(!good_keys.is_empty());

    let out = spamward(
        &[
            "scan",
            "--json",
            sample_log().to_str().unwrap(),
            cut.to_str().unwrap(),
        ],
        &cache,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let keys = finding_keys(&json_lines(&out));
    for key in &good_keys {
        assert!(keys.contains(key), "{key:?} missing: {err}");
    }
    assert!(
        err.contains(&format!("could not read {} at line ", cut.display()))
            && err.contains("(what came before was read)"),
        "{err}"
    );
    let read: u64 = err
        .lines()
        .find(|l| l.starts_with(&format!("{} (mainlog): ", cut.display())))
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary of the truncated input: {err}"));
    assert!(read > 1000, "lines before the damage are read: {read}");

    // Zero padding after the data is accepted, as `gzip -t` does.
    let out = spamward(&["scan", "--json", padded.to_str().unwrap()], &cache);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(finding_keys(&json_lines(&out)), good_keys);
}

/// Item 3: a piped input lost its first 4 KiB to format detection, and a
/// piped `.gz` everything.
#[test]
fn standard_input_and_pipes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let text = fs::read(sample_log()).unwrap();
    let lines = text.iter().filter(|&&b| b == b'\n').count();
    for (input, arg) in [
        (text.clone(), "-"),
        (text.clone(), "/dev/stdin"),
        (gz(&text), "-"),
    ] {
        let mut child = command(&cache)
            .args(["events", arg])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains(&format!(": {lines} lines, ")),
            "{arg}: all {lines} lines: {err}"
        );
    }
    // A named pipe given by name.
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let child = command(&cache)
        .args(["events", fifo.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written from a thread: the reader's output must be drained meanwhile.
    let writer = {
        let (fifo, text) = (fifo.clone(), text.clone());
        std::thread::spawn(move || fs::write(&fifo, &text))
    };
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        stderr(&out).contains(&format!(": {lines} lines, ")),
        "{}",
        stderr(&out)
    );
}

/// Item 4: `--root` lookups followed a link out of the root (to a
/// password file: false critical findings), aborted on a directory and hung
/// on a FIFO.
#[test]
fn root_lookups_refuse_links_out_directories_and_fifos() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let outside = dir.path().join("shadow");
    fs::write(
        &outside,
        "bakery.example: stranger\nroot:$6$x:1:0:99999:7:::\n",
    )
    .unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("etc/userdomains")).unwrap();
    mkfifo(&root.join("etc/localdomains"));
    let started = Instant::now();
    let plain = spamward(&["scan", "--json", sample_log().to_str().unwrap()], &cache);
    let out = spamward(
        &[
            "scan",
            "--json",
            "--root",
            root.to_str().unwrap(),
            sample_log().to_str().unwrap(),
        ],
        &cache,
    );
    assert!(started.elapsed() < Duration::from_secs(60), "no hang");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("leads outside the server root"), "{err}");
    assert!(err.contains("is a named pipe"), "{err}");
    // Nothing read from outside: the findings are those without a root.
    assert_eq!(
        finding_keys(&json_lines(&out)),
        finding_keys(&json_lines(&plain))
    );

    fs::remove_file(root.join("etc/userdomains")).unwrap();
    fs::create_dir(root.join("etc/userdomains")).unwrap();
    let out = spamward(
        &[
            "scan",
            "--root",
            root.to_str().unwrap(),
            sample_log().to_str().unwrap(),
        ],
        &cache,
    );
    assert!(
        stderr(&out).contains("userdomains: is a directory, expected a file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(3));
}

/// Item 7: one 2 MB arrival line with 200,000 recipients made rules hit
/// their memory cap and lose whole batches.
#[test]
fn an_oversized_event_is_cut_and_costs_no_rule_anything() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut log = fs::read_to_string(sample_log()).unwrap();
    let recipients: Vec<String> = (0..200_000).map(|i| format!("r{i}@x.example")).collect();
    log.insert_str(
        0,
        &format!(
            "2026-11-30 00:00:00 1huge0-000001-AA <= victim@bakery.example H=(x) [192.0.2.9]:1 P=esmtpa A=dovecot_login:victim@bakery.example S=1 for {}\n",
            recipients.join(" ")
        ),
    );
    let path = dir.path().join("mainlog");
    fs::write(&path, log).unwrap();
    let out = spamward(&["scan", "--json", path.to_str().unwrap()], &cache);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("1 cut at 64 KiB"), "{err}");
    assert!(
        err.contains("1 with more than 1000 recipients (cut)"),
        "{err}"
    );
    assert!(!err.contains("failure"), "{err}");
}

/// Items 8 and 14: `/dev/zero` (a line without end) ran the process out of
/// memory, and a signal lost everything found. Now reading stops on
/// SIGINT, what was found is printed marked partial, and the status is 130
/// (143 for SIGTERM).
#[test]
fn an_endless_input_is_stopped_by_a_signal_with_partial_results() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Compile the rules into the cache first, so the signal finds the scan
    // reading rather than starting.
    assert!(spamward(&["rules", "list"], &cache).status.success());
    for (signal, status) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let child = command(&cache)
            .args(["scan", sample_log().to_str().unwrap(), "/dev/zero"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(status), "{}", stderr(&out));
        assert!(stdout.starts_with("PARTIAL: stopped by signal"), "{stdout}");
        assert!(stdout.contains("relay-volume"), "findings so far: {stdout}");
        assert!(
            stderr(&out).contains("/dev/zero (mainlog): 1 lines"),
            "{}",
            stderr(&out)
        );
    }
}

fn scan_with(dir: &Path, rules: &[&str], toml: &str) -> Output {
    let rules_dir = dir.join(format!("rules-{}", rules.join("-")));
    fs::create_dir_all(&rules_dir).unwrap();
    for rule in rules {
        let wasm = Path::new(spamward_engine::GUEST_WASM_DIR).join(format!("fixture_{rule}.wasm"));
        fs::copy(&wasm, rules_dir.join(wasm.file_name().unwrap())).unwrap();
    }
    let config = dir.join("spamward.toml");
    fs::write(&config, toml).unwrap();
    spamward(
        &[
            "scan",
            "--json",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules_dir.to_str().unwrap(),
            sample_log().to_str().unwrap(),
        ],
        &dir.join("cache"),
    )
}

fn bundled_keys(out: &Output) -> Vec<(String, String, String)> {
    finding_keys(&json_lines(out))
        .into_iter()
        .filter(|(rule, _, _)| !rule.starts_with("fixture-"))
        .collect()
}

/// Items 9, 10 and 12: a rule that hoards state, one that reports every
/// event, and one that cannot start are each stopped, named and counted,
/// and the bundled rules find exactly what they find alone.
#[test]
fn greedy_and_broken_rules_are_stopped_by_name_and_the_rest_run() {
    let dir = tempfile::tempdir().unwrap();
    let alone = scan_with(dir.path(), &[], "");
    assert_eq!(alone.status.code(), Some(0), "{}", stderr(&alone));
    let expected = bundled_keys(&alone);

    let out = scan_with(dir.path(), &["hoarder"], "[engine]\nstate_limit_mb = 1\n");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("rule fixture-hoarder:"), "{err}");
    assert!(
        err.contains("its state is full:") && err.contains("of its 1 MiB quota"),
        "{err}"
    );
    assert_eq!(bundled_keys(&out), expected);

    let out = scan_with(dir.path(), &["chatty"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let chatty = finding_keys(&json_lines(&out))
        .iter()
        .filter(|(rule, _, _)| rule == "fixture-chatty")
        .count();
    assert_eq!(chatty, 1000, "findings per rule are capped");
    assert!(
        err.contains("rule fixture-chatty:") && err.contains("verdict(s) dropped"),
        "{err}"
    );
    for cap in [
        "for one batch; the rest are dropped (said once)",
        "verdicts about further targets are dropped (said once)",
    ] {
        assert_eq!(err.matches(cap).count(), 1, "{cap}: {err}");
    }
    assert_eq!(bundled_keys(&out), expected);

    let out = scan_with(dir.path(), &["refuser"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("rule fixture-refuser disabled: it rejected its settings: the fixture refuses its defaults"),
        "{err}"
    );
    assert_eq!(bundled_keys(&out), expected);
}

/// Item 11: out-of-range engine settings disabled every rule silently,
/// panicked or aborted; each is now a configuration error naming the key.
#[test]
fn out_of_range_engine_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (setting, message) in [
        (
            "memory_limit_mb = 0",
            "[engine] memory_limit_mb = 0: must be from 4 to 4096",
        ),
        (
            "workers = 100000",
            "[engine] workers = 100000: must be from 0 (rules on the reading thread) to 256",
        ),
        (
            "batch_size = 1000000000000",
            "[engine] batch_size = 1000000000000: must be from 1 to 65536",
        ),
        (
            "batch_budget_ms = 10",
            "[engine] batch_budget_ms = 10: must be from 100 to 60000",
        ),
    ] {
        let out = scan_with(dir.path(), &[], &format!("[engine]\n{setting}\n"));
        assert_eq!(out.status.code(), Some(2), "{setting}");
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}

/// Item 13: exit statuses a script can act on.
#[test]
fn exit_statuses_tell_clean_findings_usage_and_failures_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let log = sample_log();
    let log = log.to_str().unwrap();
    let code = |args: &[&str]| spamward(args, &cache).status.code();
    assert_eq!(code(&["scan", "--json", log]), Some(0));
    assert_eq!(
        code(&["scan", "--json", "--fail-on", "warning", log]),
        Some(1)
    );
    assert_eq!(
        code(&["scan", "--json", "--fail-on", "verbose", log]),
        Some(2)
    );
    assert_eq!(code(&["scan", "--json", "/no/such/log"]), Some(3));
    assert_eq!(code(&["audit", "--root", "/no/such/root"]), Some(2));
    assert_eq!(
        code(&["scan", "--json", "--root", "/no/such/root", log]),
        Some(2)
    );
}

/// Item 15: `events | head` parsed the whole input and ended with
/// "Broken pipe", status 2.
#[test]
fn a_closed_pipe_ends_events_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(&dir.path().join("cache"))
        .args(["events", sample_log().to_str().unwrap(), "/dev/zero"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    // /dev/zero never ends: only stopping on the closed pipe ends the run.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).to_lowercase().contains("broken pipe"),
        "{}",
        stderr(&out)
    );
}

/// Item 16: the OS cause printed twice, colour codes in a log file, raw
/// control bytes from the input on the terminal, a JSON position instead of
/// the setting, and "run" for an action nothing ran.
#[test]
fn messages_are_plain_once_and_name_what_is_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = spamward(&["scan", "/no/such/log"], &cache);
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );

    let hostile = dir.path().join("hostile");
    fs::write(&hostile, "\x1b]0;owned\x07\x1b[2J not a log line\n").unwrap();
    let out = spamward(&["scan", hostile.to_str().unwrap()], &cache);
    let err = stderr(&out);
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    assert!(err.contains("\\x1b]0;owned\\x07"), "{err}");

    let config = dir.path().join("spamward.toml");
    fs::write(&config, "[rules.relay-volume]\ndaily_limit = -5\n").unwrap();
    let out = spamward(
        &[
            "scan",
            "--config",
            config.to_str().unwrap(),
            sample_log().to_str().unwrap(),
        ],
        &cache,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[rules.relay-volume]: rejected its settings: `daily_limit`:"),
        "{err}"
    );
    assert!(!err.contains("column"), "{err}");

    fs::write(
        &config,
        "[rules.relay-volume]\nmode = \"enforce\"\nactions = [\"hold-outgoing\"]\n",
    )
    .unwrap();
    let log = sample_log();
    let args = [
        "scan",
        "--config",
        config.to_str().unwrap(),
        log.to_str().unwrap(),
    ];
    let out = spamward(&[&args[..], &["--json"][..]].concat(), &cache);
    let relay: Vec<_> = json_lines(&out)
        .into_iter()
        .filter(|f| f["rule"] == "relay-volume")
        .collect();
    assert!(!relay.is_empty());
    assert!(relay.iter().all(|f| f["decision"] == "enforce"));
    let human = String::from_utf8_lossy(&spamward(&args, &cache).stdout).into_owned();
    assert!(
        human
            .contains("enforce: `spamward run` carries hold-outgoing out; this report did nothing"),
        "{human}"
    );
    // A rule failing writes its warning to a stderr that is not a terminal:
    // no colour codes.
    let rules = dir.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    let trapper = Path::new(spamward_engine::GUEST_WASM_DIR).join("fixture_trapper.wasm");
    fs::copy(&trapper, rules.join("trapper.wasm")).unwrap();
    let out = spamward(
        &[
            "scan",
            "--rules",
            rules.to_str().unwrap(),
            sample_log().to_str().unwrap(),
        ],
        &cache,
    );
    let err = stderr(&out);
    assert!(err.contains("WARN"), "{err}");
    assert!(!err.contains("\x1b["), "{err:?}");
}

/// Item 17: on a bare root (Apache, no cPanel) `suexec` and `mailman` said
/// "ok" with nothing read.
#[test]
fn audit_of_a_bare_root_says_not_applicable_and_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("etc/apache2/modules")).unwrap();
    fs::create_dir_all(root.join("usr/sbin")).unwrap();
    fs::write(root.join("usr/sbin/suexec"), "").unwrap();
    let out = spamward(
        &["audit", "--root", root.to_str().unwrap()],
        &dir.path().join("cache"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for check in ["suexec", "mailman"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .unwrap_or_else(|| panic!("{check} missing: {text}"));
        assert!(line.trim_start().starts_with("n/a"), "{line}");
    }
    assert!(
        text.contains("nothing to check: found none of /etc/cpanel/ea4/php.conf"),
        "{text}"
    );
    assert!(text.contains("0 passed"), "{text}");
}

/// Item 18: tests read the shared corpus from beside the checkout, where a
/// fresh clone has nothing. Nothing in the repository may reach outside it.
#[test]
fn no_test_or_build_step_reads_outside_the_repository() {
    let mut offenders = Vec::new();
    let mut stack = vec![workspace()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "corpus" {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") || name.ends_with(".toml") || name == "run" {
                let text = fs::read_to_string(&path).unwrap_or_default();
                if text.contains(concat!("../", "shared"))
                    || text.contains(concat!("SPAMWARD_", "CORPUS"))
                {
                    offenders.push(path);
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
    assert!(
        workspace()
            .join("tests/corpus/peer/fail2ban/COPYING")
            .is_file()
    );
    assert!(
        workspace()
            .join("tests/corpus/peer/csm-php-relay/LICENSE")
            .is_file()
    );
}
