//! What a rule built for interface 0.2.x says, in 0.3.0's types.
//!
//! 0.3.0 only adds cases and fields to 0.2.2's types, so every 0.2 value has
//! an equal in 0.3.0: the engine converts once, here, and works with 0.3.0's
//! types alone.

use crate::bindings::v0_2::spamward::rule::{host as old_host, types as old};
use crate::bindings::v0_3::spamward::rule::{host as new_host, types as new};

/// Maps a fieldless enum case by case: the names are the same in both.
macro_rules! same_cases {
    ($value:expr, $from:path => $to:path { $($case:ident),* $(,)? }) => {{
        use $from as From;
        use $to as To;
        match $value {
            $(From::$case => To::$case,)*
        }
    }};
}

pub(crate) fn log_level(l: old_host::LogLevel) -> new_host::LogLevel {
    same_cases!(l, old_host::LogLevel => new_host::LogLevel { Trace, Debug, Info, Warn, Error })
}

fn kind(k: old::EventKind) -> new::EventKind {
    same_cases!(k, old::EventKind => new::EventKind {
        MessageReceived, Delivery, MessageCompleted, MessageFrozen, Rejection, AuthFailure,
        GovernorAction, QueuedMessage, Setting, MailAlias, MailboxStats, ServiceState, Extension,
    })
}

fn outcome(o: old::DeliveryOutcome) -> new::DeliveryOutcome {
    same_cases!(o, old::DeliveryOutcome => new::DeliveryOutcome { Delivered, Deferred, Failed })
}

fn field(f: old::IdentityField) -> new::IdentityField {
    same_cases!(f, old::IdentityField => new::IdentityField {
        Sender, SenderLocalPart, SenderDomain, AuthId, LocalUser, Owner, Script, ClientIp,
    })
}

fn action(a: old::Action) -> new::Action {
    same_cases!(a, old::Action => new::Action {
        Alert, HoldOutgoing, SuspendOutgoing, FreezeMessage, BlockIp, ResetPassword,
    })
}

fn filter(f: old::EventFilter) -> new::EventFilter {
    match f {
        old::EventFilter::Has(f) => new::EventFilter::Has(field(f)),
        old::EventFilter::Equals(fv) => new::EventFilter::Equals(new::FieldValues {
            field: field(fv.field),
            values: fv.values,
        }),
        old::EventFilter::Outcome(os) => {
            new::EventFilter::Outcome(os.into_iter().map(outcome).collect())
        }
        old::EventFilter::RemoteRecipient => new::EventFilter::RemoteRecipient,
    }
}

fn subscription(s: old::Subscription) -> new::Subscription {
    let filters = |fs: Vec<old::EventFilter>| fs.into_iter().map(filter).collect();
    new::Subscription {
        kind: kind(s.kind),
        any_of: filters(s.any_of),
        all_of: filters(s.all_of),
        none_of: filters(s.none_of),
    }
}

/// A 0.2.2 counter: kept to the second, as 0.2.2 keeps every window.
pub(crate) fn counter_spec(s: old::CounterSpec) -> new::CounterSpec {
    new::CounterSpec {
        name: s.name,
        events: subscription(s.events),
        per: field(s.per),
        count: match s.count {
            old::CountOf::Events => new::CountOf::Events,
            old::CountOf::Recipients => new::CountOf::Recipients,
            old::CountOf::DistinctIdentity(f) => new::CountOf::DistinctIdentity(field(f)),
            old::CountOf::DistinctRecipientDomains => new::CountOf::DistinctRecipientDomains,
            old::CountOf::DistinctMessageRecipients => new::CountOf::DistinctMessageRecipients,
        },
        window_seconds: s.window_seconds,
        thresholds: s.thresholds,
        then_every: s.then_every,
        step_seconds: 0,
    }
}

pub(crate) fn verdict(v: old::Verdict) -> new::Verdict {
    new::Verdict {
        severity: same_cases!(v.severity, old::Severity => new::Severity { Info, Warning, Critical }),
        target: match v.target {
            old::Target::Account(s) => new::Target::Account(s),
            old::Target::Mailbox(s) => new::Target::Mailbox(s),
            old::Target::Domain(s) => new::Target::Domain(s),
            old::Target::Ip(s) => new::Target::Ip(s),
            old::Target::Message(s) => new::Target::Message(s),
            old::Target::Script(s) => new::Target::Script(s),
            old::Target::Setting(s) => new::Target::Setting(s),
        },
        action: action(v.action),
        summary: v.summary,
        evidence: v.evidence,
        events: v.events,
    }
}

pub(crate) fn rule_info(i: old::RuleInfo) -> new::RuleInfo {
    new::RuleInfo {
        name: i.name,
        version: i.version,
        summary: i.summary,
        subscriptions: i.subscriptions.into_iter().map(subscription).collect(),
        actions: i.actions.into_iter().map(action).collect(),
        settings: i
            .settings
            .into_iter()
            .map(|s| new::SettingSpec {
                name: s.name,
                description: s.description,
                default_json: s.default_json,
            })
            .collect(),
        sdk_version: i.sdk_version,
    }
}
