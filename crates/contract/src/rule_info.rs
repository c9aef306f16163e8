//! What a rule says about itself when the host loads it.

use crate::filter::Subscription;
use crate::verdict::Action;

/// One of a rule's settings, as the rule describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingSpec {
    /// The key in the rule's `[rules.<name>]` table.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its default, as JSON.
    pub default_json: String,
}

/// A rule's name, version, subscriptions, declared actions and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Unique name (`compromised-account`).
    pub name: String,
    /// The rule's own version.
    pub version: String,
    /// One line saying what it finds.
    pub summary: String,
    /// The events it wants.
    pub subscriptions: Vec<Subscription>,
    /// The actions it may request; the host refuses any other.
    pub actions: Vec<Action>,
    /// Its settings with their defaults.
    pub settings: Vec<SettingSpec>,
    /// The version of the SDK it was built with.
    pub sdk_version: String,
}
