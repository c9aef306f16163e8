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
}

/// A scratch directory for one daemon: its log, configuration and state.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(base: &Path, name: &str, start_at: &str) -> anyhow::Result<Scratch> {
        let dir = base.join(name);
        fs::create_dir_all(dir.join("root"))?;
        fs::create_dir_all(dir.join("rules"))?;
        fs::write(
            dir.join("spamward.toml"),
            format!(
                "[input]\ntimezone = \"UTC\"\n\n[daemon]\nmainlog = [{:?}]\nstart_at = \"{start_at}\"\nflush_ms = 200\ncheckpoint_every = \"1s\"\n",
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

    fn start(&self, exe: &Path, cache: &Path) -> anyhow::Result<Child> {
        Command::new(exe)
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
            .env("SPAMWARD_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start spamward run")
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

    backlog(&exe, &cache, &base, &text, lines.len() as u64)?;
    streaming(&exe, &cache, &base, &lines, options)?;
    Ok(ExitCode::SUCCESS)
}

/// Throughput against `scan`, and the peak RSS.
fn backlog(exe: &Path, cache: &Path, base: &Path, text: &str, lines: u64) -> anyhow::Result<()> {
    let s = Scratch::new(base, "backlog", "beginning")?;
    fs::write(s.log(), text)?;
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
    let scan_time = started.elapsed();
    anyhow::ensure!(scan.code().is_some_and(|c| c <= 1), "scan failed: {scan}");

    let started = Instant::now();
    let mut daemon = s.start(exe, cache)?;
    let store = s.store(Duration::from_secs(600))?;
    // Lines read are saved with each checkpoint (every second): poll the
    // file, then take the time the last line was read from the checkpoint.
    loop {
        let status = store.status()?;
        if status.sources.first().is_some_and(|src| src.lines >= lines) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "backlog never read"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run_time = started.elapsed();
    let peak = peak_rss_kib(daemon.id());
    stop(&mut daemon)?;
    println!(
        "backlog: scan {:>9.0} lines/s ({:.2} s)   run {:>9.0} lines/s ({:.2} s, up to 1 s of it waiting for the checkpoint that shows it)   run/scan time {:.2}x",
        lines as f64 / scan_time.as_secs_f64(),
        scan_time.as_secs_f64(),
        lines as f64 / run_time.as_secs_f64(),
        run_time.as_secs_f64(),
        run_time.as_secs_f64() / scan_time.as_secs_f64()
    );
    match peak {
        Some(kib) => println!(
            "memory: daemon peak RSS {:.1} MiB after the backlog",
            kib as f64 / 1024.0
        ),
        None => println!("memory: peak RSS not readable (/proc)"),
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
    let s = Scratch::new(base, "streaming", "end")?;
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

    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or_else(
                || "-".to_owned(),
                |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0),
            )
    };
    println!(
        "latency: {} lines at {} lines/s; line written → finding stored, over {} findings: p50 {}  p99 {}  max {}",
        total,
        options.rate,
        latencies.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
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
