//! What the host offers a rule: logging, windows and distinct counts on event
//! time, small key/value state, settings and lookups.
//!
//! In a component these call the `spamward:rule/host` imports. Natively (under
//! `cargo test`) they call the thread's [`crate::testing::Harness`] host,
//! which uses the same [`crate::state`] code.

pub use crate::bindings::spamward::rule::host::LogLevel;

#[cfg(target_arch = "wasm32")]
use crate::bindings::spamward::rule::host as imports;

#[cfg(not(target_arch = "wasm32"))]
use crate::testing::native as imports;

/// Log through the host, tagged with the rule's name.
pub fn log(level: LogLevel, message: &str) {
    imports::log(level, message)
}

/// Tells the host which event is being judged (the runtime calls it before
/// each event).
pub(crate) fn judging(event: u64) {
    imports::judging(event)
}

/// Hands a verdict to the host ([`crate::Context::report`] calls it).
pub(crate) fn report(verdict: crate::types::Verdict) {
    #[cfg(target_arch = "wasm32")]
    imports::report(&crate::boundary::verdict(verdict));
    #[cfg(not(target_arch = "wasm32"))]
    imports::report(verdict);
}

/// Adds `n` at `at` to window `key` of `window_seconds`; returns the total
/// over `(at - window_seconds, at]`.
pub fn window_add(key: &str, at: i64, window_seconds: u32, n: u32) -> u64 {
    imports::window_add(key, at, window_seconds, n)
}

/// The total of window `key` over `(at - window_seconds, at]`.
pub fn window_total(key: &str, at: i64, window_seconds: u32) -> u64 {
    imports::window_total(key, at, window_seconds)
}

/// Records `member` in set `key` at `at`; returns the distinct count over
/// `(at - window_seconds, at]`.
///
/// The host keeps a 64-bit hash of each member, not its text: a member
/// costs the rule's quota the same whatever its length, and two members
/// count as one with odds of about one in 30 million in a set of a million.
pub fn distinct_add(key: &str, member: &str, at: i64, window_seconds: u32) -> u32 {
    imports::distinct_add(key, member, at, window_seconds)
}

/// The distinct count of set `key` over `(at - window_seconds, at]`,
/// without adding a member.
pub fn distinct_count(key: &str, at: i64, window_seconds: u32) -> u32 {
    imports::distinct_count(key, at, window_seconds)
}

/// The value stored under `key`.
pub fn kv_get(key: &str) -> Option<String> {
    imports::kv_get(key)
}

/// Stores (`Some`) or deletes (`None`) `key`.
pub fn kv_set(key: &str, value: Option<&str>) {
    imports::kv_set(key, value)
}

/// One of this rule's settings as JSON, after defaults.
pub fn setting(name: &str) -> Option<String> {
    imports::setting(name)
}

/// The hosting account that owns `domain`, if the host knows.
pub fn domain_owner(domain: &str) -> Option<String> {
    imports::domain_owner(domain)
}

/// Whether `domain` is delivered locally on this server; `None` when the
/// host does not know the server's local domains.
pub fn is_local_domain(domain: &str) -> Option<bool> {
    imports::is_local_domain(domain)
}

/// True the first time it is asked for `key` in each window of
/// `window_seconds` (measured from the time it last said true): how a rule
/// speaks once per window about a target instead of on every event. Kept in
/// a host window, so it holds across reloads and is forgotten (its memory
/// freed) once the window has passed.
pub fn once_per_window(key: &str, at: i64, window_seconds: u32) -> bool {
    let key = format!("once:{key}");
    if window_total(&key, at, window_seconds) > 0 {
        return false;
    }
    window_add(&key, at, window_seconds, 1);
    true
}

/// Forwards the `log` crate's records to the host, so rule authors can use
/// `log::info!` and friends.
pub(crate) struct HostLogger;

impl ::log::Log for HostLogger {
    fn enabled(&self, _: &::log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &::log::Record<'_>) {
        let level = match record.level() {
            ::log::Level::Error => LogLevel::Error,
            ::log::Level::Warn => LogLevel::Warn,
            ::log::Level::Info => LogLevel::Info,
            ::log::Level::Debug => LogLevel::Debug,
            ::log::Level::Trace => LogLevel::Trace,
        };
        log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Asks the host to keep `spec` (the runtime declares
/// [`crate::Rule::counters`] at `init`).
pub(crate) fn declare_counter(spec: &crate::counter::CounterSpec) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    return imports::declare_counter(&crate::boundary::counter_spec(spec));
    #[cfg(not(target_arch = "wasm32"))]
    imports::declare_counter(spec)
}

/// Counter `name`'s total for `key` over its window ending at `at`
/// ([`crate::counter::total`]).
pub(crate) fn counter_total(name: &str, key: &str, at: i64) -> u64 {
    imports::counter_total(name, key, at)
}
