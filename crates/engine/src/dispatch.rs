//! The dispatcher: gathers normalized events into batches, hands each rule
//! only the kinds it subscribed to, and hands the rules' verdicts, with the
//! lines they cite, to a sink as they come back (the policy, in a pipeline).
//!
//! One crossing of the wasm boundary per rule per batch; a rule that wants
//! none of a batch's kinds is not called at all. Rules run on the caller's
//! thread as each batch is handed over, or on worker threads of the
//! [`pool`](crate::pool) while the caller goes on normalizing the next batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::convert;
use crate::pool::{Lane, Pool};
use crate::rule::LoadedRule;
use crate::runner::{Health, RuleBatch, RuleRunner, thread_cpu};
use spamward_contract::state::RuleState;
use spamward_contract::verdict::Verdict;
use spamward_model::{Event, EventKind, HostLookups, Timestamp};

/// Freed batches whose buffers are kept for reuse: enough for the batches
/// in flight between the reading thread and the workers.
const SPARE_BATCHES: usize = 4;

/// Events per batch unless configured. Each batch wakes a worker and is a
/// call into each rule that wants some of it; on the benchmark log 1,024
/// took about a tenth less CPU than 256, and a daemon hands over a partial
/// batch as soon as its input pauses, so the size costs no latency.
pub const DEFAULT_BATCH: usize = 1024;

/// How many of the recent events a rule was given it can still cite by id.
const CITABLE: usize = 1 << 16;

/// How events are batched and how many threads run rules.
#[derive(Debug, Clone, Copy)]
pub struct DispatchOptions {
    /// Events per batch.
    pub batch_size: usize,
    /// Worker threads running rules beside the reading thread; 0 runs them
    /// on the reading thread.
    ///
    /// No workers is the default because it costs the least CPU, and CPU is
    /// what a mail server's neighbours share: on the benchmark log, rules on
    /// the reading thread took a tenth less CPU than on one worker (9-14 %
    /// in two sessions: no wake-ups, and the events are read from the cache
    /// that wrote them), for about a third more time on the clock. A worker
    /// pays off when a long log must be read fast and a CPU is idle.
    pub workers: usize,
}

/// Feeds events to rules and hands back their verdicts.
///
/// The caller's thread normalizes and batches; rules run on the worker pool
/// meanwhile, and their verdicts reach the caller's sink at each batch
/// handed over, in each rule's order.
pub struct Dispatcher {
    pool: Pool<RuleLane>,
    /// The lanes' subscriptions, tested here.
    subscribers: Subscribers,
    pending: Vec<Event>,
    /// Batches handed to the pool, oldest first, freed here once no rule
    /// holds them: the events were allocated on this thread, and freeing
    /// them on the thread that allocated them is several times cheaper than
    /// on a worker.
    submitted: VecDeque<Arc<Batch>>,
    /// The buffers of freed batches, reused by the next ones: fresh ones
    /// cost a page fault per few events, more than encoding them.
    spare: Vec<(Vec<Event>, Vec<u32>, Chosen, Encoded)>,
    batch_size: usize,
    next_id: u64,
    batch_no: u64,
    /// What subscription filters ask about local domains.
    lookups: Arc<HostLookups>,
}

/// A rule's end-of-run report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleReport {
    /// Rule name.
    pub rule: String,
    /// How it fared.
    #[serde(flatten)]
    pub health: Health,
    /// Whether it ended the run quarantined.
    pub quarantined: bool,
    /// Verdicts the policy dropped because the rule had made too many
    /// findings (filled in by whoever ran the policy).
    pub dropped_findings: u64,
}

/// Where a cited event came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Citation {
    /// Input file.
    pub file: String,
    /// 1-based line.
    pub line: u64,
}

/// A verdict as it leaves the engine: the rule that made it, the time of
/// the newest event it cites, and the lines those events came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleVerdict {
    /// The rule's name.
    pub rule: Arc<str>,
    /// What it said.
    pub verdict: Verdict,
    /// Event time of the newest cited event still known.
    pub time: Option<Timestamp>,
    /// Where the cited events came from.
    pub citations: Vec<Citation>,
}

/// A batch of events, shared by every rule that runs it.
pub struct Batch {
    no: u64,
    first_id: u64,
    /// [`spamward_model::EventKind::bit`]s of the events in it.
    kinds: u32,
    /// Each event's kind bit, side by side: a rule skips the kinds it
    /// does not count without reading the events (the reading thread
    /// wrote them, so each is a cache miss on a worker's CPU).
    bits: Vec<u32>,
    /// Which rules subscribed to each event, filters tested.
    chosen: Chosen,
    events: Vec<Event>,
    /// Where each event came from, kept after the events are gone so later
    /// verdicts can cite them.
    sources: Arc<[Source]>,
    /// The events encoded once, for every rule that wants them.
    encoded: Encoded,
}

/// The rules' subscriptions, in lane order, and the lanes subscribed to
/// each kind: most events are of a kind only a few rules want.
struct Subscribers {
    rules: Vec<Arc<LoadedRule>>,
    /// Indexed by [`EventKind`] (`kind as usize`).
    by_kind: [Vec<usize>; EventKind::ALL.len()],
}

impl Subscribers {
    fn new(rules: Vec<Arc<LoadedRule>>) -> Self {
        let by_kind = EventKind::ALL.map(|kind| {
            (0..rules.len())
                .filter(|&lane| rules[lane].subscriptions & kind.bit() != 0)
                .collect()
        });
        Subscribers { rules, by_kind }
    }
}

/// Which lanes' rules want each event of a batch: a row of bits per event,
/// a bit per lane.
///
/// Subscriptions are tested on the reading thread as it builds the batch:
/// it has just written each event, so it reads it from its own cache where
/// a worker would miss on every one, and an event no rule wants is not
/// encoded at all.
#[derive(Default)]
struct Chosen {
    /// Words per event (a word per 64 lanes).
    words: usize,
    rows: Vec<u64>,
    /// The union of the rows: the lanes that want anything in the batch.
    any: Vec<u64>,
}

impl Chosen {
    /// Tests the rules' subscriptions on `events`.
    fn choose(&mut self, events: &[Event], subscribers: &Subscribers, lookups: &HostLookups) {
        self.words = subscribers.rules.len().div_ceil(64);
        self.rows.clear();
        self.rows.resize(events.len() * self.words, 0);
        self.any.clear();
        self.any.resize(self.words, 0);
        if self.words == 0 {
            return;
        }
        for (row, event) in self.rows.chunks_exact_mut(self.words).zip(events) {
            for &lane in &subscribers.by_kind[event.kind() as usize] {
                let rule = &subscribers.rules[lane];
                if !rule.filtered
                    || spamward_contract::filter::wants(&rule.filters, &event.body, |d| {
                        lookups.is_local_domain(d)
                    })
                {
                    row[lane / 64] |= 1 << (lane % 64);
                }
            }
            for (any, word) in self.any.iter_mut().zip(row) {
                *any |= *word;
            }
        }
    }

    /// Whether lane `lane` wants event number `index`.
    fn has(&self, index: usize, lane: usize) -> bool {
        self.rows[index * self.words + lane / 64] & (1 << (lane % 64)) != 0
    }

    /// Whether lane `lane` wants any event of the batch.
    fn any(&self, lane: usize) -> bool {
        self.any
            .get(lane / 64)
            .is_some_and(|word| word & (1 << (lane % 64)) != 0)
    }

    /// Whether any lane wants event number `index`.
    fn wanted(&self, index: usize) -> bool {
        self.rows[index * self.words..(index + 1) * self.words]
            .iter()
            .any(|&word| word != 0)
    }
}

/// A batch's events in the SDK's encoding, one after another.
#[derive(Default)]
struct Encoded {
    bytes: Vec<u8>,
    /// Where each event's encoding ends (empty for events no rule wants).
    ends: Vec<usize>,
}

impl Encoded {
    /// Encodes the `events` some rule has `chosen`, numbered from
    /// `first_id`.
    ///
    /// This runs on the reading thread, which has time to spare while rules
    /// run: encoding on the first worker to take the batch made the others
    /// wait for it.
    fn encode(&mut self, first_id: u64, events: &[Event], chosen: &Chosen) {
        let Encoded { bytes, ends } = self;
        bytes.clear();
        ends.clear();
        ends.extend(
            (first_id..)
                .zip(events)
                .enumerate()
                .map(|(index, (id, event))| {
                    if chosen.wanted(index) {
                        convert::encode(id, event, bytes);
                    }
                    bytes.len()
                }),
        );
    }

    /// The encoding of event number `index` of the batch.
    fn event(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |i| self.ends[i]);
        &self.bytes[start..self.ends[index]]
    }
}

/// An event's file, line and time.
type Source = (Arc<str>, u64, Timestamp);

/// One rule on the pool: its runner, and the sources of the events it was
/// recently given, to resolve what its verdicts cite.
struct RuleLane {
    name: Arc<str>,
    /// Its place among the lanes: its bit in [`Chosen`].
    slot: usize,
    runner: RuleRunner,
    /// The rule's share of the current batch, encoded (reused).
    batch: RuleBatch,
    /// Crossings of the rule's counters on the event being counted, and
    /// the encoding of one (both reused).
    crossings: Vec<spamward_contract::event::EventBody<'static>>,
    scratch: Vec<u8>,
    /// `(first id, sources)` of recent batches, at most `CITABLE` events.
    recent: VecDeque<(u64, Arc<[Source]>)>,
    recent_events: usize,
}

impl Lane for RuleLane {
    type Input = Batch;
    type Output = Vec<RuleVerdict>;
    /// Its slot, and the kinds its counters count.
    type Interest = (usize, u32);

    fn interest(&self) -> (usize, u32) {
        (self.slot, self.runner.counted_kinds())
    }

    fn wants(&(slot, counted): &(usize, u32), batch: &Batch) -> bool {
        batch.chosen.any(slot) || counted & batch.kinds != 0
    }

    /// Hands the rule its share of `batch`: the events it subscribed to,
    /// and a crossing right after each event that took one of its counters
    /// over a threshold. A crossing ends a call, so the counter totals the
    /// rule reads while judging it are those of the event that crossed.
    fn run(&mut self, batch: &Batch) -> Vec<RuleVerdict> {
        let (started, cpu_started) = (Instant::now(), thread_cpu());
        let verdicts = self.run_timed(batch);
        let cpu = thread_cpu().saturating_sub(cpu_started);
        self.runner.charge(started.elapsed(), cpu);
        verdicts
    }
}

impl RuleLane {
    /// [`Lane::run`], less the timing.
    fn run_timed(&mut self, batch: &Batch) -> Vec<RuleVerdict> {
        let counted = self.runner.counted_kinds();
        let mut verdicts = Vec::new();
        let mut remembered = false;
        self.batch.clear();
        for (index, &bit) in batch.bits.iter().enumerate() {
            let id = batch.first_id + index as u64;
            if batch.chosen.has(index, self.slot) {
                self.batch.push(id, batch.encoded.event(index));
            }
            if counted & bit == 0 {
                continue;
            }
            let event = &batch.events[index];
            let at = event.time.seconds;
            let crossings = &mut self.crossings;
            self.runner
                .count(&event.body, at, |c| crossings.push(c.to_event()));
            if self.crossings.is_empty() {
                continue;
            }
            for body in self.crossings.drain(..) {
                self.scratch.clear();
                spamward_contract::event::encode_parts(id, at, &body, &mut self.scratch);
                self.batch.push(id, &self.scratch);
            }
            self.call(batch, &mut remembered, &mut verdicts);
        }
        if !self.batch.is_empty() {
            self.call(batch, &mut remembered, &mut verdicts);
        }
        verdicts
    }

    fn new(runner: RuleRunner) -> Self {
        RuleLane {
            name: runner.rule().meta.name.as_str().into(),
            slot: 0,
            runner,
            batch: RuleBatch::default(),
            crossings: Vec::new(),
            scratch: Vec::new(),
            recent: VecDeque::new(),
            recent_events: 0,
        }
    }

    /// Runs the events gathered in `self.batch` (of `batch`) and empties it.
    fn call(&mut self, batch: &Batch, remembered: &mut bool, verdicts: &mut Vec<RuleVerdict>) {
        if !*remembered {
            self.remember(batch);
            *remembered = true;
        }
        let outcome = self.runner.run_batch(batch.no, &self.batch);
        self.batch.clear();
        verdicts.extend(outcome.verdicts.into_iter().map(|v| self.cite(v)));
    }

    fn report(&self) -> RuleReport {
        RuleReport {
            rule: self.name.to_string(),
            health: self.runner.health().clone(),
            quarantined: self.runner.health().quarantined_until.is_some(),
            dropped_findings: 0,
        }
    }

    fn remember(&mut self, batch: &Batch) {
        self.recent
            .push_back((batch.first_id, batch.sources.clone()));
        self.recent_events += batch.sources.len();
        while self.recent_events > CITABLE {
            let (_, old) = self.recent.pop_front().expect("counted above");
            self.recent_events -= old.len();
        }
    }

    /// The verdict with the sources of the events it cites that are still
    /// remembered; ids outside the batches the rule was given are ignored.
    fn cite(&self, verdict: Verdict) -> RuleVerdict {
        let mut time = None;
        let mut citations = Vec::new();
        for &id in &verdict.events {
            let source = self
                .recent
                .iter()
                .rev()
                .find(|(first, sources)| (*first..*first + sources.len() as u64).contains(&id))
                .map(|(first, sources)| &sources[(id - first) as usize]);
            if let Some((file, line, t)) = source {
                time = Some(time.map_or(*t, |old: Timestamp| old.max(*t)));
                citations.push(Citation {
                    file: file.to_string(),
                    line: *line,
                });
            }
        }
        RuleVerdict {
            rule: self.name.clone(),
            verdict,
            time,
            citations,
        }
    }
}

impl Dispatcher {
    /// A dispatcher over `runners`; `lookups` answer subscription filters
    /// about local domains.
    pub fn new(
        runners: Vec<RuleRunner>,
        options: DispatchOptions,
        lookups: Arc<HostLookups>,
    ) -> Self {
        let subscribers = Subscribers::new(runners.iter().map(RuleRunner::shared_rule).collect());
        let lanes = runners
            .into_iter()
            .enumerate()
            .map(|(slot, runner)| RuleLane {
                slot,
                ..RuleLane::new(runner)
            })
            .collect();
        let batch_size = options.batch_size.max(1);
        Dispatcher {
            pool: Pool::new(lanes, options.workers),
            subscribers,
            pending: Vec::with_capacity(batch_size),
            submitted: VecDeque::new(),
            spare: Vec::new(),
            batch_size,
            next_id: 1,
            batch_no: 0,
            lookups,
        }
    }

    /// Queues one event; hands a batch to the rules when enough are queued,
    /// and the verdicts that came back meanwhile to `sink`.
    pub fn push(&mut self, event: Event, sink: &mut impl FnMut(RuleVerdict)) {
        self.pending.push(event);
        if self.pending.len() >= self.batch_size {
            self.flush(sink);
        }
    }

    /// Hands whatever is queued to the rules (a partial batch, when input
    /// pauses), and the verdicts that came back meanwhile to `sink`.
    pub fn flush(&mut self, sink: &mut impl FnMut(RuleVerdict)) {
        if self.pending.is_empty() {
            return;
        }
        let (mut events, mut bits, mut chosen, mut encoded) =
            self.spare.pop().unwrap_or_else(|| {
                let events = Vec::with_capacity(self.batch_size);
                (events, Vec::new(), Chosen::default(), Encoded::default())
            });
        std::mem::swap(&mut self.pending, &mut events);
        chosen.choose(&events, &self.subscribers, &self.lookups);
        encoded.encode(self.next_id, &events, &chosen);
        bits.extend(events.iter().map(|e| e.kind().bit()));
        let batch = Batch {
            no: self.batch_no,
            first_id: self.next_id,
            kinds: bits.iter().fold(0, |m, b| m | b),
            bits,
            chosen,
            sources: events
                .iter()
                .map(|e| (e.file.clone(), e.line, e.time))
                .collect(),
            encoded,
            events,
        };
        self.next_id += batch.events.len() as u64;
        self.batch_no += 1;
        let batch = Arc::new(batch);
        self.pool.submit(batch.clone());
        self.submitted.push_back(batch);
        while self
            .submitted
            .front()
            .is_some_and(|b| Arc::strong_count(b) == 1)
        {
            let freed = self.submitted.pop_front().expect("front exists");
            if let Ok(Batch {
                mut events,
                mut bits,
                chosen,
                encoded,
                ..
            }) = Arc::try_unwrap(freed)
                && self.spare.len() < SPARE_BATCHES
            {
                events.clear();
                bits.clear();
                self.spare.push((events, bits, chosen, encoded));
            }
        }
        drain(self.pool.take_outputs(), sink);
    }

    /// Runs what is queued and waits until every rule has judged every
    /// event pushed so far, handing every verdict to `sink`: the point a
    /// checkpoint can save.
    pub fn drain(&mut self, sink: &mut impl FnMut(RuleVerdict)) {
        self.with_lanes(sink, |_| ());
    }

    /// After a [`Dispatcher::drain`], each rule's name and host state as
    /// bytes ([`RuleState::snapshot`]).
    pub fn snapshot_states(
        &mut self,
        sink: &mut impl FnMut(RuleVerdict),
    ) -> Vec<(String, Vec<u8>)> {
        self.with_lanes(sink, |lanes| {
            lanes
                .iter()
                .filter_map(|l| Some((l.name.to_string(), l.runner.state()?.snapshot())))
                .collect()
        })
    }

    /// After a [`Dispatcher::drain`], a copy of rule `name`'s host state:
    /// what its next version or settings start from.
    pub fn state_of(
        &mut self,
        sink: &mut impl FnMut(RuleVerdict),
        name: &str,
    ) -> Option<RuleState> {
        self.with_lanes(sink, |lanes| {
            lanes
                .iter()
                .find(|l| &*l.name == name)
                .and_then(|l| l.runner.state().cloned())
        })
    }

    /// How each running rule fares, after a [`Dispatcher::drain`].
    pub fn reports(&mut self, sink: &mut impl FnMut(RuleVerdict)) -> Vec<RuleReport> {
        self.with_lanes(sink, |lanes| lanes.iter().map(RuleLane::report).collect())
    }

    /// Between batches, runs `runner` in place of the rule of the same name
    /// (returned), or beside the others if none has it. Events pushed
    /// before reach the old rule, events pushed after the new one.
    pub fn install(
        &mut self,
        sink: &mut impl FnMut(RuleVerdict),
        runner: RuleRunner,
    ) -> Option<RuleRunner> {
        self.with_lanes(sink, |lanes| {
            let lane = RuleLane::new(runner);
            match lanes.iter_mut().find(|l| l.name == lane.name) {
                Some(old) => Some(std::mem::replace(old, lane).runner),
                None => {
                    lanes.push(lane);
                    None
                }
            }
        })
    }

    /// Between batches, answers subscription filters and the rules' domain
    /// questions from `lookups` (the server's domains were read again):
    /// events pushed before were judged with the old answers.
    pub fn set_lookups(&mut self, sink: &mut impl FnMut(RuleVerdict), lookups: Arc<HostLookups>) {
        // The queued events are chosen with the old answers first.
        self.with_lanes(sink, |lanes| {
            for lane in lanes {
                lane.runner.set_lookups(lookups.clone());
            }
        });
        self.lookups = lookups;
    }

    /// Between batches, stops the rule `name`; its runner, if it ran.
    pub fn retire(&mut self, sink: &mut impl FnMut(RuleVerdict), name: &str) -> Option<RuleRunner> {
        self.with_lanes(sink, |lanes| {
            let i = lanes.iter().position(|l| &*l.name == name)?;
            Some(lanes.remove(i).runner)
        })
    }

    /// Flushes, waits for the rules to be idle, hands their verdicts to
    /// `sink`, and lets `f` see and change the lanes.
    fn with_lanes<R>(
        &mut self,
        sink: &mut impl FnMut(RuleVerdict),
        f: impl FnOnce(&mut Vec<RuleLane>) -> R,
    ) -> R {
        self.flush(sink);
        let mut rules = Vec::new();
        let (result, outputs) = self.pool.with_lanes(|lanes| {
            let result = f(lanes);
            for (slot, lane) in lanes.iter_mut().enumerate() {
                lane.slot = slot;
            }
            rules = lanes.iter().map(|l| l.runner.shared_rule()).collect();
            result
        });
        self.subscribers = Subscribers::new(rules);
        drain(outputs, sink);
        self.submitted.clear();
        result
    }

    /// Runs what is queued, hands every remaining verdict to `sink`, and
    /// returns each rule's report.
    pub fn finish(mut self, sink: &mut impl FnMut(RuleVerdict)) -> Vec<RuleReport> {
        self.flush(sink);
        let (lanes, outputs) = self.pool.finish();
        drain(outputs, sink);
        lanes.iter().map(RuleLane::report).collect()
    }
}

/// Hands the rules' verdicts to `sink`, each rule's in its own order.
fn drain(outputs: Vec<(usize, Vec<RuleVerdict>)>, sink: &mut impl FnMut(RuleVerdict)) {
    for verdict in outputs.into_iter().flat_map(|(_, verdicts)| verdicts) {
        sink(verdict);
    }
}
