//! Rule state semantics: sliding windows, distinct sets and key/value pairs
//! measured on event time.
//!
//! This is the one implementation of these semantics. The spamward host keeps
//! a [`RuleState`] per rule behind its `window-add`/`distinct-add`/`kv-*`
//! imports, and the native [`crate::testing`] harness uses the same type, so a
//! rule tested with `cargo test` counts exactly as it will in the daemon.
//!
//! A window `w` at time `at` covers `(at - w, at]`. Events are expected in
//! roughly ascending time (log order); an event older than the newest one seen
//! is still counted, and expires when its own time leaves the window.

use std::collections::VecDeque;

/// The maps behind rule state: short string keys hashed on every host call.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A sliding sum over event time.
#[derive(Debug, Default, Clone)]
struct Window {
    /// `(time, amount)`, oldest first; equal consecutive times are merged so a
    /// burst in one second costs one entry.
    entries: VecDeque<(i64, u64)>,
    total: u64,
}

impl Window {
    fn expire(&mut self, at: i64, window: u32) {
        let cutoff = at.saturating_sub(i64::from(window));
        while let Some(&(t, n)) = self.entries.front() {
            if t > cutoff {
                break;
            }
            self.total -= n;
            self.entries.pop_front();
        }
    }

    fn add(&mut self, at: i64, window: u32, n: u64) -> u64 {
        match self.entries.back_mut() {
            Some((t, count)) if *t == at => *count += n,
            _ => self.entries.push_back((at, n)),
        }
        self.total += n;
        self.expire(at, window);
        self.total
    }
}

/// Distinct members seen over a sliding window.
#[derive(Debug, Default, Clone)]
struct DistinctSet {
    /// Member → the last time it was seen.
    last_seen: HashMap<String, i64>,
    /// `(time, member)` in insertion order, to expire members.
    order: VecDeque<(i64, String)>,
}

impl DistinctSet {
    fn expire(&mut self, at: i64, window: u32) {
        let cutoff = at.saturating_sub(i64::from(window));
        while let Some((t, _)) = self.order.front() {
            if *t > cutoff {
                break;
            }
            let (t, m) = self.order.pop_front().expect("front exists");
            // Only forget the member if this was its latest sighting.
            if self.last_seen.get(&m) == Some(&t) {
                self.last_seen.remove(&m);
            }
        }
    }

    fn count(&self) -> u32 {
        u32::try_from(self.last_seen.len()).unwrap_or(u32::MAX)
    }

    fn add(&mut self, member: &str, at: i64, window: u32) -> u32 {
        match self.last_seen.get_mut(member) {
            Some(t) if *t >= at => {}
            Some(t) => {
                *t = at;
                self.order.push_back((at, member.to_owned()));
            }
            None => {
                self.last_seen.insert(member.to_owned(), at);
                self.order.push_back((at, member.to_owned()));
            }
        }
        self.expire(at, window);
        self.count()
    }
}

/// All state of one rule: windows, distinct sets and key/value pairs.
#[derive(Debug, Default, Clone)]
pub struct RuleState {
    // Keyed by (key, window length): one key used with two lengths is two
    // windows, so a rule can't corrupt its own counts by mixing them.
    windows: HashMap<String, Vec<(u32, Window)>>,
    distinct: HashMap<String, Vec<(u32, DistinctSet)>>,
    kv: HashMap<String, String>,
}

fn slot<'a, T: Default>(
    map: &'a mut HashMap<String, Vec<(u32, T)>>,
    key: &str,
    window: u32,
) -> &'a mut T {
    // Look up by &str first so the hot path does not allocate a key.
    if !map.contains_key(key) {
        map.insert(key.to_owned(), Vec::new());
    }
    let slots = map.get_mut(key).expect("inserted above");
    let index = match slots.iter().position(|(w, _)| *w == window) {
        Some(i) => i,
        None => {
            slots.push((window, T::default()));
            slots.len() - 1
        }
    };
    &mut slots[index].1
}

impl RuleState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` at `at` to window `key` and returns its total over
    /// `(at - window, at]`.
    pub fn window_add(&mut self, key: &str, at: i64, window: u32, n: u32) -> u64 {
        slot(&mut self.windows, key, window).add(at, window, u64::from(n))
    }

    /// The total of window `key` over `(at - window, at]`.
    pub fn window_total(&mut self, key: &str, at: i64, window: u32) -> u64 {
        match self.windows.get_mut(key) {
            Some(slots) => match slots.iter_mut().find(|(w, _)| *w == window) {
                Some((_, w)) => {
                    w.expire(at, window);
                    w.total
                }
                None => 0,
            },
            None => 0,
        }
    }

    /// Records `member` in set `key` at `at`; returns the distinct count
    /// over `(at - window, at]`.
    pub fn distinct_add(&mut self, key: &str, member: &str, at: i64, window: u32) -> u32 {
        slot(&mut self.distinct, key, window).add(member, at, window)
    }

    /// The distinct count of set `key` over `(at - window, at]`.
    pub fn distinct_count(&mut self, key: &str, at: i64, window: u32) -> u32 {
        match self.distinct.get_mut(key) {
            Some(slots) => match slots.iter_mut().find(|(w, _)| *w == window) {
                Some((_, set)) => {
                    set.expire(at, window);
                    set.count()
                }
                None => 0,
            },
            None => 0,
        }
    }

    /// The value stored under `key`.
    pub fn kv_get(&self, key: &str) -> Option<String> {
        self.kv.get(key).cloned()
    }

    /// Stores (`Some`) or deletes (`None`) `key`.
    pub fn kv_set(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => {
                self.kv.insert(key.to_owned(), v.to_owned());
            }
            None => {
                self.kv.remove(key);
            }
        }
    }

    /// Number of windows, distinct sets and kv pairs held.
    pub fn len(&self) -> usize {
        self.windows.len() + self.distinct.len() + self.kv.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_covers_half_open_interval() {
        let mut s = RuleState::new();
        assert_eq!(s.window_add("k", 100, 60, 1), 1);
        assert_eq!(s.window_add("k", 159, 60, 1), 2);
        // At 160 the event at 100 is exactly 60 s old: out of (100, 160].
        assert_eq!(s.window_add("k", 160, 60, 1), 2);
        assert_eq!(s.window_total("k", 219, 60), 1);
        assert_eq!(s.window_total("k", 220, 60), 0);
        assert_eq!(s.window_total("other", 220, 60), 0);
    }

    #[test]
    fn same_key_different_lengths_are_separate() {
        let mut s = RuleState::new();
        s.window_add("k", 0, 3600, 5);
        assert_eq!(s.window_add("k", 10, 86_400, 1), 1);
        assert_eq!(s.window_total("k", 10, 3600), 5);
    }

    #[test]
    fn distinct_counts_members_in_window() {
        let mut s = RuleState::new();
        assert_eq!(s.distinct_add("ips", "a", 0, 100), 1);
        assert_eq!(s.distinct_add("ips", "b", 50, 100), 2);
        assert_eq!(s.distinct_add("ips", "a", 60, 100), 2);
        // At 120, "a"@60 and "b"@50 are still inside (20, 120].
        assert_eq!(s.distinct_add("ips", "c", 120, 100), 3);
        // At 155, "b"@50 has left; "a" was refreshed at 60.
        assert_eq!(s.distinct_add("ips", "c", 155, 100), 2);
        assert_eq!(s.distinct_add("ips", "c", 300, 100), 1);
        assert_eq!(s.distinct_count("ips", 300, 100), 1);
        assert_eq!(s.distinct_count("ips", 401, 100), 0);
        assert_eq!(s.distinct_count("nothing", 0, 100), 0);
    }

    #[test]
    fn kv_set_get_delete() {
        let mut s = RuleState::new();
        assert_eq!(s.kv_get("a"), None);
        s.kv_set("a", Some("1"));
        assert_eq!(s.kv_get("a").as_deref(), Some("1"));
        s.kv_set("a", None);
        assert_eq!(s.kv_get("a"), None);
        assert!(s.is_empty());
    }
}
