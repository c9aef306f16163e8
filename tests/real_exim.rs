//! End to end against a real Exim (Debian's `exim4-daemon-heavy`).
//!
//! The harness starts two Exim daemons on loopback, each with its own
//! configuration, spool and logs under one temp dir:
//!
//! - **the server** (`tests/exim/main.conf`): a small shared-hosting box with
//!   local domains, SMTP logins and web scripts, whose mainlog and queue
//!   spamward reads;
//! - **the sink** (`tests/exim/sink.conf`): "the Internet". Every non-local
//!   domain is routed to it; it accepts, defers (451) or rejects (550) each
//!   recipient by its local part, so the server logs real deliveries,
//!   deferrals, failures, bounces and frozen bounces.
//!
//! It drives normal and abusive traffic through the server (swaks over SMTP,
//! `sendmail -t -i` from `public_html` as `nobody` and as a customer), lets
//! the queue settle, stops both daemons and only then runs `spamward` on what
//! Exim wrote. The scenario runs once per test binary; each `#[test]` checks
//! one thing about it.
//!
//! **Why no `-C`.** Exim honours `-C <file>` with root privilege only for
//! root and, via Debian's `/etc/exim4/trusted_configs`, for the Exim user: a
//! script running as `nobody` or as a customer always loses privilege and
//! cannot write the spool, and Exim's own re-executions (`-Mc`, bounces) log
//! "exim user lost privilege for using -C option" unless the file is listed.
//! So every Exim process here runs in a private mount namespace
//! (`unshare --mount`) in which the test's config directory is bind-mounted
//! over `/etc/exim4`: Exim reads its compiled-in default
//! `/etc/exim4/exim4.conf`, keeps its privileges, and a script's line reads
//! exactly like PHP's `mail()` on a real server
//! (`cwd=/home/.../public_html 3 args: /usr/sbin/sendmail -t -i`). Nothing
//! outside the temp dir changes: the bind mount is invisible to the rest of
//! the system, the system Exim (if any) is untouched. The one lasting change
//! is the customer account `formsite`, created with `useradd` if missing.
//!
//! Needs root (mount namespace, setuid Exim, `setpriv`); without Exim, swaks
//! or root the tests print why on stderr and pass. `.ci/run` installs Exim.
//! Set `SPAMWARD_KEEP_EXIM=1` to keep the temp dir for inspection.

mod common;
#[path = "real_exim/harness.rs"]
mod harness;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_ok, finding_keys, json_lines, spamward};
use harness::*;

/// What one run of the scenario left behind, for the tests to check.
#[derive(Debug)]
struct EximRun {
    /// The temp dir holding everything below (a server root for
    /// `spamward scan --root`: `etc/userdomains`, `etc/localdomains`).
    root: PathBuf,
    /// The server's mainlog.
    mainlog: PathBuf,
    /// `exim -bp` of the server after the traffic settled.
    queue_listing: PathBuf,
    /// The server's spool directory (`input/` holds the queued messages).
    spool: PathBuf,
    /// A spamward.toml with ceilings lowered for a short run.
    spamward_config: PathBuf,
    /// The stolen login (`A=` id).
    compromised_login: String,
    /// The domain whose sends mostly fail.
    failing_domain: String,
    /// Working directory of the script that sends as `nobody`.
    nobody_script_dir: PathBuf,
    /// Working directory of the script that sends as `SCRIPT_USER`.
    user_script_dir: PathBuf,
    /// The account that owns `user_script_dir`.
    user_script_account: String,
    /// The client that tried to relay.
    relay_attempt_ip: String,
    /// The domain that bounces mail for unknown users to forged senders.
    backscatter_domain: String,
    /// Ids of the messages left frozen in the queue.
    frozen: Vec<String>,
    /// What `spamward run` made of the mainlog as Exim wrote it.
    live: LiveRun,
}

/// `spamward run` beside the scenario, following the server's mainlog.
struct LiveDaemon {
    child: Child,
    state: PathBuf,
    cache: PathBuf,
}

/// `spamward findings --json` of a state file (none while it does not
/// exist yet).
fn stored_findings(state: &Path, cache: &Path) -> Vec<serde_json::Value> {
    let out = spamward(
        &["findings", "--json", "--state", state.to_str().unwrap()],
        cache,
    );
    if out.status.success() {
        json_lines(&out)
    } else {
        Vec::new()
    }
}

/// What the live daemon did.
#[derive(Debug)]
struct LiveRun {
    /// How long into the traffic the stolen login was first stored as a
    /// finding, if it was before the traffic ended.
    named_after: Option<Duration>,
    /// How long the traffic ran.
    traffic_secs: f64,
    /// Whether the frozen messages of the queue it read were stored as a
    /// queue-health finding (waited for up to 20 s after the freeze).
    queue_named: bool,
    /// Its exit status after SIGTERM.
    exit: Option<i32>,
    /// Its log.
    stderr: String,
    /// `spamward findings --json` afterwards.
    findings: Vec<serde_json::Value>,
    /// `spamward status --json` afterwards.
    status: serde_json::Value,
}

impl LiveDaemon {
    fn start(root: &Path) -> LiveDaemon {
        let config = root.join("live.toml");
        fs::write(
            &config,
            format!(
                "[daemon]\nmainlog = [{:?}]\nstart_at = \"beginning\"\nflush_ms = 100\ncheckpoint_every = \"1s\"\n\
                 spool = {:?}\nqueue_every = \"1s\"\n\n\
                 [rules.relay-volume]\nhourly_limit = 100\n\n\
                 # A short run leaves a small queue.\n[rules.queue-health]\nmax_frozen = 2\n",
                root.join("log/mainlog").display().to_string(),
                root.join("spool").display().to_string()
            ),
        )
        .unwrap();
        let state = root.join("live-state.db");
        let cache = root.join("cache");
        let child = Command::new(env!("CARGO_BIN_EXE_spamward"))
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--config")
            .arg(&config)
            .args(["run", "--root"])
            .arg(root)
            .arg("--state")
            .arg(&state)
            .env("SPAMWARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start spamward run");
        LiveDaemon {
            child,
            state,
            cache,
        }
    }

    fn has_finding(&self, rule: &str, target: &str) -> bool {
        self.state.exists()
            && stored_findings(&self.state, &self.cache)
                .iter()
                .any(|f| f["rule"] == rule && f["target"]["value"] == target)
    }

    fn stop(self, named_after: Option<Duration>, traffic_secs: f64) -> LiveRun {
        // The queue is read every second: its frozen messages must show.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut queue_named = false;
        while !queue_named && Instant::now() < deadline {
            queue_named = self.has_finding("queue-health", "exim:queue");
            thread::sleep(Duration::from_millis(200));
        }
        signal(self.child.id(), libc::SIGTERM);
        let LiveDaemon {
            child,
            state,
            cache,
        } = self;
        let out = child.wait_with_output().expect("wait for spamward run");
        let findings = stored_findings(&state, &cache);
        let status = spamward(
            &["status", "--json", "--state", state.to_str().unwrap()],
            &cache,
        );
        LiveRun {
            named_after,
            traffic_secs,
            queue_named,
            exit: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            findings,
            status: json_lines(&status).pop().unwrap_or_default(),
        }
    }
}

/// The one scenario run of this test binary, shared by its tests: `None`
/// when skipped; a harness failure fails every test with its message.
fn exim_run() -> Option<&'static EximRun> {
    static RUN: OnceLock<Result<Option<EximRun>, String>> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        // A panic inside get_or_init would leave the lock empty and make
        // every other test re-run the whole scenario; keep the message
        // instead and fail each test with it.
        std::panic::catch_unwind(run_exim_scenario).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the Exim scenario panicked".into())
        })
    });
    match run {
        Ok(run) => run.as_ref(),
        Err(msg) => panic!("the real-Exim scenario failed: {msg}"),
    }
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn exim_logged_every_scenario() {
    let Some(run) = exim_run() else { return };
    let log = fs::read_to_string(&run.mainlog).unwrap();
    let sendmail = "args: /usr/sbin/sendmail -t -i";
    let smtp_error = "SMTP error from remote mail server after RCPT TO";
    // Each scenario and the substrings one of its lines must all contain.
    let expect: [(&str, Vec<String>); 11] = [
        (
            "compromised login",
            vec![format!(" A=plain_server:{} ", run.compromised_login)],
        ),
        (
            "script as nobody",
            vec![
                format!("cwd={} ", run.nobody_script_dir.display()),
                sendmail.into(),
            ],
        ),
        ("U=nobody", vec![" U=nobody P=local ".into()]),
        (
            "script as a user",
            vec![
                format!("cwd={} ", run.user_script_dir.display()),
                sendmail.into(),
            ],
        ),
        (
            "U=<script user>",
            vec![format!(" U={} P=local ", run.user_script_account)],
        ),
        (
            "unknown user of the :fail: domain",
            vec![
                " ** ".into(),
                format!("@{} ", run.backscatter_domain),
                "R=valiases: No Such User Here".into(),
            ],
        ),
        ("bounce", vec![" <= <> R=".into()]),
        (
            "refused relay",
            vec![
                format!("[{}]", run.relay_attempt_ip),
                ": relay not permitted".into(),
            ],
        ),
        ("550 at the sink", vec![" ** ".into(), smtp_error.into()]),
        ("451 at the sink", vec![" == ".into(), smtp_error.into()]),
        (
            "frozen bounce",
            vec![" Frozen (delivery error message)".into()],
        ),
    ];
    let missing: Vec<&str> = expect
        .iter()
        .filter(|(_, parts)| {
            !log.lines()
                .any(|l| parts.iter().all(|p| l.contains(p.as_str())))
        })
        .map(|(what, _)| *what)
        .collect();
    assert!(
        missing.is_empty(),
        "the mainlog {} lacks: {missing:?}",
        run.mainlog.display()
    );
}

#[test]
fn queue_listing_shows_the_frozen_messages() {
    let Some(run) = exim_run() else { return };
    let listing = fs::read_to_string(&run.queue_listing).unwrap();
    assert!(run.frozen.len() >= 3, "{}", listing);
    for id in &run.frozen {
        assert!(
            listing
                .lines()
                .any(|l| l.contains(id.as_str()) && l.contains("*** frozen ***")),
            "{id} is not listed frozen:\n{listing}"
        );
    }
    assert!(
        run.spool.join("input").is_dir(),
        "no spool at {}",
        run.spool.display()
    );
}

#[test]
fn events_reads_every_line_real_exim_writes() {
    let Some(run) = exim_run() else { return };
    // The server's mainlog: the sink's is a by-product, and its "discarded
    // by RCPT ACL" lines are the sink's own choice.
    let log = &run.mainlog;
    let out = spamward(&["events", log.to_str().unwrap()], &run.root.join("cache"));
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(" 0 unparsed"),
        "spamward left lines of {} unparsed:\n{stderr}",
        log.display()
    );
    assert!(
        !json_lines(&out).is_empty(),
        "no events from {}",
        log.display()
    );
}

#[test]
fn scan_names_each_abuse_and_spares_normal_senders() {
    let Some(run) = exim_run() else { return };
    let out = spamward(
        &[
            "--config",
            run.spamward_config.to_str().unwrap(),
            "scan",
            "--json",
            "--root",
            run.root.to_str().unwrap(),
            run.mainlog.to_str().unwrap(),
        ],
        &run.root.join("cache"),
    );
    assert_ok(&out);
    let findings = json_lines(&out);
    let keys = finding_keys(&findings);
    let report: String = keys.iter().fold(String::new(), |mut s, k| {
        let _ = writeln!(s, "  {k:?}");
        s
    });
    let has = |rule: &str, kind: &str, value: &str| {
        keys.iter()
            .any(|(r, k, v)| r == rule && k == kind && v == value)
    };
    assert!(
        has("relay-volume", "mailbox", &run.compromised_login),
        "no relay-volume finding on the stolen login; findings:\n{report}"
    );
    assert!(
        has(
            "nobody-sender",
            "script",
            run.nobody_script_dir.to_str().unwrap()
        ),
        "no nobody-sender finding on {}; findings:\n{report}",
        run.nobody_script_dir.display()
    );
    assert!(
        has("defer-fail-ratio", "domain", &run.failing_domain),
        "no defer-fail-ratio finding on {}; findings:\n{report}",
        run.failing_domain
    );
    // Nobody acts on an info finding; a warning or critical one about a
    // normal sender would be a false alarm.
    for f in &findings {
        if f["severity"] == "info" {
            continue;
        }
        let value = f["target"]["value"].as_str().unwrap();
        let normal = NORMAL_LOGINS.iter().any(|(login, _)| value == *login)
            || NORMAL_DOMAINS
                .iter()
                .any(|d| value == *d || value.ends_with(&format!("@{d}")))
            || NORMAL_ACCOUNTS.contains(&value);
        assert!(!normal, "a normal sender was flagged: {f}");
    }
}

/// Only the script that runs as nobody is reported as sending as nobody:
/// the customer's script runs under its own uid, and Exim's own
/// re-executions (`cwd=<spool> ... -Mc <id>`) are no scripts. Scripts run
/// concurrently here, as on a busy web server, so their `cwd=` lines
/// interleave with other processes' lines.
#[test]
fn nobody_sender_names_only_the_nobody_script() {
    let Some(run) = exim_run() else { return };
    let out = spamward(
        &[
            "scan",
            "--json",
            "--root",
            run.root.to_str().unwrap(),
            run.mainlog.to_str().unwrap(),
        ],
        &run.root.join("cache"),
    );
    assert_ok(&out);
    let wrong: Vec<(String, String, String)> = finding_keys(&json_lines(&out))
        .into_iter()
        .filter(|(rule, kind, value)| {
            rule == "nobody-sender"
                && !(kind == "script" && Path::new(value) == run.nobody_script_dir)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "nobody-sender blames other sources than {}: {wrong:#?}",
        run.nobody_script_dir.display()
    );
}

// ---------------------------------------------------------------------------
// The scenario.

fn run_exim_scenario() -> Option<EximRun> {
    if let Some(why) = missing_prerequisite() {
        say(&format!("real_exim: SKIPPED: {why}"));
        return None;
    }
    let started = Instant::now();
    let root = make_root();
    let (main_port, sink_port) = free_ports();
    ensure_script_user();
    let layout = Layout::write(&root, sink_port);

    let mut daemons = Daemons::new(&root);
    daemons.start(&layout.sink_conf_dir, sink_port);
    daemons.start(&layout.main_conf_dir, main_port);

    let smtp = Smtp::new(main_port);
    let mut jobs = Vec::new();
    // 1. Normal traffic: two logins, a few messages each, all delivered (one
    // of them to a local mailbox).
    for (n, (login, password)) in NORMAL_LOGINS.iter().enumerate() {
        for i in 0..5 {
            let to = if n == 1 && i == 4 {
                "staff@shop.example".to_owned()
            } else {
                format!("customer{i}@partner{n}.example")
            };
            jobs.push(smtp.send(
                &format!("normal-{n}-{i}"),
                "127.0.0.1",
                Some((login, password)),
                login,
                &to,
                &format!("Order {i}"),
            ));
        }
    }
    // 2. A stolen login: many messages from many client IPs to many
    // recipients; a third is refused by the recipients' server, a few are
    // deferred.
    for i in 0..COMPROMISED_MESSAGES {
        let ip = format!("127.0.0.{}", 2 + i % COMPROMISED_IPS);
        let local = match i % 20 {
            5 => format!("defer-lead{i}"),
            n if n % 3 == 1 => format!("nosuch-lead{i}"),
            _ => format!("lead{i}"),
        };
        jobs.push(smtp.send(
            &format!("compromised-{i}"),
            &ip,
            Some(COMPROMISED_LOGIN),
            COMPROMISED_LOGIN.0,
            &format!("{local}@target{}.example", i % 7),
            "Your invoice is ready",
        ));
    }
    // 6. A domain whose sends mostly fail: 3 of 12 delivered, the rest
    // rejected (550) or deferred (451), across several recipient domains.
    for i in 0..12u32 {
        let local = match i % 4 {
            0 => format!("member{i}"),
            1 | 3 => format!("reject-member{i}"),
            _ => format!("defer-member{i}"),
        };
        jobs.push(smtp.send(
            &format!("failing-{i}"),
            "127.0.0.1",
            Some(FAILING_LOGIN),
            FAILING_LOGIN.0,
            &format!("{local}@list{}.example", i % 3),
            "Club news",
        ));
    }
    // 4. Forged envelope senders to unknown users of a `:fail:` domain: the
    // server accepts, then bounces to the forged sender. Bounces the sink
    // rejects freeze; one is deferred; two are delivered (backscatter).
    for (i, forged) in [
        "reject-alice@forged.example",
        "reject-bob@forged.example",
        "reject-carol@forged2.example",
        "defer-dave@forged2.example",
        "erin@forged.example",
        "frank@forged3.example",
    ]
    .iter()
    .enumerate()
    {
        jobs.push(smtp.send(
            &format!("forged-{i}"),
            FORGER_IP,
            None,
            forged,
            &format!("old-user{i}@{BACKSCATTER_DOMAIN}"),
            "Re: your account",
        ));
    }
    // ... and a spam run's worth more, each bounce delivered to the forged
    // sender's server: backscatter the log alone shows.
    for i in 0..8 {
        jobs.push(smtp.send(
            &format!("forged-run-{i}"),
            FORGER_IP,
            None,
            &format!("victim{i}@forged{}.example", 4 + i % 3),
            &format!("guess{i}@{BACKSCATTER_DOMAIN}"),
            "Your parcel",
        ));
    }
    // 5. Relay attempts from an outside client, refused at RCPT.
    for i in 0..3 {
        let mut job = smtp.send(
            &format!("relay-{i}"),
            RELAY_ATTEMPT_IP,
            None,
            "promo@spam.example",
            &format!("someone{i}@elsewhere.example"),
            "Cheap pills",
        );
        job.expect = Expect::RcptRefused;
        jobs.push(job);
    }
    // 8. The labelled look-alikes and log-only abuses
    // (tests/scenarios/real-exim/expect.toml says what each must give).
    // An honest newsletter: one login, one IP, many domains, all delivered.
    for i in 0..NEWSLETTER_MESSAGES {
        jobs.push(smtp.send(
            &format!("newsletter-{i}"),
            "127.0.0.1",
            Some(NEWSLETTER_LOGIN),
            NEWSLETTER_LOGIN.0,
            &format!("reader{i}@readers{i}.example"),
            "This week at the cafe",
        ));
    }
    // A login Exim's ratelimit holds back after ten recipients.
    for i in 0..16 {
        let mut job = smtp.send(
            &format!("ratelimited-{i}"),
            "127.0.0.1",
            Some(RATELIMITED_LOGIN),
            RATELIMITED_LOGIN.0,
            &format!("customer{i}@partner{}.example", i % 3),
            "Offer",
        );
        job.expect = Expect::SuccessOrRcptRefused;
        jobs.push(job);
    }
    // A remote MX in an outage (421 to every recipient).
    for i in 0..4 {
        jobs.push(smtp.send(
            &format!("dead-mx-{i}"),
            "127.0.0.1",
            Some(NORMAL_LOGINS[0]),
            NORMAL_LOGINS[0].0,
            &format!("buyer{i}@dead-mx.example"),
            "Your order",
        ));
    }
    // The open relay: a stranger main.conf lets relay, to remote domains.
    for i in 0..5 {
        jobs.push(smtp.send(
            &format!("open-relay-{i}"),
            OPEN_RELAY_IP,
            None,
            "offers@spam.example",
            &format!("victim{i}@elsewhere{i}.example"),
            "Cheap watches",
        ));
    }
    // A prober: refused relaying for eight recipients.
    for i in 0..8 {
        let mut job = smtp.send(
            &format!("prober-{i}"),
            PROBER_IP,
            None,
            "test@probe.example",
            &format!("relaytest{i}@checker.example"),
            "relay test",
        );
        job.expect = Expect::RcptRefused;
        jobs.push(job);
    }
    // A forwarder: mail from a stranger to info@bistro.example goes on to
    // the owner's remote mailbox.
    for i in 0..3 {
        jobs.push(smtp.send(
            &format!("forward-{i}"),
            FORWARDED_FROM_IP,
            None,
            &format!("guest{i}@visitors.example"),
            "info@bistro.example",
            "Table for four?",
        ));
    }
    // A dictionary attack on a domain that checks recipients at RCPT.
    for (n, ip) in DICTIONARY_IPS.iter().enumerate() {
        for i in 0..8 {
            let mut job = smtp.send(
                &format!("dictionary-{n}-{i}"),
                ip,
                None,
                "x@botnet.example",
                &format!(
                    "{}{i}@{GUARDED_DOMAIN}",
                    ["admin", "sales", "info", "john"][n]
                ),
                "hi",
            );
            job.expect = Expect::RcptRefused;
            jobs.push(job);
        }
    }
    // A full mailbox: strangers write to it, every delivery is deferred.
    for i in 0..5 {
        jobs.push(smtp.send(
            &format!("full-mailbox-{i}"),
            "127.0.0.62",
            None,
            &format!("friend{i}@outside.example"),
            FULL_MAILBOX,
            "Hello",
        ));
    }
    // `spamward run` follows the server's mainlog while the traffic runs:
    // the stolen login must be named before the abuse is over.
    let live = LiveDaemon::start(&root);
    let traffic = Instant::now();
    let sending = thread::spawn(move || run_jobs(jobs, SWAKS_PARALLEL));
    let mut named_while_sending = None;
    while !sending.is_finished() {
        if named_while_sending.is_none()
            && live.has_finding("compromised-account", COMPROMISED_LOGIN.0)
        {
            named_while_sending = Some(traffic.elapsed());
        }
        thread::sleep(Duration::from_millis(200));
    }
    if let Err(panic) = sending.join() {
        std::panic::resume_unwind(panic);
    }
    let smtp_secs = traffic.elapsed().as_secs_f64();

    // 3. Scripts: PHP's mail() runs `sendmail -t -i` in the script's
    // directory, as nobody (no suEXEC) or as the customer (suEXEC).
    let mut scripts = Vec::new();
    for i in 0..6 {
        scripts.push(script_job(
            &layout,
            &format!("nobody-{i}"),
            &layout.nobody_script_dir,
            ("nobody", "nogroup"),
            &format!(
                "To: winner{i}@lottery{}.example\nFrom: \"Prize Desk\" <prizes@lottery.example>\n\
                 Subject: You have won\n\nClaim your prize now.\n",
                i % 3
            ),
        ));
    }
    for i in 0..30 {
        // A few deferred, so queued messages keep their X-PHP-Script header
        // in the spool.
        let to = if i % 10 == 3 {
            format!("defer-client{i}@bank-customers.example")
        } else {
            format!("client{i}@bank-customers{}.example", i % 4)
        };
        scripts.push(script_job(
            &layout,
            &format!("user-script-{i}"),
            &layout.user_script_dir,
            (SCRIPT_USER, SCRIPT_USER),
            &format!(
                "To: {to}\nFrom: \"PayPal\" <service@paypal.example>\n\
                 Subject: Your account is limited\n\
                 X-PHP-Script: forms.example/contact/send.php for 127.0.0.9\n\n\
                 Please confirm your details.\n"
            ),
        ));
    }
    // Look-alikes: a shop's order confirmations, and root's cron mail.
    for i in 0..3 {
        scripts.push(script_job(
            &layout,
            &format!("order-script-{i}"),
            &layout.order_script_dir,
            (SCRIPT_USER, SCRIPT_USER),
            &format!(
                "To: buyer{i}@customers.example\nFrom: \"Forms Shop\" <orders@forms.example>\n\
                 Subject: Your order {i} is confirmed\n\
                 X-PHP-Script: forms.example/shop/order.php for 127.0.0.9\n\n\
                 Thank you for your order.\n"
            ),
        ));
    }
    for i in 0..2 {
        scripts.push(script_job(
            &layout,
            &format!("root-cron-{i}"),
            &layout.root_home,
            ("root", "root"),
            &format!(
                "To: admin@partner0.example\nFrom: root@host.example\n\
                 Subject: Cron <root@mail> /usr/local/bin/backup {i}\n\n\
                 backup done\n"
            ),
        ));
    }
    run_jobs(scripts, 4);

    // Let the immediate deliveries (and the bounces they cause) finish, run
    // the queue once as a cron'd `exim -qf` would, and settle again.
    daemons.wait_until_idle(Duration::from_secs(60));
    let queue_run = Instant::now();
    run_ok(
        exim_command(&layout.main_conf_dir, None, EXIM, &["-qf"]),
        "queue-run",
    );
    daemons.wait_until_idle(Duration::from_secs(60));
    let queue_secs = queue_run.elapsed().as_secs_f64();

    // 7. Frozen messages: the bounces the sink refused froze by themselves;
    // an admin also freezes one of the stolen login's deferred messages.
    let listing = exim_listing(&layout);
    let mut frozen = frozen_ids(&listing);
    let to_freeze = queue_entries(&listing)
        .into_iter()
        .find(|(_, sender, is_frozen)| sender == COMPROMISED_LOGIN.0 && !is_frozen)
        .map(|(id, _, _)| id)
        .unwrap_or_else(|| panic!("no queued message of the stolen login:\n{listing}"));
    run_ok(
        exim_command(&layout.main_conf_dir, None, EXIM, &["-Mf", &to_freeze]),
        "freeze",
    );
    frozen.push(to_freeze);

    let listing = exim_listing(&layout);
    let queue_listing = root.join("queue-listing.txt");
    fs::write(&queue_listing, &listing).unwrap();
    daemons.stop();
    let live = live.stop(named_while_sending, smtp_secs);

    // The scenario's settings, as committed beside its labelled log.
    let spamward_config = root.join("spamward.toml");
    fs::copy(
        common::labelled::dir(SCENARIO).join("spamward.toml"),
        &spamward_config,
    )
    .unwrap();

    let run = EximRun {
        mainlog: root.join("log/mainlog"),
        queue_listing,
        spool: root.join("spool"),
        spamward_config,
        compromised_login: COMPROMISED_LOGIN.0.into(),
        failing_domain: FAILING_DOMAIN.into(),
        nobody_script_dir: layout.nobody_script_dir.clone(),
        user_script_dir: layout.user_script_dir.clone(),
        user_script_account: SCRIPT_USER.into(),
        relay_attempt_ip: RELAY_ATTEMPT_IP.into(),
        backscatter_domain: BACKSCATTER_DOMAIN.into(),
        frozen,
        live,
        root,
    };
    say(&format!(
        "real_exim: scenario done in {:.1}s (SMTP traffic {smtp_secs:.1}s, queue run and settling {queue_secs:.1}s)\n\
         real_exim: files in      {} (removed at exit unless SPAMWARD_KEEP_EXIM=1)\n\
         real_exim: mainlog       {}\n\
         real_exim: queue listing {}\n\
         real_exim: spool         {}\n\
         real_exim: frozen        {:?}",
        started.elapsed().as_secs_f64(),
        run.root.display(),
        run.mainlog.display(),
        run.queue_listing.display(),
        run.spool.display(),
        run.frozen,
    ));
    Some(run)
}

// ---------------------------------------------------------------------------
// The queue, the spool and the configuration, as Exim left them.

/// What `scan` says about the queue Exim left: the spool directory and the
/// saved `exim -bp` output, told apart by content.
#[test]
fn queue_and_spool_give_queue_health_and_script_sender_findings() {
    let Some(run) = exim_run() else { return };
    let config = run.root.join("spamward-queue.toml");
    // A short run leaves a small queue: lower the frozen threshold.
    std::fs::write(&config, "[rules.queue-health]\nmax_frozen = 2\n").unwrap();
    let out = spamward(
        &[
            "scan",
            "--json",
            "--config",
            config.to_str().unwrap(),
            "--root",
            run.root.to_str().unwrap(),
            run.spool.join("input").to_str().unwrap(),
            run.queue_listing.to_str().unwrap(),
        ],
        &run.root.join("cache"),
    );
    assert_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(spool-dir)") && err.contains("(queue-listing)"),
        "{err}"
    );
    let keys = finding_keys(&json_lines(&out));
    assert!(
        keys.contains(&("queue-health".into(), "setting".into(), "exim:queue".into())),
        "{keys:?}\n{err}"
    );
    // The customer's form sends as paypal.example, which its account
    // doesn't own; the spool keeps its X-PHP-Script header.
    assert!(
        keys.iter()
            .any(|(rule, kind, value)| rule == "script-sender"
                && kind == "script"
                && value.contains("contact/send.php")),
        "{keys:?}\n{err}"
    );
}

/// Writes the benchmark log `spamward bench --log` measures
/// (`tests/bench/busy-day.log.gz`, README): a busy server's traffic through
/// the real Exim, about 100,000 lines. Run by hand, it takes minutes:
/// `SPAMWARD_BUSY_DAY=<file> cargo test -p spamward --test real_exim --
/// --ignored write_busy_day_log` (then gzip `<file>`).
#[test]
#[ignore = "writes the committed benchmark log; minutes of traffic, run by hand"]
fn write_busy_day_log() {
    let Some(out) = std::env::var_os("SPAMWARD_BUSY_DAY") else {
        say("write_busy_day_log: set SPAMWARD_BUSY_DAY=<file> to write the log");
        return;
    };
    if let Some(why) = missing_prerequisite() {
        panic!("write_busy_day_log: {why}");
    }
    let started = Instant::now();
    let root = make_root();
    let (main_port, sink_port) = free_ports();
    ensure_script_user();
    let layout = Layout::write(&root, sink_port);
    // Hundreds of customers: 60 domains, five logins each, with mailboxes.
    let logins: Vec<(String, String)> = (0..300)
        .map(|k| (format!("user{k}@d{}.example", k % 60), format!("pw-{k}")))
        .collect();
    let append = |file: &str, text: String| {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(root.join(file))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append(
        "etc/localdomains",
        (0..60).map(|d| format!("d{d}.example\n")).collect(),
    );
    append(
        "etc/userdomains",
        (0..60).map(|d| format!("d{d}.example: u{d}\n")).collect(),
    );
    append(
        "etc/smtp_passwords",
        logins.iter().map(|(l, p)| format!("{l}: {p}\n")).collect(),
    );
    append(
        "etc/mailboxes",
        logins
            .iter()
            .map(|(l, _)| {
                let (local, domain) = l.split_once('@').unwrap();
                format!("{l}: {domain}/{local}\n")
            })
            .collect(),
    );
    let mut daemons = Daemons::new(&root);
    daemons.start(&layout.sink_conf_dir, sink_port);
    daemons.start(&layout.main_conf_dir, main_port);
    let smtp = Smtp::new(main_port);
    let mut jobs = Vec::new();
    // Customers' mail: 40 messages per login, 1 in 20 deferred and 1 in 20
    // refused by the recipient's server.
    for (k, (login, password)) in logins.iter().enumerate() {
        for i in 0..40 {
            let local = match (k + i) % 20 {
                3 => "defer-c",
                7 => "reject-c",
                _ => "c",
            };
            jobs.push(smtp.send(
                &format!("customer-{k}-{i}"),
                &format!("127.0.2.{}", k % 250 + 1),
                Some((login, password)),
                login,
                &format!("{local}{i}@partner{}.example", (k * 7 + i) % 50),
                "Re: our order",
            ));
        }
    }
    // Mail from the Internet for the customers, and for unknown users of
    // the `:fail:` domain (bounced to the senders: backscatter).
    for i in 0..4500 {
        let (login, _) = &logins[i * 13 % logins.len()];
        let to = if i % 10 == 0 {
            format!("gone{i}@{BACKSCATTER_DOMAIN}")
        } else {
            login.clone()
        };
        jobs.push(smtp.send(
            &format!("inbound-{i}"),
            &format!("127.0.1.{}", i % 150 + 1),
            None,
            &format!("s{i}@remote{}.example", i % 80),
            &to,
            "Hello",
        ));
    }
    // Two stolen logins, each used from 50 IPs.
    for (n, (login, password)) in logins[..2].iter().enumerate() {
        for i in 0..400 {
            jobs.push(smtp.send(
                &format!("stolen-{n}-{i}"),
                &format!("127.0.{}.{}", 3 + n, i % 50 + 1),
                Some((login, password)),
                login,
                &format!("lead{i}@target{}.example", i % 30),
                "Invoice",
            ));
        }
    }
    // Password guessing and relay attempts.
    for i in 0..300 {
        let (login, _) = &logins[i % 40];
        let mut job = smtp.send(
            &format!("guess-{i}"),
            &format!("127.0.5.{}", i % 20 + 1),
            Some((login, "wrong-password")),
            login,
            "x@partner0.example",
            "x",
        );
        job.expect = Expect::AuthRefused;
        jobs.push(job);
    }
    for i in 0..200 {
        let mut job = smtp.send(
            &format!("relay-{i}"),
            &format!("127.0.6.{}", i % 10 + 1),
            None,
            "promo@spam.example",
            &format!("someone{i}@elsewhere.example"),
            "Cheap pills",
        );
        job.expect = Expect::RcptRefused;
        jobs.push(job);
    }
    say(&format!("write_busy_day_log: {} SMTP jobs", jobs.len()));
    run_jobs(jobs, SWAKS_PARALLEL);
    let mut scripts = Vec::new();
    for i in 0..150 {
        let (dir, user) = if i % 3 == 0 {
            (&layout.nobody_script_dir, ("nobody", "nogroup"))
        } else {
            (&layout.user_script_dir, (SCRIPT_USER, SCRIPT_USER))
        };
        scripts.push(script_job(
            &layout,
            &format!("script-{i}"),
            dir,
            user,
            &format!(
                "To: client{i}@bank-customers{}.example\nSubject: Notice\n\nHello\n",
                i % 4
            ),
        ));
    }
    run_jobs(scripts, 4);
    daemons.wait_until_idle(Duration::from_secs(120));
    run_ok(
        exim_command(&layout.main_conf_dir, None, EXIM, &["-qf"]),
        "queue-run",
    );
    daemons.wait_until_idle(Duration::from_secs(120));
    daemons.stop();
    fs::copy(root.join("log/mainlog"), &out).unwrap();
    say(&format!(
        "write_busy_day_log: {} written in {:.0}s",
        PathBuf::from(&out).display(),
        started.elapsed().as_secs_f64()
    ));
}

/// The labelled scenario: every finding and silence of
/// `tests/scenarios/real-exim/expect.toml` holds on the log this run's Exim
/// wrote, read alone. With `SPAMWARD_KEEP_EXIM=1` the run's files stay;
/// `mainlog` gzipped and the run's root in `run.toml` are what
/// `tests/scenarios/real-exim/` commits.
#[test]
fn labelled_findings_and_silences_hold_on_the_log_real_exim_wrote() {
    let Some(run) = exim_run() else { return };
    common::labelled::check(SCENARIO, &run.mainlog, &run.root);
}

/// The stolen login is named by `compromised-account`; the refused relay
/// attempt (three recipients) is neither an open relay nor a prober.
#[test]
fn compromised_login_is_named_and_the_refused_relay_is_not_an_open_relay() {
    let Some(run) = exim_run() else { return };
    let out = spamward(
        &[
            "scan",
            "--json",
            "--root",
            run.root.to_str().unwrap(),
            run.mainlog.to_str().unwrap(),
        ],
        &run.root.join("cache"),
    );
    assert_ok(&out);
    let keys = finding_keys(&json_lines(&out));
    assert!(
        keys.contains(&(
            "compromised-account".into(),
            "mailbox".into(),
            run.compromised_login.clone()
        )),
        "{keys:?}"
    );
    assert!(
        !keys.contains(&(
            "open-relay".into(),
            "ip".into(),
            run.relay_attempt_ip.clone()
        )),
        "{keys:?}"
    );
}

/// `spamward run` followed the mainlog while the scenario ran: it named the
/// stolen login while the abuse was still being sent, stored it, read the
/// queue's frozen messages from the spool, and stopped cleanly on SIGTERM with everything it read saved.
#[test]
fn run_names_the_stolen_login_while_the_abuse_is_still_sending() {
    let Some(run) = exim_run() else { return };
    let live = &run.live;
    assert_eq!(live.exit, Some(0), "spamward run:\n{}", live.stderr);
    let named = live.named_after.unwrap_or_else(|| {
        panic!(
            "the stolen login was not stored while {:.1}s of traffic ran:\n{}",
            live.traffic_secs, live.stderr
        )
    });
    say(&format!(
        "real_exim: spamward run named the stolen login {:.1}s into {:.1}s of traffic",
        named.as_secs_f64(),
        live.traffic_secs
    ));
    assert!(
        live.stderr.contains("finding:") && live.stderr.contains("rule=compromised-account"),
        "the finding is a log line naming the rule:\n{}",
        live.stderr
    );
    assert!(
        live.findings
            .iter()
            .any(|f| f["rule"] == "compromised-account"
                && f["target"]["value"] == run.compromised_login.as_str()),
        "{:?}",
        live.findings
    );
    assert!(
        live.queue_named,
        "the frozen messages in the spool were not stored as a queue-health finding: {:?}\n{}",
        live.findings, live.stderr
    );
    let source = &live.status["sources"][0];
    assert_eq!(source["path"], run.mainlog.display().to_string());
    let lines = fs::read_to_string(&run.mainlog).unwrap().lines().count() as u64;
    assert_eq!(
        source["lines"].as_u64(),
        Some(lines),
        "every line read: {}",
        live.status
    );
    assert!(
        live.status["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "running"),
        "{}",
        live.status
    );
}

/// `audit` of the test server: Exim itself, probed with `-bh`, refuses to
/// relay for a stranger; the `:fail:` catch-all is flagged.
#[test]
fn audit_probes_exim_and_flags_the_fail_catch_all() {
    let Some(run) = exim_run() else { return };
    let conf = run.root.join("exim/exim4.conf");
    assert!(conf.exists(), "{}", conf.display());
    let out = spamward(
        &[
            "audit",
            "--root",
            run.root.to_str().unwrap(),
            "--exim",
            EXIM,
            "--exim-config",
            conf.to_str().unwrap(),
        ],
        &run.root.join("cache"),
    );
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let relay = text
        .lines()
        .find(|l| l.contains("open-relay"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        relay.trim_start().starts_with("ok"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("domain {}", run.backscatter_domain)),
        "{text}"
    );
}
