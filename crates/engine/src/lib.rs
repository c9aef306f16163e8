//! The rule engine: loads WebAssembly rules into a sandbox, and runs batches
//! of events through them, handing their verdicts back as they come.
//!
//! The one crate with wasmtime in it: the rest of spamward sees rules
//! through [`Dispatcher`], [`RuleSet`] and the values here, never through
//! the WIT bindings.
//!
//! - `sandbox`: the wasmtime engine, linker, limits and host imports;
//! - `cache`: compiled artifacts keyed by content and engine;
//! - `rule`: loading and describing one rule;
//! - `runner`: one rule's live instance, state and health;
//! - `failure`: why a rule failed, as a value;
//! - `dispatch`: batching, subscriptions, verdicts to a sink;
//! - `pool`: the worker threads rules run on.

#![warn(missing_docs)]

mod bindings;
mod cache;
mod convert;
mod dispatch;
mod failure;
mod pool;
mod rule;
mod runner;
mod sandbox;
mod upgrade;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use spamward_files::regular_file;

pub use bindings::{INTERFACE_VERSION, SERVED_VERSIONS};
pub use cache::{CacheOutcome, ComponentCache};
pub use dispatch::{Citation, DEFAULT_BATCH, DispatchOptions, Dispatcher, RuleReport, RuleVerdict};
pub use failure::RuleFailure;
pub use rule::{LoadError, LoadedRule, RuleMeta, RuleOrigin, SettingSpec, content_hash, load};
pub use runner::{BatchOutcome, Health, QUARANTINE_AFTER, RuleBatch, RuleRunner};
pub use sandbox::{Limits, MAX_VERDICTS_PER_BATCH, Sandbox};

/// The largest rule component read from a rules directory; bundled rules
/// are a quarter of a megabyte.
const MAX_RULE_BYTES: u64 = 64 << 20;

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_rules.rs"));
}

/// The rules compiled into this binary: `(file stem, component bytes)`.
pub fn bundled_rules() -> &'static [(&'static str, &'static [u8])] {
    bundled::BUNDLED_RULES
}

/// Where the build put every guest it compiled: the bundled rules, the
/// fixture rules and the examples. The workspace's end-to-end tests load
/// the fixture rules from here; nothing else should.
#[doc(hidden)]
pub const GUEST_WASM_DIR: &str = env!("SPAMWARD_GUEST_WASM_DIR");

/// A rules directory that cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read rules directory {}: {source}", path.display())]
pub struct RulesDirError {
    /// The directory.
    pub path: std::path::PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// The rules available to a run, by name, and the ones that failed to load.
pub struct RuleSet {
    /// Loaded rules by name; a file rule replaces a bundled one of the same
    /// name.
    pub rules: BTreeMap<String, Arc<LoadedRule>>,
    /// Rules that could not be loaded (the others still run).
    pub errors: Vec<LoadError>,
}

impl RuleSet {
    /// Loads the bundled rules, then every `*.wasm` in `extra_dir`; only a
    /// directory that cannot be listed fails the whole load (a rule that
    /// cannot be loaded is one of [`RuleSet::errors`]).
    pub fn load(
        sandbox: &Sandbox,
        cache: &ComponentCache,
        extra_dir: Option<&Path>,
    ) -> Result<Self, RulesDirError> {
        let mut set = RuleSet {
            rules: BTreeMap::new(),
            errors: Vec::new(),
        };
        for (_, bytes) in bundled_rules() {
            set.add(load(sandbox, cache, bytes, RuleOrigin::Bundled));
        }
        if let Some(dir) = extra_dir {
            let entries = fs::read_dir(dir).map_err(|source| RulesDirError {
                path: dir.to_path_buf(),
                source,
            })?;
            let mut paths: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            paths.sort();
            for path in paths {
                match regular_file::read_capped(&path, MAX_RULE_BYTES) {
                    Ok((bytes, false)) => {
                        set.add(load(sandbox, cache, &bytes, RuleOrigin::File(path)))
                    }
                    Ok((_, true)) => set.errors.push(LoadError::Compile {
                        origin: RuleOrigin::File(path),
                        reason: format!("larger than {} MiB", MAX_RULE_BYTES >> 20),
                    }),
                    Err(e) => set.errors.push(LoadError::Compile {
                        origin: RuleOrigin::File(path),
                        reason: format!("cannot read: {e}"),
                    }),
                }
            }
        }
        Ok(set)
    }

    fn add(&mut self, loaded: Result<LoadedRule, LoadError>) {
        match loaded {
            Ok(rule) => {
                if let Some(old) = self.rules.get(&rule.meta.name) {
                    tracing::info!(
                        rule = %rule.meta.name,
                        "{} replaces the {} rule of the same name",
                        rule.meta.source,
                        old.meta.source
                    );
                }
                self.rules.insert(rule.meta.name.clone(), Arc::new(rule));
            }
            Err(e) => {
                tracing::error!("{e}");
                self.errors.push(e);
            }
        }
    }
}
