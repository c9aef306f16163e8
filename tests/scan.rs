//! End to end: `spamward scan`, `events` and `rules list` on real files,
//! through the real binary and the bundled WebAssembly rules.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Output;

use common::{assert_ok, clock, finding_keys, json_lines, key, spamward, workspace};

/// A log with one clear case of abuse per rule, amid normal traffic.
fn abuse_log() -> String {
    let mut log = String::new();
    // Normal traffic: a few authenticated senders and a contact form, all
    // delivered.
    for i in 0..40u32 {
        let t = clock(i * 60);
        let id = format!("1aaa{:02}-000001-AA", i);
        let _ = writeln!(
            log,
            "{t} {id} <= staff@shop.example H=(pc) [192.0.2.10]:5000 P=esmtpsa A=dovecot_login:staff@shop.example S=2000 T=\"Order {i}\" for client{i}@remote.example"
        );
        let _ = writeln!(
            log,
            "{t} {id} => client{i}@remote.example R=dnslookup T=remote_smtp H=mx.remote.example [203.0.113.1] C=\"250 OK\""
        );
        let _ = writeln!(log, "{t} {id} Completed");
    }
    // relay-volume: a stolen login sends 520 emails in 52 minutes.
    for i in 0..520u32 {
        let t = clock(i * 6);
        let id = format!("1b{i:04}-000002-BB");
        let _ = writeln!(
            log,
            "{t} {id} <= victim@bakery.example H=(User) [45.1.{}.{}]:1234 P=esmtpa A=dovecot_login:victim@bakery.example S=1500 T=\"Invoice\" for t{i}@remote.example",
            i / 250,
            i % 250
        );
        let _ = writeln!(
            log,
            "{t} {id} => t{i}@remote.example R=dnslookup T=remote_smtp H=mx.remote.example [203.0.113.1] C=\"250 OK\""
        );
    }
    // nobody-sender: a script running as nobody.
    let t = clock(100);
    let _ = writeln!(
        log,
        "{t} cwd=/var/www/html/uploads 3 args: /usr/sbin/sendmail -t -i"
    );
    let _ = writeln!(
        log,
        "{t} 1ccc00-000003-CC <= nobody@server.example U=nobody P=local S=900 T=\"Prize\" for lucky@remote.example"
    );
    // defer-fail-ratio: a newsletter domain whose deliveries mostly fail.
    for i in 0..12u32 {
        let t = clock(200 + i * 30);
        let id = format!("1ddd{:02}-000004-DD", i);
        let _ = writeln!(
            log,
            "{t} {id} <= news@club.example U=clubadm P=local S=3000 T=\"News\" for old{i}@site{i}.example"
        );
        if i % 4 == 0 {
            let _ = writeln!(
                log,
                "{t} {id} => old{i}@site{i}.example R=dnslookup T=remote_smtp H=mx.site{i}.example [203.0.113.2] C=\"250 OK\""
            );
        } else {
            let _ = writeln!(
                log,
                "{t} {id} ** old{i}@site{i}.example R=dnslookup T=remote_smtp H=mx.site{i}.example [203.0.113.2]: SMTP error from remote mail server after RCPT TO:<old{i}@site{i}.example>: 550 5.1.1 No such user"
            );
        }
    }
    log
}

#[test]
fn scan_json_names_each_abuse_and_leaves_normal_senders_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mainlog");
    fs::write(&log, abuse_log()).unwrap();
    let out = spamward(
        &["scan", "--json", log.to_str().unwrap()],
        &dir.path().join("cache"),
    );
    assert_ok(&out);
    let findings = json_lines(&out);
    let keys = finding_keys(&findings);
    assert!(
        keys.contains(&key("relay-volume", "mailbox", "victim@bakery.example")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&key("nobody-sender", "script", "/var/www/html/uploads")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&key("defer-fail-ratio", "domain", "club.example")),
        "{keys:?}"
    );
    // 520 messages from 260 client IPs: the login is stolen.
    assert!(
        keys.contains(&key(
            "compromised-account",
            "mailbox",
            "victim@bakery.example"
        )),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|(_, _, v)| !v.contains("shop.example")),
        "a normal sender was flagged: {keys:?}"
    );
    for f in &findings {
        for field in [
            "rule", "severity", "target", "action", "summary", "evidence",
        ] {
            assert!(f.get(field).is_some(), "finding lacks {field}: {f}");
        }
        assert!(["info", "warning", "critical"].contains(&f["severity"].as_str().unwrap()));
    }
    let relay = findings
        .iter()
        .find(|f| f["rule"] == "relay-volume")
        .unwrap();
    assert_eq!(
        relay["severity"], "critical",
        "520 emails is over twice the 250/h default"
    );
    assert_eq!(relay["action"], "hold-outgoing");
    assert_eq!(
        relay["decision"], "refused-not-granted",
        "a rule is granted alerts alone until the admin grants more"
    );
}

#[test]
fn bundled_sample_log_gives_findings_for_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let sample = workspace().join("examples/logs/mainlog-sample");
    let out = spamward(&["scan", "--json", sample.to_str().unwrap()], dir.path());
    assert_ok(&out);
    let rules: std::collections::BTreeSet<String> = json_lines(&out)
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "compromised-account",
        "defer-fail-ratio",
        "nobody-sender",
        "relay-volume",
    ] {
        assert!(
            rules.contains(expected),
            "no {expected} finding in {rules:?}"
        );
    }
}

#[test]
fn human_scan_shows_findings_and_top_senders() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mainlog");
    fs::write(&log, abuse_log()).unwrap();
    let out = spamward(&["scan", log.to_str().unwrap()], &dir.path().join("cache"));
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("finding(s)"), "{text}");
    assert!(text.contains("BY AUTH ID"), "{text}");
    // The stolen login tops the auth-id table with its 520 emails.
    let auth_table = text.split("BY AUTH ID").nth(1).unwrap();
    let first_row = auth_table.lines().nth(1).unwrap();
    assert!(
        first_row.contains("victim@bakery.example") && first_row.contains("520"),
        "{first_row}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 unparsed"), "{err}");
}

#[test]
fn gzip_logs_scan_the_same_as_plain() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("mainlog");
    let gz = dir.path().join("mainlog.1.gz");
    fs::write(&plain, abuse_log()).unwrap();
    let mut enc =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(abuse_log().as_bytes()).unwrap();
    enc.finish().unwrap();
    let cache = dir.path().join("cache");
    let a = spamward(&["scan", "--json", plain.to_str().unwrap()], &cache);
    let b = spamward(&["scan", "--json", gz.to_str().unwrap()], &cache);
    assert_ok(&a);
    assert_ok(&b);
    assert_eq!(finding_keys(&json_lines(&a)), finding_keys(&json_lines(&b)));
}

#[test]
fn unreadable_input_fails_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-mainlog");
    let out = spamward(&["scan", missing.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-mainlog"), "{err}");
}

/// `spamward scan [--json] --config <dir>/spamward.toml <log>`, with
/// `toml` written to that file first.
fn scan_with_config(dir: &Path, toml: &str, log: &Path, json: bool) -> Output {
    let config = dir.join("spamward.toml");
    fs::write(&config, toml).unwrap();
    let mut args = vec!["scan"];
    if json {
        args.push("--json");
    }
    args.extend(["--config", config.to_str().unwrap(), log.to_str().unwrap()]);
    spamward(&args, &dir.join("cache"))
}

#[test]
fn bad_setting_is_refused_naming_file_rule_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mainlog");
    fs::write(&log, abuse_log()).unwrap();
    let out = scan_with_config(
        dir.path(),
        "[rules.relay-volume]\ndayly_limit = 10\n",
        &log,
        false,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spamward.toml")
            && err.contains("[rules.relay-volume]")
            && err.contains("dayly_limit"),
        "{err}"
    );
    // A well-typed value the rule itself rejects is named too.
    let out = scan_with_config(
        dir.path(),
        "[rules.relay-volume]\ndaily_limit = \"lots\"\n",
        &log,
        false,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[rules.relay-volume]") && err.contains("daily_limit"),
        "{err}"
    );
}

#[test]
fn settings_from_the_config_change_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mainlog");
    fs::write(&log, abuse_log()).unwrap();
    // Raise the ceilings over the stolen login's 520 emails.
    let out = scan_with_config(
        dir.path(),
        "[rules.relay-volume]\nhourly_limit = 1000\ndaily_limit = 5000\n\n[rules.nobody-sender]\nenabled = false\n",
        &log,
        true,
    );
    assert_ok(&out);
    let keys = finding_keys(&json_lines(&out));
    assert!(
        keys.iter()
            .all(|(rule, _, _)| rule != "relay-volume" && rule != "nobody-sender"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&key("defer-fail-ratio", "domain", "club.example")),
        "{keys:?}"
    );
}

#[test]
fn rules_list_json_describes_the_bundled_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = spamward(&["rules", "list", "--json"], dir.path());
    assert_ok(&out);
    let rules = json_lines(&out);
    let names: Vec<_> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    // Every crate under rules/ is bundled, under its directory name.
    let mut crates: Vec<String> = fs::read_dir(workspace().join("rules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    assert_eq!(names, crates);
    assert_eq!(names.len(), 13, "one rule per check of DESIGN.md");
    for r in &rules {
        assert_eq!(r["source"], "bundled");
        assert!(!r["summary"].as_str().unwrap().is_empty());
        // A rule hears of events it subscribed to or of its counters'
        // crossings: one of the two, or it would never speak.
        assert!(
            !r["subscriptions"].as_array().unwrap().is_empty()
                || !r["counters"].as_array().unwrap().is_empty(),
            "{r}"
        );
        assert!(!r["actions"].as_array().unwrap().is_empty());
    }
    let ratio = rules
        .iter()
        .find(|r| r["name"] == "defer-fail-ratio")
        .unwrap();
    assert_eq!(
        ratio["counters"],
        serde_json::json!([
            "delivery:attempts per SenderDomain",
            "delivery:failing-domains per SenderDomain",
            "delivery:failures per SenderDomain"
        ])
    );
    let relay = rules.iter().find(|r| r["name"] == "relay-volume").unwrap();
    let daily = relay["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "daily_limit")
        .unwrap();
    assert_eq!(daily["default"], 1000);
}

#[test]
fn events_prints_json_lines_with_origin_and_identity() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mainlog");
    fs::write(
        &log,
        "2019-04-21 04:33:14 1hIAif-00H7J4-Lb <= vani@teletek-intl.com H=bba412455.alshamil.net.ae (VaniAcer) [83.110.18.213]:64606 P=esmtpsa X=TLSv1.2:ECDHE-RSA-AES256-GCM-SHA384:256 CV=no A=dovecot_login:vani@teletek-intl.com S=91991 id=012901d4f836$03fad680$0bf08380$@com T=\"RE: GSAP\" for Abdulaziz.Al-Qasmi@shell.com ali@teletek-intl.com\n\
         2019-04-21 04:33:14 1hIAif-00H7J4-Lb Sender identification U=telet4 D=teletek-intl.com S=vani@teletek-intl.com\n\
         this line is not exim\n",
    )
    .unwrap();
    let out = spamward(&["events", log.to_str().unwrap()], dir.path());
    assert_ok(&out);
    let events = json_lines(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["kind"], "message_received");
    assert_eq!(e["time"], "2019-04-21T04:33:14");
    assert_eq!(e["file"], log.to_str().unwrap());
    assert_eq!(e["line"], 1);
    assert_eq!(e["message_id"], "1hIAif-00H7J4-Lb");
    assert_eq!(e["client_ip"], "83.110.18.213");
    assert_eq!(e["auth_id"], "vani@teletek-intl.com");
    assert_eq!(e["owner"], "telet4");
    assert_eq!(e["sender_domain"], "teletek-intl.com");
    assert_eq!(e["recipients"].as_array().unwrap().len(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 unparsed") && err.contains(":3: this line is not exim"),
        "{err}"
    );
}

#[test]
fn third_party_rule_from_a_rules_directory_runs_beside_the_bundled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    fs::create_dir(&rules).unwrap();
    let built = std::path::Path::new(spamward_engine::GUEST_WASM_DIR)
        .join("example_auth_failure_burst.wasm");
    fs::copy(&built, rules.join("auth-failure-burst.wasm")).unwrap();
    let log = dir.path().join("mainlog");
    let mut text = abuse_log();
    for i in 0..12u32 {
        let _ = writeln!(
            text,
            "{} dovecot_login authenticator failed for (User) [198.51.100.77]:4{i:04} I=[192.0.2.1]:587: 535 Incorrect authentication data (set_id=user{i}@shop.example)",
            clock(i * 5)
        );
    }
    fs::write(&log, text).unwrap();
    let cache = dir.path().join("cache");
    let out = spamward(
        &[
            "rules",
            "list",
            "--json",
            "--rules",
            rules.to_str().unwrap(),
        ],
        &cache,
    );
    assert_ok(&out);
    let listed = json_lines(&out);
    let example = listed
        .iter()
        .find(|r| r["name"] == "auth-failure-burst")
        .expect("listed");
    assert!(
        example["source"]
            .as_str()
            .unwrap()
            .ends_with("auth-failure-burst.wasm")
    );

    let out = spamward(
        &[
            "scan",
            "--json",
            "--rules",
            rules.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        &cache,
    );
    assert_ok(&out);
    let keys = finding_keys(&json_lines(&out));
    assert!(
        keys.contains(&key("auth-failure-burst", "ip", "198.51.100.77")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&key("relay-volume", "mailbox", "victim@bakery.example")),
        "{keys:?}"
    );
}

#[test]
fn findings_do_not_depend_on_worker_threads_or_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let sample = workspace().join("examples/logs/mainlog-sample");
    let scan = |engine: &str| {
        let out = scan_with_config(dir.path(), &format!("[engine]\n{engine}\n"), &sample, true);
        assert_ok(&out);
        json_lines(&out)
    };
    // Rules on the reading thread (the default), one worker with many
    // small batches, and several workers racing over the default batches:
    // every finding, its evidence and the lines it cites must come out the
    // same.
    let inline = scan("");
    let serial = scan("workers = 1\nbatch_size = 7");
    let parallel = scan("workers = 4");
    assert!(inline.len() >= 4, "{} findings", inline.len());
    assert_eq!(inline, serial);
    assert_eq!(inline, parallel);
}
