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

use crate::config::{Config, ConfigError};
use crate::policy::{Admission, Finding, Grant, Policy, RuleVerdict};
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
    sandbox: Sandbox,
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
        Ok(Rules { sandbox, set })
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

/// Events in, findings out.
pub struct Pipeline {
    dispatcher: Dispatcher,
    policy: Policy,
    disabled: Vec<(String, RuleFailure)>,
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
        let mut runners = Vec::new();
        let mut disabled = Vec::new();
        let mut policy = Policy::new();
        for (name, rule) in &rules.set.rules {
            let rc = config.rule(&rule.meta)?;
            if !rc.enabled {
                continue;
            }
            let configured = config
                .rules
                .get(name)
                .is_some_and(|t| t.keys().any(|k| k != "enabled" && k != "mode"));
            match RuleRunner::new(
                rule.clone(),
                rc.settings,
                lookups.clone(),
                rules.sandbox.limits(),
            ) {
                Ok(runner) => {
                    policy.grant(
                        name,
                        Grant {
                            declared: rule.meta.actions.clone(),
                            mode: rc.mode,
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
            dispatcher: Dispatcher::new(runners, config.engine.dispatch(), lookups),
            policy,
            disabled,
        })
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
