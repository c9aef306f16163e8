//! End to end: `spamward audit` on copies of a badly and a well configured
//! cPanel server (`tests/fixtures/servers/{bad,good}`).

mod common;

use common::{assert_ok, finding_keys, json_lines, spamward, workspace};

fn audit(server: &str, json: bool) -> std::process::Output {
    let cache = tempfile::tempdir().unwrap();
    let root = workspace().join("tests/fixtures/servers").join(server);
    let mut args = vec!["audit", "--root", root.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    let out = spamward(&args, cache.path());
    assert_ok(&out);
    out
}

#[test]
fn bad_server_fails_every_configuration_check_with_a_fix() {
    let out = audit("bad", true);
    let findings = json_lines(&out);
    let keys = finding_keys(&findings);
    let expected = [
        ("nobody-sender", "setting", "cpanel.config:nobodyspam"),
        (
            "smtp-restriction",
            "setting",
            "cpanel.config:smtpmailgidonly",
        ),
        ("hourly-limit", "setting", "cpanel.config:maxemailsperhour"),
        (
            "hourly-limit",
            "setting",
            "cpanel.config:email_send_limits_max_defer_fail_percentage",
        ),
        ("default-address", "domain", "shop.example"),
        ("mailman", "setting", "cpanel.config:skipmailman"),
        ("suexec", "setting", "php-handler:ea-php81"),
        ("bounce-bloat", "mailbox", "info@shop.example"),
    ];
    for (rule, kind, value) in expected {
        assert!(
            keys.contains(&(rule.into(), kind.into(), value.into())),
            "missing {rule} {kind} {value} in {keys:?}"
        );
    }
    for f in &findings {
        let fix = f["evidence"]["fix"].as_str().unwrap_or_default();
        assert!(!fix.is_empty(), "finding without a fix: {f}");
        assert!(["warning", "critical", "info"].contains(&f["severity"].as_str().unwrap()));
    }
}

#[test]
fn good_server_passes_and_says_so() {
    let out = audit("good", true);
    assert!(
        json_lines(&out).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&audit("good", false).stdout).into_owned();
    assert!(text.contains("0 failed"), "{text}");
    for check in [
        "nobody-sender",
        "smtp-restriction",
        "hourly-limit",
        "default-address",
        "mailman",
        "suexec",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("{check} missing:\n{text}"));
        assert!(line.trim_start().starts_with("ok"), "{line}");
    }
}

#[test]
fn checklist_shows_failures_with_fixes_and_checks_without_data_as_not_applicable() {
    let text = String::from_utf8_lossy(&audit("bad", false).stdout).into_owned();
    let smtp = text
        .lines()
        .position(|l| l.contains("smtp-restriction"))
        .unwrap();
    assert!(
        text.lines()
            .nth(smtp)
            .unwrap()
            .trim_start()
            .starts_with("FAIL"),
        "{text}"
    );
    assert!(
        text.contains("fix: WHM → Security Center → SMTP Restrictions: Enable"),
        "{text}"
    );
    // No Exim to probe on a copy of a server: open-relay has nothing to judge.
    let relay = text.lines().find(|l| l.contains("open-relay")).unwrap();
    assert!(relay.trim_start().starts_with("n/a"), "{relay}");
}
