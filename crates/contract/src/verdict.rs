//! What a rule answers about the events it judged: a [`Verdict`] names a
//! [`Target`], a [`Severity`] and the [`Action`] the rule requests.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The name used in configuration and output.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!("{s:?}: expected info, warning or critical")),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a verdict is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Target {
    Account(String),
    Mailbox(String),
    Domain(String),
    Ip(String),
    Message(String),
    Script(String),
    Setting(String),
}

impl Target {
    /// The kind's name, as in JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Account(_) => "account",
            Target::Mailbox(_) => "mailbox",
            Target::Domain(_) => "domain",
            Target::Ip(_) => "ip",
            Target::Message(_) => "message",
            Target::Script(_) => "script",
            Target::Setting(_) => "setting",
        }
    }

    /// The account, address, domain, IP, ... it names.
    pub fn value(&self) -> &str {
        match self {
            Target::Account(v)
            | Target::Mailbox(v)
            | Target::Domain(v)
            | Target::Ip(v)
            | Target::Message(v)
            | Target::Script(v)
            | Target::Setting(v) => v,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.value())
    }
}

/// An action a rule may request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Action {
    Alert,
    HoldOutgoing,
    SuspendOutgoing,
    FreezeMessage,
    BlockIp,
    ResetPassword,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 6] = [
        Action::Alert,
        Action::HoldOutgoing,
        Action::SuspendOutgoing,
        Action::FreezeMessage,
        Action::BlockIp,
        Action::ResetPassword,
    ];

    /// The kebab-case name used in configuration and output.
    pub fn name(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::HoldOutgoing => "hold-outgoing",
            Action::SuspendOutgoing => "suspend-outgoing",
            Action::FreezeMessage => "freeze-message",
            Action::BlockIp => "block-ip",
            Action::ResetPassword => "reset-password",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule's judgement about events it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How bad it is.
    pub severity: Severity,
    /// Who or what it is about.
    pub target: Target,
    /// What the rule asks the host to do (the policy decides whether it may).
    pub action: Action,
    /// One line for a human.
    pub summary: String,
    /// Named figures behind it (`count`, `window`, ...).
    pub evidence: Vec<(String, String)>,
    /// Ids of the events it rests on.
    pub events: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_print_as_configured() {
        for s in [Severity::Info, Severity::Warning, Severity::Critical] {
            assert_eq!(s.name().parse::<Severity>(), Ok(s));
        }
        assert!(
            "fatal"
                .parse::<Severity>()
                .unwrap_err()
                .contains("expected")
        );
        assert_eq!(
            Target::Mailbox("a@b.example".into()).to_string(),
            "mailbox a@b.example"
        );
        assert_eq!(Action::HoldOutgoing.to_string(), "hold-outgoing");
    }
}
