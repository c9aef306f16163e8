//! The worker pool: runs every rule's batches on a few worker threads,
//! each rule's batches in order and one at a time, any rule on any free
//! worker.
//!
//! The parser keeps producing batches while the workers run rules, so a scan
//! costs the slower of the two stages rather than their sum. A pool of no
//! workers runs every lane on the submitting thread instead, as each input
//! is submitted: slower on the clock, but the cheapest in CPU, because no
//! thread is woken and the events are read from the cache that wrote them.
//!
//! Work is handed
//! out rule by rule as workers come free rather than by a fixed rule→thread
//! split, because a rule's cost is only known once it runs: one hot rule can
//! cost more than all the others together. Each rule's queue is bounded, so
//! a slow rule holds the producer back instead of letting batches pile up.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Batches a lane may have waiting before the producer waits for it: deep
/// enough that a burst for one rule doesn't stall the producer while the
/// other workers run dry, small enough to bound memory (16 batches of 256
/// events is a few megabytes).
const QUEUE_DEPTH: usize = 16;

/// One sequential consumer of shared inputs: a rule, in the engine.
pub trait Lane: Send + 'static {
    /// What is handed to every lane.
    type Input: Send + Sync + 'static;
    /// What one run produces.
    type Output: Send + 'static;
    /// What decides which inputs the lane wants; kept by the pool so the
    /// producer can ask while a worker has the lane.
    type Interest: Send + 'static;

    /// The lane's interest, asked once.
    fn interest(&self) -> Self::Interest;

    /// Whether a lane with `interest` runs on `input` at all (asked by the
    /// producer, so it should be cheap).
    fn wants(interest: &Self::Interest, input: &Self::Input) -> bool;

    /// Runs on one input; called for a lane's inputs in submission order,
    /// never twice at once.
    fn run(&mut self, input: &Self::Input) -> Self::Output;
}

/// Worker threads running lanes.
pub struct Pool<L: Lane> {
    shared: Arc<Shared<L>>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared<L: Lane> {
    sched: Mutex<Schedule<L>>,
    /// Workers wait here for a runnable lane.
    work: Condvar,
    /// The producer waits here for room in a queue, or for the end.
    progress: Condvar,
}

struct Schedule<L: Lane> {
    lanes: Vec<Slot<L>>,
    /// Lanes with queued input and no worker on them. A lane is in here
    /// exactly when its `lane` is home and its queue is not empty.
    runnable: VecDeque<usize>,
    /// Outputs not yet collected, each with its lane's index.
    outputs: Vec<(usize, L::Output)>,
    /// Lane inputs queued or running, over all lanes.
    in_flight: usize,
    closing: bool,
    /// A lane that panicked (a host bug): its index and message.
    panicked: Option<(usize, String)>,
}

struct Slot<L: Lane> {
    /// `None` while a worker runs it (or after it panicked).
    lane: Option<L>,
    interest: L::Interest,
    queue: VecDeque<Arc<L::Input>>,
    /// It panicked: it gets no more input.
    lost: bool,
}

impl<L: Lane> Pool<L> {
    /// Starts `workers` threads over `lanes`; with none, [`submit`](Self::submit)
    /// runs the lanes itself.
    pub fn new(lanes: Vec<L>, workers: usize) -> Self {
        let shared = Arc::new(Shared {
            sched: Mutex::new(Schedule {
                lanes: lanes
                    .into_iter()
                    .map(|lane| Slot {
                        interest: lane.interest(),
                        lane: Some(lane),
                        queue: VecDeque::new(),
                        lost: false,
                    })
                    .collect(),
                runnable: VecDeque::new(),
                outputs: Vec::new(),
                in_flight: 0,
                closing: false,
                panicked: None,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let workers = (0..workers)
            .map(|n| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("spamward-rules-{n}"))
                    .spawn(move || shared.work())
                    .expect("cannot start a rule worker thread")
            })
            .collect();
        Pool { shared, workers }
    }

    /// Queues `input` for every lane that wants it, waiting first while any
    /// of those lanes is `QUEUE_DEPTH` inputs behind, or, in a pool without
    /// workers, runs those lanes on it before returning. A caller that keeps
    /// a clone of the `Arc` decides which thread frees the input.
    pub fn submit(&self, input: impl Into<Arc<L::Input>>) {
        let input = input.into();
        let mut s = self.shared.lock();
        let wants = |slot: &Slot<L>| !slot.lost && L::wants(&slot.interest, &input);
        // Asked again after each wait: a lane may have been lost meanwhile.
        while s
            .lanes
            .iter()
            .any(|l| wants(l) && l.queue.len() >= QUEUE_DEPTH)
        {
            s = self.shared.wait(&self.shared.progress, s);
        }
        let wanted: Vec<usize> = (0..s.lanes.len()).filter(|&i| wants(&s.lanes[i])).collect();
        for i in wanted {
            let slot = &mut s.lanes[i];
            slot.queue.push_back(input.clone());
            if slot.queue.len() == 1 && slot.lane.is_some() {
                s.runnable.push_back(i);
            }
            s.in_flight += 1;
        }
        if self.workers.is_empty() {
            while !s.runnable.is_empty() {
                s = self.shared.run_next(s);
            }
            return;
        }
        drop(s);
        self.shared.work.notify_all();
    }

    /// The outputs produced since the last call, each with its lane's index,
    /// in each lane's order.
    pub fn take_outputs(&self) -> Vec<(usize, L::Output)> {
        std::mem::take(&mut self.shared.lock().outputs)
    }

    /// Waits until every input submitted so far has been run, then lets
    /// `f` see and change the lanes (replace one, add, remove) while no
    /// worker holds any; returns what `f` returned and the outputs not yet
    /// taken. Lanes that panicked are gone from what `f` sees.
    pub fn with_lanes<R>(&self, f: impl FnOnce(&mut Vec<L>) -> R) -> (R, Vec<(usize, L::Output)>) {
        let mut s = self.shared.lock();
        while s.in_flight > 0 {
            s = self.shared.wait(&self.shared.progress, s);
        }
        let outputs = std::mem::take(&mut s.outputs);
        let mut lanes: Vec<L> = s.lanes.drain(..).filter_map(|slot| slot.lane).collect();
        let result = f(&mut lanes);
        s.lanes = lanes
            .into_iter()
            .map(|lane| Slot {
                interest: lane.interest(),
                lane: Some(lane),
                queue: VecDeque::new(),
                lost: false,
            })
            .collect();
        (result, outputs)
    }

    /// Waits for every queued input to run, stops the workers and returns
    /// the lanes (in their original order) and the outputs not yet taken.
    ///
    /// # Panics
    /// If a lane panicked, with its message: a host bug, not a rule's fault
    /// (a rule's traps are caught by its runner).
    pub fn finish(mut self) -> (Vec<L>, Vec<(usize, L::Output)>) {
        let mut s = self.shared.lock();
        while s.in_flight > 0 {
            s = self.shared.wait(&self.shared.progress, s);
        }
        s.closing = true;
        drop(s);
        self.shared.work.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let mut s = self.shared.lock();
        if let Some((i, message)) = s.panicked.take() {
            panic!("rule worker panicked in lane {i}: {message}");
        }
        let lanes = s
            .lanes
            .iter_mut()
            .map(|slot| slot.lane.take().expect("every lane is home at the end"))
            .collect();
        (lanes, std::mem::take(&mut s.outputs))
    }
}

impl<L: Lane> Drop for Pool<L> {
    /// A pool dropped without `finish` (an error path) still stops its
    /// workers; queued input is abandoned.
    fn drop(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        let mut s = self.shared.lock();
        s.closing = true;
        for slot in &mut s.lanes {
            slot.queue.clear();
        }
        s.runnable.clear();
        drop(s);
        self.shared.work.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl<L: Lane> Shared<L> {
    /// The schedule; a panic elsewhere never leaves it half-updated (lanes
    /// run outside the lock), so a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, Schedule<L>> {
        self.sched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, Schedule<L>>,
    ) -> MutexGuard<'a, Schedule<L>> {
        cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker's loop: run lanes while any is runnable, wait while none is.
    fn work(&self) {
        let mut s = self.lock();
        loop {
            if !s.runnable.is_empty() {
                s = self.run_next(s);
                self.progress.notify_all();
            } else if s.closing {
                return;
            } else {
                s = self.wait(&self.work, s);
            }
        }
    }

    /// Takes the first runnable lane and its next input, runs it outside
    /// the lock and puts the lane back (or, if it panicked, marks it lost).
    ///
    /// # Panics
    /// If no lane is runnable.
    fn run_next<'a>(&'a self, mut s: MutexGuard<'a, Schedule<L>>) -> MutexGuard<'a, Schedule<L>> {
        let i = s.runnable.pop_front().expect("a lane is runnable");
        let slot = &mut s.lanes[i];
        let mut lane = slot.lane.take().expect("a runnable lane is home");
        let input = slot.queue.pop_front().expect("a runnable lane has input");
        drop(s);

        let output = panic::catch_unwind(AssertUnwindSafe(|| lane.run(&input)));
        drop(input);

        let mut s = self.lock();
        s.in_flight -= 1;
        match output {
            Ok(output) => {
                s.outputs.push((i, output));
                let slot = &mut s.lanes[i];
                slot.lane = Some(lane);
                if !slot.queue.is_empty() {
                    s.runnable.push_back(i);
                }
            }
            Err(payload) => {
                // The lane is lost; drop its queue so `finish` ends and
                // reports the panic instead of waiting forever.
                let slot = &mut s.lanes[i];
                slot.lost = true;
                let dropped = slot.queue.len();
                slot.queue.clear();
                s.in_flight -= dropped;
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|m| m.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                s.panicked.get_or_insert((i, message));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A lane that records what it saw, optionally slowly, and that wants
    /// only inputs divisible by `every`.
    struct Recorder {
        every: u64,
        seen: Vec<u64>,
        delay: Duration,
    }

    impl Lane for Recorder {
        type Input = u64;
        type Output = u64;
        type Interest = u64;
        fn interest(&self) -> u64 {
            self.every
        }
        fn wants(every: &u64, input: &u64) -> bool {
            input.is_multiple_of(*every)
        }
        fn run(&mut self, input: &u64) -> u64 {
            std::thread::sleep(self.delay);
            self.seen.push(*input);
            input * 10
        }
    }

    fn recorder(every: u64, delay_us: u64) -> Recorder {
        Recorder {
            every,
            seen: Vec::new(),
            delay: Duration::from_micros(delay_us),
        }
    }

    #[test]
    fn every_lane_sees_what_it_wants_in_order_and_outputs_keep_lane_order() {
        for workers in [0, 1, 2] {
            lanes_see_their_inputs_in_order(workers);
        }
    }

    fn lanes_see_their_inputs_in_order(workers: usize) {
        let pool = Pool::new(
            vec![recorder(1, 50), recorder(2, 0), recorder(3, 20)],
            workers,
        );
        let mut outputs = Vec::new();
        for n in 0..200 {
            pool.submit(n);
            outputs.extend(pool.take_outputs());
        }
        let (lanes, rest) = pool.finish();
        outputs.extend(rest);
        for (i, lane) in lanes.iter().enumerate() {
            let expected: Vec<u64> = (0..200u64)
                .filter(|n| n.is_multiple_of(lane.every))
                .collect();
            assert_eq!(lane.seen, expected, "{workers} workers, lane {i}");
            let out: Vec<u64> = outputs
                .iter()
                .filter(|(l, _)| *l == i)
                .map(|(_, o)| *o)
                .collect();
            let expected: Vec<u64> = expected.iter().map(|n| n * 10).collect();
            assert_eq!(out, expected, "{workers} workers, lane {i} outputs");
        }
    }

    #[test]
    fn a_slow_lane_holds_the_producer_back_instead_of_queueing_everything() {
        let pool = Pool::new(vec![recorder(1, 2000)], 1);
        for n in 0..20 {
            pool.submit(n);
            assert!(pool.shared.lock().lanes[0].queue.len() <= QUEUE_DEPTH);
        }
        let (lanes, outputs) = pool.finish();
        assert_eq!(lanes[0].seen.len(), 20);
        assert_eq!(outputs.len(), 20);
    }

    #[derive(Debug)]
    struct Panicky;

    impl Lane for Panicky {
        type Input = u64;
        type Output = ();
        type Interest = ();
        fn interest(&self) {}
        fn wants(_: &(), _: &u64) -> bool {
            true
        }
        fn run(&mut self, input: &u64) {
            assert!(*input != 3, "input three");
        }
    }

    #[test]
    fn a_panicking_lane_is_reported_at_finish_instead_of_hanging_it() {
        for workers in [0, 2] {
            let pool = Pool::new(vec![Panicky], workers);
            for n in 0..10 {
                pool.submit(n);
            }
            let err = panic::catch_unwind(AssertUnwindSafe(|| pool.finish())).unwrap_err();
            let message = err.downcast_ref::<String>().unwrap();
            assert!(
                message.contains("input three"),
                "{workers} workers: {message}"
            );
        }
    }

    #[test]
    fn without_workers_submit_runs_the_lanes_before_it_returns() {
        let pool = Pool::new(vec![recorder(1, 0), recorder(2, 0)], 0);
        pool.submit(4);
        assert_eq!(pool.take_outputs(), vec![(0, 40), (1, 40)]);
        pool.submit(5);
        assert_eq!(
            pool.take_outputs(),
            vec![(0, 50)],
            "lane 1 wants no odd input"
        );
        let (lanes, rest) = pool.finish();
        assert!(rest.is_empty());
        assert_eq!(lanes[1].seen, vec![4]);
    }

    #[test]
    fn a_pool_dropped_early_stops_its_workers() {
        let pool = Pool::new(vec![recorder(1, 1000)], 2);
        for n in 0..6 {
            pool.submit(n);
        }
        drop(pool);
    }

    #[test]
    fn with_lanes_waits_for_every_input_then_lanes_can_change() {
        let pool = Pool::new(vec![recorder(1, 200), recorder(2, 0)], 2);
        for i in 0..20 {
            pool.submit(i);
        }
        let (seen, outputs) = pool.with_lanes(|lanes| {
            let seen: Vec<usize> = lanes.iter().map(|l| l.seen.len()).collect();
            lanes.remove(1);
            lanes.push(recorder(5, 0));
            seen
        });
        assert_eq!(seen, vec![20, 10], "every input ran before the change");
        assert_eq!(outputs.len(), 30);
        for i in 20..30 {
            pool.submit(i);
        }
        let (lanes, outputs) = pool.finish();
        assert_eq!(lanes.len(), 2);
        assert_eq!(lanes[0].seen.len(), 30);
        assert_eq!(
            lanes[1].seen,
            vec![20, 25],
            "the new lane sees only later inputs"
        );
        assert_eq!(outputs.len(), 12);
    }
}
