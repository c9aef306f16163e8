//! `spamward.toml`: how inputs are read, engine limits, and each rule's
//! table.
//!
//! ```toml
//! [input]
//! timezone = "system"   # the zone logs write local time in
//!
//! [engine]
//! batch_size = 1024
//! workers = 0           # threads running rules; 0: the reading thread runs them
//! memory_limit_mb = 64
//! batch_budget_ms = 1000
//! state_limit_mb = 64   # host-side state (windows, sets, kv) per rule
//!
//! [policy]
//! allow = ["203.0.113.0/24", "owner@example.com"]  # never acted on
//! max_actions_per_hour = 20   # the circuit breaker
//! cooldown = "1h"             # a released target is left alone this long
//!
//! [actions]
//! backend = "auto"            # "cpanel", "exim" or "auto"
//!
//! [rules.relay-volume]
//! enabled = true        # host keys: enabled, mode, actions, expire_after
//! mode = "dry-run"      # or "enforce"
//! actions = ["alert"]   # the actions granted to the rule
//! expire_after = "1h"   # undo an action after this long ("never": on release)
//! daily_limit = 1000    # everything else is the rule's own setting
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::allow::AllowList;
use crate::policy::ledger::{Expiry, Safeguards};
use crate::policy::{Action, Mode};
use spamward_engine::{DispatchOptions, Limits, RuleMeta};
use spamward_model::LocalZone;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How inputs are read.
    #[serde(default)]
    pub input: InputConfig,
    /// Engine limits.
    #[serde(default)]
    pub engine: EngineConfig,
    /// How `spamward run` follows the server.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// What a granted verdict may touch and how often.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// How actions are carried out.
    #[serde(default)]
    pub actions: ActionsConfig,
    /// `[rules.<name>]` tables.
    #[serde(default)]
    pub rules: BTreeMap<String, toml::Table>,
    /// Where it was read from (for messages).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// `[input]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    /// The time zone logs write their local times in: `system` (this
    /// machine's, as a local Exim uses), `UTC`, or an IANA name such as
    /// `Europe/Berlin` for a log copied from a server elsewhere.
    pub timezone: String,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            timezone: "system".into(),
        }
    }
}

/// `[daemon]`: how `spamward run` follows the server. Every key is
/// optional.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Main logs to follow; empty means `/var/log/exim_mainlog` (cPanel) or
    /// `/var/log/exim4/mainlog` (Debian), whichever exists.
    pub mainlog: Vec<PathBuf>,
    /// The state file (also `--state`).
    pub state: PathBuf,
    /// Where a log is first read from when no offset was saved for it.
    pub start_at: StartAt,
    /// A partial batch goes to the rules after this many milliseconds
    /// without a full one.
    pub flush_ms: u64,
    /// How often offsets, rule state and findings are saved together.
    #[serde(deserialize_with = "duration")]
    pub checkpoint_every: Duration,
    /// How often the queue is read.
    #[serde(deserialize_with = "duration")]
    pub queue_every: Duration,
    /// Exim's spool directory (or its `input/`); none means
    /// `/var/spool/exim` (cPanel) or `/var/spool/exim4` (Debian), whichever
    /// exists. When it cannot be read, the queue is asked of `exim -bp`.
    pub spool: Option<PathBuf>,
    /// How often the server's configuration is read again.
    #[serde(deserialize_with = "duration")]
    pub server_every: Duration,
    /// A finding nobody repeated for this long (event time) is closed: a
    /// later verdict about its target starts a new one.
    #[serde(deserialize_with = "duration")]
    pub forget_after: Duration,
}

/// Where a log without a saved offset is first read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// What is written from now on (the default: a daemon judges the
    /// present, `scan` the past).
    End,
    /// The whole file first.
    Beginning,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            mainlog: Vec::new(),
            state: PathBuf::from("/var/lib/spamward/state.db"),
            start_at: StartAt::End,
            flush_ms: 200,
            checkpoint_every: Duration::from_secs(5),
            queue_every: Duration::from_secs(60),
            spool: None,
            server_every: Duration::from_secs(300),
            forget_after: Duration::from_secs(86_400),
        }
    }
}

impl DaemonConfig {
    /// The main logs to follow: the configured ones, else the first of the
    /// usual places under `root` that exists (else cPanel's, to wait for).
    pub fn mainlogs(&self, root: &Path) -> Vec<PathBuf> {
        if !self.mainlog.is_empty() {
            return self.mainlog.clone();
        }
        let usual = ["var/log/exim_mainlog", "var/log/exim4/mainlog"];
        let found = usual.iter().map(|p| root.join(p)).find(|p| p.exists());
        vec![found.unwrap_or_else(|| root.join(usual[0]))]
    }

    /// Exim's spool: the configured one, else the first of the usual
    /// places under `root` that exists.
    pub fn spool(&self, root: &Path) -> Option<PathBuf> {
        if let Some(spool) = &self.spool {
            return Some(spool.clone());
        }
        ["var/spool/exim", "var/spool/exim4"]
            .iter()
            .map(|p| root.join(p))
            .find(|p| p.is_dir())
    }
}

/// `[policy]`: what no action touches, and how many may run.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Accounts, mailboxes, domains, IPs and CIDR ranges never acted on,
    /// besides the defaults (the system users, loopback, this server's
    /// addresses).
    pub allow: Vec<String>,
    /// The circuit breaker: enforcement actions (alerts aside) allowed in
    /// any hour; past it they become alerts.
    pub max_actions_per_hour: u32,
    /// How long a target an operator released is left alone (unless a
    /// critical verdict on newer evidence arrives).
    #[serde(deserialize_with = "duration")]
    pub cooldown: Duration,
    /// Loopback (`127.0.0.0/8`, `::1`) is never acted on. `false` only
    /// where attackers really arrive on loopback (a local proxy, a test).
    pub allow_loopback: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            allow: Vec::new(),
            max_actions_per_hour: 20,
            cooldown: Duration::from_secs(3600),
            allow_loopback: true,
        }
    }
}

impl PolicyConfig {
    /// The ledger's numbers.
    pub fn safeguards(&self) -> Safeguards {
        Safeguards {
            max_actions_per_hour: self.max_actions_per_hour,
            cooldown_seconds: i64::try_from(self.cooldown.as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// `[actions]`: how actions are carried out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    /// Which server's tools act: `cpanel`, `exim`, or `auto` (cPanel when
    /// `whmapi1` is present).
    pub backend: Backend,
    /// The plain-Exim backend's hold list (one login, account or domain a
    /// line), read by the shipped ACL.
    pub exim_hold_list: PathBuf,
    /// The plain-Exim backend's suspend list.
    pub exim_suspend_list: PathBuf,
    /// The Exim command `freeze-message` adds `-Mf <id>` to (empty: the
    /// binary at its usual place); e.g. `["/usr/sbin/exim4", "-C",
    /// "/etc/exim4/test.conf"]`.
    pub exim_command: Vec<String>,
    /// How `block-ip` blocks: `"nft"` (an `inet spamward` table of
    /// spamward's own, with sets whose elements time out), or a command
    /// template such as `["csf", "-td", "{ip}", "{seconds}", "spamward:
    /// {summary}"]`.
    pub block_ip: BlockIp,
    /// The command template that lifts a block made by a `block_ip`
    /// template (e.g. `["csf", "-tr", "{ip}"]`); without one, a template's
    /// block ends by its own time-out (`{seconds}`).
    pub unblock_ip: Vec<String>,
    /// The nft command (`["nft"]`); a test runs it in its own network
    /// namespace (`["ip", "netns", "exec", "NAME", "nft"]`).
    pub nft_command: Vec<String>,
    /// Where alerts are POSTed as JSON (`http://` or `https://`), if
    /// anywhere.
    pub webhook: Option<String>,
    /// Who alerts are mailed to, through the local sendmail, if anyone.
    pub alert_email: Option<String>,
    /// The sendmail command the alert mail is piped to.
    pub sendmail_command: Vec<String>,
}

/// `[actions] block_ip`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum BlockIp {
    /// A name: `"nft"` is the one there is.
    Named(String),
    /// A command template: `{ip}`, `{seconds}`, `{summary}` and `{rule}`
    /// are filled in, each argument on its own (no shell).
    Template(Vec<String>),
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            backend: Backend::Auto,
            exim_hold_list: PathBuf::from("/etc/spamward/hold"),
            exim_suspend_list: PathBuf::from("/etc/spamward/suspend"),
            exim_command: Vec::new(),
            block_ip: BlockIp::Named("nft".into()),
            unblock_ip: Vec::new(),
            nft_command: vec!["nft".into()],
            webhook: None,
            alert_email: None,
            sendmail_command: ["/usr/sbin/sendmail", "-t", "-i"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Which server's tools carry actions out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// cPanel's when `whmapi1` is present, else plain Exim's.
    Auto,
    /// `whmapi1` and `uapi`.
    Cpanel,
    /// spamward's hold and suspend lists, read by the shipped Exim ACL.
    Exim,
}

/// A duration written the way people write them: `200ms`, `60s`, `5m`,
/// `1h 30m`, `1d` (or ISO 8601, `PT5M`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let span = text
        .strip_suffix('d')
        .and_then(|days| days.trim().parse::<u64>().ok())
        .map(|days| Ok(jiff::SignedDuration::from_hours(days as i64 * 24)))
        .unwrap_or_else(|| text.parse::<jiff::SignedDuration>());
    match span {
        Ok(d) if d.is_positive() => d.try_into().map_err(|_| format!("{text:?} is too long")),
        Ok(_) => Err(format!("{text:?}: must be longer than zero")),
        Err(e) => Err(format!(
            "{text:?} is not a duration ({e}); write e.g. 60s, 5m, 1h"
        )),
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// `[engine]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Events per batch.
    pub batch_size: usize,
    /// Threads running rules beside the reading thread; 0 (the default)
    /// runs them on the reading thread, which costs the least CPU.
    pub workers: usize,
    /// Memory cap per rule instance, MiB.
    pub memory_limit_mb: u32,
    /// CPU (wall-clock) budget per batch call, ms.
    pub batch_budget_ms: u64,
    /// Host-side state (windows, distinct sets, kv) per rule, MiB.
    pub state_limit_mb: u32,
    /// Extra rules directory (also `--rules`).
    pub rules_dir: Option<PathBuf>,
    /// Compiled-rule cache directory.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: spamward_engine::DEFAULT_BATCH,
            workers: 0,
            memory_limit_mb: 64,
            batch_budget_ms: 1000,
            state_limit_mb: 64,
            rules_dir: None,
            cache_dir: None,
        }
    }
}

/// The values each `[engine]` number may take: outside them a rule could
/// not run at all (`memory_limit_mb = 0`), the host could not start
/// (`workers = 100000`, `batch_size = 1e12`), or rules would fail at random
/// (a budget shorter than the epoch tick that measures it).
pub const ENGINE_RANGES: [(&str, u64, u64); 5] = [
    ("batch_size", 1, 65_536),
    ("workers", 0, 256),
    ("memory_limit_mb", 4, 4096),
    ("batch_budget_ms", 100, 60_000),
    ("state_limit_mb", 1, 4096),
];

impl EngineConfig {
    fn values(&self) -> [u64; 5] {
        [
            self.batch_size as u64,
            self.workers as u64,
            u64::from(self.memory_limit_mb),
            self.batch_budget_ms,
            u64::from(self.state_limit_mb),
        ]
    }

    /// The sandbox limits these settings describe.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: (self.memory_limit_mb as usize) << 20,
            batch_budget: Duration::from_millis(self.batch_budget_ms),
            state_bytes: (self.state_limit_mb as usize) << 20,
        }
    }

    /// How events are batched and run.
    pub fn dispatch(&self) -> DispatchOptions {
        DispatchOptions {
            batch_size: self.batch_size,
            workers: self.workers,
        }
    }
}

/// A configuration problem, naming the file and the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
    /// An `[engine]` or `[input]` value out of its range.
    #[error("{path}: [{table}] {key} = {value}: {problem}")]
    OutOfRange {
        /// File.
        path: String,
        /// Table.
        table: &'static str,
        /// Key.
        key: &'static str,
        /// The value given.
        value: String,
        /// The allowed values.
        problem: String,
    },
    /// TOML syntax or shape (the message includes line and column).
    #[error("{}: {message}", path.display())]
    Parse {
        /// File.
        path: PathBuf,
        /// toml's message.
        message: String,
    },
    /// A setting the rule does not have.
    #[error("{path}: [rules.{rule}]: unknown setting `{key}` (known: {known})")]
    UnknownSetting {
        /// File.
        path: String,
        /// Rule.
        rule: String,
        /// Key.
        key: String,
        /// The rule's settings.
        known: String,
    },
    /// A table for a rule that isn't loaded.
    #[error("{path}: [rules.{rule}]: no such rule (loaded: {loaded})")]
    UnknownRule {
        /// File.
        path: String,
        /// Rule.
        rule: String,
        /// Loaded rule names.
        loaded: String,
    },
    /// A host key with a bad value.
    #[error("{path}: [rules.{rule}]: `{key}` {problem}")]
    BadValue {
        /// File.
        path: String,
        /// Rule.
        rule: String,
        /// Key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// What the host makes of one rule's table.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// Run it at all.
    pub enabled: bool,
    /// Dry-run or enforce.
    pub mode: Mode,
    /// The actions granted to it (`alert` unless the table says more).
    pub granted: Vec<Action>,
    /// How long its actions stay in force.
    pub expire_after: Expiry,
    /// The rule's settings with defaults filled in.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl Config {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.path = Some(path.to_owned());
        config.validate()?;
        Ok(config)
    }

    /// Every `[engine]` number in its range and the `[input]` time zone
    /// known; the first value that is not is named with what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for ((key, min, max), value) in ENGINE_RANGES.iter().zip(self.engine.values()) {
            if !(*min..=*max).contains(&value) {
                let problem = if *key == "workers" {
                    format!("must be from {min} (rules on the reading thread) to {max}")
                } else {
                    format!("must be from {min} to {max}")
                };
                return Err(ConfigError::OutOfRange {
                    path: self.display_path(),
                    table: "engine",
                    key,
                    value: value.to_string(),
                    problem,
                });
            }
        }
        if !(1..=60_000).contains(&self.daemon.flush_ms) {
            return Err(ConfigError::OutOfRange {
                path: self.display_path(),
                table: "daemon",
                key: "flush_ms",
                value: self.daemon.flush_ms.to_string(),
                problem: "must be from 1 to 60000".into(),
            });
        }
        self.zone()?;
        let bad_actions =
            |key: &'static str, value: String, problem: &str| ConfigError::OutOfRange {
                path: self.display_path(),
                table: "actions",
                key,
                value,
                problem: problem.into(),
            };
        match &self.actions.block_ip {
            BlockIp::Named(name) if name != "nft" => {
                return Err(bad_actions(
                    "block_ip",
                    format!("{name:?}"),
                    "must be \"nft\" or a command template such as [\"csf\", \"-td\", \"{ip}\", \"{seconds}\"]",
                ));
            }
            BlockIp::Template(t) if !t.iter().any(|a| a.contains("{ip}")) => {
                return Err(bad_actions(
                    "block_ip",
                    format!("{t:?}"),
                    "a command template must pass {ip}",
                ));
            }
            _ => {}
        }
        if self.actions.nft_command.is_empty() {
            return Err(bad_actions(
                "nft_command",
                "[]".into(),
                "must name the nft program",
            ));
        }
        self.allow_list(std::iter::empty()).map(|_| ())
    }

    /// The allow-list: the defaults, this server's `own` addresses, and
    /// `[policy] allow`.
    pub fn allow_list(
        &self,
        own: impl IntoIterator<Item = std::net::IpAddr>,
    ) -> Result<AllowList, ConfigError> {
        let mut list = AllowList::defaults(own);
        if !self.policy.allow_loopback {
            list.expose_loopback();
        }
        for entry in &self.policy.allow {
            list.add(entry).map_err(|e| ConfigError::OutOfRange {
                path: self.display_path(),
                table: "policy",
                key: "allow",
                value: format!("{entry:?}"),
                problem: e.to_string(),
            })?;
        }
        Ok(list)
    }

    /// The zone logs write their times in (`[input] timezone`).
    pub fn zone(&self) -> Result<LocalZone, ConfigError> {
        LocalZone::named(&self.input.timezone).map_err(|e| ConfigError::OutOfRange {
            path: self.display_path(),
            table: "input",
            key: "timezone",
            value: format!("{:?}", self.input.timezone),
            problem: format!(
                "{e} (use \"system\", \"UTC\" or an IANA name such as \"Europe/Berlin\")"
            ),
        })
    }

    fn display_path(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "spamward.toml".into(), |p| p.display().to_string())
    }

    /// Every `[rules.<name>]` names a loaded rule.
    pub fn check_rule_names<'a>(
        &self,
        loaded: impl Iterator<Item = &'a str> + Clone,
    ) -> Result<(), ConfigError> {
        for name in self.rules.keys() {
            if !loaded.clone().any(|l| l == name) {
                return Err(ConfigError::UnknownRule {
                    path: self.display_path(),
                    rule: name.clone(),
                    loaded: loaded.clone().collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(())
    }

    /// The configuration of `rule`: host keys split off, settings checked
    /// against what the rule declared, defaults filled in.
    pub fn rule(&self, rule: &RuleMeta) -> Result<RuleConfig, ConfigError> {
        let mut out = RuleConfig {
            enabled: true,
            mode: Mode::DryRun,
            granted: vec![Action::Alert],
            expire_after: Expiry::default(),
            settings: rule.default_settings(),
        };
        let Some(table) = self.rules.get(&rule.name) else {
            return Ok(out);
        };
        let bad = |key: &str, problem: String| ConfigError::BadValue {
            path: self.display_path(),
            rule: rule.name.clone(),
            key: key.to_owned(),
            problem,
        };
        for (key, value) in table {
            match key.as_str() {
                "enabled" => {
                    out.enabled = value
                        .as_bool()
                        .ok_or_else(|| bad(key, format!("must be true or false, not {value}")))?
                }
                "mode" => {
                    out.mode = match value.as_str() {
                        Some("dry-run") => Mode::DryRun,
                        Some("enforce") => Mode::Enforce,
                        _ => {
                            return Err(bad(
                                key,
                                format!("must be \"dry-run\" or \"enforce\", not {value}"),
                            ));
                        }
                    }
                }
                "actions" => {
                    out.granted = granted_actions(value, &rule.actions).map_err(|p| bad(key, p))?
                }
                "expire_after" => {
                    out.expire_after = match value.as_str() {
                        Some("never") => Expiry::Never,
                        Some(text) => Expiry::After(
                            parse_duration(text)
                                .map_err(|p| bad(key, p))?
                                .as_secs()
                                .max(1),
                        ),
                        None => {
                            return Err(bad(
                                key,
                                format!(
                                    "must be a duration such as \"1h\" or \"never\", not {value}"
                                ),
                            ));
                        }
                    }
                }
                _ if out.settings.contains_key(key) => {
                    let json = serde_json::to_value(value)
                        .map_err(|e| bad(key, format!("cannot be passed to the rule: {e}")))?;
                    let default = &out.settings[key];
                    if !same_shape(default, &json) {
                        return Err(bad(
                            key,
                            format!(
                                "must be {} like its default {default}, not {value}",
                                shape(default)
                            ),
                        ));
                    }
                    out.settings.insert(key.clone(), json);
                }
                _ => {
                    return Err(ConfigError::UnknownSetting {
                        path: self.display_path(),
                        rule: rule.name.clone(),
                        key: key.clone(),
                        known: rule
                            .settings
                            .iter()
                            .map(|s| s.name.as_str())
                            .chain(HOST_KEYS)
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The keys of a rule's table the host reads; the rest are the rule's.
pub const HOST_KEYS: [&str; 4] = ["enabled", "mode", "actions", "expire_after"];

/// `actions = [...]`: each one an action the rule declared, or `alert`.
fn granted_actions(value: &toml::Value, declared: &[Action]) -> Result<Vec<Action>, String> {
    let declared_names = || {
        declared
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let list = value
        .as_array()
        .ok_or_else(|| format!("must be a list of actions such as [\"alert\"], not {value}"))?;
    let mut granted = Vec::new();
    for item in list {
        let name = item.as_str().unwrap_or_default();
        let Some(action) = Action::ALL.into_iter().find(|a| a.name() == name) else {
            let all: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
            return Err(format!(
                "{item} is not an action (actions: {})",
                all.join(", ")
            ));
        };
        // Every rule may be granted alerts: an alert is what any finding
        // can become, whatever the rule asks.
        if !declared.contains(&action) && action != Action::Alert {
            return Err(format!(
                "grants {name}, which the rule does not declare (it declares: {})",
                declared_names()
            ));
        }
        if !granted.contains(&action) {
            granted.push(action);
        }
    }
    Ok(granted)
}

/// Whether a configured value has the JSON type of the setting's default
/// (a number for a number, a list for a list, ...), so a mistyped value is
/// named here rather than inside the rule.
fn same_shape(default: &serde_json::Value, given: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (default, given) {
        (V::Null, _) => true,
        (V::Number(d), V::Number(g)) => !(d.is_u64() || d.is_i64()) || g.is_u64() || g.is_i64(),
        (V::Array(_), V::Array(_))
        | (V::Object(_), V::Object(_))
        | (V::String(_), V::String(_))
        | (V::Bool(_), V::Bool(_)) => true,
        _ => false,
    }
}

fn shape(v: &serde_json::Value) -> &'static str {
    use serde_json::Value as V;
    match v {
        V::Null => "anything",
        V::Bool(_) => "true or false",
        V::Number(n) if n.is_u64() || n.is_i64() => "a whole number",
        V::Number(_) => "a number",
        V::String(_) => "a string",
        V::Array(_) => "a list",
        V::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_engine::{RuleOrigin, SettingSpec};

    fn meta() -> RuleMeta {
        RuleMeta {
            name: "relay-volume".into(),
            version: "0.1.0".into(),
            summary: String::new(),
            subscriptions: vec![],
            actions: vec![Action::HoldOutgoing, Action::Alert],
            settings: vec![SettingSpec {
                name: "daily_limit".into(),
                description: String::new(),
                default: serde_json::json!(1000),
            }],
            sdk_version: "0.1.0".into(),
            source: RuleOrigin::Bundled,
        }
    }

    fn parse(text: &str) -> Config {
        let mut c: Config = toml::from_str(text).unwrap();
        c.path = Some("spamward.toml".into());
        c
    }

    #[test]
    fn settings_override_defaults_and_host_keys_are_split_off() {
        let c = parse("[rules.relay-volume]\nmode = \"enforce\"\ndaily_limit = 50\n");
        let r = c.rule(&meta()).unwrap();
        assert_eq!(r.mode, Mode::Enforce);
        assert!(r.enabled);
        assert_eq!(r.settings["daily_limit"], serde_json::json!(50));
    }

    #[test]
    fn unknown_setting_names_file_rule_and_key() {
        let c = parse("[rules.relay-volume]\ndayly_limit = 50\n");
        let e = c.rule(&meta()).unwrap_err().to_string();
        assert_eq!(
            e,
            "spamward.toml: [rules.relay-volume]: unknown setting `dayly_limit` (known: daily_limit, enabled, mode, actions, expire_after)"
        );
    }

    #[test]
    fn mistyped_value_is_named_with_the_expected_shape() {
        let c = parse("[rules.relay-volume]\ndaily_limit = \"lots\"\n");
        let e = c.rule(&meta()).unwrap_err().to_string();
        assert_eq!(
            e,
            "spamward.toml: [rules.relay-volume]: `daily_limit` must be a whole number like its default 1000, not \"lots\""
        );
        let c = parse("[rules.relay-volume]\ndaily_limit = 2.5\n");
        assert!(c.rule(&meta()).is_err());
    }

    #[test]
    fn grants_default_to_alert_for_an_hour_and_are_read_from_the_table() {
        let r = parse("").rule(&meta()).unwrap();
        assert_eq!(r.granted, [Action::Alert]);
        assert_eq!(r.expire_after, Expiry::After(3600));
        let c = parse(
            "[rules.relay-volume]\nactions = [\"hold-outgoing\", \"alert\"]\nexpire_after = \"30m\"\n",
        );
        let r = c.rule(&meta()).unwrap();
        assert_eq!(r.granted, [Action::HoldOutgoing, Action::Alert]);
        assert_eq!(r.expire_after, Expiry::After(1800));
        let c = parse("[rules.relay-volume]\nexpire_after = \"never\"\nactions = []\n");
        let r = c.rule(&meta()).unwrap();
        assert_eq!(r.expire_after, Expiry::Never);
        assert!(
            r.granted.is_empty(),
            "an empty list grants nothing, not even alerts"
        );
    }

    #[test]
    fn bad_grants_name_the_key_and_what_is_allowed() {
        for (table, says) in [
            (
                "actions = [\"block-ip\"]",
                "`actions` grants block-ip, which the rule does not declare (it declares: hold-outgoing, alert)",
            ),
            (
                "actions = [\"hold\"]",
                "`actions` \"hold\" is not an action (actions: alert, hold-outgoing,",
            ),
            ("actions = \"alert\"", "`actions` must be a list of actions"),
            (
                "expire_after = \"soon\"",
                "`expire_after` \"soon\" is not a duration",
            ),
            (
                "expire_after = 60",
                "`expire_after` must be a duration such as \"1h\" or \"never\"",
            ),
        ] {
            let c = parse(&format!("[rules.relay-volume]\n{table}\n"));
            let e = c.rule(&meta()).unwrap_err().to_string();
            assert!(
                e.starts_with("spamward.toml: [rules.relay-volume]: "),
                "{e}"
            );
            assert!(e.contains(says), "{table}: {e}");
        }
    }

    #[test]
    fn the_policy_table_is_read_and_a_bad_allow_entry_named() {
        let c = parse(
            "[policy]\nallow = [\"203.0.113.0/24\", \"owner@example.com\"]\nmax_actions_per_hour = 5\ncooldown = \"2h\"\n",
        );
        c.validate().unwrap();
        assert_eq!(
            c.policy.safeguards(),
            Safeguards {
                max_actions_per_hour: 5,
                cooldown_seconds: 7200
            }
        );
        let allow = c.allow_list([]).unwrap();
        let ip = spamward_contract::verdict::Target::Ip("203.0.113.9".into());
        assert!(allow.covering(&ip).is_some());
        let c = parse("[policy]\nallow = [\"10.0.0.0/40\"]\n");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("[policy] allow"), "{e}");
        assert!(e.contains("\"10.0.0.0/40\" is not an account, mailbox, domain, IP or CIDR range (a bad CIDR range)"), "{e}");
        assert!(toml::from_str::<Config>("[policy]\nmax_actions = 5\n").is_err());
    }

    #[test]
    fn actions_values_are_checked_and_a_bad_one_named() {
        let c = parse("[actions]\nblock_ip = [\"csf\", \"-td\", \"{ip}\", \"{seconds}\"]\n");
        c.validate().unwrap();
        assert_eq!(
            c.actions.block_ip,
            BlockIp::Template(vec![
                "csf".into(),
                "-td".into(),
                "{ip}".into(),
                "{seconds}".into()
            ])
        );
        for (text, says) in [
            (
                "block_ip = \"iptables\"",
                "[actions] block_ip = \"iptables\": must be \"nft\" or a command template",
            ),
            (
                "block_ip = [\"csf\", \"-td\"]",
                "[actions] block_ip = [\"csf\", \"-td\"]: a command template must pass {ip}",
            ),
            (
                "nft_command = []",
                "[actions] nft_command = []: must name the nft program",
            ),
        ] {
            let e = parse(&format!("[actions]\n{text}\n"))
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn bad_mode_is_named() {
        let c = parse("[rules.relay-volume]\nmode = \"on\"\n");
        let e = c.rule(&meta()).unwrap_err().to_string();
        assert!(
            e.contains("`mode` must be \"dry-run\" or \"enforce\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_rule_table_is_an_error() {
        let c = parse("[rules.relay-volum]\n");
        let e = c
            .check_rule_names(["relay-volume"].into_iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("[rules.relay-volum]: no such rule"), "{e}");
    }

    #[test]
    fn engine_values_out_of_range_are_named_with_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spamward.toml");
        for (text, message) in [
            (
                "memory_limit_mb = 0",
                "[engine] memory_limit_mb = 0: must be from 4 to 4096",
            ),
            (
                "workers = 100000",
                "[engine] workers = 100000: must be from 0 (rules on the reading thread) to 256",
            ),
            (
                "batch_size = 1000000000000",
                "[engine] batch_size = 1000000000000: must be from 1 to 65536",
            ),
            (
                "batch_budget_ms = 10",
                "[engine] batch_budget_ms = 10: must be from 100 to 60000",
            ),
            (
                "state_limit_mb = 0",
                "[engine] state_limit_mb = 0: must be from 1 to 4096",
            ),
        ] {
            std::fs::write(&path, format!("[engine]\n{text}\n")).unwrap();
            let e = Config::load(&path).unwrap_err().to_string();
            assert_eq!(e, format!("{}: {message}", path.display()));
        }
        std::fs::write(&path, "[engine]\nworkers = 0\nbatch_budget_ms = 100\n").unwrap();
        assert!(Config::load(&path).is_ok());
    }

    #[test]
    fn the_example_configuration_loads() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/spamward.toml"
        ));
        let config = Config::load(path).unwrap();
        assert_eq!(config.engine.state_limit_mb, 64);
        assert_eq!(config.input.timezone, "system");
        // What it shows as the defaults are the defaults.
        assert_eq!(config.policy.safeguards(), Safeguards::default());
        assert_eq!(config.actions, ActionsConfig::default());
    }

    #[test]
    fn unknown_time_zone_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spamward.toml");
        std::fs::write(&path, "[input]\ntimezone = \"Mars/Base\"\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}: [input] timezone = \"Mars/Base\": unknown time zone",
                path.display()
            )),
            "{e}"
        );
        std::fs::write(&path, "[input]\ntimezone = \"Europe/Berlin\"\n").unwrap();
        assert_eq!(
            Config::load(&path).unwrap().zone().unwrap().name(),
            "Europe/Berlin"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spamward.toml");
        std::fs::write(&path, "[engine]\nbatch_size = = 3\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("spamward.toml") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn durations_read_the_way_people_write_them() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_duration("soon").unwrap_err().contains("e.g. 60s"));
    }

    #[test]
    fn a_daemon_table_is_read_and_its_mistakes_are_named() {
        let c: Config = toml::from_str(
            "[daemon]\nmainlog = [\"/tmp/m\"]\nstart_at = \"beginning\"\nqueue_every = \"2m\"\n",
        )
        .unwrap();
        assert_eq!(c.daemon.mainlog, vec![PathBuf::from("/tmp/m")]);
        assert_eq!(c.daemon.start_at, StartAt::Beginning);
        assert_eq!(c.daemon.queue_every, Duration::from_secs(120));
        assert_eq!(c.daemon.flush_ms, 200);
        let bad = toml::from_str::<Config>("[daemon]\nserver_every = \"often\"\n").unwrap_err();
        assert!(
            bad.to_string().contains("\"often\" is not a duration"),
            "{bad}"
        );
        let dir = tempfile::tempdir().unwrap();
        let debian = dir.path().join("var/log/exim4");
        std::fs::create_dir_all(&debian).unwrap();
        assert_eq!(
            DaemonConfig::default().mainlogs(dir.path()),
            vec![dir.path().join("var/log/exim_mainlog")],
            "neither exists: cPanel's is waited for"
        );
        std::fs::write(debian.join("mainlog"), "").unwrap();
        assert_eq!(
            DaemonConfig::default().mainlogs(dir.path()),
            vec![debian.join("mainlog")]
        );
    }
}
