//! Conversion of the normalizer's events into the WIT event records handed to
//! rules. One function per record, field for field.

use super::bindings::wit;
use crate::normalize as n;

/// Converts `event` (with its run-wide `id`) into the WIT record.
pub fn event(id: u64, event: &n::Event) -> wit::Event {
    wit::Event {
        id,
        time: event.time.seconds,
        body: body(&event.body),
    }
}

fn body(body: &n::EventBody) -> wit::EventBody {
    use wit::EventBody as W;
    match body {
        n::EventBody::MessageReceived(m) => W::MessageReceived(wit::MessageReceived {
            message_id: m.message_id.clone(),
            identity: identity(&m.identity),
            protocol: m.protocol.clone(),
            size: m.size,
            recipients: m.recipients.clone(),
            subject: m.subject.clone(),
            bounce: m.bounce,
            bounce_of: m.bounce_of.clone(),
        }),
        n::EventBody::Delivery(d) => W::Delivery(wit::Delivery {
            message_id: d.message_id.clone(),
            outcome: match d.outcome {
                n::DeliveryOutcome::Delivered => wit::DeliveryOutcome::Delivered,
                n::DeliveryOutcome::Deferred => wit::DeliveryOutcome::Deferred,
                n::DeliveryOutcome::Failed => wit::DeliveryOutcome::Failed,
            },
            recipient: d.recipient.clone(),
            router: d.router.clone(),
            transport: d.transport.clone(),
            remote_host: d.remote_host.clone(),
            remote_ip: d.remote_ip.clone(),
            error: d.error.clone(),
            identity: identity(&d.identity),
        }),
        n::EventBody::MessageCompleted(m) => W::MessageCompleted(message_state(m)),
        n::EventBody::MessageFrozen(m) => W::MessageFrozen(message_state(m)),
        n::EventBody::Rejection(r) => W::Rejection(wit::Rejection {
            client_ip: r.client_ip.clone(),
            client_host: r.client_host.clone(),
            sender: r.sender.clone(),
            recipient: r.recipient.clone(),
            stage: match r.stage {
                n::SmtpStage::Connect => wit::SmtpStage::Connect,
                n::SmtpStage::Helo => wit::SmtpStage::Helo,
                n::SmtpStage::MailFrom => wit::SmtpStage::MailFrom,
                n::SmtpStage::RcptTo => wit::SmtpStage::RcptTo,
                n::SmtpStage::Data => wit::SmtpStage::Data,
                n::SmtpStage::Other => wit::SmtpStage::Other,
            },
            reason: r.reason.clone(),
            message_id: r.message_id.clone(),
        }),
        n::EventBody::AuthFailure(a) => W::AuthFailure(wit::AuthFailure {
            client_ip: a.client_ip.clone(),
            client_host: a.client_host.clone(),
            authenticator: a.authenticator.clone(),
            set_id: a.set_id.clone(),
            reason: a.reason.clone(),
        }),
        n::EventBody::GovernorAction(g) => W::GovernorAction(wit::GovernorAction {
            message_id: g.message_id.clone(),
            domain: g.domain.clone(),
            limit: match g.limit {
                n::GovernorLimit::MaxEmailsPerHour => wit::GovernorLimit::MaxEmailsPerHour,
                n::GovernorLimit::MaxDefersAndFailures => wit::GovernorLimit::MaxDefersAndFailures,
                n::GovernorLimit::OutgoingHold => wit::GovernorLimit::OutgoingHold,
                n::GovernorLimit::OutgoingSuspension => wit::GovernorLimit::OutgoingSuspension,
                n::GovernorLimit::NobodyRestricted => wit::GovernorLimit::NobodyRestricted,
                n::GovernorLimit::Other => wit::GovernorLimit::Other,
            },
            count: g.count,
            maximum: g.maximum,
            discarded: g.discarded,
            recipient: g.recipient.clone(),
            identity: identity(&g.identity),
        }),
        n::EventBody::QueuedMessage(q) => W::QueuedMessage(wit::QueuedMessage {
            message_id: q.message_id.clone(),
            identity: identity(&q.identity),
            age_seconds: q.age_seconds,
            size: q.size,
            recipients: q.recipients.clone(),
            frozen: q.frozen,
            bounce: q.bounce,
            from_header: q.from_header.clone(),
            subject: q.subject.clone(),
            headers: q.headers.clone(),
        }),
        n::EventBody::Setting(s) => W::Setting(wit::Setting {
            source: s.source.clone(),
            scope: s.scope.clone(),
            key: s.key.clone(),
            value: s.value.clone(),
        }),
        n::EventBody::MailAlias(a) => W::MailAlias(wit::MailAlias {
            domain: a.domain.clone(),
            local_part: a.local_part.clone(),
            target: a.target.clone(),
        }),
        n::EventBody::MailboxStats(m) => W::MailboxStats(wit::MailboxStats {
            account: m.account.clone(),
            domain: m.domain.clone(),
            mailbox: m.mailbox.clone(),
            bytes: m.bytes,
            messages: m.messages,
            bounces: m.bounces,
        }),
        n::EventBody::ServiceState(s) => W::ServiceState(wit::ServiceState {
            name: s.name.clone(),
            enabled: s.enabled,
            details: s.details.clone(),
        }),
        n::EventBody::Extension(e) => W::Extension(wit::Extension {
            kind: e.kind.clone(),
            fields: e.fields.clone(),
        }),
    }
}

fn identity(id: &n::Identity) -> wit::Identity {
    wit::Identity {
        sender: id.sender.clone(),
        sender_domain: id.sender_domain.clone(),
        auth_id: id.auth_id.clone(),
        local_user: id.local_user.clone(),
        owner: id.owner.clone(),
        script: id.script.clone(),
        client_ip: id.client_ip.clone(),
        client_host: id.client_host.clone(),
    }
}

fn message_state(m: &n::MessageState) -> wit::MessageState {
    wit::MessageState {
        message_id: m.message_id.clone(),
        reason: m.reason.clone(),
        identity: identity(&m.identity),
    }
}

/// The host's kind for a WIT subscription.
pub fn kind(kind: wit::EventKind) -> n::EventKind {
    use wit::EventKind as W;
    match kind {
        W::MessageReceived => n::EventKind::MessageReceived,
        W::Delivery => n::EventKind::Delivery,
        W::MessageCompleted => n::EventKind::MessageCompleted,
        W::MessageFrozen => n::EventKind::MessageFrozen,
        W::Rejection => n::EventKind::Rejection,
        W::AuthFailure => n::EventKind::AuthFailure,
        W::GovernorAction => n::EventKind::GovernorAction,
        W::QueuedMessage => n::EventKind::QueuedMessage,
        W::Setting => n::EventKind::Setting,
        W::MailAlias => n::EventKind::MailAlias,
        W::MailboxStats => n::EventKind::MailboxStats,
        W::ServiceState => n::EventKind::ServiceState,
        W::Extension => n::EventKind::Extension,
    }
}

/// The SDK's kind for a host kind (the SDK's filter code speaks SDK types).
pub fn sdk_kind(kind: n::EventKind) -> spamward_sdk::types::EventKind {
    use spamward_sdk::types::EventKind as S;
    match kind {
        n::EventKind::MessageReceived => S::MessageReceived,
        n::EventKind::Delivery => S::Delivery,
        n::EventKind::MessageCompleted => S::MessageCompleted,
        n::EventKind::MessageFrozen => S::MessageFrozen,
        n::EventKind::Rejection => S::Rejection,
        n::EventKind::AuthFailure => S::AuthFailure,
        n::EventKind::GovernorAction => S::GovernorAction,
        n::EventKind::QueuedMessage => S::QueuedMessage,
        n::EventKind::Setting => S::Setting,
        n::EventKind::MailAlias => S::MailAlias,
        n::EventKind::MailboxStats => S::MailboxStats,
        n::EventKind::ServiceState => S::ServiceState,
        n::EventKind::Extension => S::Extension,
    }
}

/// The host's events seen through the SDK's filter interface, with what
/// the host knows of local domains.
pub struct FilterView<'a>(pub &'a n::Event, pub &'a crate::state::HostLookups);

impl spamward_sdk::filter::EventView for FilterView<'_> {
    fn kind(&self) -> spamward_sdk::types::EventKind {
        sdk_kind(self.0.kind())
    }

    fn identity(&self) -> Option<spamward_sdk::filter::IdentityRef<'_>> {
        let id = self.0.body.identity()?;
        Some(spamward_sdk::filter::IdentityRef {
            sender: id.sender.as_deref(),
            sender_domain: id.sender_domain.as_deref(),
            auth_id: id.auth_id.as_deref(),
            local_user: id.local_user.as_deref(),
            owner: id.owner.as_deref(),
            script: id.script.as_deref(),
            client_ip: id.client_ip.as_deref(),
        })
    }

    fn has_remote_recipient(&self) -> bool {
        let lookups = self.1;
        if !lookups.knows_local_domains() {
            return false;
        }
        let remote =
            |r: &String| !lookups.is_local_domain(r.rsplit_once('@').map_or("", |(_, d)| d));
        match &self.0.body {
            n::EventBody::MessageReceived(m) => m.recipients.iter().any(remote),
            n::EventBody::QueuedMessage(q) => q.recipients.iter().any(remote),
            n::EventBody::Delivery(d) => remote(&d.recipient),
            _ => false,
        }
    }

    fn outcome(&self) -> Option<spamward_sdk::types::DeliveryOutcome> {
        use spamward_sdk::types::DeliveryOutcome as O;
        match &self.0.body {
            n::EventBody::Delivery(d) => Some(match d.outcome {
                n::DeliveryOutcome::Delivered => O::Delivered,
                n::DeliveryOutcome::Deferred => O::Deferred,
                n::DeliveryOutcome::Failed => O::Failed,
            }),
            _ => None,
        }
    }
}
