//! Enforcement in the daemon: the ledger fed with every finding the policy
//! makes or updates, its jobs carried out on a thread of their own (a
//! backend's command may take seconds; the log keeps being read), their
//! results journaled, expiries and operators' releases tended every second.
//! A freeze of a script's mail is handed the messages the daemon saw the
//! script send ([`ScriptMail`]).
//!
//! Who may act on the state file is settled by a lock beside it
//! ([`StateLock`]): the daemon holds it while it runs, so `spamward actions
//! release` knows whether to ask the daemon or to undo the action itself.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use spamward_actions::Backends;
use spamward_contract::verdict::{Action, Target};
use spamward_model::EventBody;
use spamward_pipeline::policy::Finding;
use spamward_pipeline::policy::ledger::{
    ActiveAction, Job, JournalEntry, Ledger, Safeguards, Step, Terms,
};
use spamward_state::{ActionRow, JournalRow, Store, StoreError};
use tokio::sync::mpsc;

use crate::checkpoint::now;
use crate::script_mail::ScriptMail;

/// A release's answer when it only ended dry-run records and alerts.
const NOTHING_TO_UNDO: &str = "released (nothing left to undo)";

/// A job's result, as the backend thread hands it back.
pub type Done = (Job, Result<Option<String>, String>);

/// What the backend thread is given.
enum Work {
    Job(Job),
    /// New backends after a reload changed `[actions]`.
    Backends(Box<Backends>),
}

/// An operator's release the daemon is carrying out.
struct Releasing {
    request: i64,
    jobs: Vec<u64>,
    said: Vec<String>,
}

/// The daemon's enforcement: see the module documentation.
pub struct Enforcement {
    ledger: Ledger,
    work: Option<std_mpsc::Sender<Work>>,
    thread: Option<JoinHandle<()>>,
    /// Jobs decided and not yet handed to the thread.
    decided: Vec<Job>,
    /// Jobs with the thread.
    in_flight: usize,
    releasing: Vec<Releasing>,
    /// The ledger changed since it was last saved.
    dirty: bool,
    script_mail: ScriptMail,
}

impl Enforcement {
    /// Starts the backend thread; results come back on `done`.
    pub fn start(ledger: Ledger, backends: Backends, done: mpsc::UnboundedSender<Done>) -> Self {
        if let Err(e) = backends.prepare() {
            tracing::error!("actions backend not ready, its actions will fail: {e}");
        }
        let (work, jobs) = std_mpsc::channel::<Work>();
        let thread = std::thread::Builder::new()
            .name("spamward-actions".into())
            .spawn(move || {
                let mut backends = backends;
                for work in jobs {
                    match work {
                        Work::Job(job) => {
                            let result = backends.carry_out(&job);
                            if done.send((job, result)).is_err() {
                                return;
                            }
                        }
                        Work::Backends(new) => backends = *new,
                    }
                }
            })
            .expect("a thread starts");
        Enforcement {
            ledger,
            work: Some(work),
            thread: Some(thread),
            decided: Vec::new(),
            in_flight: 0,
            releasing: Vec::new(),
            dirty: false,
            script_mail: ScriptMail::default(),
        }
    }

    /// The ledger as the state file last saved it, or a new one.
    pub fn restore_ledger(store: &Store, safeguards: Safeguards) -> Result<Ledger, StoreError> {
        Ok(match store.ledger()? {
            Some(bytes) => Ledger::restore(&bytes, safeguards).unwrap_or_else(|e| {
                // Losing it would leave actions in force that nobody undoes:
                // say so loudly; the journal still lists them.
                tracing::error!(
                    "saved actions not readable, starting with none (check `spamward actions` and undo by hand): {e}"
                );
                Ledger::new(safeguards)
            }),
            None => Ledger::new(safeguards),
        })
    }

    /// Applies a (re)loaded configuration's rules' terms and `[policy]`.
    pub fn configure<'a>(
        &mut self,
        safeguards: Safeguards,
        terms: impl Iterator<Item = (&'a str, &'a Terms)>,
    ) {
        self.ledger.set_safeguards(safeguards);
        for (rule, t) in terms {
            self.ledger.set_terms(rule, t.clone());
        }
    }

    /// Swaps the backends (a reload changed `[actions]`).
    pub fn set_backends(&self, backends: Backends) {
        if let Err(e) = backends.prepare() {
            tracing::error!("actions backend not ready, its actions will fail: {e}");
        }
        if let Some(work) = &self.work {
            let _ = work.send(Work::Backends(Box::new(backends)));
        }
    }

    /// Notes what an event says that a backend will need: which script
    /// sent a message. Called before the rules see the event.
    pub fn note(&mut self, body: &EventBody) {
        self.script_mail.note(body);
    }

    /// Takes a finding the policy made or updated.
    pub fn consider(&mut self, finding: &Finding) {
        self.dirty = true;
        if let Some(job) = self.ledger.consider(finding, now()) {
            self.decided.push(job);
        }
    }

    /// Undoes what expired, and takes the operators' release requests.
    pub fn tend(&mut self, store: &mut Store) {
        let now = now();
        let due = self.ledger.due(now);
        self.dirty |= !due.is_empty();
        self.decided.extend(due);
        let requests = match store.open_releases() {
            Ok(requests) => requests,
            Err(e) => {
                tracing::warn!("release requests not read: {e}");
                return;
            }
        };
        for request in requests {
            self.dirty = true;
            match self.ledger.release(&request.selector, &request.by, now) {
                Ok(jobs) if jobs.is_empty() => {
                    answer(store, request.id, NOTHING_TO_UNDO);
                }
                Ok(jobs) => {
                    tracing::info!(selector = %request.selector, by = %request.by, "releasing {} action(s)", jobs.len());
                    self.releasing.push(Releasing {
                        request: request.id,
                        jobs: jobs.iter().map(|j| j.id).collect(),
                        said: Vec::new(),
                    });
                    self.decided.extend(jobs);
                }
                Err(e) => answer(store, request.id, &format!("refused: {e}")),
            }
        }
    }

    /// Hears a job's result from the backend thread.
    pub fn finished(&mut self, store: &mut Store, (job, result): Done) {
        self.in_flight -= 1;
        self.dirty = true;
        let said = describe(&job, &result);
        self.ledger.finished(&job, result, now());
        if job.step != Step::Undo {
            return;
        }
        for r in &mut self.releasing {
            if let Some(i) = r.jobs.iter().position(|&id| id == job.id) {
                r.jobs.swap_remove(i);
                r.said.push(said.clone());
            }
        }
        self.releasing.retain(|r| {
            if r.jobs.is_empty() {
                answer(store, r.request, &r.said.join("; "));
            }
            !r.jobs.is_empty()
        });
    }

    /// Hands what was decided to the backend thread and saves what changed.
    pub fn act(&mut self, store: &mut Store) {
        for mut job in self.decided.drain(..) {
            if let (Step::Run, Action::FreezeMessage, Target::Script(script)) =
                (job.step, job.action, &job.target)
            {
                job.messages = self.script_mail.messages_of(script);
            }
            tracing::info!(id = job.id, action = %job.action, target = %job.target, step = ?job.step, "acting");
            if let Some(work) = &self.work
                && work.send(Work::Job(job)).is_ok()
            {
                self.in_flight += 1;
            }
        }
        if self.dirty {
            self.save(store);
        }
    }

    /// Writes the journal's new entries, the actions in force and the
    /// ledger; kept for the next try when the file refuses.
    pub fn save(&mut self, store: &mut Store) {
        match record(store, &mut self.ledger) {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::error!("actions journal not saved (kept for the next try): {e}"),
        }
    }

    /// On stop: what was decided still runs, the thread finishes its jobs,
    /// and everything is saved.
    pub fn stop(mut self, store: &mut Store, done: &mut mpsc::UnboundedReceiver<Done>) {
        self.act(store);
        drop(self.work.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        while let Ok(d) = done.try_recv() {
            self.finished(store, d);
        }
        self.save(store);
    }
}

fn answer(store: &mut Store, request: i64, text: &str) {
    if let Err(e) = store.answer_release(request, text) {
        tracing::error!("release request {request} not answered: {e}");
    }
}

/// One line about a job's result, for a release's answer.
fn describe(job: &Job, result: &Result<Option<String>, String>) -> String {
    match result {
        Ok(_) => format!("#{} {} on {} undone", job.id, job.action, job.target),
        Err(e) => format!(
            "#{} {} on {} NOT undone: {e}",
            job.id, job.action, job.target
        ),
    }
}

/// A journal entry as the state file keeps it.
fn journal_row(e: &JournalEntry) -> JournalRow {
    JournalRow {
        id: 0,
        at: e.at,
        action_id: e.action_id,
        rule: e.rule.clone(),
        target: e.target.to_string(),
        action: e.action.to_string(),
        decision: e.outcome.name().to_owned(),
        json: serde_json::to_string(e).expect("a journal entry always encodes"),
    }
}

/// An action in force as the state file keeps it.
fn action_row(a: &ActiveAction) -> ActionRow {
    ActionRow {
        id: a.id,
        target: a.target.to_string(),
        action: a.action.to_string(),
        rule: a.rule.clone(),
        dry_run: a.dry_run,
        started_at: a.started_at,
        expires_at: a.expires_at,
        json: serde_json::to_string(a).expect("an action always encodes"),
    }
}

/// The lock beside a state file that a running daemon holds.
pub struct StateLock {
    _file: File,
}

/// Whether the lock could be taken.
pub enum Locked {
    /// Taken: nobody else acts on this state file while it is held.
    Held(StateLock),
    /// A daemon holds it.
    Busy,
}

impl StateLock {
    /// The lock file of `state`.
    pub fn path(state: &Path) -> PathBuf {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Tries to take the lock of `state` (created if need be).
    pub fn try_take(state: &Path) -> std::io::Result<Locked> {
        let path = Self::path(state);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(Locked::Held(StateLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(Locked::Busy),
            Err(std::fs::TryLockError::Error(e)) => Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            )),
        }
    }
}

/// Releases `selector` without a daemon (none holds the lock): the undo
/// runs here, through `backends`, and the state file records it. What to
/// tell the operator.
pub fn release_here(
    store: &mut Store,
    safeguards: Safeguards,
    backends: &Backends,
    selector: &str,
    by: &str,
) -> Result<String, String> {
    let mut ledger = Enforcement::restore_ledger(store, safeguards).map_err(|e| e.to_string())?;
    let jobs = ledger
        .release(selector, by, now())
        .map_err(|e| e.to_string())?;
    let mut said = Vec::new();
    for job in &jobs {
        let result = backends.carry_out(job);
        said.push(describe(job, &result));
        ledger.finished(job, result, now());
    }
    record(store, &mut ledger).map_err(|e| e.to_string())?;
    Ok(if said.is_empty() {
        NOTHING_TO_UNDO.into()
    } else {
        said.join("; ")
    })
}

/// Writes the ledger's new journal entries, its actions in force and the
/// ledger itself in one transaction; the entries go back to the ledger
/// when the file refuses them.
fn record(store: &mut Store, ledger: &mut Ledger) -> Result<(), StoreError> {
    let journal = ledger.take_journal();
    let rows: Vec<JournalRow> = journal.iter().map(journal_row).collect();
    let actions: Vec<ActionRow> = ledger.active().iter().map(action_row).collect();
    store
        .record_actions(&rows, &actions, &ledger.snapshot())
        .inspect_err(|_| ledger.put_back_journal(journal))
}
