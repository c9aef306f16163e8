//! The daemon's loop: reads what the logs gained whenever a file changes
//! (or the slow poll comes round), hands batches to the rules after
//! `[daemon] flush_ms` of quiet, stores findings as they are made, saves a
//! checkpoint every `[daemon] checkpoint_every`, and on SIGTERM or SIGINT
//! finishes what it holds, saves, and returns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use spamward_actions::Backends;
use spamward_model::Event;
use spamward_pipeline::config::Config;
use spamward_pipeline::policy::{Admission, Finding};
use spamward_pipeline::{Change, Pipeline, PipelineError, Rules};
use spamward_state::{FindingRow, RuleRow, Store, StoreError};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::checkpoint::{self, finding_row, now};
use crate::enforcement::{Done, Enforcement, Locked, StateLock};
use crate::snapshot::{QueueReader, ServerReader, ServerState};

/// Quiet on a log after which its parser gives up waiting for join lines.
const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Quiet after a change to the configuration or the rules directory before
/// it is reloaded.
const RELOAD_QUIET: Duration = Duration::from_millis(100);

/// Quiet after a change to a server state file before it is read again
/// (cPanel writes several files for one change).
const SERVER_QUIET: Duration = Duration::from_secs(1);

/// How often expiries and operators' release requests are looked at.
const ACTIONS_EVERY: Duration = Duration::from_secs(1);

/// The `status` row that says why the last reload was refused.
const RELOAD_ROW: &str = "(reload)";

/// What a file-system event was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    /// A followed log (or its directory).
    Logs,
    /// The configuration file or the rules directory.
    Configuration,
    /// A file of the server's configuration state.
    Server,
}

/// A snapshot read off the event path, handed back to the loop.
enum Snapshot {
    /// The server state reader, and what it read if that changed.
    Server(ServerReader, Option<ServerState>),
    /// The queue, or why it could not be read.
    Queue(Result<Vec<Event>, String>),
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
use crate::source::Source;

/// How often the logs are read when no change was announced: a fallback
/// for file systems without inotify, and a bound on a missed event.
const SLOW_POLL: Duration = Duration::from_secs(2);

/// What `spamward run` was told.
#[derive(Debug)]
pub struct DaemonOptions {
    /// `spamward.toml`, read.
    pub config: Config,
    /// Where it was read from, watched for changes (none: defaults, and
    /// only the rules directory is watched).
    pub config_path: Option<PathBuf>,
    /// Extra rules (`--rules`, else `[engine] rules_dir`).
    pub rules_dir: Option<PathBuf>,
    /// Compiled-rule cache (`--cache-dir`, else `[engine] cache_dir`).
    pub cache_dir: Option<PathBuf>,
    /// The server root: domains are read from `<root>/etc`, default logs
    /// looked for under `<root>/var/log`.
    pub root: PathBuf,
    /// The state file (`--state`, else `[daemon] state`).
    pub state: PathBuf,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The rules or the configuration.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The state file.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A log that cannot be followed.
    #[error("cannot follow {}: {source}", path.display())]
    Source {
        /// The log.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime, the file watcher or the signal handlers.
    #[error("cannot start: {0}")]
    Start(String),
}

/// Runs the daemon until SIGTERM or SIGINT; then it finishes the events it
/// holds, saves a checkpoint and returns `Ok`.
pub fn run(options: DaemonOptions) -> Result<(), DaemonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Start(format!("tokio: {e}")))?;
    runtime.block_on(async move {
        let (snapshots_tx, snapshots) = mpsc::unbounded_channel();
        let (done_tx, done) = mpsc::unbounded_channel();
        let daemon = Daemon::start(options, snapshots_tx, done_tx)?;
        daemon.serve(snapshots, done).await
    })
}

struct Daemon {
    config: Config,
    config_path: Option<PathBuf>,
    rules_dir: Option<PathBuf>,
    /// The rules running, to load again on a reload.
    loaded: Arc<Rules>,
    store: Store,
    pipeline: Pipeline,
    sources: Vec<Source>,
    /// Events handed to the rules since the first start.
    events: u64,
    /// Events pushed since the rules last caught up.
    unflushed: u64,
    /// Findings made or updated and not stored yet, and what acts on them.
    outbox: Outbox,
    /// The state file's lock, held while the daemon runs.
    _lock: StateLock,
    /// Each loaded rule as `status` shows it.
    rules: Vec<RuleRow>,
    /// Per source: since when its reads found nothing new.
    quiet_since: Vec<tokio::time::Instant>,
    /// When the daemon started, and the events it had handled then.
    started: (std::time::Instant, u64),
    /// Whether every log has been read to its end once since the start:
    /// until then the daemon is catching up on a backlog.
    caught_up: bool,
    /// The server root.
    root: PathBuf,
    /// The server state reader; `None` while it reads.
    server: Option<ServerReader>,
    /// A server state file changed: read it again then.
    server_due: Option<tokio::time::Instant>,
    /// The queue reader, and whether it is reading.
    queue: Arc<QueueReader>,
    queue_reading: bool,
    /// Why the last snapshot of the queue failed (said once until it
    /// changes).
    queue_error: Option<String>,
    /// Where snapshots read off the event path come back.
    snapshots: mpsc::UnboundedSender<Snapshot>,
}

impl Daemon {
    fn start(
        options: DaemonOptions,
        snapshots: mpsc::UnboundedSender<Snapshot>,
        done: mpsc::UnboundedSender<Done>,
    ) -> Result<Self, DaemonError> {
        let DaemonOptions {
            config,
            config_path,
            rules_dir,
            cache_dir,
            root,
            state,
        } = options;
        let mut store = Store::open(&state)?;
        let lock = match StateLock::try_take(&state)
            .map_err(|e| DaemonError::Start(format!("state lock: {e}")))?
        {
            Locked::Held(lock) => lock,
            Locked::Busy => {
                return Err(DaemonError::Start(format!(
                    "another `spamward run` uses {} (it holds {})",
                    state.display(),
                    StateLock::path(&state).display()
                )));
            }
        };
        let saved = store.load_checkpoint()?;
        let (lookups, report) = spamward_cpanel::domain_lookups(&root);
        for problem in &report.problems {
            tracing::warn!("{problem}");
        }
        let rules = Rules::load(&config, rules_dir.as_deref(), cache_dir.as_deref())?;
        for e in rules.errors() {
            tracing::error!("rule not loaded: {e}");
        }
        let pipeline_saved = saved
            .as_ref()
            .map(checkpoint::pipeline_saved)
            .unwrap_or_default();
        let pipeline = Pipeline::resume(&config, &rules, Arc::new(lookups), &pipeline_saved)?;
        let ledger = Enforcement::restore_ledger(&store, config.policy.safeguards())?;
        let mut enforcement = Enforcement::start(ledger, Backends::new(&config.actions), done);
        enforcement.configure(config.policy.safeguards(), pipeline.terms());
        let rule_rows = rule_rows(&config, &rules, &pipeline);
        for row in &rule_rows {
            match (row.status.as_str(), &row.reason) {
                ("running", _) => {
                    tracing::info!(rule = %row.name, version = %row.version, "running")
                }
                ("off", _) => tracing::info!(rule = %row.name, "off (enabled = false)"),
                (status, why) => {
                    tracing::error!(rule = %row.name, "{status}: {}", why.as_deref().unwrap_or("-"))
                }
            }
        }
        store.set_rules(&rule_rows)?;
        let zone = config.zone().map_err(PipelineError::from)?;
        // `exim -bp` only on the live server: a copy's root has no Exim.
        let exim = (root == Path::new("/"))
            .then(spamward_exim::relay_probe::find_exim)
            .flatten();
        let queue = QueueReader::new(config.daemon.spool(&root), exim, zone.clone());
        if !queue.is_available() {
            tracing::info!(
                "no spool directory found and no Exim binary: the queue is not read (set [daemon] spool)"
            );
        }
        let server = ServerReader::new(root.clone(), zone.clone());
        let mut sources = Vec::new();
        for path in config.daemon.mainlogs(&root) {
            let row = saved.as_ref().and_then(|cp| {
                cp.sources
                    .iter()
                    .find(|r| Path::new(&r.path) == path.as_path())
            });
            let messages = match row {
                Some(row) => store.parser_messages(&row.path)?,
                None => Vec::new(),
            };
            let source = Source::open(&path, zone.clone(), row, messages, config.daemon.start_at)
                .map_err(|source| DaemonError::Source {
                path: path.clone(),
                source,
            })?;
            tracing::info!(log = %path.display(), "following");
            sources.push(source);
        }
        Ok(Daemon {
            config,
            config_path,
            rules_dir,
            loaded: Arc::new(rules),
            store,
            pipeline,
            sources,
            events: saved.as_ref().map_or(0, |cp| cp.events),
            unflushed: 0,
            outbox: Outbox {
                findings: HashMap::new(),
                enforcement,
            },
            _lock: lock,
            rules: rule_rows,
            quiet_since: Vec::new(),
            started: (
                std::time::Instant::now(),
                saved.as_ref().map_or(0, |cp| cp.events),
            ),
            caught_up: false,
            root,
            server: Some(server),
            server_due: None,
            queue: Arc::new(queue),
            queue_reading: false,
            queue_error: None,
            snapshots,
        })
    }

    async fn serve(
        mut self,
        mut snapshots: mpsc::UnboundedReceiver<Snapshot>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) -> Result<(), DaemonError> {
        let start =
            |what: &str, e: &dyn std::fmt::Display| DaemonError::Start(format!("{what}: {e}"));
        let (changed_tx, mut changed) = mpsc::unbounded_channel::<Changed>();
        let reload_paths: Vec<PathBuf> = self
            .rules_dir
            .iter()
            .chain(&self.config_path)
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let server_paths: Vec<PathBuf> = spamward_cpanel::STATE_PATHS
            .iter()
            .map(|p| self.root.join(p))
            .collect();
        let watched_server = server_paths.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let under = |roots: &[PathBuf], canonical: bool| {
                    event.paths.iter().any(|p| {
                        let p = if canonical {
                            std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())
                        } else {
                            p.clone()
                        };
                        roots.iter().any(|r| p.starts_with(r))
                    })
                };
                let what = if under(&reload_paths, true) {
                    Changed::Configuration
                } else if under(&watched_server, false) {
                    Changed::Server
                } else {
                    Changed::Logs
                };
                let _ = changed_tx.send(what);
            })
            .map_err(|e| start("file watcher", &e))?;
        self.quiet_since = vec![tokio::time::Instant::now(); self.sources.len()];
        let mut watched = Vec::new();
        for source in &self.sources {
            let dir = source
                .path()
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            if watched.contains(&dir) {
                continue;
            }
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), "not watched ({e}); read every {}s", SLOW_POLL.as_secs());
            }
            watched.push(dir);
        }
        // The rules directory, and the configuration file's directory (an
        // editor replaces the file, which a watch on the file itself loses).
        let config_dir = self.config_path.as_ref().and_then(|p| p.parent()).map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        });
        for dir in self.rules_dir.as_deref().into_iter().chain(config_dir) {
            if !watched.iter().any(|w| w == dir)
                && let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive)
            {
                tracing::warn!(dir = %dir.display(), "not watched ({e}): reload with SIGHUP");
            }
        }
        // The server state files: a directory of them is watched itself,
        // a file through its directory (cPanel replaces files whole).
        for path in &server_paths {
            let dir = if path.is_dir() {
                path.as_path()
            } else {
                match path.parent() {
                    Some(dir) if dir.is_dir() => dir,
                    _ => continue,
                }
            };
            if !watched.iter().any(|w| w == dir) {
                if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                    tracing::debug!(dir = %dir.display(), "not watched ({e}): read every {:?}", self.config.daemon.server_every);
                }
                watched.push(dir.to_path_buf());
            }
        }
        let (reloaded_tx, mut reloaded) = mpsc::unbounded_channel();
        let mut reload_at: Option<tokio::time::Instant> = None;
        let mut reloading = false;
        let mut hangup = signal(SignalKind::hangup()).map_err(|e| start("SIGHUP", &e))?;
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| start("SIGTERM", &e))?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| start("SIGINT", &e))?;
        let mut poll = tokio::time::interval(SLOW_POLL);
        let mut flush = tokio::time::interval(Duration::from_millis(self.config.daemon.flush_ms));
        let mut checkpoint = tokio::time::interval(self.config.daemon.checkpoint_every);
        let mut server_tick = tokio::time::interval(self.config.daemon.server_every);
        let mut queue_tick = tokio::time::interval(self.config.daemon.queue_every);
        let mut actions_tick = tokio::time::interval(ACTIONS_EVERY);
        for timer in [
            &mut actions_tick,
            &mut poll,
            &mut flush,
            &mut checkpoint,
            &mut server_tick,
            &mut queue_tick,
        ] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut backlog = self.read();
        loop {
            tokio::select! {
                // A backlog is read a piece per turn, so timers and signals
                // are still heard while it lasts.
                () = std::future::ready(()), if backlog => backlog = self.read(),
                Some(what) = changed.recv() => {
                    // One read covers every change announced so far.
                    let mut server = what == Changed::Server;
                    let mut configuration = what == Changed::Configuration;
                    while let Ok(what) = changed.try_recv() {
                        configuration |= what == Changed::Configuration;
                        server |= what == Changed::Server;
                    }
                    if configuration {
                        // Editors and `cp` write in steps: wait for quiet.
                        reload_at = Some(tokio::time::Instant::now() + RELOAD_QUIET);
                    }
                    if server {
                        self.server_due = Some(tokio::time::Instant::now() + SERVER_QUIET);
                    }
                    backlog = self.read();
                }
                _ = sleep_until(self.server_due), if self.server_due.is_some() && self.caught_up => {
                    self.read_server();
                }
                _ = server_tick.tick(), if self.caught_up => self.read_server(),
                _ = queue_tick.tick(), if self.caught_up => self.read_queue(),
                Some(snapshot) = snapshots.recv() => self.take_snapshot(snapshot),
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration and rules");
                    reload_at = Some(tokio::time::Instant::now());
                }
                _ = sleep_until(reload_at), if reload_at.is_some() && !reloading => {
                    reload_at = None;
                    reloading = true;
                    self.start_reload(reloaded_tx.clone());
                }
                Some(result) = reloaded.recv() => {
                    reloading = false;
                    self.finish_reload(result);
                }
                _ = poll.tick() => backlog = self.read(),
                // While a backlog is read, full batches keep the rules busy:
                // waiting for them to catch up would only stall the reading.
                _ = flush.tick(), if !backlog => self.flush(),
                _ = checkpoint.tick() => self.checkpoint(),
                Some(d) = done.recv() => self.outbox.enforcement.finished(&mut self.store, d),
                _ = actions_tick.tick() => self.outbox.enforcement.tend(&mut self.store),
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM: finishing and saving");
                    break;
                }
                _ = interrupt.recv() => {
                    tracing::info!("SIGINT: finishing and saving");
                    break;
                }
            }
            // What the rules' verdicts decided goes to the backends now,
            // not at the next tick: a second counts.
            self.outbox.enforcement.act(&mut self.store);
        }
        drop(watcher);
        self.stop(&mut done)
    }

    /// Reads the configuration and loads the rules again on another thread
    /// (compiling a changed rule takes a while; events keep flowing).
    fn start_reload(&self, done: mpsc::UnboundedSender<Result<(Config, Rules), String>>) {
        let path = self.config_path.clone();
        let rules_dir = self.rules_dir.clone();
        let loaded = self.loaded.clone();
        std::thread::spawn(move || {
            let result = (|| {
                let config = match &path {
                    // An empty file is one being written (`>` truncates
                    // first): its defaults are not what the admin meant.
                    Some(path) if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) => {
                        return Err(format!(
                            "{} is empty (being written?): not applied",
                            path.display()
                        ));
                    }
                    Some(path) => Config::load(path).map_err(|e| e.to_string())?,
                    None => Config::default(),
                };
                let dir = rules_dir.as_deref().or(config.engine.rules_dir.as_deref());
                let rules = loaded.reload(&config, dir).map_err(|e| e.to_string())?;
                Ok((config, rules))
            })();
            let _ = done.send(result);
        });
    }

    /// Swaps in what a reload loaded, rule by rule, between batches; what
    /// failed leaves the running version in place and says why.
    fn finish_reload(&mut self, result: Result<(Config, Rules), String>) {
        let (config, rules) = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!("reload refused, the running rules go on: {e}");
                self.set_status_note(Some(format!("last reload refused: {e}")));
                return;
            }
        };
        for e in rules.errors() {
            tracing::error!("rule not loaded, the running version (if any) goes on: {e}");
        }
        if config.daemon.mainlog != self.config.daemon.mainlog
            || config.daemon.state != self.config.daemon.state
        {
            tracing::warn!("[daemon] mainlog and state take effect at the next start");
        }
        let Daemon {
            pipeline, outbox, ..
        } = self;
        let changes = pipeline.apply(&config, &rules, &mut |a| outbox.keep(a));
        outbox
            .enforcement
            .configure(config.policy.safeguards(), pipeline.terms());
        if config.actions != self.config.actions {
            tracing::info!("[actions] changed: new backends from the next action");
            outbox
                .enforcement
                .set_backends(Backends::new(&config.actions));
        }
        let mut refused = Vec::new();
        for (name, change) in &changes {
            match change {
                Change::Started => tracing::info!(rule = %name, "started"),
                Change::Replaced => tracing::info!(rule = %name, "reloaded"),
                Change::Regranted => tracing::info!(rule = %name, "mode or grant changed"),
                Change::Stopped => tracing::info!(rule = %name, "stopped"),
                Change::Refused(e) => {
                    tracing::error!(rule = %name, "new version or settings refused, the running one goes on: it {e}");
                    refused.push((name.clone(), e.to_string()));
                }
            }
        }
        let mut rows = rule_rows(&config, &rules, &self.pipeline);
        for row in &mut rows {
            if let Some((_, why)) = refused.iter().find(|(n, _)| *n == row.name) {
                row.status = "running (reload refused)".into();
                row.reason = Some(why.clone());
            }
        }
        self.rules = rows;
        if let Err(e) = self.store.set_rules(&self.rules) {
            tracing::error!("rule status not saved: {e}");
        }
        self.set_status_note(None);
        self.config = config;
        self.loaded = Arc::new(rules);
    }

    /// Shows why the last reload was refused in `status` (a row of its
    /// own beside the rules), or clears it.
    fn set_status_note(&mut self, note: Option<String>) {
        self.rules.retain(|r| r.name != RELOAD_ROW);
        if let Some(why) = note {
            self.rules.push(RuleRow {
                name: RELOAD_ROW.into(),
                version: String::new(),
                hash: String::new(),
                origin: self
                    .config_path
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string()),
                status: "refused".into(),
                reason: Some(why),
                updated_at: now(),
            });
        }
        if let Err(e) = self.store.set_rules(&self.rules) {
            tracing::error!("rule status not saved: {e}");
        }
    }

    /// Reads the server state again off the event path (the timer came
    /// round, or one of its files changed); one read at a time.
    fn read_server(&mut self) {
        let Some(mut reader) = self.server.take() else {
            // A read is under way: one more after it, for what it missed.
            self.server_due = Some(tokio::time::Instant::now() + SERVER_QUIET);
            return;
        };
        self.server_due = None;
        let done = self.snapshots.clone();
        tokio::task::spawn_blocking(move || {
            let state = reader.read();
            let _ = done.send(Snapshot::Server(reader, state));
        });
    }

    /// Takes a snapshot of the queue off the event path; one at a time.
    fn read_queue(&mut self) {
        if self.queue_reading || !self.queue.is_available() {
            return;
        }
        self.queue_reading = true;
        let queue = self.queue.clone();
        let done = self.snapshots.clone();
        tokio::task::spawn_blocking(move || {
            let _ = done.send(Snapshot::Queue(queue.read()));
        });
    }

    /// Hands a snapshot's events to the rules, between the log's batches.
    fn take_snapshot(&mut self, snapshot: Snapshot) {
        let events = match snapshot {
            Snapshot::Server(reader, state) => {
                self.server = Some(reader);
                let Some(state) = state else { return };
                tracing::info!(
                    events = state.events.len(),
                    "server state read (changed since the last read)"
                );
                let Daemon {
                    pipeline, outbox, ..
                } = self;
                pipeline.set_lookups(Arc::new(state.lookups), &mut |a| outbox.keep(a));
                state.events
            }
            Snapshot::Queue(result) => {
                self.queue_reading = false;
                match result {
                    Ok(events) => {
                        tracing::debug!(messages = events.len(), "queue read");
                        self.queue_error = None;
                        events
                    }
                    Err(e) => {
                        if self.queue_error.as_ref() != Some(&e) {
                            tracing::warn!("queue not read: {e}");
                            self.queue_error = Some(e);
                        }
                        return;
                    }
                }
            }
        };
        let Daemon {
            pipeline, outbox, ..
        } = self;
        self.unflushed += events.len() as u64;
        for event in events {
            outbox.observe(pipeline, event);
        }
    }

    /// Reads what every log gained, a piece of each, and hands the events
    /// to the rules; whether more is waiting.
    fn read(&mut self) -> bool {
        let mut events = Vec::new();
        let mut more = false;
        for source in &mut self.sources {
            match source.read(&mut events) {
                Ok(m) => more |= m,
                Err(e) => tracing::warn!(log = %source.path().display(), "cannot read: {e}"),
            }
        }
        self.push(events);
        if !more && !self.caught_up {
            self.catch_up();
        }
        more
    }

    /// The logs have been read to their end for the first time since the
    /// start: the rules finish what the backlog gave them, its findings
    /// are stored, and the log says how long catching up took.
    fn catch_up(&mut self) {
        self.caught_up = true;
        self.flush();
        let (at, events) = self.started;
        tracing::info!(
            events = self.events - events,
            seconds = format_args!("{:.3}", at.elapsed().as_secs_f64()),
            "caught up with the logs"
        );
    }

    fn push(&mut self, events: Vec<Event>) {
        let Daemon {
            pipeline,
            outbox,
            events: total,
            unflushed,
            ..
        } = self;
        for event in events {
            *total += 1;
            *unflushed += 1;
            outbox.observe(pipeline, event);
        }
    }

    /// Lets the rules catch up with what was pushed (the input is quiet)
    /// and stores the findings that came of it. A log quiet for a while
    /// also gives up the arrivals its parser held for a join: Exim writes
    /// the lines that join within the same second.
    fn flush(&mut self) {
        let now = tokio::time::Instant::now();
        let mut held = Vec::new();
        for (source, quiet_since) in self.sources.iter_mut().zip(&mut self.quiet_since) {
            if !source.idle() {
                *quiet_since = now;
            } else if now.duration_since(*quiet_since) >= RELEASE_AFTER {
                source.release(&mut held);
            }
        }
        self.push(held);
        if self.unflushed > 0 {
            let Daemon {
                pipeline, outbox, ..
            } = self;
            pipeline.drain(&mut |a| outbox.keep(a));
            self.unflushed = 0;
        }
        self.store_findings();
    }

    fn store_findings(&mut self) {
        if self.outbox.findings.is_empty() {
            return;
        }
        let rows: Vec<FindingRow> = self.outbox.findings.drain().map(|(_, row)| row).collect();
        if let Err(e) = self.store.upsert_findings(&rows) {
            tracing::error!("findings not stored (kept for the next try): {e}");
            self.outbox
                .findings
                .extend(rows.into_iter().map(|r| (r.key.clone(), r)));
        }
    }

    /// Saves where each log was read to with the rules' state and the
    /// policy's, all at one moment.
    fn checkpoint(&mut self) {
        let Daemon {
            pipeline, outbox, ..
        } = self;
        let saved = pipeline.checkpoint(&mut |a| outbox.keep(a));
        self.unflushed = 0;
        self.store_findings();
        let rows = self.sources.iter().filter_map(Source::checkpoint).collect();
        let cp = checkpoint::build(rows, saved, self.events);
        let messages = self.sources.iter_mut().flat_map(Source::changed_messages);
        if let Err(e) = self.store.checkpoint(&cp, messages) {
            tracing::error!("checkpoint not saved: {e}");
            // The parsers' changes went with it: save all they remember.
            for source in &mut self.sources {
                source.resave_messages();
            }
        }
        let reports = {
            let Daemon {
                pipeline, outbox, ..
            } = self;
            pipeline.reports(&mut |a| outbox.keep(a))
        };
        let mut changed = false;
        for row in &mut self.rules {
            let Some(report) = reports.iter().find(|r| r.rule == row.name) else {
                continue;
            };
            let status = if report.quarantined {
                "quarantined"
            } else {
                "running"
            };
            let reason = report
                .health
                .last_error
                .clone()
                .filter(|_| report.quarantined);
            if row.status != status || row.reason != reason {
                row.status = status.into();
                row.reason = reason;
                row.updated_at = now();
                changed = true;
            }
        }
        if changed && let Err(e) = self.store.set_rules(&self.rules) {
            tracing::error!("rule status not saved: {e}");
        }
    }

    /// On a signal: what the parsers still hold for a join goes to the
    /// rules, then everything is saved.
    fn stop(mut self, done: &mut mpsc::UnboundedReceiver<Done>) -> Result<(), DaemonError> {
        // One more piece: what was written just before the signal. A long
        // backlog is left for the next start, from the checkpoint.
        self.read();
        let mut held = Vec::new();
        for source in &mut self.sources {
            source.release(&mut held);
        }
        self.push(held);
        self.checkpoint();
        let Daemon {
            outbox,
            mut store,
            events,
            ..
        } = self;
        outbox.enforcement.stop(&mut store, done);
        tracing::info!(events, "stopped");
        Ok(())
    }
}

/// Where the policy's admissions go.
struct Outbox {
    /// Findings made or updated and not stored yet, by key.
    findings: HashMap<String, FindingRow>,
    /// The ledger and the backends.
    enforcement: Enforcement,
}

impl Outbox {
    /// Hands `event` to the rules, once enforcement noted what its
    /// backends will need of it.
    fn observe(&mut self, pipeline: &mut Pipeline, event: Event) {
        self.enforcement.note(&event.body);
        pipeline.push_observed(event, &mut |a| self.keep(a));
    }

    /// Keeps a finding the policy made or updated, to be stored, and hands
    /// it to enforcement; a new one is also logged, one line with the
    /// rule's name.
    fn keep(&mut self, admission: Admission<'_>) {
        let Some(finding) = logged(admission) else {
            return;
        };
        self.enforcement.consider(finding);
        let row = finding_row(finding);
        self.findings.insert(row.key.clone(), row);
    }
}

/// The finding an admission made or updated (a new one logged).
fn logged(admission: Admission<'_>) -> Option<&Finding> {
    let finding = match admission {
        Admission::New(f) => {
            tracing::warn!(
                rule = %f.rule,
                severity = %f.severity,
                target = %f.target,
                action = %f.action,
                "finding: {}",
                f.summary
            );
            f
        }
        Admission::Repeat(f) => f,
        Admission::Dropped => return None,
    };
    Some(finding)
}

/// Every loaded rule as `status` shows it: running, disabled, or failed to
/// load, with why.
fn rule_rows(config: &Config, rules: &Rules, pipeline: &Pipeline) -> Vec<RuleRow> {
    let now = now();
    let mut rows: Vec<RuleRow> = rules
        .all()
        .values()
        .map(|rule| {
            let failed = pipeline
                .disabled()
                .iter()
                .find(|(name, _)| *name == rule.meta.name);
            let enabled = config.rule(&rule.meta).is_ok_and(|rc| rc.enabled);
            let (status, reason) = match failed {
                Some((_, e)) => ("failed to start", Some(e.to_string())),
                None if !enabled => ("off", Some("enabled = false".to_owned())),
                None => ("running", None),
            };
            RuleRow {
                name: rule.meta.name.clone(),
                version: rule.meta.version.clone(),
                hash: rule.hash.clone(),
                origin: rule.meta.source.to_string(),
                status: status.into(),
                reason,
                updated_at: now,
            }
        })
        .collect();
    for e in rules.errors() {
        rows.push(RuleRow {
            name: e.origin().to_string(),
            version: String::new(),
            hash: String::new(),
            origin: e.origin().to_string(),
            status: "failed to load".into(),
            reason: Some(e.to_string()),
            updated_at: now,
        });
    }
    rows
}
