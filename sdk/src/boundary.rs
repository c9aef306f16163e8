//! The guest's side of the wasm boundary: the contract's types turned into
//! the ones wit-bindgen generated from `wit/rule.wit`, which are what the
//! component exports and imports carry.

use spamward_contract::counter::{CountOf, CounterSpec};
use spamward_contract::event::{DeliveryOutcome, EventKind};
use spamward_contract::filter::{
    EventFilter, FieldPatterns, FieldValues, IdentityField, Subscription,
};
use spamward_contract::rule_info::{RuleInfo, SettingSpec};
use spamward_contract::verdict::{Action, Severity, Target, Verdict};

use crate::bindings::spamward::rule::types as wit;

/// A rule's description as `describe` returns it.
pub(crate) fn rule_info(info: RuleInfo) -> wit::RuleInfo {
    wit::RuleInfo {
        name: info.name,
        version: info.version,
        summary: info.summary,
        subscriptions: info.subscriptions.into_iter().map(subscription).collect(),
        actions: info.actions.into_iter().map(action).collect(),
        settings: info.settings.into_iter().map(setting_spec).collect(),
        sdk_version: info.sdk_version,
    }
}

/// A verdict as the `report` import takes it.
// Natively the test harness takes the contract's verdict as it is.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn verdict(v: Verdict) -> wit::Verdict {
    wit::Verdict {
        severity: match v.severity {
            Severity::Info => wit::Severity::Info,
            Severity::Warning => wit::Severity::Warning,
            Severity::Critical => wit::Severity::Critical,
        },
        target: match v.target {
            Target::Account(s) => wit::Target::Account(s),
            Target::Mailbox(s) => wit::Target::Mailbox(s),
            Target::Domain(s) => wit::Target::Domain(s),
            Target::Ip(s) => wit::Target::Ip(s),
            Target::Message(s) => wit::Target::Message(s),
            Target::Script(s) => wit::Target::Script(s),
            Target::Setting(s) => wit::Target::Setting(s),
        },
        action: action(v.action),
        summary: v.summary,
        evidence: v.evidence,
        events: v.events,
    }
}

fn setting_spec(s: SettingSpec) -> wit::SettingSpec {
    wit::SettingSpec {
        name: s.name,
        description: s.description,
        default_json: s.default_json,
    }
}

fn action(a: Action) -> wit::Action {
    match a {
        Action::Alert => wit::Action::Alert,
        Action::HoldOutgoing => wit::Action::HoldOutgoing,
        Action::SuspendOutgoing => wit::Action::SuspendOutgoing,
        Action::FreezeMessage => wit::Action::FreezeMessage,
        Action::BlockIp => wit::Action::BlockIp,
        Action::ResetPassword => wit::Action::ResetPassword,
    }
}

/// A counter as the `declare-counter` import takes it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn counter_spec(s: &CounterSpec) -> wit::CounterSpec {
    wit::CounterSpec {
        name: s.name.clone(),
        events: subscription(s.events.clone()),
        per: identity_field(s.per),
        count: match s.count {
            CountOf::Events => wit::CountOf::Events,
            CountOf::Recipients => wit::CountOf::Recipients,
            CountOf::DistinctIdentity(f) => wit::CountOf::DistinctIdentity(identity_field(f)),
            CountOf::DistinctRecipientDomains => wit::CountOf::DistinctRecipientDomains,
            CountOf::DistinctMessageRecipients => wit::CountOf::DistinctMessageRecipients,
        },
        window_seconds: s.window_seconds,
        thresholds: s.thresholds.clone(),
        then_every: s.then_every,
        step_seconds: s.step_seconds,
    }
}

fn subscription(s: Subscription) -> wit::Subscription {
    let filters = |list: Vec<EventFilter>| list.into_iter().map(filter).collect();
    wit::Subscription {
        kind: kind(s.kind),
        any_of: filters(s.any_of),
        all_of: filters(s.all_of),
        none_of: filters(s.none_of),
    }
}

fn filter(f: EventFilter) -> wit::EventFilter {
    match f {
        EventFilter::Has(field) => wit::EventFilter::Has(identity_field(field)),
        EventFilter::Equals(FieldValues { field, values }) => {
            wit::EventFilter::Equals(wit::FieldValues {
                field: identity_field(field),
                values,
            })
        }
        EventFilter::Outcome(outcomes) => {
            wit::EventFilter::Outcome(outcomes.into_iter().map(outcome).collect())
        }
        EventFilter::RemoteRecipient => wit::EventFilter::RemoteRecipient,
        EventFilter::Matches(FieldPatterns { field, patterns }) => {
            wit::EventFilter::Matches(wit::FieldPatterns {
                field: identity_field(field),
                patterns,
            })
        }
    }
}

fn identity_field(f: IdentityField) -> wit::IdentityField {
    match f {
        IdentityField::Sender => wit::IdentityField::Sender,
        IdentityField::SenderLocalPart => wit::IdentityField::SenderLocalPart,
        IdentityField::SenderDomain => wit::IdentityField::SenderDomain,
        IdentityField::AuthId => wit::IdentityField::AuthId,
        IdentityField::LocalUser => wit::IdentityField::LocalUser,
        IdentityField::Owner => wit::IdentityField::Owner,
        IdentityField::Script => wit::IdentityField::Script,
        IdentityField::ClientIp => wit::IdentityField::ClientIp,
        IdentityField::ClientHost => wit::IdentityField::ClientHost,
    }
}

fn outcome(o: DeliveryOutcome) -> wit::DeliveryOutcome {
    match o {
        DeliveryOutcome::Delivered => wit::DeliveryOutcome::Delivered,
        DeliveryOutcome::Deferred => wit::DeliveryOutcome::Deferred,
        DeliveryOutcome::Failed => wit::DeliveryOutcome::Failed,
    }
}

fn kind(k: EventKind) -> wit::EventKind {
    match k {
        EventKind::MessageReceived => wit::EventKind::MessageReceived,
        EventKind::Delivery => wit::EventKind::Delivery,
        EventKind::MessageCompleted => wit::EventKind::MessageCompleted,
        EventKind::MessageFrozen => wit::EventKind::MessageFrozen,
        EventKind::Rejection => wit::EventKind::Rejection,
        EventKind::AuthFailure => wit::EventKind::AuthFailure,
        EventKind::GovernorAction => wit::EventKind::GovernorAction,
        EventKind::QueuedMessage => wit::EventKind::QueuedMessage,
        EventKind::Setting => wit::EventKind::Setting,
        EventKind::MailAlias => wit::EventKind::MailAlias,
        EventKind::MailboxStats => wit::EventKind::MailboxStats,
        EventKind::ServiceState => wit::EventKind::ServiceState,
        EventKind::Extension => wit::EventKind::Extension,
    }
}
