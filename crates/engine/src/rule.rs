//! Loading a rule: compile (or load from cache), check the interface version
//! it was built for, pre-instantiate, and ask it to describe itself.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use wasmtime::Store;

use crate::bindings::{RulePre, SERVED_VERSIONS, wit};
use crate::cache::{CacheOutcome, ComponentCache};
use crate::convert;
use crate::sandbox::{Sandbox, StoreData};
use spamward_contract::verdict::Action;
use spamward_model::{EventKind, HostLookups};

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOrigin {
    /// Embedded in the binary at build time.
    Bundled,
    /// A `.wasm` file.
    File(PathBuf),
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleOrigin::Bundled => f.write_str("bundled"),
            RuleOrigin::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

impl Serialize for RuleOrigin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RuleOrigin::Bundled => s.serialize_str("bundled"),
            RuleOrigin::File(p) => s.serialize_str(&p.display().to_string()),
        }
    }
}

/// One setting a rule accepts.
#[derive(Debug, Clone, Serialize)]
pub struct SettingSpec {
    /// Name in `[rules.<name>]`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Default value.
    pub default: serde_json::Value,
}

/// What a rule said about itself, plus where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct RuleMeta {
    /// Unique name.
    pub name: String,
    /// The rule's version.
    pub version: String,
    /// One line.
    pub summary: String,
    /// Event kinds it wants.
    pub subscriptions: Vec<EventKind>,
    /// Actions it may request.
    pub actions: Vec<Action>,
    /// Settings with defaults.
    pub settings: Vec<SettingSpec>,
    /// SDK version it was built with.
    pub sdk_version: String,
    /// Bundled or file.
    pub source: RuleOrigin,
}

impl RuleMeta {
    /// The settings object with every default filled in.
    pub fn default_settings(&self) -> serde_json::Map<String, serde_json::Value> {
        self.settings
            .iter()
            .map(|s| (s.name.clone(), s.default.clone()))
            .collect()
    }
}

/// A compiled, pre-instantiated rule.
pub struct LoadedRule {
    /// What it is.
    pub meta: RuleMeta,
    /// Bitmask of [`EventKind::bit`]s it subscribed to.
    pub subscriptions: u32,
    /// Its subscriptions with their filters, tested before each call.
    pub filters: Vec<spamward_contract::filter::Subscription>,
    /// Whether any subscription has filters (else the mask decides alone).
    pub filtered: bool,
    /// Whether it came from the cache.
    pub cache: CacheOutcome,
    /// SHA-256 of the component, hex: a reload swaps a rule only when this
    /// changed.
    pub hash: String,
    /// Whether it says which event it is judging (0.2.1), so a trap costs
    /// that event alone rather than the rest of its batch.
    pub reports_progress: bool,
    pub(crate) pre: RulePre,
}

/// Why a rule could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component for this engine.
    #[error("{origin}: not a loadable WebAssembly component: {reason}")]
    Compile {
        /// Where it came from.
        origin: RuleOrigin,
        /// wasmtime's message.
        reason: String,
    },
    /// Built against another interface version.
    #[error(
        "{origin}: this rule needs spamward interface {needed}; this spamward serves {} (rebuild it with a matching spamward-sdk, or upgrade spamward)",
        served_versions()
    )]
    Version {
        /// Where it came from.
        origin: RuleOrigin,
        /// What it imports/exports.
        needed: String,
    },
    /// Imports something the host does not offer.
    #[error(
        "{origin}: cannot be linked (does it import files, network or another world?): {reason}"
    )]
    Link {
        /// Where it came from.
        origin: RuleOrigin,
        /// wasmtime's message.
        reason: String,
    },
    /// `describe()` trapped or returned nonsense.
    #[error("{origin}: describe() failed: {reason}")]
    Describe {
        /// Where it came from.
        origin: RuleOrigin,
        /// What went wrong.
        reason: String,
    },
}

impl LoadError {
    /// The file (or bundle) the rule came from.
    pub fn origin(&self) -> &RuleOrigin {
        match self {
            LoadError::Compile { origin, .. }
            | LoadError::Version { origin, .. }
            | LoadError::Link { origin, .. }
            | LoadError::Describe { origin, .. } => origin,
        }
    }
}

/// The served versions in words: `0.2.0, 0.2.1, 0.2.2 and 0.3.0`.
fn served_versions() -> String {
    match SERVED_VERSIONS.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Compiles (or loads from `cache`) and describes the rule in `bytes`.
pub fn load(
    sandbox: &Sandbox,
    cache: &ComponentCache,
    bytes: &[u8],
    origin: RuleOrigin,
) -> Result<LoadedRule, LoadError> {
    let engine = sandbox.engine();
    let (component, cache_outcome) = cache.load(engine, bytes).map_err(|e| LoadError::Compile {
        origin: origin.clone(),
        reason: format!("{e:#}"),
    })?;

    // Name the interface version mismatch before the linker's generic error.
    let ty = component.component_type();
    let mut reports_progress = false;
    let imports = ty
        .imports(engine)
        .map(|(name, item)| (name.to_owned(), Some(item.ty)));
    let exports = ty.exports(engine).map(|(name, _)| (name.to_owned(), None));
    for (name, item) in imports.chain(exports) {
        let Some(rest) = name.strip_prefix("spamward:rule/") else {
            continue;
        };
        let Some((iface, version)) = rest.split_once('@') else {
            continue;
        };
        if !SERVED_VERSIONS.contains(&version) {
            return Err(LoadError::Version {
                origin,
                needed: version.to_owned(),
            });
        }
        if iface == "host"
            && let Some(wasmtime::component::types::ComponentItem::ComponentInstance(host)) = item
        {
            reports_progress = host.exports(engine).any(|(f, _)| f == "judging");
        }
    }

    let pre = sandbox
        .linker()
        .instantiate_pre(&component)
        .and_then(RulePre::new)
        .map_err(|e| LoadError::Link {
            origin: origin.clone(),
            reason: format!("{e:#}"),
        })?;

    let describe_err = |reason: String| LoadError::Describe {
        origin: origin.clone(),
        reason,
    };
    let mut store = Store::new(
        engine,
        StoreData::new(
            "(loading)".into(),
            sandbox.limits(),
            Default::default(),
            Arc::default(),
            Arc::new(HostLookups::default()),
        ),
    );
    store.limiter(|d| &mut d.limits);
    store.set_epoch_deadline(sandbox.limits().budget_ticks());
    let instance = pre
        .instantiate(&mut store)
        .map_err(|e| describe_err(format!("{e:#}")))?;
    let info = instance
        .describe(&mut store)
        .map_err(|e| describe_err(format!("{e:#}")))?;
    let filters: Vec<_> = info
        .subscriptions
        .iter()
        .map(convert::subscription)
        .collect();
    let meta = meta_from_info(info, origin.clone()).map_err(describe_err)?;
    let subscriptions = meta.subscriptions.iter().fold(0, |m, k| m | k.bit());
    Ok(LoadedRule {
        meta,
        subscriptions,
        filtered: filters
            .iter()
            .any(|s| !s.any_of.is_empty() || !s.all_of.is_empty() || !s.none_of.is_empty()),
        filters,
        cache: cache_outcome,
        hash: content_hash(bytes),
        reports_progress,
        pre,
    })
}

/// The hex SHA-256 of a component's bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

fn meta_from_info(info: wit::RuleInfo, source: RuleOrigin) -> Result<RuleMeta, String> {
    if info.name.is_empty()
        || !info
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "rule name {:?} must be non-empty kebab-case (a-z, 0-9, -)",
            info.name
        ));
    }
    let settings = info
        .settings
        .into_iter()
        .map(|s| {
            let default = serde_json::from_str(&s.default_json)
                .map_err(|e| format!("default of setting {:?} is not JSON: {e}", s.name))?;
            Ok(SettingSpec {
                name: s.name,
                description: s.description,
                default,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(RuleMeta {
        name: info.name,
        version: info.version,
        summary: info.summary,
        subscriptions: {
            let mut kinds: Vec<EventKind> = info
                .subscriptions
                .iter()
                .map(|s| convert::kind(s.kind))
                .collect();
            kinds.sort();
            kinds.dedup();
            kinds
        },
        actions: info.actions.into_iter().map(convert::action).collect(),
        settings,
        sdk_version: info.sdk_version,
        source,
    })
}
