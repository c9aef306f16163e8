//! Enforcement against a real Exim (Debian's `exim4-daemon-heavy`), end to
//! end: the test server of `real_exim.rs` with the shipped ACL
//! (`examples/exim/spamward.acl`) in its DATA ACL, `spamward run` in enforce
//! mode with the plain-Exim backend, and a stolen login flooding through it.
//!
//! What Exim itself does is read from Exim's log and queue, not from
//! spamward: the stolen login's next messages are refused, a login over its
//! hourly limit has its next messages frozen, normal senders' mail still
//! flows, an allow-listed login that floods the same way is reported and
//! never touched, a customer's contact form that floods has its queued mail
//! frozen, and after `spamward actions release` Exim accepts the stolen
//! login's mail again and delivers the form's once more.
//!
//! The attacker's IP is blocked for real: the test runs itself again in a
//! network namespace of its own (`unshare --net`), where Exim, swaks and
//! spamward share a loopback nobody else sees, and spamward's `inet
//! spamward` nftables table drops the attacker's next connection. The
//! machine's own firewall never sees the table.
//!
//! Loopback only; every file under the run's temp dir; the Exim processes
//! run in a private mount namespace (see `real_exim.rs`). Without Exim,
//! swaks, nft or root it prints why on stderr and passes.

mod common;
#[path = "real_exim/harness.rs"]
mod harness;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use common::{enforcing_config, json_lines, spamward, start_run, stop_run, workspace};
use harness::*;

/// Logs in like the stolen login, from as many IPs with the same HELO:
/// allow-listed, so reported and never acted on.
const ALLOWED_LOGIN: (&str, &str) = NEWSLETTER_LOGIN;
/// Sends over relay-volume's hourly limit from one IP, with a normal HELO:
/// held (its next messages frozen), not suspended.
const BULK_LOGIN: (&str, &str) = FAILING_LOGIN;
/// relay-volume's hourly limit in this run.
const HOURLY_LIMIT: u32 = 40;
/// script-sender's hourly limit in this run: the contact form crosses it
/// first, and its queued mail is frozen.
const SCRIPT_LIMIT: u32 = 20;
/// Where the stolen login's password was guessed from: blocked.
const GUESSER_IP: &str = "127.0.0.50";
/// Set in the run of the test inside its network namespace.
const IN_NAMESPACE: &str = "SPAMWARD_TEST_NETNS";
/// The test, by name, to run again inside the namespace.
const TEST: &str =
    "exim_refuses_the_stolen_login_once_spamward_suspends_it_and_accepts_it_after_release";

/// `spamward <args> --state <state>` of this run.
fn spamward_state(root: &Path, args: &[&str]) -> Output {
    let state = root.join("state.db");
    let config = root.join("spamward.toml");
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend(["--state", state.to_str().unwrap()]);
    spamward(&all, &root.join("cache"))
}

fn list(root: &Path, name: &str) -> Vec<String> {
    fs::read_to_string(root.join("spamward").join(name))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn wait_for(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// `n` messages from `login`, each from one of `ips` client addresses
/// (127.0.0.<first> ...), to remote recipients.
fn flood(smtp: &Smtp, label: &str, login: (&str, &str), first: u32, ips: u32, n: u32) -> Vec<Job> {
    (0..n)
        .map(|i| {
            smtp.send(
                &format!("{label}-{i}"),
                &format!("127.0.0.{}", first + i % ips),
                Some(login),
                login.0,
                &format!("lead{i}@target{}.example", i % 5),
                "Your invoice is ready",
            )
        })
        .collect()
}

/// `n` messages a customer's contact form hands to sendmail, to recipients
/// whose server answers "try again later": they wait in the queue.
fn form_mail(layout: &Layout, label: &str, n: u32) -> Vec<Job> {
    (0..n)
        .map(|i| {
            script_job(
                layout,
                &format!("{label}-{i}"),
                &layout.user_script_dir,
                (SCRIPT_USER, SCRIPT_USER),
                &format!("To: defer-lead{i}@target3.example\nSubject: Your quote\n\nHello.\n"),
            )
        })
        .collect()
}

/// The ids of the messages Exim's log says `root` (spamward, through
/// `exim -Mf` or `-Mt`) froze or thawed: `<id> frozen by root`.
fn acted_by_root(mainlog: &str, what: &str) -> Vec<String> {
    mainlog
        .lines()
        .filter(|l| l.ends_with(&format!(" {what} by root")))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect()
}

fn expecting(mut jobs: Vec<Job>, expect: Expect) -> Vec<Job> {
    for job in &mut jobs {
        job.expect = expect;
    }
    jobs
}

/// Runs this test again inside a network namespace of its own; whether
/// it did (else why it cannot here).
fn in_own_namespace() -> Result<(), String> {
    if !Path::new("/usr/sbin/nft").exists() {
        return Err("nft not installed (.ci/run installs nftables)".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new("unshare")
        .args(["--net", "--"])
        .arg(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .output()
        .map_err(|e| format!("unshare --net: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    say(&said);
    assert!(
        out.status.success(),
        "the test in its namespace failed:\n{said}"
    );
    assert!(said.contains("1 passed"), "{said}");
    Ok(())
}

#[test]
fn exim_refuses_the_stolen_login_once_spamward_suspends_it_and_accepts_it_after_release() {
    if let Some(why) = missing_prerequisite() {
        say(&format!("enforce_exim: SKIPPED: {why}"));
        return;
    }
    if std::env::var_os(IN_NAMESPACE).is_none() {
        if let Err(why) = in_own_namespace() {
            say(&format!("enforce_exim: SKIPPED: {why}"));
        }
        // The machine's firewall never saw spamward's table.
        let tables = std::process::Command::new("nft")
            .args(["list", "tables"])
            .output();
        if let Ok(tables) = tables {
            assert!(!String::from_utf8_lossy(&tables.stdout).contains("inet spamward"));
        }
        return;
    }
    // A new network namespace has loopback down.
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success(), "ip link set lo up");
    let root = make_root();
    let (main_port, sink_port) = free_ports();
    ensure_script_user();
    let layout = Layout::write(&root, sink_port);

    // The shipped ACL, with the lists under the run's directory.
    let lists = root.join("spamward");
    fs::create_dir_all(&lists).unwrap();
    fs::set_permissions(&lists, fs::Permissions::from_mode(0o755)).unwrap();
    let acl = layout.main_conf_dir.join("spamward.acl");
    fs::copy(workspace().join("examples/exim/spamward.acl"), &acl).unwrap();
    // The non-SMTP ACL is read at run time, without macros: its lists'
    // paths are written into the copy.
    let not_smtp = layout.main_conf_dir.join("spamward-not-smtp.acl");
    let shipped =
        fs::read_to_string(workspace().join("examples/exim/spamward-not-smtp.acl")).unwrap();
    fs::write(
        &not_smtp,
        shipped.replace("/etc/spamward/", &format!("{}/", lists.display())),
    )
    .unwrap();
    let conf = layout.main_conf_dir.join("exim4.conf");
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(
        &conf,
        format!(
            "SPAMWARD_ACL = {}\nSPAMWARD_NOT_SMTP_ACL = {}\nSPAMWARD_SUSPEND_LIST = {}\nSPAMWARD_HOLD_LIST = {}\n{text}",
            acl.display(),
            not_smtp.display(),
            lists.join("suspend").display(),
            lists.join("hold").display()
        ),
    )
    .unwrap();

    let mut daemons = Daemons::new(&root);
    daemons.start(&layout.sink_conf_dir, sink_port);
    daemons.start(&layout.main_conf_dir, main_port);

    let config = root.join("spamward.toml");
    let config_text = enforcing_config(
        &root.join("log/mainlog"),
        &lists.join("hold"),
        &lists.join("suspend"),
        ALLOWED_LOGIN.0,
        &format!(
            "[rules.compromised-account]\nmode = \"enforce\"\nactions = [\"suspend-outgoing\", \"block-ip\"]\n\n\
             [rules.relay-volume]\nmode = \"enforce\"\nactions = [\"hold-outgoing\"]\nhourly_limit = {HOURLY_LIMIT}\n\n\
             [rules.script-sender]\nmode = \"enforce\"\nactions = [\"freeze-message\"]\nmax_messages_per_hour = {SCRIPT_LIMIT}\n"
        ),
    );
    // spamward runs the test's Exim, as the test does.
    let exim = exim_command(&layout.main_conf_dir, None, EXIM, &[]);
    let exim: Vec<String> = std::iter::once(exim.get_program())
        .chain(exim.get_args())
        .map(|a| a.to_str().unwrap().to_owned())
        .collect();
    let config_text = config_text.replace(
        "[actions]\n",
        &format!("[actions]\nexim_command = {exim:?}\n"),
    );
    // Every client here is on loopback: it is no shield in this test.
    let config_text = config_text.replace("[policy]\n", "[policy]\nallow_loopback = false\n");
    fs::write(&config, config_text).unwrap();
    let spamward_run = start_run(
        &root.join("cache"),
        &config,
        &root,
        &root.join("state.db"),
        None,
    );

    // 0. The stolen login's password guessed from one IP.
    let smtp = Smtp::new(main_port).with_bot(ALLOWED_LOGIN.0);
    let guesses = (0..12)
        .map(|i| {
            let mut job = smtp.send(
                &format!("guess-{i}"),
                GUESSER_IP,
                Some((COMPROMISED_LOGIN.0, "wrong-guess")),
                COMPROMISED_LOGIN.0,
                "lead@target0.example",
                "guess",
            );
            job.expect = Expect::AuthRefused;
            job
        })
        .collect();
    run_jobs(guesses, SWAKS_PARALLEL);

    // 1. The abuse: the stolen login from 10 IPs with a bot's HELO, the
    // allow-listed login the same way, a bulk sender past the hourly limit
    // from one IP. spamward may already act while it runs: the stolen
    // login's last messages may be refused.
    let mut jobs = expecting(
        flood(&smtp, "stolen", COMPROMISED_LOGIN, 2, 10, 30),
        Expect::SuccessOrDataRefused,
    );
    jobs.extend(flood(&smtp, "allowed", ALLOWED_LOGIN, 20, 10, 30));
    jobs.extend(flood(&smtp, "bulk", BULK_LOGIN, 40, 1, HOURLY_LIMIT + 5));
    // A customer's web form hands its mail to sendmail, past the limit.
    jobs.extend(form_mail(&layout, "form", HOURLY_LIMIT + 5));
    run_jobs(jobs, SWAKS_PARALLEL);

    // 2. spamward acts on what Exim logged.
    wait_for(
        "the stolen login suspended",
        Duration::from_secs(60),
        || list(&root, "suspend").contains(&COMPROMISED_LOGIN.0.to_owned()),
    );
    wait_for("the bulk sender held", Duration::from_secs(60), || {
        list(&root, "hold").contains(&BULK_LOGIN.0.to_owned())
    });
    wait_for("the form's account held", Duration::from_secs(60), || {
        list(&root, "hold").contains(&SCRIPT_USER.to_owned())
    });
    // The form crossed script-sender's limit first: spamward froze the
    // mail it had queued (Exim's log says who froze each message).
    let read_mainlog = || fs::read_to_string(root.join("log/mainlog")).unwrap_or_default();
    wait_for(
        "the form's queued mail frozen",
        Duration::from_secs(60),
        || !acted_by_root(&read_mainlog(), "frozen").is_empty(),
    );

    // 3. Exim itself now refuses the stolen login, freezes the bulk
    // sender's mail, and lets the allow-listed login and a normal sender
    // through.
    let mut jobs = expecting(
        flood(&smtp, "stolen-after", COMPROMISED_LOGIN, 2, 10, 5),
        Expect::DataRefused,
    );
    jobs.extend(flood(&smtp, "allowed-after", ALLOWED_LOGIN, 20, 10, 5));
    jobs.extend(flood(&smtp, "bulk-after", BULK_LOGIN, 40, 1, 3));
    jobs.extend(form_mail(&layout, "form-after", 3));
    let (normal, password) = NORMAL_LOGINS[0];
    for i in 0..3 {
        jobs.push(smtp.send(
            &format!("normal-after-{i}"),
            "127.0.0.1",
            Some((normal, password)),
            normal,
            &format!("customer{i}@partner0.example"),
            "Order",
        ));
    }
    run_jobs(jobs, SWAKS_PARALLEL);
    daemons.wait_until_idle(Duration::from_secs(60));

    let mainlog = fs::read_to_string(root.join("log/mainlog")).unwrap();
    let refused = mainlog
        .lines()
        .filter(|l| {
            l.contains(&format!("A=plain_server:{}", COMPROMISED_LOGIN.0))
                && l.contains("rejected after DATA: spamward: sender suspended")
        })
        .count();
    assert!(
        refused >= 5,
        "Exim refused the stolen login's next messages"
    );
    let listing = exim_listing(&layout);
    let queue = queue_entries(&listing);
    let frozen_bulk = queue
        .iter()
        .filter(|(_, sender, frozen)| sender == BULK_LOGIN.0 && *frozen)
        .count();
    assert!(
        frozen_bulk >= 3,
        "the held sender's messages wait frozen:\n{listing}"
    );
    assert!(
        !queue
            .iter()
            .any(|(_, sender, frozen)| *frozen && (sender == ALLOWED_LOGIN.0 || sender == normal)),
        "the allow-listed and the normal sender are not held:\n{listing}"
    );
    let delivered_normal = mainlog
        .lines()
        .filter(|l| {
            l.contains(" => ")
                && l.contains("@partner0.example")
                && l.contains(&format!("F=<{normal}>"))
        })
        .count();
    assert!(
        delivered_normal >= 3,
        "the normal sender's mail still flows"
    );
    assert!(!list(&root, "suspend").contains(&ALLOWED_LOGIN.0.to_owned()));
    assert!(!list(&root, "hold").contains(&ALLOWED_LOGIN.0.to_owned()));
    // Every message spamward froze is the form's, and waits frozen; the
    // form had queued at least its limit's worth when it was caught.
    let form_sender = format!("{SCRIPT_USER}@");
    let frozen_form = acted_by_root(&mainlog, "frozen");
    assert!(
        frozen_form.len() >= SCRIPT_LIMIT as usize,
        "{} frozen: {frozen_form:?}\n{listing}",
        frozen_form.len()
    );
    for id in &frozen_form {
        assert!(
            queue
                .iter()
                .any(|(i, sender, frozen)| i == id && sender.starts_with(&form_sender) && *frozen),
            "{id} is the form's and frozen:\n{listing}"
        );
    }

    // The journal says why, for each.
    let journal = json_lines(&spamward_state(
        &root,
        &["actions", "--json", "--last", "1000"],
    ));
    let said = |decision: &str, action: &str, target: &str| {
        journal.iter().any(|e| {
            e["outcome"]["decision"] == decision
                && e["action"] == action
                && e["target"]["value"] == target
        })
    };
    assert!(
        said("ran", "suspend-outgoing", COMPROMISED_LOGIN.0),
        "{journal:?}"
    );
    assert!(said("ran", "hold-outgoing", BULK_LOGIN.0), "{journal:?}");
    let form_script = layout.user_script_dir.to_str().unwrap();
    assert!(said("ran", "freeze-message", form_script), "{journal:?}");
    assert!(
        said("refused-allow-listed", "suspend-outgoing", ALLOWED_LOGIN.0),
        "the allow-listed login is reported: {journal:?}"
    );
    // The client that guessed the password is blocked: its next
    // connection never reaches Exim.
    assert!(said("ran", "block-ip", GUESSER_IP), "{journal:?}");
    let set = std::process::Command::new("nft")
        .args(["list", "set", "inet", "spamward", "blocked4"])
        .output()
        .expect("run nft");
    let set = String::from_utf8_lossy(&set.stdout);
    assert!(set.contains(GUESSER_IP), "{set}");
    let mut knock = smtp.send(
        "guesser-after",
        GUESSER_IP,
        Some((COMPROMISED_LOGIN.0, "another-guess")),
        COMPROMISED_LOGIN.0,
        "lead@target0.example",
        "guess",
    );
    knock.cmd.args(["--timeout", "3"]);
    knock.expect = Expect::ConnectFailed;
    run_jobs(vec![knock], 1);

    // 4. Released: Exim accepts the stolen login's mail again.
    let out = spamward_state(
        &root,
        &["actions", "release", COMPROMISED_LOGIN.0, "--by", "tester"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!list(&root, "suspend").contains(&COMPROMISED_LOGIN.0.to_owned()));
    let mut again = smtp.send(
        "stolen-released",
        "127.0.0.1",
        Some(COMPROMISED_LOGIN),
        COMPROMISED_LOGIN.0,
        "owner@partner0.example",
        "Back to normal",
    );
    again.expect = Expect::Success;
    run_jobs(vec![again], 1);

    // The form's mail released: Exim thaws exactly what spamward froze,
    // and tries it again.
    let out = spamward_state(
        &root,
        &["actions", "release", form_script, "--by", "tester"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut thawed = acted_by_root(&read_mainlog(), "unfrozen");
    thawed.sort();
    let mut froze = frozen_form.clone();
    froze.sort();
    assert_eq!(thawed, froze, "thawed what it froze, no more");
    say(&format!(
        "enforce_exim: the form's {} queued messages frozen, then thawed on release",
        froze.len()
    ));
    let still_frozen = frozen_ids(&exim_listing(&layout));
    assert!(
        !froze.iter().any(|id| still_frozen.contains(id)),
        "{still_frozen:?}"
    );
    let log = stop_run(spamward_run);
    assert!(log.contains("acting"), "{log}");
}
