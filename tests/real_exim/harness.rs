//! The real-Exim harness shared by the tests that drive a real Exim
//! (`real_exim.rs`, `enforce_exim.rs`): the test server's accounts and
//! files, Exim started in a private mount namespace, swaks and script
//! traffic, the queue as `exim -bp` lists it, and every Exim process of a
//! run stopped when it ends. See `real_exim.rs` for why it runs this way.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::common;

pub const EXIM: &str = "/usr/sbin/exim4";
/// What PHP's `mail()` runs (a symlink to exim4 on Debian).
pub const SENDMAIL: &str = "/usr/sbin/sendmail";
/// The Exim user of Debian's package: local deliveries run as it.
pub const EXIM_USER: &str = "Debian-exim";
/// The customer whose web script sends mail under its own uid.
pub const SCRIPT_USER: &str = "formsite";

/// The normal senders: SMTP logins that send a handful of messages, all
/// delivered, and their domains. No finding may name them.
pub const NORMAL_LOGINS: [(&str, &str); 2] = [
    ("staff@shop.example", "counter-2024"),
    ("chef@cafe.example", "espresso!"),
];
pub const NORMAL_DOMAINS: [&str; 2] = ["shop.example", "cafe.example"];
pub const NORMAL_ACCOUNTS: [&str; 2] = ["shop", "cafe"];
/// The stolen login and how much it sends.
pub const COMPROMISED_LOGIN: (&str, &str) = ("victim@bakery.example", "bread123");
pub const COMPROMISED_MESSAGES: u32 = 240;
/// Client IPs the stolen login is used from: 127.0.0.2 ..= 127.0.0.40.
pub const COMPROMISED_IPS: u32 = 39;
/// A newsletter domain whose recipients mostly fail.
pub const FAILING_LOGIN: (&str, &str) = ("news@club.example", "newsletter");
pub const FAILING_DOMAIN: &str = "club.example";
/// A domain with cPanel's `*: :fail:` default address: mail for its unknown
/// users bounces to whatever sender was given (backscatter).
pub const BACKSCATTER_DOMAIN: &str = "blog.example";
/// An outside client trying to relay.
pub const RELAY_ATTEMPT_IP: &str = "127.0.0.66";
/// An outside client forging envelope senders.
pub const FORGER_IP: &str = "127.0.0.60";

/// An honest newsletter: many recipients in many domains, one login, one
/// IP, all delivered. A look-alike of a stolen login that must stay quiet.
pub const NEWSLETTER_LOGIN: (&str, &str) = ("letters@bistro.example", "weekly-news");
pub const NEWSLETTER_MESSAGES: u32 = 90;
/// A login Exim's own `ratelimit` ACL holds back (main.conf).
pub const RATELIMITED_LOGIN: (&str, &str) = ("bulk@bistro.example", "bulk-sender");
/// The one stranger main.conf lets relay (a relay_from_hosts mistake).
pub const OPEN_RELAY_IP: &str = "127.0.0.77";
/// A stranger probing for an open relay with many recipients.
pub const PROBER_IP: &str = "127.0.0.67";
/// A stranger writing to a local alias that forwards to a remote mailbox:
/// a forward, not relaying.
pub const FORWARDED_FROM_IP: &str = "127.0.0.61";
/// The domain a dictionary attack guesses at (main.conf checks its
/// recipients at RCPT), and the attackers.
pub const GUARDED_DOMAIN: &str = "guarded.example";
pub const DICTIONARY_IPS: [&str; 4] = ["127.0.0.81", "127.0.0.82", "127.0.0.83", "127.0.0.84"];
/// The mailbox main.conf gives a quota it is over.
pub const FULL_MAILBOX: &str = "full@bistro.example";

/// The labelled scenario this run is (`tests/scenarios/real-exim/`): its
/// settings, the findings and silences its log must give, and a committed
/// copy of one run's log.
pub const SCENARIO: &str = "real-exim";

/// Timeout for any single command (every other wait has its own bound).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// swaks processes in flight at once (a 2-core box; swaks mostly waits).
pub const SWAKS_PARALLEL: usize = 8;

/// Writes `text` to stderr past the test harness's capture, so that CI logs
/// show why the tests skipped and where the run's files are.
pub fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Why the scenario cannot run here, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    let installed = |p: &str| Path::new(p).exists();
    let swaks = ["/usr/bin/swaks", "/usr/local/bin/swaks"]
        .iter()
        .any(|p| installed(p));
    if !installed(EXIM) || !swaks {
        return Some("exim4-daemon-heavy/swaks not installed (.ci/run installs them)".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (Exim daemons, a mount namespace, setpriv)".into());
    }
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Some("cannot create a mount namespace (unshare --mount failed)".into());
    }
    None
}

/// The run's temp dir, once created.
pub static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The temp dir every file of the run lives in. It must be reachable by
/// the Exim user, `nobody` and the script user, so it is made in /tmp
/// (TMPDIR may be private) and opened to traversal. It outlives the
/// scenario (the tests read it) and is removed when the test binary exits,
/// unless `SPAMWARD_KEEP_EXIM` is set.
pub fn make_root() -> PathBuf {
    extern "C" fn remove_root() {
        if let Some(root) = ROOT.get()
            && std::env::var_os("SPAMWARD_KEEP_EXIM").is_none()
        {
            let _ = fs::remove_dir_all(root);
        }
    }
    let root = tempfile::Builder::new()
        .prefix("spamward-exim.")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    ROOT.set(root.clone()).unwrap();
    // SAFETY: remove_root is a plain extern "C" fn without arguments; the
    // test harness returns from main, so it runs once, after the tests.
    unsafe { libc::atexit(remove_root) };
    root
}

/// The run's temp dir (make_root ran).
pub fn root() -> &'static Path {
    ROOT.get().expect("make_root ran first")
}

/// Two distinct loopback ports nobody listens on (bound together, then
/// released: the daemons bind them a moment later).
pub fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().unwrap().port();
    (port(&a), port(&b))
}

/// Creates the customer account the user script runs as, once per machine.
pub fn ensure_script_user() {
    let exists = || {
        Command::new("id")
            .arg(SCRIPT_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if exists() {
        return;
    }
    let out = Command::new("useradd")
        .args([
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .args(["--comment", "spamward real_exim test customer", SCRIPT_USER])
        .output()
        .expect("run useradd");
    // Another test process may have created it in between.
    assert!(
        out.status.success() || exists(),
        "useradd {SCRIPT_USER} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files of the run.
pub struct Layout {
    /// Bind-mounted over /etc/exim4 for the server (holds exim4.conf).
    pub main_conf_dir: PathBuf,
    /// The same for the sink.
    pub sink_conf_dir: PathBuf,
    pub nobody_script_dir: PathBuf,
    pub user_script_dir: PathBuf,
    /// A shop's order confirmations: a few messages, a look-alike.
    pub order_script_dir: PathBuf,
    /// Where root's cron job runs.
    pub root_home: PathBuf,
}

impl Layout {
    pub fn write(root: &Path, sink_port: u16) -> Layout {
        let templates = common::workspace().join("tests/exim");
        let exim_owned = [
            "spool",
            "log",
            "run",
            "mail",
            "sink/spool",
            "sink/log",
            "sink/run",
        ];
        for dir in exim_owned
            .iter()
            .chain(&["etc/valiases", "exim", "sink/exim", "out"])
        {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        chown(root, &exim_owned.map(|d| root.join(d)), EXIM_USER, false);

        let fill = |template: &str, root: &Path| {
            let text = fs::read_to_string(templates.join(template)).unwrap();
            let text = text
                .replace("__ROOT__", root.to_str().unwrap())
                .replace("__SINK_PORT__", &sink_port.to_string())
                .replace("__MAIL_USER__", EXIM_USER);
            assert!(!text.contains("__"), "{template}: a placeholder is left");
            text
        };
        // Exim refuses a configuration writable by anyone but its owner.
        let write_conf = |path: PathBuf, text: String| {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        };
        write_conf(root.join("exim/exim4.conf"), fill("main.conf", root));
        write_conf(
            root.join("sink/exim/exim4.conf"),
            fill("sink.conf", &root.join("sink")),
        );

        // The server state, laid out as on a cPanel server so that
        // `spamward scan --root` finds the owners of the domains.
        let accounts = [
            ("shop.example", "shop"),
            ("cafe.example", "cafe"),
            ("bakery.example", "bakery"),
            ("club.example", "club"),
            ("blog.example", "blogger"),
            ("forms.example", SCRIPT_USER),
            (GUARDED_DOMAIN, "guard"),
            // The labelled look-alikes and log-only abuses send as bistro.
            ("bistro.example", "bistro"),
        ];
        let mut userdomains = String::new();
        let mut localdomains = String::new();
        for (domain, user) in accounts {
            let _ = writeln!(userdomains, "{domain}: {user}");
            let _ = writeln!(localdomains, "{domain}");
            let valiases = if domain == BACKSCATTER_DOMAIN {
                "info: staff@shop.example\n*: :fail: No Such User Here\n".to_owned()
            } else if domain == "bistro.example" {
                // A forwarder to the owner's mailbox elsewhere.
                format!("postmaster: {user}@host.example\ninfo: owner@partner1.example\n")
            } else {
                format!("postmaster: {user}@host.example\n")
            };
            fs::write(root.join("etc/valiases").join(domain), valiases).unwrap();
        }
        fs::write(root.join("etc/userdomains"), userdomains).unwrap();
        fs::write(root.join("etc/localdomains"), localdomains).unwrap();
        let mut passwords = String::new();
        for (login, password) in NORMAL_LOGINS.iter().chain(&[
            COMPROMISED_LOGIN,
            FAILING_LOGIN,
            NEWSLETTER_LOGIN,
            RATELIMITED_LOGIN,
        ]) {
            let _ = writeln!(passwords, "{login}: {password}");
        }
        fs::write(root.join("etc/smtp_passwords"), passwords).unwrap();
        // Every login has a mailbox: the stolen login's bounces pile up in
        // its own (bounce-bloat reads mailbox sizes).
        let mut mailboxes = String::new();
        for (login, _) in NORMAL_LOGINS
            .iter()
            .chain(&[COMPROMISED_LOGIN, FAILING_LOGIN])
        {
            let (local, domain) = login.split_once('@').unwrap();
            let _ = writeln!(mailboxes, "{login}: {domain}/{local}");
        }
        let _ = writeln!(mailboxes, "{FULL_MAILBOX}: bistro.example/full");
        fs::write(root.join("etc/mailboxes"), mailboxes).unwrap();

        let nobody_script_dir = root.join("home/blogger/public_html/wp-content/uploads");
        let user_script_dir = root.join(format!("home/{SCRIPT_USER}/public_html/contact"));
        let order_script_dir = root.join(format!("home/{SCRIPT_USER}/public_html/shop"));
        let root_home = root.join("root");
        for dir in [
            &nobody_script_dir,
            &user_script_dir,
            &order_script_dir,
            &root_home,
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        chown(
            root,
            &[root.join(format!("home/{SCRIPT_USER}"))],
            SCRIPT_USER,
            true,
        );
        Layout {
            main_conf_dir: root.join("exim"),
            sink_conf_dir: root.join("sink/exim"),
            nobody_script_dir,
            user_script_dir,
            order_script_dir,
            root_home,
        }
    }
}

/// `chown [-R] user: paths` (every path under `root`).
pub fn chown(root: &Path, paths: &[PathBuf], user: &str, recursive: bool) {
    let mut cmd = Command::new("chown");
    if recursive {
        cmd.arg("-R");
    }
    cmd.arg(format!("{user}:"));
    for p in paths {
        assert!(p.starts_with(root));
        cmd.arg(p);
    }
    let out = cmd.output().expect("run chown");
    assert!(
        out.status.success(),
        "chown failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A command that runs `program args` as Exim would be run on a server
/// whose /etc/exim4 is `conf_dir`: in a private mount namespace with
/// `conf_dir` bind-mounted over /etc/exim4, optionally as `(user, group)`.
pub fn exim_command(
    conf_dir: &Path,
    user: Option<(&str, &str)>,
    program: &str,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new("unshare");
    // Private propagation: the bind mount never reaches the real /etc.
    cmd.args(["--mount", "--propagation", "private", "--"]);
    cmd.args([
        "/bin/sh",
        "-c",
        r#"dir=$1; shift; mount --bind "$dir" /etc/exim4 && exec "$@""#,
        "exim-ns",
    ]);
    cmd.arg(conf_dir);
    if let Some((user, group)) = user {
        cmd.args([
            "setpriv",
            &format!("--reuid={user}"),
            &format!("--regid={group}"),
            "--clear-groups",
            "--",
        ]);
    }
    cmd.arg(program).args(args);
    cmd
}

/// Runs `cmd` with `input` on stdin and its stdout and stderr in `log`;
/// kills it after `timeout`. Returns its status and what it printed.
pub fn run_logged(
    mut cmd: Command,
    input: Option<&[u8]>,
    log: &Path,
    timeout: Duration,
) -> Result<(ExitStatus, String), String> {
    // Output goes to a file, not a pipe: a background delivery Exim forks
    // may hold the descriptors open longer than the command itself runs.
    let file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(file.try_clone().unwrap())
    .stderr(file);
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        // A write error shows up as the command's failure below.
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} did not finish within {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(10));
    };
    Ok((status, fs::read_to_string(log).unwrap_or_default()))
}

/// Runs `cmd` (output in `<root>/out/<label>.log`); panics unless it
/// succeeds. What it printed.
pub fn run_ok(cmd: Command, label: &str) -> String {
    match run_logged(cmd, None, &log_path(label), COMMAND_TIMEOUT) {
        Ok((status, out)) if status.success() => out,
        Ok((status, out)) => panic!("{label} failed ({status}):\n{out}"),
        Err(e) => panic!("{label}: {e}"),
    }
}

/// What a job's exit status must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    Success,
    /// swaks's exit code when the server refuses every recipient.
    RcptRefused,
    /// Accepted or refused at RCPT: a rate limit decides which.
    SuccessOrRcptRefused,
    /// swaks's exit code when the server refuses the password.
    AuthRefused,
    /// swaks's exit code when the server refuses the message after DATA.
    DataRefused,
    /// Accepted, or refused after DATA: spamward decides which.
    SuccessOrDataRefused,
    /// swaks's exit code when it cannot connect (a firewall drops it).
    ConnectFailed,
}

/// One command of the traffic.
pub struct Job {
    pub label: String,
    pub cmd: Command,
    pub input: Option<Vec<u8>>,
    pub expect: Expect,
}

/// Runs `jobs`, `width` at a time; stops at the first job that does not
/// end as expected and panics naming it.
pub fn run_jobs(jobs: Vec<Job>, width: usize) {
    let queue = Mutex::new(VecDeque::from(jobs));
    let failures = Mutex::new(Vec::new());
    let abort = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..width {
            s.spawn(|| {
                while !abort.load(Ordering::Relaxed) {
                    let Some(job) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let log = log_path(&job.label);
                    let failure =
                        match run_logged(job.cmd, job.input.as_deref(), &log, COMMAND_TIMEOUT) {
                            Ok((status, output)) => {
                                let ok = match job.expect {
                                    Expect::Success => status.success(),
                                    Expect::RcptRefused => status.code() == Some(24),
                                    Expect::SuccessOrRcptRefused => {
                                        status.success() || status.code() == Some(24)
                                    }
                                    Expect::AuthRefused => status.code() == Some(28),
                                    Expect::DataRefused => status.code() == Some(26),
                                    Expect::ConnectFailed => status.code() == Some(2),
                                    Expect::SuccessOrDataRefused => {
                                        status.success() || status.code() == Some(26)
                                    }
                                };
                                (!ok).then(|| format!("{} ({status}):\n{output}", job.label))
                            }
                            Err(e) => Some(format!("{}: {e}", job.label)),
                        };
                    if let Some(failure) = failure {
                        abort.store(true, Ordering::Relaxed);
                        failures.lock().unwrap().push(failure);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} traffic jobs failed (logs in {}); first:\n{}",
        failures.len(),
        root().join("out").display(),
        failures[0]
    );
}

/// Where a job's output goes: `<root>/out/<label>.log`.
pub fn log_path(label: &str) -> PathBuf {
    root().join("out").join(format!("{label}.log"))
}

/// swaks against the server.
pub struct Smtp {
    port: u16,
    /// Logins whose client says HELO "User", as spam bots famously do.
    bots: Vec<String>,
}

impl Smtp {
    /// swaks against the server on `port`; the stolen login is a bot's.
    pub fn new(port: u16) -> Smtp {
        Smtp {
            port,
            bots: vec![COMPROMISED_LOGIN.0.to_owned()],
        }
    }

    /// `login`'s client says HELO "User" too.
    pub fn with_bot(mut self, login: &str) -> Smtp {
        self.bots.push(login.to_owned());
        self
    }

    /// One message over SMTP from client address `ip`, authenticated when
    /// `auth` is given.
    pub fn send(
        &self,
        label: &str,
        ip: &str,
        auth: Option<(&str, &str)>,
        from: &str,
        to: &str,
        subject: &str,
    ) -> Job {
        let mut cmd = Command::new("swaks");
        cmd.args(["--server", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--local-interface", ip, "--timeout", "30"])
            .args(["--from", from, "--to", to])
            .args(["--header", &format!("Subject: {subject}")])
            .args(["--body", "Hello,\n\nplease find the details attached.\n"]);
        match auth {
            Some((user, password)) => {
                // A mail client names itself; the spam bots behind a stolen
                // login famously say "User".
                let helo = if self.bots.iter().any(|b| b == user) {
                    "User"
                } else {
                    "desktop.lan"
                };
                cmd.args(["--helo", helo, "--auth", "PLAIN"]).args([
                    "--auth-user",
                    user,
                    "--auth-password",
                    password,
                ]);
            }
            None => {
                cmd.args(["--helo", "mx.outside.example"]);
            }
        }
        Job {
            label: label.into(),
            cmd,
            input: None,
            expect: Expect::Success,
        }
    }
}

/// `sendmail -t -i` with `message` on stdin, run by `user` in `cwd`.
pub fn script_job(
    layout: &Layout,
    label: &str,
    cwd: &Path,
    user: (&str, &str),
    message: &str,
) -> Job {
    let mut cmd = exim_command(&layout.main_conf_dir, Some(user), SENDMAIL, &["-t", "-i"]);
    cmd.current_dir(cwd);
    Job {
        label: label.into(),
        cmd,
        input: Some(message.as_bytes().to_vec()),
        expect: Expect::Success,
    }
}

/// `exim -bp` of the server.
pub fn exim_listing(layout: &Layout) -> String {
    run_ok(
        exim_command(&layout.main_conf_dir, None, EXIM, &["-bp"]),
        "queue-listing",
    )
}

/// `(id, sender, frozen)` of each message in an `exim -bp` listing, whose
/// entries start with a line `  <age> <size> <id> <sender> [*** frozen ***]`.
pub fn queue_entries(listing: &str) -> Vec<(String, String, bool)> {
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, sender) = (fields.get(2)?, fields.get(3)?);
            let is_id = id.len() >= 16 && id.chars().filter(|&c| c == '-').count() == 2;
            let sender = sender.strip_prefix('<')?.strip_suffix('>')?;
            is_id.then(|| {
                (
                    (*id).to_owned(),
                    sender.to_owned(),
                    line.contains("*** frozen ***"),
                )
            })
        })
        .collect()
}

pub fn frozen_ids(listing: &str) -> Vec<String> {
    queue_entries(listing)
        .into_iter()
        .filter(|(_, _, frozen)| *frozen)
        .map(|(id, _, _)| id)
        .collect()
}

// ---------------------------------------------------------------------------
// The daemons and every Exim process they spawn.

/// Both Exim daemons. Dropping it (also when an assertion fails) stops them
/// and kills any Exim process still working in the run's directory.
pub struct Daemons {
    pub root: PathBuf,
    pub children: Vec<Child>,
}

impl Daemons {
    pub fn new(root: &Path) -> Daemons {
        Daemons {
            root: root.to_path_buf(),
            children: Vec::new(),
        }
    }

    /// Starts `exim -bdf -oX port` (the daemon in the foreground, so that
    /// it stays our child) and waits until it accepts connections.
    pub fn start(&mut self, conf_dir: &Path, port: u16) {
        let log = File::create(conf_dir.join("daemon.out")).unwrap();
        let port_arg = port.to_string();
        let mut cmd = exim_command(conf_dir, None, EXIM, &["-bdf", "-oX", &port_arg]);
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("start exim");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let child = self.children.last_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "exim ({}) exited with {status}:\n{}",
                    conf_dir.display(),
                    fs::read_to_string(conf_dir.join("daemon.out")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "exim ({}) does not listen on {port}",
                conf_dir.display()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn daemon_pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Waits until no Exim process but the daemons runs in the run's
    /// directory (receptions, deliveries and bounces are done) for half a
    /// second in a row.
    pub fn wait_until_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let daemons = self.daemon_pids();
        let mut idle_since: Option<Instant> = None;
        loop {
            let busy: Vec<u32> = exim_processes(&self.root)
                .into_iter()
                .filter(|p| !daemons.contains(p))
                .collect();
            if busy.is_empty() {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(500) {
                    return;
                }
            } else {
                idle_since = None;
            }
            assert!(
                Instant::now() < deadline,
                "Exim still busy after {timeout:?}: pids {busy:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemons: SIGTERM, then SIGKILL after 5 s; then any
    /// straggler.
    pub fn stop(&mut self) {
        for child in &self.children {
            signal(child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for mut child in self.children.drain(..) {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in exim_processes(&self.root) {
            signal(pid, libc::SIGKILL);
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; the pid is one of
    // ours (a daemon we spawned or an Exim process in our temp dir).
    unsafe { libc::kill(pid, sig) };
}

/// Exim processes of this run: the Exim binary, working in the run's
/// directory (Exim works in its spool directory; a script's sendmail starts
/// in the script's directory). Other Exims on the machine never match.
pub fn exim_processes(root: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            fs::read_link(proc.join("exe")).is_ok_and(|exe| exe == Path::new(EXIM))
                && fs::read_link(proc.join("cwd")).is_ok_and(|cwd| cwd.starts_with(root))
        })
        .collect()
}
