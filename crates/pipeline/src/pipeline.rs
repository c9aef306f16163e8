//! The pipeline every command runs, built in one place: the rules (bundled,
//! then the rules directory's) each started with its `[rules.<name>]`
//! settings, events through the dispatcher and the sandboxed rules, the
//! rules' verdicts through the policy, findings out.
//!
//! `scan`, `audit` and `bench` build it with [`Pipeline::from_config`]; what
//! differs between them is only where the events come from and what is done
//! with the findings.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, ConfigError, HOST_KEYS, RuleConfig};
use crate::policy::ledger::Terms;
use crate::policy::{Admission, Finding, Grant, Policy, RuleVerdict};
use spamward_contract::state::RuleState;
use spamward_engine::{
    ComponentCache, Dispatcher, LoadError, LoadedRule, RuleFailure, RuleReport, RuleRunner,
    RuleSet, RulesDirError, Sandbox,
};
use spamward_model::Event;
use spamward_model::HostLookups;

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The wasm engine did not start.
    #[error("cannot start the wasm engine: {0}")]
    Sandbox(String),
    /// The rules directory could not be listed.
    #[error(transparent)]
    RulesDir(#[from] RulesDirError),
    /// The configuration names something wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A rule refused the settings the admin wrote for it.
    #[error("{file}: [rules.{rule}]: rejected its settings: {reason}")]
    Settings {
        /// The configuration file.
        file: String,
        /// The rule.
        rule: String,
        /// What the rule said.
        reason: String,
    },
}

/// The rules available to a run, compiled in their sandbox.
pub struct Rules {
    sandbox: Arc<Sandbox>,
    cache: ComponentCache,
    set: RuleSet,
}

impl Rules {
    /// Starts the sandbox with the configured limits and loads the bundled
    /// rules, then those of `rules_dir`; compiled rules are cached in
    /// `cache_dir` (by default the user's cache directory). A rule that
    /// fails to load is logged and kept in [`Rules::errors`]; a
    /// `[rules.<name>]` table naming no rule is an error.
    pub fn load(
        config: &Config,
        rules_dir: Option<&Path>,
        cache_dir: Option<&Path>,
    ) -> Result<Self, PipelineError> {
        let sandbox = Sandbox::new(config.engine.limits())
            .map_err(|e| PipelineError::Sandbox(format!("{e:#}")))?;
        let cache = match cache_dir {
            Some(dir) => ComponentCache::new(dir.to_path_buf()),
            None => ComponentCache::default_dir()
                .map_or_else(ComponentCache::disabled, ComponentCache::new),
        };
        let set = RuleSet::load(&sandbox, &cache, rules_dir)?;
        config.check_rule_names(set.rules.keys().map(String::as_str))?;
        Ok(Rules {
            sandbox: Arc::new(sandbox),
            cache,
            set,
        })
    }

    /// The rules as they are now, loaded again in the same sandbox (a
    /// reload): a component whose bytes did not change comes from the cache.
    /// It runs wherever it is called, so a daemon calls it off its event
    /// path.
    pub fn reload(&self, config: &Config, rules_dir: Option<&Path>) -> Result<Self, PipelineError> {
        let set = RuleSet::load(&self.sandbox, &self.cache, rules_dir)?;
        config.check_rule_names(set.rules.keys().map(String::as_str))?;
        Ok(Rules {
            sandbox: self.sandbox.clone(),
            cache: self.cache.clone(),
            set,
        })
    }

    /// Every loaded rule, by name.
    pub fn all(&self) -> &BTreeMap<String, Arc<LoadedRule>> {
        &self.set.rules
    }

    /// The rules that could not be loaded.
    pub fn errors(&self) -> &[LoadError] {
        &self.set.errors
    }
}

/// What a daemon's checkpoint keeps of a pipeline besides the input
/// offsets: each rule's host state and the policy's open findings, as
/// bytes.
#[derive(Debug, Default, Clone)]
pub struct Saved {
    /// Rule name → [`RuleState::snapshot`].
    pub rule_states: BTreeMap<String, Vec<u8>>,
    /// [`Policy::snapshot`], when one was taken.
    pub policy: Option<Vec<u8>>,
}

/// What a reload did to one rule.
#[derive(Debug)]
pub enum Change {
    /// A rule that did not run now does.
    Started,
    /// A new version or new settings: started anew from the host state
    /// the old one left.
    Replaced,
    /// Its mode, granted actions or `expire_after` changed: the rule runs
    /// on, its verdicts are judged by the new grant.
    Regranted,
    /// Gone from the rules, or `enabled = false`.
    Stopped,
    /// Its new version or settings did not start; the running one goes on.
    Refused(RuleFailure),
}

/// What runs of a rule, to tell what a reload changes.
struct Running {
    hash: String,
    settings: serde_json::Map<String, serde_json::Value>,
    grant: Grant,
    terms: Terms,
}

/// This server's own addresses, which no action blocks (none when they
/// cannot be listed: loopback stays allowed regardless).
fn own_addresses() -> Vec<std::net::IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::warn!("this server's addresses not listed for the allow-list: {e}");
            Vec::new()
        }
    }
}

/// What the admin's table grants `rule`, and what its actions carry.
fn grant_of(rule: &LoadedRule, rc: &RuleConfig) -> (Grant, Terms) {
    (
        Grant {
            declared: rule.meta.actions.clone(),
            granted: rc.granted.clone(),
            mode: rc.mode,
        },
        Terms {
            version: rule.meta.version.clone(),
            expire_after: rc.expire_after,
        },
    )
}

/// Events in, findings out.
pub struct Pipeline {
    dispatcher: Dispatcher,
    policy: Policy,
    disabled: Vec<(String, RuleFailure)>,
    running: BTreeMap<String, Running>,
    lookups: Arc<HostLookups>,
}

impl Pipeline {
    /// Starts every rule of `rules` that `config` enables, with its
    /// settings and mode, on `lookups`; the policy keeps every finding of
    /// the run.
    ///
    /// A rule that refuses settings the admin wrote is an error naming the
    /// table; one that fails to start on its defaults is left out and listed
    /// in [`Pipeline::disabled`], and the rest run.
    pub fn from_config(
        config: &Config,
        rules: &Rules,
        lookups: Arc<HostLookups>,
    ) -> Result<Self, PipelineError> {
        Self::build(config, rules, lookups, Policy::new(), &Saved::default())
    }

    /// The daemon's pipeline: [`Pipeline::from_config`] whose rules start
    /// from the host state `saved` kept for them, and whose policy starts
    /// from the findings it held and forgets those quiet for
    /// `[daemon] forget_after`.
    pub fn resume(
        config: &Config,
        rules: &Rules,
        lookups: Arc<HostLookups>,
        saved: &Saved,
    ) -> Result<Self, PipelineError> {
        let forget = config.daemon.forget_after.as_secs();
        let mut policy = Policy::forgetting(u32::try_from(forget).unwrap_or(u32::MAX));
        if let Some(bytes) = &saved.policy
            && let Err(e) = policy.restore(bytes)
        {
            // A policy that cannot be read costs only the dedup memory:
            // a finding already stored may be stored again as a new one.
            tracing::warn!("saved findings memory not readable, starting empty: {e}");
        }
        Self::build(config, rules, lookups, policy, saved)
    }

    fn build(
        config: &Config,
        rules: &Rules,
        lookups: Arc<HostLookups>,
        mut policy: Policy,
        saved: &Saved,
    ) -> Result<Self, PipelineError> {
        let mut runners = Vec::new();
        let mut disabled = Vec::new();
        let mut running = BTreeMap::new();
        let limits = rules.sandbox.limits();
        policy.set_allow_list(config.allow_list(own_addresses())?);
        for (name, rule) in &rules.set.rules {
            let rc = config.rule(&rule.meta)?;
            if !rc.enabled {
                continue;
            }
            let configured = config
                .rules
                .get(name)
                .is_some_and(|t| t.keys().any(|k| !HOST_KEYS.contains(&k.as_str())));
            let state = saved
                .rule_states
                .get(name)
                .and_then(|bytes| match RuleState::restore(bytes, limits.state_bytes) {
                    Ok(state) => Some(state),
                    Err(e) => {
                        tracing::warn!(rule = %name, "saved state not readable, starting empty: {e}");
                        None
                    }
                })
                .unwrap_or_else(|| RuleState::with_limit(limits.state_bytes));
            let runner_settings = rc.settings.clone();
            let (grant, terms) = grant_of(rule, &rc);
            match RuleRunner::resume(rule.clone(), rc.settings, lookups.clone(), limits, state) {
                Ok(runner) => {
                    policy.grant(name, grant.clone());
                    running.insert(
                        name.clone(),
                        Running {
                            hash: rule.hash.clone(),
                            settings: runner_settings,
                            grant,
                            terms,
                        },
                    );
                    runners.push(runner);
                }
                Err(RuleFailure::Settings(e)) if configured => {
                    let file = config
                        .path
                        .as_ref()
                        .map_or("spamward.toml".into(), |p| p.display().to_string());
                    return Err(PipelineError::Settings {
                        file,
                        rule: name.clone(),
                        reason: e.to_string(),
                    });
                }
                Err(e) => disabled.push((name.clone(), e)),
            }
        }
        Ok(Pipeline {
            dispatcher: Dispatcher::new(runners, config.engine.dispatch(), lookups.clone()),
            policy,
            disabled,
            running,
            lookups,
        })
    }

    /// Brings the running rules in line with `config` and `rules` (a
    /// reload), between batches: a rule whose component (by content hash),
    /// settings or mode changed starts anew from the host state its running
    /// version left; a new one starts; one no longer loaded, or now
    /// `enabled = false`, stops. One that fails to start leaves its running
    /// version in place. Events pushed before reach the old rules, events
    /// pushed after the new ones; `observe` hears about the verdicts that
    /// come back meanwhile. Returns each rule that changed, and how.
    pub fn apply(
        &mut self,
        config: &Config,
        rules: &Rules,
        observe: &mut impl FnMut(Admission<'_>),
    ) -> Vec<(String, Change)> {
        let limits = rules.sandbox.limits();
        let mut changes = Vec::new();
        match config.allow_list(own_addresses()) {
            Ok(allow) => self.policy.set_allow_list(allow),
            // A loaded configuration was validated; this keeps the old
            // list should one slip through.
            Err(e) => tracing::error!("allow-list not changed: {e}"),
        }
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| {
                !rules.set.rules.contains_key(*name)
                    || rules
                        .set
                        .rules
                        .get(*name)
                        .is_some_and(|r| config.rule(&r.meta).is_ok_and(|rc| !rc.enabled))
            })
            .cloned()
            .collect();
        let Pipeline {
            dispatcher,
            policy,
            running,
            disabled,
            lookups,
        } = self;
        for name in gone {
            dispatcher.retire(&mut |v: RuleVerdict| observe(policy.admit(v)), &name);
            running.remove(&name);
            changes.push((name, Change::Stopped));
        }
        for (name, rule) in &rules.set.rules {
            let rc = match config.rule(&rule.meta) {
                Ok(rc) if rc.enabled => rc,
                Ok(_) => continue,
                Err(e) => {
                    changes.push((
                        name.clone(),
                        Change::Refused(RuleFailure::Settings(e.to_string())),
                    ));
                    continue;
                }
            };
            let (grant, terms) = grant_of(rule, &rc);
            let current = running.get_mut(name);
            if let Some(r) = current
                && r.hash == rule.hash
                && r.settings == rc.settings
            {
                // Only what the host does with its verdicts changed: the
                // rule runs on as it is.
                if r.grant != grant || r.terms != terms {
                    policy.grant(name, grant.clone());
                    r.grant = grant;
                    r.terms = terms;
                    changes.push((name.clone(), Change::Regranted));
                }
                continue;
            }
            let current = running.get(name);
            let state = dispatcher
                .state_of(&mut |v: RuleVerdict| observe(policy.admit(v)), name)
                .unwrap_or_else(|| RuleState::with_limit(limits.state_bytes));
            match RuleRunner::resume(
                rule.clone(),
                rc.settings.clone(),
                lookups.clone(),
                limits,
                state,
            ) {
                Ok(runner) => {
                    dispatcher.install(&mut |v: RuleVerdict| observe(policy.admit(v)), runner);
                    policy.grant(name, grant.clone());
                    let change = if current.is_some() {
                        Change::Replaced
                    } else {
                        Change::Started
                    };
                    running.insert(
                        name.clone(),
                        Running {
                            hash: rule.hash.clone(),
                            settings: rc.settings,
                            grant,
                            terms,
                        },
                    );
                    disabled.retain(|(n, _)| n != name);
                    changes.push((name.clone(), change));
                }
                Err(e) => changes.push((name.clone(), Change::Refused(e))),
            }
        }
        changes
    }

    /// Each running rule's terms for the ledger: its version and how long
    /// its actions last.
    pub fn terms(&self) -> impl Iterator<Item = (&str, &Terms)> {
        self.running
            .iter()
            .map(|(name, r)| (name.as_str(), &r.terms))
    }

    /// Answers the rules' domain questions from `lookups` from the next
    /// event on (the server's domains were read again); `observe` hears
    /// about the verdicts that come back meanwhile. A rule started by a
    /// later reload gets them too.
    pub fn set_lookups(
        &mut self,
        lookups: Arc<HostLookups>,
        observe: &mut impl FnMut(Admission<'_>),
    ) {
        let Pipeline {
            dispatcher, policy, ..
        } = self;
        dispatcher.set_lookups(
            &mut |v: RuleVerdict| observe(policy.admit(v)),
            lookups.clone(),
        );
        self.lookups = lookups;
    }

    /// Rules left out because they failed to start, and why.
    pub fn disabled(&self) -> &[(String, RuleFailure)] {
        &self.disabled
    }

    /// Takes one event; the verdicts rules hand back meanwhile become
    /// findings.
    pub fn push(&mut self, event: Event) {
        self.push_observed(event, &mut |_| {});
    }

    /// [`Pipeline::push`], telling `observe` what became of each verdict
    /// (a new finding, a repeat, dropped) as the policy takes it.
    pub fn push_observed(&mut self, event: Event, observe: &mut impl FnMut(Admission<'_>)) {
        let Pipeline {
            dispatcher, policy, ..
        } = self;
        dispatcher.push(event, &mut |v: RuleVerdict| observe(policy.admit(v)));
    }

    /// Hands what is queued to the rules now (input paused), telling
    /// `observe` about the verdicts that came back meanwhile.
    pub fn flush(&mut self, observe: &mut impl FnMut(Admission<'_>)) {
        let Pipeline {
            dispatcher, policy, ..
        } = self;
        dispatcher.flush(&mut |v: RuleVerdict| observe(policy.admit(v)));
    }

    /// Hands what is queued to the rules and waits until they have judged
    /// every event pushed so far: a quiet input's findings are all made.
    pub fn drain(&mut self, observe: &mut impl FnMut(Admission<'_>)) {
        let Pipeline {
            dispatcher, policy, ..
        } = self;
        dispatcher.drain(&mut |v: RuleVerdict| observe(policy.admit(v)));
    }

    /// Waits until every rule has judged every event pushed so far, then
    /// returns what a checkpoint saves with the input offsets: each rule's
    /// host state and the policy's open findings. `observe` hears about the
    /// last verdicts.
    pub fn checkpoint(&mut self, observe: &mut impl FnMut(Admission<'_>)) -> Saved {
        let Pipeline {
            dispatcher, policy, ..
        } = self;
        let mut sink = |v: RuleVerdict| observe(policy.admit(v));
        dispatcher.drain(&mut sink);
        let rule_states = dispatcher.snapshot_states(&mut sink).into_iter().collect();
        Saved {
            rule_states,
            policy: Some(policy.snapshot()),
        }
    }

    /// How each running rule fares now (waits for the rules to be idle).
    pub fn reports(&mut self, observe: &mut impl FnMut(Admission<'_>)) -> Vec<RuleReport> {
        let Pipeline {
            dispatcher, policy, ..
        } = self;
        let mut reports = dispatcher.reports(&mut |v: RuleVerdict| observe(policy.admit(v)));
        for r in &mut reports {
            r.dropped_findings = policy.dropped(&r.rule);
        }
        reports
    }

    /// Runs what is queued; returns the findings, most severe first, and
    /// each rule's report.
    pub fn finish(self) -> (Vec<Finding>, Vec<RuleReport>) {
        let Pipeline {
            dispatcher,
            mut policy,
            ..
        } = self;
        let mut reports = dispatcher.finish(&mut |v| {
            policy.admit(v);
        });
        for r in &mut reports {
            r.dropped_findings = policy.dropped(&r.rule);
        }
        (policy.into_findings(), reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let c: Config = toml::from_str(text).expect("valid TOML");
        c.validate().expect("valid settings");
        c
    }

    #[test]
    fn a_reload_replaces_restarts_stops_and_refuses_rule_by_rule() {
        let cache = tempfile::tempdir().unwrap();
        let start = config("");
        let rules = Rules::load(&start, None, Some(cache.path())).unwrap();
        let lookups = Arc::new(HostLookups::default());
        let mut p = Pipeline::from_config(&start, &rules, lookups).unwrap();
        let mut none = |_: Admission<'_>| {};
        assert!(
            p.apply(&start, &rules, &mut none).is_empty(),
            "nothing changed"
        );

        let changed =
            config("[rules.relay-volume]\ndaily_limit = 50\n[rules.mailman]\nenabled = false\n");
        let rules = rules.reload(&changed, None).unwrap();
        let changes = p.apply(&changed, &rules, &mut none);
        let names: Vec<(&str, &str)> = changes
            .iter()
            .map(|(n, c)| {
                let what = match c {
                    Change::Started => "started",
                    Change::Replaced => "replaced",
                    Change::Regranted => "regranted",
                    Change::Stopped => "stopped",
                    Change::Refused(_) => "refused",
                };
                (n.as_str(), what)
            })
            .collect();
        assert_eq!(
            names,
            [("mailman", "stopped"), ("relay-volume", "replaced")]
        );

        let back = config("[rules.relay-volume]\ndaily_limit = 50\n");
        let changes = p.apply(&back, &rules, &mut none);
        assert!(matches!(changes.as_slice(), [(n, Change::Started)] if n == "mailman"));

        // Settings the rule refuses: the running version goes on.
        let mut bad = config("[rules.relay-volume]\ndaily_limit = 50\n");
        bad.rules
            .get_mut("relay-volume")
            .unwrap()
            .insert("daily_limit".into(), toml::Value::String("lots".into()));
        let changes = p.apply(&bad, &rules, &mut none);
        assert!(
            matches!(changes.as_slice(), [(n, Change::Refused(_))] if n == "relay-volume"),
            "{changes:?}"
        );
        assert!(
            p.apply(&back, &rules, &mut none).is_empty(),
            "50 still runs"
        );

        // A new grant or mode: the rule runs on, judged by the new grant.
        let enforce = config(
            "[rules.relay-volume]\ndaily_limit = 50\nmode = \"enforce\"\nactions = [\"hold-outgoing\"]\n",
        );
        let changes = p.apply(&enforce, &rules, &mut none);
        assert!(matches!(changes.as_slice(), [(n, Change::Regranted)] if n == "relay-volume"));
    }
}
