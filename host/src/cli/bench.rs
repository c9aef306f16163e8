//! `spamward bench`: throughput of parse-only vs parse + every enabled rule
//! on one generated log, side by side in one process so machine noise hits
//! both alike. A benchmark prints figures; it asserts nothing.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Cli, Setup, synthetic};
use spamward_exim::ingest::ingest_file;

/// `bench` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lines of generated log.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Measure this log instead of a generated one.
    #[arg(long, value_name = "FILE", conflicts_with = "write_log")]
    log: Option<PathBuf>,
    /// Write the generated log to FILE and stop (no measuring).
    #[arg(long, value_name = "FILE")]
    write_log: Option<PathBuf>,
    /// Rounds of each measurement; the best round is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Measure the daemon instead (`spamward run` on a file): backlog
    /// throughput against `scan`, peak memory, line-to-finding latency,
    /// reload time, events lost.
    #[arg(long)]
    daemon: bool,
    /// With `--daemon`: lines per second appended for the latency run.
    #[arg(long, default_value_t = 2000, requires = "daemon")]
    rate: u64,
    /// With `--daemon`: seconds the latency run lasts.
    #[arg(long, default_value_t = 60, requires = "daemon")]
    seconds: u64,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if args.daemon {
        return super::bench_daemon::run(&super::bench_daemon::Options {
            log: args.log.clone(),
            lines: args.lines,
            rate: args.rate,
            seconds: args.seconds,
            rounds: args.rounds,
        });
    }
    if let Some(path) = &args.write_log {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = BufWriter::new(file);
        let n = synthetic::generate(args.lines, args.seed, &mut w)?;
        w.flush()?;
        eprintln!("wrote {n} lines to {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let _tmp;
    let log = match &args.log {
        Some(p) => p.clone(),
        None => {
            let dir = tempfile_dir()?;
            let path = dir.join("bench-mainlog");
            let mut w = BufWriter::new(std::fs::File::create(&path)?);
            let n = synthetic::generate(args.lines, args.seed, &mut w)?;
            w.flush()?;
            eprintln!("generated {n} lines in {}", path.display());
            _tmp = TempDir(dir);
            path
        }
    };

    let setup = Setup::load(cli)?;
    // The generated log's own domains are this "server's" local domains; a
    // log given by the user is read as `scan` reads it without `--root`
    // (its domains would otherwise all look remote, and every arrival
    // from outside like relaying).
    let lookups = Arc::new(match &args.log {
        None => synthetic::lookups(),
        Some(_) => spamward_model::HostLookups::default(),
    });
    // The rules that run: `[rules.<name>] enabled = false` leaves one out.
    let mut names = Vec::new();
    for (name, rule) in setup.rules.all() {
        if setup.config.rule(&rule.meta)?.enabled {
            names.push(name.clone());
        }
    }
    println!(
        "log: {}  rules: {} ({})",
        log.display(),
        names.len(),
        names.join(", ")
    );

    let mut best_parse = Duration::MAX;
    let mut best_rules = Duration::MAX;
    let (mut best_parse_cpu, mut best_rules_cpu) = (Duration::MAX, Duration::MAX);
    let mut lines = 0;
    let mut events = 0;
    // Each round's (parse-only, all rules) CPU time.
    let mut cpu_rounds = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let (started, cpu_started) = (Instant::now(), process_cpu());
        let mut count = 0u64;
        let summary = ingest_file(
            &log,
            &setup.ingest,
            &mut |e| {
                count += 1;
                std::hint::black_box(&e);
            },
            &mut |_, _| {},
        );
        if let Some(e) = &summary.error {
            anyhow::bail!("{e}");
        }
        let (parse, parse_cpu_split) = (started.elapsed(), process_cpu() - cpu_started);
        let parse_cpu = parse_cpu_split.total();
        lines = summary.lines;
        events = count;

        let mut pipeline = setup.pipeline(lookups.clone())?;
        let (started, cpu_started) = (Instant::now(), process_cpu());
        ingest_file(
            &log,
            &setup.ingest,
            &mut |e| pipeline.push(e),
            &mut |_, _| {},
        );
        // Timed until every rule has judged every event; tearing the rule
        // instances down, like setting them up, is not work per line.
        pipeline.drain(&mut |_| {});
        let (all, all_cpu_split) = (started.elapsed(), process_cpu() - cpu_started);
        let all_cpu = all_cpu_split.total();
        let (findings, reports) = pipeline.finish();
        println!(
            "round {round}: parse-only {:>9.0} lines/s ({:.3} s, cpu {:.3} s, kernel {:.3} s)   all rules {:>9.0} lines/s ({:.3} s, cpu {:.3} s, kernel {:.3} s)   ratio {:.2}x (cpu {:.2}x)   findings {}",
            rate(lines, parse),
            parse.as_secs_f64(),
            parse_cpu.as_secs_f64(),
            parse_cpu_split.kernel.as_secs_f64(),
            rate(lines, all),
            all.as_secs_f64(),
            all_cpu.as_secs_f64(),
            all_cpu_split.kernel.as_secs_f64(),
            all.as_secs_f64() / parse.as_secs_f64(),
            all_cpu.as_secs_f64() / parse_cpu.as_secs_f64(),
            findings.len()
        );
        if round == args.rounds.max(1) {
            for r in &reports {
                println!(
                    "  rule {:<18} events {:>9}  batches {:>6}  verdicts {:>6}  time {:>7.3} s, cpu {:>7.3} s  ({:.2} µs cpu/event)",
                    r.rule,
                    r.health.events,
                    r.health.batches,
                    r.health.verdicts,
                    r.health.busy.as_secs_f64(),
                    r.health.cpu.as_secs_f64(),
                    r.health.cpu.as_secs_f64() * 1e6 / r.health.events.max(1) as f64
                );
            }
        }
        cpu_rounds.push((parse_cpu, all_cpu));
        best_parse = best_parse.min(parse);
        best_rules = best_rules.min(all);
        best_parse_cpu = best_parse_cpu.min(parse_cpu);
        best_rules_cpu = best_rules_cpu.min(all_cpu);
    }
    println!(
        "best: {lines} lines, {events} events; parse-only {:.0} lines/s; all rules {:.0} lines/s; all-rules/parse-only time ratio {:.2}x",
        rate(lines, best_parse),
        rate(lines, best_rules),
        best_rules.as_secs_f64() / best_parse.as_secs_f64()
    );
    // Wall time is what an admin waits for; CPU time (every thread) is what
    // the rules cost the machine, and is less sensitive to a noisy neighbour.
    println!(
        "cpu:  parse-only {:.3} s ({:.0} lines per cpu second); all rules {:.3} s ({:.0} lines per cpu second) with rules {}; all-rules/parse-only cpu ratio {:.2}x",
        best_parse_cpu.as_secs_f64(),
        rate(lines, best_parse_cpu),
        best_rules_cpu.as_secs_f64(),
        rate(lines, best_rules_cpu),
        match setup.config.engine.workers {
            0 => "on the reading thread".to_string(),
            n => format!("on {n} worker thread(s)"),
        },
        best_rules_cpu.as_secs_f64() / best_parse_cpu.as_secs_f64()
    );
    // The two runs of a round are back to back, so a noisy neighbour
    // slows them alike: the median of each round's own ratio moves less
    // than the ratio of the two best runs, which may come from different
    // rounds.
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let all_cpu = median(cpu_rounds.iter().map(|r| r.1.as_secs_f64()).collect());
    let ratio = median(
        cpu_rounds
            .iter()
            .map(|(p, a)| a.as_secs_f64() / p.as_secs_f64().max(1e-9))
            .collect(),
    );
    println!(
        "median of {} rounds: all rules {:.0} lines per cpu second; all-rules/parse-only cpu ratio {:.2}x (each round's own)",
        cpu_rounds.len(),
        lines as f64 / all_cpu.max(1e-9),
        ratio
    );
    Ok(ExitCode::SUCCESS)
}

/// CPU time used so far by every thread of this process: user and kernel.
///
/// The kernel's share is printed apart because it is where thread wake-ups,
/// CPU-clock reads and first touches of fresh memory show, none of which an
/// instruction count sees.
#[derive(Clone, Copy)]
struct CpuTime {
    user: Duration,
    kernel: Duration,
}

impl CpuTime {
    fn total(self) -> Duration {
        self.user + self.kernel
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            kernel: self.kernel.saturating_sub(earlier.kernel),
        }
    }
}

fn process_cpu() -> CpuTime {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    CpuTime {
        user: time(usage.ru_utime),
        kernel: time(usage.ru_stime),
    }
}

fn rate(lines: u64, d: Duration) -> f64 {
    lines as f64 / d.as_secs_f64().max(1e-9)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("spamward-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
