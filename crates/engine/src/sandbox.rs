//! The sandbox every rule runs in: one wasmtime `Engine` with epoch
//! interruption, a `Linker` with WASI on an empty context (no files,
//! environment or network) plus the `spamward:rule/host` imports, and the
//! per-store data those imports work on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{v0_2, v0_3};
use spamward_contract::counter::Counters;
use spamward_contract::state::RuleState;
use spamward_contract::verdict::Verdict;
use spamward_model::HostLookups;

/// How often the epoch ticks; CPU budgets are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Resource caps applied to every rule instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory per instance, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock budget of one batch call.
    pub batch_budget: Duration,
    /// Host-side state (windows, sets, kv) per rule, in bytes.
    pub state_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            batch_budget: Duration::from_secs(1),
            state_bytes: spamward_contract::state::DEFAULT_LIMIT,
        }
    }
}

/// Verdicts one batch call may hand over; the rest are dropped and counted.
/// An honest rule speaks when a threshold is crossed, not per event.
pub const MAX_VERDICTS_PER_BATCH: usize = 1000;

impl Limits {
    /// The batch budget in epoch ticks (at least one).
    pub fn budget_ticks(&self) -> u64 {
        (self.batch_budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

/// The shared engine and linker.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StoreData>,
    limits: Limits,
    ticker_stop: Arc<AtomicBool>,
}

impl Sandbox {
    /// Builds the engine (epoch interruption on) and the linker, and starts
    /// the epoch ticker thread.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // wasmtime's default reservation (4 GiB of address space, with
        // guard pages) lets the compiler drop the bounds check from every
        // load and store of a rule; it is address space, not memory. The
        // memory cap is the store's limiter's job (`StoreData::limits`).
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Both interface versions in one linker: 0.2 and 0.3 are separate
        // semver tracks, so each rule's imports find their own.
        v0_3::Rule::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |data| data)?;
        v0_2::Rule::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |data| data)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.weak(), ticker_stop.clone());
        Ok(Sandbox {
            engine,
            linker,
            limits,
            ticker_stop,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with WASI and host imports.
    pub fn linker(&self) -> &Linker<StoreData> {
        &self.linker
    }

    /// The caps applied to instances.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn spawn_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    thread::Builder::new()
        .name("spamward-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawn the epoch ticker thread");
}

/// What a store holds: the empty WASI context, limits, and the rule's host
/// state (moved from store to store when an instance is re-created, so a
/// trap loses no counts).
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory caps.
    pub(crate) limits: StoreLimits,
    /// Name for log lines.
    pub(crate) rule: Arc<str>,
    /// Windows, distinct sets, kv.
    pub(crate) state: RuleState,
    /// This rule's settings after defaults, by name, as JSON.
    pub(crate) settings: Arc<serde_json::Map<String, serde_json::Value>>,
    /// Domain owner and local-domain answers.
    pub(crate) lookups: Arc<HostLookups>,
    /// The event the rule said it is judging (`judging`), this call.
    pub(crate) judging: Option<u64>,
    /// Verdicts handed over with `report` this call, at most
    /// [`MAX_VERDICTS_PER_BATCH`].
    pub(crate) reported: Vec<Verdict>,
    /// Verdicts beyond the cap, this call.
    pub(crate) dropped: u64,
    /// The counters the rule declared in `init` (their totals are in
    /// `state`).
    pub(crate) counters: Counters,
}

impl StoreData {
    /// Fresh store data for `rule`, carrying over `state`.
    pub fn new(
        rule: Arc<str>,
        limits: Limits,
        state: RuleState,
        settings: Arc<serde_json::Map<String, serde_json::Value>>,
        lookups: Arc<HostLookups>,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        // No preopens, no env, no args, no network: only log output.
        wasi.stdout(GuestOutput {
            rule: rule.clone(),
            stream: "stdout",
        })
        .stderr(GuestOutput {
            rule: rule.clone(),
            stream: "stderr",
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
        StoreData {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(16)
                .trap_on_grow_failure(true)
                .build(),
            rule,
            state,
            settings,
            lookups,
            judging: None,
            reported: Vec::new(),
            dropped: 0,
            counters: Counters::new(),
        }
    }

    /// Takes the rule state out (to carry into the next store).
    pub fn into_state(self) -> RuleState {
        self.state
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl v0_3::spamward::rule::types::Host for StoreData {}

impl v0_3::spamward::rule::host::Host for StoreData {
    fn log(&mut self, level: v0_3::spamward::rule::host::LogLevel, message: String) {
        use v0_3::spamward::rule::host::LogLevel as L;
        let rule = &*self.rule;
        match level {
            L::Trace => tracing::trace!(rule, "{message}"),
            L::Debug => tracing::debug!(rule, "{message}"),
            L::Info => tracing::info!(rule, "{message}"),
            L::Warn => tracing::warn!(rule, "{message}"),
            L::Error => tracing::error!(rule, "{message}"),
        }
    }

    fn judging(&mut self, event: u64) {
        self.judging = Some(event);
    }

    fn report(&mut self, verdict: v0_3::spamward::rule::types::Verdict) {
        if self.reported.len() < MAX_VERDICTS_PER_BATCH {
            self.reported.push(crate::convert::verdict(verdict));
        } else {
            self.dropped += 1;
        }
    }

    // A full state fails the rule (a trap), never the host.
    fn window_add(
        &mut self,
        key: String,
        at: i64,
        window_seconds: u32,
        n: u32,
    ) -> wasmtime::Result<u64> {
        Ok(self.state.window_add(&key, at, window_seconds, n)?)
    }

    fn window_total(&mut self, key: String, at: i64, window_seconds: u32) -> u64 {
        self.state.window_total(&key, at, window_seconds)
    }

    fn distinct_add(
        &mut self,
        key: String,
        member: String,
        at: i64,
        window_seconds: u32,
    ) -> wasmtime::Result<u32> {
        Ok(self.state.distinct_add(&key, &member, at, window_seconds)?)
    }

    fn distinct_count(&mut self, key: String, at: i64, window_seconds: u32) -> u32 {
        self.state.distinct_count(&key, at, window_seconds)
    }

    fn kv_get(&mut self, key: String) -> Option<String> {
        self.state.kv_get(&key)
    }

    fn kv_set(&mut self, key: String, value: Option<String>) -> wasmtime::Result<()> {
        Ok(self.state.kv_set(&key, value.as_deref())?)
    }

    fn setting(&mut self, name: String) -> Option<String> {
        self.settings.get(&name).map(|v| v.to_string())
    }

    fn domain_owner(&mut self, domain: String) -> Option<String> {
        self.lookups.domain_owner(&domain).map(str::to_owned)
    }

    fn is_local_domain(&mut self, domain: String) -> Option<bool> {
        self.lookups.is_local_domain(&domain)
    }

    fn declare_counter(
        &mut self,
        spec: v0_3::spamward::rule::types::CounterSpec,
    ) -> Result<(), String> {
        self.counters
            .declare(crate::convert::counter_spec(&spec))
            .map_err(|e| e.to_string())
    }

    fn counter_total(&mut self, name: String, key: String, at: i64) -> u64 {
        self.counters.total(&mut self.state, &name, &key, at)
    }
}

impl v0_2::spamward::rule::types::Host for StoreData {}

/// A 0.2.x rule's host calls: the 0.3.0 ones, its types upgraded.
impl v0_2::spamward::rule::host::Host for StoreData {
    fn log(&mut self, level: v0_2::spamward::rule::host::LogLevel, message: String) {
        New::log(self, crate::upgrade::log_level(level), message);
    }

    fn judging(&mut self, event: u64) {
        New::judging(self, event);
    }

    fn report(&mut self, verdict: v0_2::spamward::rule::types::Verdict) {
        New::report(self, crate::upgrade::verdict(verdict));
    }

    fn window_add(
        &mut self,
        key: String,
        at: i64,
        window_seconds: u32,
        n: u32,
    ) -> wasmtime::Result<u64> {
        New::window_add(self, key, at, window_seconds, n)
    }

    fn window_total(&mut self, key: String, at: i64, window_seconds: u32) -> u64 {
        New::window_total(self, key, at, window_seconds)
    }

    fn distinct_add(
        &mut self,
        key: String,
        member: String,
        at: i64,
        window_seconds: u32,
    ) -> wasmtime::Result<u32> {
        New::distinct_add(self, key, member, at, window_seconds)
    }

    fn distinct_count(&mut self, key: String, at: i64, window_seconds: u32) -> u32 {
        New::distinct_count(self, key, at, window_seconds)
    }

    fn kv_get(&mut self, key: String) -> Option<String> {
        New::kv_get(self, key)
    }

    fn kv_set(&mut self, key: String, value: Option<String>) -> wasmtime::Result<()> {
        New::kv_set(self, key, value)
    }

    fn setting(&mut self, name: String) -> Option<String> {
        New::setting(self, name)
    }

    fn domain_owner(&mut self, domain: String) -> Option<String> {
        New::domain_owner(self, domain)
    }

    fn is_local_domain(&mut self, domain: String) -> Option<bool> {
        New::is_local_domain(self, domain)
    }

    fn declare_counter(
        &mut self,
        spec: v0_2::spamward::rule::types::CounterSpec,
    ) -> Result<(), String> {
        New::declare_counter(self, crate::upgrade::counter_spec(spec))
    }

    fn counter_total(&mut self, name: String, key: String, at: i64) -> u64 {
        New::counter_total(self, name, key, at)
    }
}

/// The newest host calls, which the older ones delegate to.
use v0_3::spamward::rule::host::Host as New;

/// A guest's stdout or stderr: each line goes to `tracing`, tagged with the
/// rule, so a rule's panic message ends up in the daemon's log.
#[derive(Clone)]
struct GuestOutput {
    rule: Arc<str>,
    stream: &'static str,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestLines {
            out: self.clone(),
            pending: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp2 streams are used by p2 guests; an async writer would
        // need a runtime we don't run on the rule threads.
        Box::new(tokio::io::sink())
    }
}

struct GuestLines {
    out: GuestOutput,
    pending: Vec<u8>,
}

/// Caps one buffered line so a guest printing without newlines can't grow
/// host memory.
const MAX_LINE: usize = 4096;

impl GuestLines {
    fn emit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end();
        tracing::warn!(rule = &*self.out.rule, stream = self.out.stream, "{line}");
        self.pending.clear();
    }
}

impl OutputStream for GuestLines {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        for &b in bytes.iter() {
            if b == b'\n' || self.pending.len() >= MAX_LINE {
                self.emit();
                if b == b'\n' {
                    continue;
                }
            }
            self.pending.push(b);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.emit();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl Drop for GuestLines {
    fn drop(&mut self) {
        self.emit();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLines {
    async fn ready(&mut self) {}
}
