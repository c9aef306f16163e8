//! Rule state semantics: sliding windows, distinct sets and key/value pairs
//! measured on event time, bounded in memory.
//!
//! This is the one implementation of these semantics. The spamward host keeps
//! a [`RuleState`] per rule behind its `window-add`/`distinct-add`/`kv-*`
//! imports, and the SDK's native test harness uses the same type, so a
//! rule tested with `cargo test` counts exactly as it will in the daemon.
//!
//! A window `w` at time `at` covers `(at - w, at]`. Events are expected in
//! roughly ascending time (log order); an event older than the newest one seen
//! is still counted, and expires when its own time leaves the window.
//!
//! A daemon runs for months and its input is chosen by strangers (every
//! failed login brings a new user name), so state is bounded two ways:
//! - a window or distinct set whose newest entry has left the window is
//!   dropped, in sweeps that run as the state grows (amortised: each sweep
//!   runs once the state has doubled since the last), at the time of the
//!   call that triggers it;
//! - a rule holds at most its quota of bytes (keys, entries and values,
//!   counted approximately). A call that would pass it, after a sweep, fails
//!   with [`StateFull`]: the host treats that as the rule failing, never as
//!   its own failure.

use std::collections::VecDeque;
use std::fmt;

use hashbrown::hash_map::{Entry, EntryRef};
use serde::{Deserialize, Serialize};

/// The maps behind rule state: short string keys hashed on every host call.
type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// The quota a rule gets unless configured (`[engine] state_limit_mb`).
pub const DEFAULT_LIMIT: usize = 64 << 20;

/// Approximate bytes a key costs besides its text: the map slot, the
/// string and vector headers.
const KEY_COST: usize = 64;
/// A window or set of one length under a key.
const SLOT_COST: usize = 48;
/// One `(time, amount)` entry of a window.
const ENTRY_COST: usize = 16;
/// One member of a distinct set: its map slot and its first sighting.
const MEMBER_COST: usize = 40;
/// One more sighting of a member in the expiry order.
const SIGHTING_COST: usize = 16;

/// Bytes held before the first sweep is worth its cost.
const FIRST_SWEEP: usize = 1 << 20;

/// A rule's state would pass its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFull {
    /// Bytes held (approximately).
    pub bytes: usize,
    /// Keys held (windows, sets and kv pairs).
    pub keys: usize,
    /// The quota in bytes.
    pub limit: usize,
}

impl fmt::Display for StateFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its state is full: {} keys, {:.1} MiB of its {} MiB quota \
             ([engine] state_limit_mb); nothing more can be counted until windows expire",
            self.keys,
            self.bytes as f64 / f64::from(1 << 20),
            self.limit >> 20
        )
    }
}

impl std::error::Error for StateFull {}

/// A sliding sum over event time.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Window {
    /// `(time, amount)`, oldest first; equal consecutive times are merged so a
    /// burst in one second costs one entry.
    entries: VecDeque<(i64, u64)>,
    total: u64,
}

/// What a sweep needs of a window or a distinct set.
trait Expiring {
    /// Drops what left the window at `at`; the bytes freed.
    fn expire(&mut self, at: i64, window: u32) -> usize;
    /// Whether nothing of it is left at `at` (so it can be dropped).
    fn is_spent(&self, at: i64, window: u32) -> bool;
    /// The bytes it holds.
    fn bytes(&self) -> usize;
}

impl Expiring for Window {
    fn expire(&mut self, at: i64, window: u32) -> usize {
        let cutoff = at.saturating_sub(i64::from(window));
        let mut freed = 0;
        while let Some(&(t, n)) = self.entries.front() {
            if t > cutoff {
                break;
            }
            self.total -= n;
            self.entries.pop_front();
            freed += ENTRY_COST;
        }
        freed
    }

    fn is_spent(&self, at: i64, window: u32) -> bool {
        self.entries
            .back()
            .is_none_or(|&(t, _)| t <= at.saturating_sub(i64::from(window)))
    }

    fn bytes(&self) -> usize {
        SLOT_COST + self.entries.len() * ENTRY_COST
    }
}

impl Window {
    /// Adds `n` at `at`; the bytes grown (may be negative: expiry).
    fn add(&mut self, at: i64, window: u32, n: u64) -> (u64, isize) {
        let mut grown = 0isize;
        match self.entries.back_mut() {
            Some((t, count)) if *t == at => *count += n,
            _ => {
                self.entries.push_back((at, n));
                grown += ENTRY_COST as isize;
            }
        }
        self.total += n;
        grown -= self.expire(at, window) as isize;
        (self.total, grown)
    }
}

/// A member of a distinct set, as the set holds it: a 64-bit hash of its
/// text.
///
/// A counter of distinct (message, recipient) pairs adds a member per
/// delivery; held as text, each cost an allocation and its bytes for the
/// whole window. Two members share a hash with odds of about n²/2⁶⁵ among
/// n members (one in 30 million for a million members), when a count comes
/// out one low. xxh3 is a published algorithm, so a snapshot one build saved
/// counts on in the next.
fn member_hash(member: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(member.as_bytes())
}

/// Distinct members seen over a sliding window.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DistinctSet {
    /// [`member_hash`] → the last time the member was seen.
    last_seen: HashMap<u64, i64>,
    /// `(time, member hash)` in insertion order, to expire members.
    order: VecDeque<(i64, u64)>,
}

impl Expiring for DistinctSet {
    fn expire(&mut self, at: i64, window: u32) -> usize {
        let cutoff = at.saturating_sub(i64::from(window));
        let mut freed = 0;
        while let Some((t, _)) = self.order.front() {
            if *t > cutoff {
                break;
            }
            let (t, m) = self.order.pop_front().expect("front exists");
            freed += SIGHTING_COST;
            // Only forget the member if this was its latest sighting.
            if self.last_seen.get(&m) == Some(&t) {
                self.last_seen.remove(&m);
                freed += MEMBER_COST - SIGHTING_COST;
            }
        }
        freed
    }

    fn is_spent(&self, at: i64, window: u32) -> bool {
        self.order
            .back()
            .is_none_or(|&(t, _)| t <= at.saturating_sub(i64::from(window)))
    }

    fn bytes(&self) -> usize {
        SLOT_COST
            + self.order.len() * SIGHTING_COST
            + self.last_seen.len() * (MEMBER_COST - SIGHTING_COST)
    }
}

impl DistinctSet {
    fn count(&self) -> u32 {
        u32::try_from(self.last_seen.len()).unwrap_or(u32::MAX)
    }

    /// Records `member` at `at`; the count, whether the member is new to
    /// the window, and the bytes grown. What left the window goes first, so
    /// a member seen again just after its last sighting expired is new.
    fn add(&mut self, member: &str, at: i64, window: u32) -> (u32, bool, isize) {
        let mut grown = -(self.expire(at, window) as isize);
        let member = member_hash(member);
        let new = match self.last_seen.entry(member) {
            Entry::Occupied(seen) if *seen.get() >= at => false,
            Entry::Occupied(mut seen) => {
                seen.insert(at);
                self.order.push_back((at, member));
                grown += SIGHTING_COST as isize;
                false
            }
            Entry::Vacant(unseen) => {
                unseen.insert(at);
                self.order.push_back((at, member));
                grown += MEMBER_COST as isize;
                true
            }
        };
        (self.count(), new, grown)
    }
}

/// All state of one rule: windows, distinct sets and key/value pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleState {
    // Keyed by (key, window length): one key used with two lengths is two
    // windows, so a rule can't corrupt its own counts by mixing them.
    windows: HashMap<String, Vec<(u32, Window)>>,
    distinct: HashMap<String, Vec<(u32, DistinctSet)>>,
    kv: HashMap<String, String>,
    /// Bytes held, approximately (see the `*_COST` constants).
    bytes: usize,
    /// The quota.
    limit: usize,
    /// Bytes at which the next sweep runs.
    next_sweep: usize,
    /// The time of the last call that gave one.
    last_at: i64,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState::with_limit(DEFAULT_LIMIT)
    }
}

/// Drops every slot of `map` with nothing left at `at`, and every key left
/// without slots; the bytes freed.
fn sweep_map<T: Expiring>(map: &mut HashMap<String, Vec<(u32, T)>>, at: i64) -> usize {
    let mut freed = 0;
    map.retain(|key, slots| {
        slots.retain_mut(|(w, item)| {
            freed += item.expire(at, *w);
            let spent = item.is_spent(at, *w);
            if spent {
                freed += item.bytes();
            }
            !spent
        });
        if slots.is_empty() {
            freed += key.len() + KEY_COST;
        }
        !slots.is_empty()
    });
    freed
}

/// The slot of `key` for `window`, created if missing; the bytes a new key
/// or slot cost.
fn slot<'a, T: Default>(
    map: &'a mut HashMap<String, Vec<(u32, T)>>,
    key: &str,
    window: u32,
) -> (&'a mut T, usize) {
    let mut grown = 0;
    // One lookup by &str: the key is allocated only when it is new.
    let slots = match map.entry_ref(key) {
        EntryRef::Occupied(slots) => slots.into_mut(),
        EntryRef::Vacant(none) => {
            grown += key.len() + KEY_COST;
            none.insert(Vec::new())
        }
    };
    let index = match slots.iter().position(|(w, _)| *w == window) {
        Some(i) => i,
        None => {
            slots.push((window, T::default()));
            grown += SLOT_COST;
            slots.len() - 1
        }
    };
    (&mut slots[index].1, grown)
}

fn apply(bytes: usize, grown: isize) -> usize {
    bytes.saturating_add_signed(grown)
}

/// Bytes that are not a [`RuleState::snapshot`] of this version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(String);

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a rule state snapshot: {}", self.0)
    }
}

impl std::error::Error for SnapshotError {}

impl RuleState {
    /// The whole state as bytes, for a daemon's checkpoint: restored with
    /// [`RuleState::restore`], it counts exactly as this one does.
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_extend(self, SNAPSHOT_TAG.to_vec()).expect("a rule state always encodes")
    }

    /// The state a [`RuleState::snapshot`] holds, under the quota `limit`
    /// (today's setting, not the one it was saved with). A state over the
    /// new quota is kept whole; the next call that would grow it fails.
    ///
    /// A snapshot of an earlier build (distinct members held as text, no
    /// tag) is read too, its members hashed as they are now.
    pub fn restore(bytes: &[u8], limit: usize) -> Result<Self, SnapshotError> {
        let current = match bytes.strip_prefix(SNAPSHOT_TAG) {
            Some(rest) => postcard::from_bytes::<RuleState>(rest),
            None => Err(postcard::Error::DeserializeBadEncoding),
        };
        let mut state = match current {
            Ok(state) => state,
            Err(e) => v1::restore(bytes).ok_or_else(|| SnapshotError(e.to_string()))?,
        };
        state.limit = limit;
        state.next_sweep = state.next_sweep.min(limit);
        Ok(state)
    }

    /// An empty state with the default quota.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty state that may hold about `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        RuleState {
            windows: HashMap::default(),
            distinct: HashMap::default(),
            kv: HashMap::default(),
            bytes: 0,
            limit,
            next_sweep: FIRST_SWEEP.min(limit),
            last_at: i64::MIN,
        }
    }

    /// Makes room for `more` bytes at time `at`: sweeps when the state has
    /// grown enough to make a sweep worth it, and fails when even a sweep
    /// leaves no room.
    fn reserve(&mut self, more: usize, at: i64) -> Result<(), StateFull> {
        self.last_at = at;
        let wanted = self.bytes.saturating_add(more);
        if wanted < self.next_sweep {
            return Ok(());
        }
        self.sweep(at);
        if self.bytes.saturating_add(more) > self.limit {
            return Err(self.full());
        }
        Ok(())
    }

    fn full(&self) -> StateFull {
        StateFull {
            bytes: self.bytes,
            keys: self.len(),
            limit: self.limit,
        }
    }

    /// Drops every window and set with nothing left at `at`, and schedules
    /// the next sweep for when the state has doubled.
    pub fn sweep(&mut self, at: i64) {
        let freed = sweep_map(&mut self.windows, at) + sweep_map(&mut self.distinct, at);
        self.bytes = self.bytes.saturating_sub(freed);
        self.next_sweep = self
            .bytes
            .saturating_mul(2)
            .max(FIRST_SWEEP)
            .min(self.limit);
    }

    /// Adds `n` at `at` to window `key` and returns its total over
    /// `(at - window, at]`.
    pub fn window_add(
        &mut self,
        key: &str,
        at: i64,
        window: u32,
        n: u32,
    ) -> Result<u64, StateFull> {
        // The most this call can add: a lookup to know exactly would cost
        // more than reserving a few bytes too many now and then.
        self.reserve(key.len() + KEY_COST + SLOT_COST + ENTRY_COST, at)?;
        let (w, created) = slot(&mut self.windows, key, window);
        let (total, grown) = w.add(at, window, u64::from(n));
        self.bytes = apply(self.bytes + created, grown);
        Ok(total)
    }

    /// The total of window `key` over `(at - window, at]`.
    pub fn window_total(&mut self, key: &str, at: i64, window: u32) -> u64 {
        let Some(slots) = self.windows.get_mut(key) else {
            return 0;
        };
        match slots.iter_mut().find(|(w, _)| *w == window) {
            Some((_, w)) => {
                let freed = w.expire(at, window);
                self.bytes = self.bytes.saturating_sub(freed);
                w.total
            }
            None => 0,
        }
    }

    /// Records `member` in set `key` at `at`; returns the distinct count
    /// over `(at - window, at]`.
    pub fn distinct_add(
        &mut self,
        key: &str,
        member: &str,
        at: i64,
        window: u32,
    ) -> Result<u32, StateFull> {
        Ok(self.distinct_insert(key, member, at, window)?.0)
    }

    /// [`RuleState::distinct_add`], also telling whether `member` is new
    /// to the window: the count before it was added, without a second
    /// lookup.
    pub fn distinct_insert(
        &mut self,
        key: &str,
        member: &str,
        at: i64,
        window: u32,
    ) -> Result<(u32, bool), StateFull> {
        self.reserve(MEMBER_COST + key.len() + KEY_COST + SLOT_COST, at)?;
        let (set, created) = slot(&mut self.distinct, key, window);
        let (count, new, grown) = set.add(member, at, window);
        self.bytes = apply(self.bytes + created, grown);
        Ok((count, new))
    }

    /// The distinct count of set `key` over `(at - window, at]`.
    pub fn distinct_count(&mut self, key: &str, at: i64, window: u32) -> u32 {
        let Some(slots) = self.distinct.get_mut(key) else {
            return 0;
        };
        match slots.iter_mut().find(|(w, _)| *w == window) {
            Some((_, set)) => {
                let freed = set.expire(at, window);
                self.bytes = self.bytes.saturating_sub(freed);
                set.count()
            }
            None => 0,
        }
    }

    /// The value stored under `key`.
    pub fn kv_get(&self, key: &str) -> Option<String> {
        self.kv.get(key).cloned()
    }

    /// Stores (`Some`) or deletes (`None`) `key`. Key/value pairs have no
    /// time, so they are never swept: a rule deletes what it no longer
    /// needs. A sweep this growth triggers runs at the time of the last
    /// timed call.
    pub fn kv_set(&mut self, key: &str, value: Option<&str>) -> Result<(), StateFull> {
        let at = self.last_at;
        let old = self.kv.get(key).map(|v| v.len() + key.len() + KEY_COST);
        match value {
            Some(v) => {
                let new = v.len() + key.len() + KEY_COST;
                if new > old.unwrap_or(0) {
                    self.reserve(new - old.unwrap_or(0), at)?;
                }
                self.kv.insert(key.to_owned(), v.to_owned());
                self.bytes = self.bytes.saturating_sub(old.unwrap_or(0)) + new;
            }
            None => {
                self.kv.remove(key);
                self.bytes = self.bytes.saturating_sub(old.unwrap_or(0));
            }
        }
        Ok(())
    }

    /// Number of windows, distinct sets and kv pairs held.
    pub fn len(&self) -> usize {
        self.windows.len() + self.distinct.len() + self.kv.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, approximately.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What [`RuleState::bytes`] should say, counted from scratch.
    fn recount(&self) -> usize {
        fn slots<T: Expiring>(map: &HashMap<String, Vec<(u32, T)>>) -> usize {
            map.iter()
                .map(|(k, v)| k.len() + KEY_COST + v.iter().map(|(_, t)| t.bytes()).sum::<usize>())
                .sum()
        }
        slots(&self.windows)
            + slots(&self.distinct)
            + self
                .kv
                .iter()
                .map(|(k, v)| k.len() + v.len() + KEY_COST)
                .sum::<usize>()
    }
}

/// The first bytes of a [`RuleState::snapshot`]: its format's version.
const SNAPSHOT_TAG: &[u8; 4] = b"sws\x02";

/// Snapshots of the first format (untagged, distinct members held as text),
/// which daemons of earlier builds saved.
mod v1 {
    use std::collections::VecDeque;

    use serde::{Deserialize, Serialize};

    use super::{DistinctSet, HashMap, RuleState, Window, member_hash};

    #[derive(Serialize, Deserialize)]
    pub(super) struct State {
        pub windows: HashMap<String, Vec<(u32, Window)>>,
        pub distinct: HashMap<String, Vec<(u32, Set)>>,
        pub kv: HashMap<String, String>,
        pub bytes: usize,
        pub limit: usize,
        pub next_sweep: usize,
        pub last_at: i64,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Set {
        pub last_seen: HashMap<String, i64>,
        pub order: VecDeque<(i64, String)>,
    }

    /// The state a first-format snapshot holds, its byte count redone.
    pub(super) fn restore(bytes: &[u8]) -> Option<RuleState> {
        let old: State = postcard::from_bytes(bytes).ok()?;
        let set = |s: Set| DistinctSet {
            last_seen: s
                .last_seen
                .iter()
                .map(|(m, t)| (member_hash(m), *t))
                .collect(),
            order: s.order.iter().map(|(t, m)| (*t, member_hash(m))).collect(),
        };
        let mut state = RuleState {
            windows: old.windows,
            distinct: old
                .distinct
                .into_iter()
                .map(|(k, slots)| (k, slots.into_iter().map(|(w, s)| (w, set(s))).collect()))
                .collect(),
            kv: old.kv,
            bytes: 0,
            limit: old.limit,
            next_sweep: old.next_sweep,
            last_at: old.last_at,
        };
        state.bytes = state.recount();
        Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_covers_half_open_interval() {
        let mut s = RuleState::new();
        assert_eq!(s.window_add("k", 100, 60, 1), Ok(1));
        assert_eq!(s.window_add("k", 159, 60, 1), Ok(2));
        // At 160 the event at 100 is exactly 60 s old: out of (100, 160].
        assert_eq!(s.window_add("k", 160, 60, 1), Ok(2));
        assert_eq!(s.window_total("k", 219, 60), 1);
        assert_eq!(s.window_total("k", 220, 60), 0);
        assert_eq!(s.window_total("other", 220, 60), 0);
    }

    #[test]
    fn same_key_different_lengths_are_separate() {
        let mut s = RuleState::new();
        s.window_add("k", 0, 3600, 5).unwrap();
        assert_eq!(s.window_add("k", 10, 86_400, 1), Ok(1));
        assert_eq!(s.window_total("k", 10, 3600), 5);
    }

    #[test]
    fn distinct_counts_members_in_window() {
        let mut s = RuleState::new();
        assert_eq!(s.distinct_add("ips", "a", 0, 100), Ok(1));
        assert_eq!(s.distinct_add("ips", "b", 50, 100), Ok(2));
        assert_eq!(s.distinct_add("ips", "a", 60, 100), Ok(2));
        // At 120, "a"@60 and "b"@50 are still inside (20, 120].
        assert_eq!(s.distinct_add("ips", "c", 120, 100), Ok(3));
        // At 155, "b"@50 has left; "a" was refreshed at 60.
        assert_eq!(s.distinct_add("ips", "c", 155, 100), Ok(2));
        assert_eq!(s.distinct_add("ips", "c", 300, 100), Ok(1));
        assert_eq!(s.distinct_count("ips", 300, 100), 1);
        assert_eq!(s.distinct_count("ips", 401, 100), 0);
        assert_eq!(s.distinct_count("nothing", 0, 100), 0);
    }

    #[test]
    fn kv_set_get_delete() {
        let mut s = RuleState::new();
        assert_eq!(s.kv_get("a"), None);
        s.kv_set("a", Some("1")).unwrap();
        assert_eq!(s.kv_get("a").as_deref(), Some("1"));
        s.kv_set("a", None).unwrap();
        assert_eq!(s.kv_get("a"), None);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn a_key_per_event_stays_bounded_once_its_windows_expire() {
        // A new user name every quarter second, counted in 10-minute
        // windows: without expiry this held millions of keys.
        let mut s = RuleState::with_limit(8 << 20);
        let mut peak = 0;
        for i in 0..400_000i64 {
            let key = format!("authfail:user{i}@victim.example");
            s.window_add(&key, i / 4, 600, 1).unwrap();
            s.distinct_add(
                "ips",
                &format!("10.0.{}.{}", (i >> 8) & 255, i & 255),
                i / 4,
                600,
            )
            .unwrap();
            peak = peak.max(s.len());
        }
        // 10 minutes hold 2,400 names; sweeps run when the state doubles.
        assert!(peak < 20_000, "{peak} keys held at once");
        assert!(s.bytes() < 8 << 20);
        s.sweep(400_000 / 4 + 601);
        assert_eq!(s.len(), 0);
        assert_eq!(s.bytes(), 0, "every byte counted in is counted out");
    }

    #[test]
    fn a_state_past_its_quota_refuses_more_and_says_how_full_it_is() {
        let mut s = RuleState::with_limit(1 << 20);
        let mut refused = None;
        for i in 0..100_000 {
            // One day windows all inside the same day: nothing expires.
            if let Err(e) = s.window_add(&format!("k{i}"), i, 86_400, 1) {
                refused = Some((i, e));
                break;
            }
        }
        let (i, e) = refused.expect("the quota was hit");
        assert!(i > 1000, "a megabyte holds more than {i} keys");
        assert!(e.bytes <= 1 << 20 && e.keys as i64 == i);
        assert!(
            e.to_string()
                .starts_with(&format!("its state is full: {i} keys")),
            "{e}"
        );
        // Reads still work; a new key a day later fits again after a sweep.
        assert_eq!(s.window_total("k0", 10, 86_400), 1);
        assert!(s.window_add("late", 200_000, 86_400, 1).is_ok());
    }

    #[test]
    fn byte_count_follows_every_change() {
        let mut s = RuleState::new();
        for i in 0..1000 {
            s.window_add(&format!("w{}", i % 37), i, 100, 1).unwrap();
            s.distinct_add(&format!("d{}", i % 11), &format!("m{}", i % 53), i, 100)
                .unwrap();
            s.kv_set(&format!("k{}", i % 7), Some(&"x".repeat(i as usize % 13)))
                .unwrap();
        }
        assert_eq!(s.bytes(), s.recount());
    }

    #[test]
    fn an_insert_tells_a_member_new_to_the_window_from_one_seen_in_it() {
        let mut s = RuleState::new();
        assert_eq!(s.distinct_insert("d", "a", 0, 100), Ok((1, true)));
        assert_eq!(s.distinct_insert("d", "a", 50, 100), Ok((1, false)));
        assert_eq!(s.distinct_insert("d", "b", 60, 100), Ok((2, true)));
        // "a" was last seen at 50: at 150 that sighting has left the
        // window, so "a" is new again, and the count before it was 1 ("b").
        assert_eq!(s.distinct_insert("d", "a", 150, 100), Ok((2, true)));
        assert_eq!(s.distinct_count("d", 150, 100), 2);
    }

    #[test]
    fn a_member_costs_the_same_however_long_its_text_and_again_only_per_sighting() {
        let mut live = RuleState::new();
        live.distinct_add("d", "a", 0, 3600).unwrap();
        let short = live.bytes();
        let long = "1sGxyz-000abc-0a someone-with-a-long-name@remote.example";
        live.distinct_add("d", long, 0, 3600).unwrap();
        assert_eq!(live.bytes() - short, MEMBER_COST);
        live.distinct_add("d", long, 10, 3600).unwrap();
        assert_eq!(live.bytes() - short, MEMBER_COST + SIGHTING_COST);
        assert_eq!(live.bytes(), live.recount());
    }

    #[test]
    fn a_snapshot_of_the_first_format_is_restored_and_counts_on() {
        // What an earlier build saved: members as text, no format tag.
        let mut old = v1::State {
            windows: HashMap::default(),
            distinct: HashMap::default(),
            kv: HashMap::default(),
            bytes: 12_345,
            limit: DEFAULT_LIMIT,
            next_sweep: FIRST_SWEEP,
            last_at: 100,
        };
        old.windows.insert(
            "w".into(),
            vec![(
                60,
                Window {
                    entries: [(90, 2), (100, 1)].into(),
                    total: 3,
                },
            )],
        );
        old.distinct.insert(
            "d".into(),
            vec![(
                60,
                v1::Set {
                    last_seen: [("a".to_string(), 95), ("b".to_string(), 100)]
                        .into_iter()
                        .collect(),
                    order: [(95, "a".to_string()), (100, "b".to_string())].into(),
                },
            )],
        );
        old.kv.insert("k".into(), "v".into());
        let bytes = postcard::to_allocvec(&old).unwrap();

        let mut s = RuleState::restore(&bytes, DEFAULT_LIMIT).unwrap();
        assert_eq!(s.bytes(), s.recount(), "its byte count is redone");
        assert_eq!(s.window_total("w", 100, 60), 3);
        assert_eq!(s.kv_get("k").as_deref(), Some("v"));
        // "a" and "b" are known members: seen again, they are not new.
        assert_eq!(s.distinct_insert("d", "a", 120, 60), Ok((2, false)));
        assert_eq!(s.distinct_insert("d", "c", 120, 60), Ok((3, true)));
        // And it is saved in today's format from then on.
        let again = RuleState::restore(&s.snapshot(), DEFAULT_LIMIT).unwrap();
        assert!(s.snapshot().starts_with(SNAPSHOT_TAG));
        assert_eq!(again.bytes(), s.bytes());
    }

    #[test]
    fn a_restored_snapshot_counts_on_exactly_as_the_state_it_was_taken_of() {
        let mut live = RuleState::new();
        for i in 0..500 {
            live.window_add(&format!("w{}", i % 5), i, 100, 2).unwrap();
            live.distinct_add("d", &format!("m{}", i % 17), i, 50)
                .unwrap();
        }
        live.kv_set("k", Some("v")).unwrap();
        let mut restored = RuleState::restore(&live.snapshot(), 1 << 20).unwrap();
        assert_eq!(restored.bytes(), live.bytes());
        assert_eq!(restored.kv_get("k").as_deref(), Some("v"));
        for i in 500..700 {
            let key = format!("w{}", i % 5);
            assert_eq!(
                restored.window_add(&key, i, 100, 1).unwrap(),
                live.window_add(&key, i, 100, 1).unwrap()
            );
            let member = format!("m{}", i % 23);
            assert_eq!(
                restored.distinct_add("d", &member, i, 50).unwrap(),
                live.distinct_add("d", &member, i, 50).unwrap()
            );
        }
        assert!(RuleState::restore(b"not a state", DEFAULT_LIMIT).is_err());
    }
}
