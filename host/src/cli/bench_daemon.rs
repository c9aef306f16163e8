//! `spamward bench --daemon`: the daemon's figures, measured on this very
//! binary running `spamward run` on a real file, the way an admin runs it.
//! It prints figures; it asserts nothing.
//!
//! - **throughput**: catching up on a backlog (`start_at = "beginning"`)
//!   against `scan` of the same log, both timed here, side by side;
//! - **memory**: the daemon's peak RSS after that backlog;
//! - **latency**: lines appended at a steady rate; for each finding, the
//!   time from the last line it cites being written to the finding being
//!   in the state file;
//! - **enforcement**: stolen logins appear one after another in a log
//!   being written (each one's tenth message from its sixth IP, with a spam
//!   tool's HELO, crosses compromised-account's thresholds); the rule
//!   enforces through the plain-Exim backend, and for each login the time
//!   from that line being written to the login being on the suspend list
//!   (the backend having run) is measured;
//! - **reload**: a rule dropped into the rules directory while lines
//!   stream in, until `status` shows it running; and whether every event
//!   was judged (the daemon's event count against `spamward events` of the
//!   same lines).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::synthetic;
use spamward_state::Store;

/// `bench --daemon` settings.
pub struct Options {
    /// A log to replay (a real Exim's, ideally); else a generated one.
    pub log: Option<PathBuf>,
    /// Lines of the generated log for the backlog.
    pub lines: u64,
    /// Lines per second appended for the latency run.
    pub rate: u64,
    /// Seconds the latency run lasts.
    pub seconds: u64,
    /// Rounds of the backlog measurement.
    pub rounds: u32,
}

/// A scratch directory for one daemon: its log, configuration and state.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A daemon's directory; `daemon` is added to its `[daemon]` table.
    fn new(base: &Path, name: &str, start_at: &str, daemon: &str) -> anyhow::Result<Scratch> {
        let dir = base.join(name);
        fs::create_dir_all(dir.join("root"))?;
        fs::create_dir_all(dir.join("rules"))?;
        fs::write(
            dir.join("spamward.toml"),
            format!(
                "[input]\ntimezone = \"UTC\"\n\n[daemon]\nmainlog = [{:?}]\nstart_at = \"{start_at}\"\n{daemon}",
                dir.join("mainlog").display().to_string()
            ),
        )?;
        Ok(Scratch { dir })
    }

    fn log(&self) -> PathBuf {
        self.dir.join("mainlog")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state.db")
    }

    fn command(&self, exe: &Path, cache: &Path) -> Command {
        let mut command = Command::new(exe);
        command
            .arg("--cache-dir")
            .arg(cache)
            .arg("--rules")
            .arg(self.dir.join("rules"))
            .arg("--config")
            .arg(self.dir.join("spamward.toml"))
            .args(["run", "--root"])
            .arg(self.dir.join("root"))
            .arg("--state")
            .arg(self.state())
            .stdout(Stdio::null());
        command
    }

    fn start(&self, exe: &Path, cache: &Path) -> anyhow::Result<Child> {
        self.command(exe, cache)
            .env("SPAMWARD_LOG", "error")
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start spamward run")
    }

    /// Starts the daemon and hands back when its log said it had caught
    /// up with the logs: the moment the rules have judged the backlog and
    /// its findings are stored.
    fn start_until_caught_up(
        &self,
        exe: &Path,
        cache: &Path,
    ) -> anyhow::Result<(Child, std::sync::mpsc::Receiver<Instant>)> {
        let mut child = self
            .command(exe, cache)
            .env("SPAMWARD_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start spamward run")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("caught up with the logs") {
                    let _ = tx.send(Instant::now());
                }
            }
        });
        Ok((child, rx))
    }

    /// Waits until the state file exists and can be read.
    fn store(&self, timeout: Duration) -> anyhow::Result<Store> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(store) = Store::open_read_only(&self.state())
                && store.status().is_ok_and(|s| s.checkpoint_at.is_some())
            {
                return Ok(store);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the daemon never saved a checkpoint"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn run(options: &Options) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let base = std::env::temp_dir().join(format!("spamward-bench-daemon-{}", std::process::id()));
    fs::create_dir_all(&base)?;
    let _cleanup = RemoveOnDrop(base.clone());
    let cache = base.join("cache");
    let text = match &options.log {
        Some(path) => fs::read_to_string(path)
            .with_context(|| format!("cannot read {} (plain text)", path.display()))?,
        None => {
            let mut bytes = Vec::new();
            synthetic::generate(options.lines, 42, &mut bytes)?;
            String::from_utf8(bytes)?
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    println!(
        "log: {} ({} lines)",
        options
            .log
            .as_ref()
            .map_or_else(|| "generated".to_owned(), |p| p.display().to_string()),
        lines.len()
    );
    // Rules compiled once, so no figure below includes compiling them.
    let warm = Command::new(&exe)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["rules", "list"])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(warm.success(), "spamward rules list failed");

    backlog(
        &exe,
        &cache,
        &base,
        &text,
        lines.len() as u64,
        options.rounds,
    )?;
    streaming(&exe, &cache, &base, &lines, options)?;
    enforcement(&exe, &cache, &base)?;
    day(&exe, &cache, &base)?;
    Ok(ExitCode::SUCCESS)
}

/// Throughput against `scan`, and the peak RSS: `rounds` rounds, each a
/// `scan` then a daemon from an empty state on the same file; the best time
/// of each is compared (the least disturbed by the machine's noise).
fn backlog(
    exe: &Path,
    cache: &Path,
    base: &Path,
    text: &str,
    lines: u64,
    rounds: u32,
) -> anyhow::Result<()> {
    let s = Scratch::new(base, "backlog", "beginning", "")?;
    fs::write(s.log(), text)?;
    let mut scan_time = Duration::MAX;
    let mut run_time = Duration::MAX;
    let mut peak = None;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let scan = Command::new(exe)
            .arg("--cache-dir")
            .arg(cache)
            .args(["--timezone", "UTC", "scan", "--json", "--root"])
            .arg(s.dir.join("root"))
            .arg(s.log())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        scan_time = scan_time.min(started.elapsed());
        anyhow::ensure!(scan.code().is_some_and(|c| c <= 1), "scan failed: {scan}");

        remove_state(&s.state())?;
        let started = Instant::now();
        let (mut daemon, caught_up) = s.start_until_caught_up(exe, cache)?;
        let took = caught_up
            .recv_timeout(Duration::from_secs(3600))
            .context("the daemon never caught up with the log")?
            .duration_since(started);
        run_time = run_time.min(took);
        peak = peak.max(peak_rss_kib(daemon.id()));
        stop(&mut daemon)?;
    }
    println!(
        "backlog: best of {rounds}: scan {:>9.0} lines/s ({:.2} s)   run {:>9.0} lines/s ({:.2} s, start to \"caught up\")   run/scan time {:.2}x",
        lines as f64 / scan_time.as_secs_f64(),
        scan_time.as_secs_f64(),
        lines as f64 / run_time.as_secs_f64(),
        run_time.as_secs_f64(),
        run_time.as_secs_f64() / scan_time.as_secs_f64()
    );
    match peak {
        Some(kib) => println!(
            "memory: daemon peak RSS {:.1} MiB over the backlog (highest of the rounds)",
            kib as f64 / 1024.0
        ),
        None => println!("memory: peak RSS not readable (/proc)"),
    }
    Ok(())
}

/// Removes a state file and its WAL companions.
fn remove_state(state: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = state.as_os_str().to_owned();
        path.push(suffix);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Two days of generated traffic, a day at a time, the daemon restarted
/// between them: what it keeps (rule state, open findings, the parser's
/// messages) after the second day against after the first, and its peak
/// RSS each day. Windows expire and the findings memory forgets, so the
/// second day must not leave more than the first.
fn day(exe: &Path, cache: &Path, base: &Path) -> anyhow::Result<()> {
    let s = Scratch::new(base, "day", "beginning", "")?;
    let day_lines = 86_400 * synthetic::RATE;
    let mut bytes = Vec::new();
    synthetic::generate(2 * day_lines, 7, &mut bytes)?;
    let cut = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(day_lines as usize - 1)
        .map_or(bytes.len(), |(i, _)| i + 1);
    let mut log = OpenOptions::new().create(true).append(true).open(s.log())?;
    for (n, part) in [&bytes[..cut], &bytes[cut..]].into_iter().enumerate() {
        log.write_all(part)?;
        log.flush()?;
        let (mut daemon, caught_up) = s.start_until_caught_up(exe, cache)?;
        caught_up
            .recv_timeout(Duration::from_secs(3600))
            .context("the daemon never caught up with the log")?;
        let peak = peak_rss_kib(daemon.id());
        stop(&mut daemon)?;
        let kept = Store::open_read_only(&s.state())?.kept()?;
        println!(
            "day {}: {} lines; peak RSS {}; kept: rule state {:.1} MiB, open findings {:.1} KiB, parser {} messages",
            n + 1,
            day_lines,
            peak.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            kept.rule_state_bytes as f64 / (1 << 20) as f64,
            kept.policy_bytes as f64 / 1024.0,
            kept.parser_messages
        );
    }
    Ok(())
}

/// Latency under a steady append rate, reload time, events lost.
fn streaming(
    exe: &Path,
    cache: &Path,
    base: &Path,
    lines: &[&str],
    options: &Options,
) -> anyhow::Result<()> {
    // Checkpoints every second: the lines read show in `status` soon.
    let s = Scratch::new(base, "streaming", "end", "checkpoint_every = \"1s\"\n")?;
    fs::write(s.log(), "")?;
    let mut daemon = s.start(exe, cache)?;
    let store = s.store(Duration::from_secs(120))?;
    let total = (options.rate * options.seconds).min(lines.len() as u64) as usize;
    let written: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let writer = {
        let written = written.clone();
        let log = s.log();
        let lines: Vec<String> = lines[..total].iter().map(|l| (*l).to_owned()).collect();
        let per_tick = (options.rate / 100).max(1) as usize;
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut f = OpenOptions::new().append(true).open(&log)?;
            let start = Instant::now();
            for (tick, chunk) in lines.chunks(per_tick).enumerate() {
                let due = start + Duration::from_millis(10 * tick as u64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut buf = String::new();
                for line in chunk {
                    buf.push_str(line);
                    buf.push('\n');
                }
                f.write_all(buf.as_bytes())?;
                let now = Instant::now();
                written
                    .lock()
                    .expect("writer")
                    .extend(chunk.iter().map(|_| now));
            }
            Ok(())
        })
    };

    let example =
        Path::new(spamward_engine::GUEST_WASM_DIR).join("example_auth_failure_burst.wasm");
    let mut reloads = Vec::new();
    let mut latencies = Vec::new();
    let mut known = std::collections::HashSet::new();
    let started = Instant::now();
    let mut next_reload = Duration::from_secs(options.seconds / 3).max(Duration::from_secs(2));
    while !writer.is_finished() {
        for row in store.findings(None)? {
            if !known.insert(row.key.clone()) {
                continue;
            }
            let seen = Instant::now();
            let json: serde_json::Value = serde_json::from_str(&row.json)?;
            let line = json["lines"]
                .as_array()
                .and_then(|l| l.iter().filter_map(|c| c["line"].as_u64()).max());
            let at =
                line.and_then(|n| written.lock().expect("poller").get(n as usize - 1).copied());
            if let Some(at) = at {
                latencies.push(seen.duration_since(at));
            }
        }
        if example.exists() && started.elapsed() >= next_reload {
            next_reload += Duration::from_secs(options.seconds / 3).max(Duration::from_secs(2));
            let target = s.dir.join("rules/auth-failure-burst.wasm");
            let adding = !target.exists();
            let t0 = Instant::now();
            if adding {
                fs::copy(&example, &target)?;
            } else {
                fs::remove_file(&target)?;
            }
            loop {
                let running = store
                    .status()?
                    .rules
                    .iter()
                    .any(|r| r.name == "auth-failure-burst" && r.status == "running");
                if running == adding {
                    reloads.push((adding, t0.elapsed()));
                    break;
                }
                anyhow::ensure!(
                    t0.elapsed() < Duration::from_secs(60),
                    "reload never showed"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    // Every line read and judged: the checkpoint's count against `events`.
    let deadline = Instant::now() + Duration::from_secs(120);
    while store
        .status()?
        .sources
        .first()
        .is_none_or(|src| src.lines < total as u64)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the daemon never read every line"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(&mut daemon)?;
    let judged = Store::open_read_only(&s.state())?.status()?.events;
    let expected = Command::new(exe)
        .args(["--timezone", "UTC", "events"])
        .arg(s.log())
        .stderr(Stdio::null())
        .output()?;
    let expected = expected.stdout.iter().filter(|&&b| b == b'\n').count() as u64;

    println!(
        "latency: {} lines at {} lines/s; line written → finding stored, over {} findings: {}",
        total,
        options.rate,
        latencies.len(),
        percentiles(&mut latencies)
    );
    for (adding, took) in &reloads {
        println!(
            "reload: rule {} while lines streamed: {:.0} ms until status shows it",
            if *adding { "added" } else { "removed" },
            took.as_secs_f64() * 1000.0
        );
    }
    println!(
        "events: {judged} judged by the daemon, {expected} in `spamward events` of the same lines ({} lost)",
        expected.saturating_sub(judged)
    );
    Ok(())
}

/// Stolen logins whose suspension is timed.
const STOLEN_LOGINS: usize = 200;

/// Line to action: see the module documentation.
fn enforcement(exe: &Path, cache: &Path, base: &Path) -> anyhow::Result<()> {
    let dir = base.join("enforcing");
    let suspend = dir.join("suspend");
    let s = Scratch::new(
        base,
        "enforcing",
        "end",
        &format!(
            "flush_ms = 200\n\n[policy]\nmax_actions_per_hour = {STOLEN_LOGINS}\n\n\
             [actions]\nbackend = \"exim\"\nexim_hold_list = {:?}\nexim_suspend_list = {:?}\n\n\
             [rules.compromised-account]\nmode = \"enforce\"\nactions = [\"suspend-outgoing\"]\n",
            dir.join("hold").display().to_string(),
            suspend.display().to_string(),
        ),
    )?;
    fs::write(s.log(), "")?;
    let mut daemon = s.start(exe, cache)?;
    s.store(Duration::from_secs(120))?;
    let mut log = OpenOptions::new().append(true).open(s.log())?;
    let mut written = Vec::with_capacity(STOLEN_LOGINS);
    let mut seen: Vec<Option<Instant>> = vec![None; STOLEN_LOGINS];
    let look = |seen: &mut [Option<Instant>]| {
        let text = fs::read_to_string(&suspend).unwrap_or_default();
        let now = Instant::now();
        for line in text.lines() {
            if let Some(k) = line
                .strip_prefix("stolen")
                .and_then(|rest| rest.strip_suffix("@bench.example"))
                .and_then(|k| k.parse::<usize>().ok())
                && let Some(slot) = seen.get_mut(k)
            {
                slot.get_or_insert(now);
            }
        }
    };
    for k in 0..STOLEN_LOGINS {
        let stamp = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S");
        let mut lines = String::new();
        for i in 0..10u64 {
            let id = synthetic::message_id((k * 10) as u64 + i, true);
            let ip = format!("10.{}.{}.{}", k / 200, k % 200, 1 + i % 6);
            lines.push_str(&format!(
                "{stamp} {id} <= stolen{k}@bench.example H=(User) [{ip}]:40000 I=[10.0.0.1]:587 \
                 P=esmtpa A=plain_server:stolen{k}@bench.example S=500 T=\"Invoice\" \
                 for lead{i}@target.example\n"
            ));
        }
        log.write_all(lines.as_bytes())?;
        written.push(Instant::now());
        // A login every 50 ms, the list looked at every 2 ms meanwhile.
        let next = Instant::now() + Duration::from_millis(50);
        while Instant::now() < next {
            look(&mut seen);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        look(&mut seen);
        std::thread::sleep(Duration::from_millis(2));
    }
    stop(&mut daemon)?;
    let mut acted: Vec<Duration> = written
        .iter()
        .zip(&seen)
        .filter_map(|(at, seen)| Some(seen.as_ref()?.saturating_duration_since(*at)))
        .collect();
    println!(
        "enforcement: {} stolen logins, one every 50 ms; line crossing the threshold written → login on the suspend list, over {} actions: {}",
        STOLEN_LOGINS,
        acted.len(),
        percentiles(&mut acted)
    );
    Ok(())
}

/// p50, p99 and the maximum of `times`, in milliseconds.
fn percentiles(times: &mut [Duration]) -> String {
    times.sort();
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or_else(
                || "-".to_owned(),
                |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0),
            )
    };
    format!("p50 {}  p99 {}  max {}", pct(0.50), pct(0.99), pct(1.0))
}

/// SIGTERM, then wait: the daemon saves and exits.
fn stop(child: &mut Child) -> anyhow::Result<()> {
    // SAFETY: kill(2) on a child this process started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "spamward run exited with {status}");
    Ok(())
}

/// `VmHWM` of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Removes a scratch directory when the benchmark ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
