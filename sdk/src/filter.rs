//! Subscription filters: the host tests these before calling a rule, so a
//! rule is not called for events it would ignore.
//!
//! This is the one implementation of the matching; the host applies it to
//! its own events through [`EventView`], the native harness to the SDK's events,
//! so a rule under `cargo test` sees exactly the events it would in the host.

use crate::types::{
    DeliveryOutcome, Event, EventBody, EventFilter, EventKind, FieldValues, Identity,
    IdentityField, Subscription, Text,
};

/// What a filter needs to know about an event.
pub trait EventView {
    /// The event's kind.
    fn kind(&self) -> EventKind;
    /// Its sender identity, if it is about a message.
    fn identity(&self) -> Option<IdentityRef<'_>>;
    /// Its outcome, if it is a delivery.
    fn outcome(&self) -> Option<DeliveryOutcome>;
    /// Whether it has a recipient whose domain is known not to be local.
    fn has_remote_recipient(&self) -> bool;
}

/// A borrowed sender identity, whoever's type it came from.
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct IdentityRef<'a> {
    pub sender: Option<&'a str>,
    pub sender_domain: Option<&'a str>,
    pub auth_id: Option<&'a str>,
    pub local_user: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub script: Option<&'a str>,
    pub client_ip: Option<&'a str>,
}

impl<'a> IdentityRef<'a> {
    /// The value of `field` (the sender's local part is derived); empty
    /// strings count as absent.
    pub fn field(&self, field: IdentityField) -> Option<&'a str> {
        let value = match field {
            IdentityField::Sender => self.sender,
            IdentityField::SenderLocalPart => self
                .sender
                .and_then(|s| s.rsplit_once('@'))
                .map(|(local, _)| local),
            IdentityField::SenderDomain => self.sender_domain,
            IdentityField::AuthId => self.auth_id,
            IdentityField::LocalUser => self.local_user,
            IdentityField::Owner => self.owner,
            IdentityField::Script => self.script,
            IdentityField::ClientIp => self.client_ip,
        };
        value.filter(|v| !v.is_empty())
    }
}

impl<'a> From<&'a Identity<'_>> for IdentityRef<'a> {
    fn from(id: &'a Identity<'_>) -> Self {
        IdentityRef {
            sender: id.sender.as_deref(),
            sender_domain: id.sender_domain.as_deref(),
            auth_id: id.auth_id.as_deref(),
            local_user: id.local_user.as_deref(),
            owner: id.owner.as_deref(),
            script: id.script.as_deref(),
            client_ip: id.client_ip.as_deref(),
        }
    }
}

/// All events of `kind`; narrow it with [`Subscription::any_of`],
/// [`Subscription::all_of`] and [`Subscription::none_of`].
pub fn all(kind: EventKind) -> Subscription {
    Subscription {
        kind,
        any_of: Vec::new(),
        all_of: Vec::new(),
        none_of: Vec::new(),
    }
}

impl Subscription {
    /// Keep events matching at least one of `filters`.
    pub fn any_of(mut self, filters: impl IntoIterator<Item = EventFilter>) -> Self {
        self.any_of.extend(filters);
        self
    }

    /// Keep events matching every one of `filters`.
    pub fn all_of(mut self, filters: impl IntoIterator<Item = EventFilter>) -> Self {
        self.all_of.extend(filters);
        self
    }

    /// Drop events matching any of `filters`.
    pub fn none_of(mut self, filters: impl IntoIterator<Item = EventFilter>) -> Self {
        self.none_of.extend(filters);
        self
    }
}

/// A message with a recipient whose domain the host knows is not local.
pub fn remote_recipient() -> EventFilter {
    EventFilter::RemoteRecipient
}

/// The identity has `field`.
pub fn has(field: IdentityField) -> EventFilter {
    EventFilter::Has(field)
}

/// The identity's `field` equals one of `values` (ASCII case-insensitive).
pub fn equals(field: IdentityField, values: &[&str]) -> EventFilter {
    EventFilter::Equals(FieldValues {
        field,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    })
}

/// A delivery with one of `outcomes`.
pub fn outcome(outcomes: &[DeliveryOutcome]) -> EventFilter {
    EventFilter::Outcome(outcomes.to_vec())
}

/// Filters that pass mail with a local sending identity — an SMTP login, a
/// local user, an owning account or a script — i.e. outgoing mail, not mail
/// arriving from the Internet.
pub fn local_sender() -> [EventFilter; 4] {
    [
        has(IdentityField::AuthId),
        has(IdentityField::LocalUser),
        has(IdentityField::Owner),
        has(IdentityField::Script),
    ]
}

/// Whether `subscriptions` want `event`.
pub fn wants(subscriptions: &[Subscription], event: &impl EventView) -> bool {
    let kind = event.kind();
    subscriptions.iter().filter(|s| s.kind == kind).any(|s| {
        (s.any_of.is_empty() || s.any_of.iter().any(|f| matches(f, event)))
            && s.all_of.iter().all(|f| matches(f, event))
            && !s.none_of.iter().any(|f| matches(f, event))
    })
}

fn matches(filter: &EventFilter, event: &impl EventView) -> bool {
    match filter {
        EventFilter::Has(field) => event.identity().and_then(|id| id.field(*field)).is_some(),
        EventFilter::Equals(fv) => event
            .identity()
            .and_then(|id| id.field(fv.field))
            .is_some_and(|v| fv.values.iter().any(|want| want.eq_ignore_ascii_case(v))),
        EventFilter::Outcome(outcomes) => event.outcome().is_some_and(|o| outcomes.contains(&o)),
        EventFilter::RemoteRecipient => event.has_remote_recipient(),
    }
}

impl EventView for Event<'_> {
    fn kind(&self) -> EventKind {
        self.body.kind()
    }

    fn identity(&self) -> Option<IdentityRef<'_>> {
        self.body.identity().map(IdentityRef::from)
    }

    fn outcome(&self) -> Option<DeliveryOutcome> {
        match &self.body {
            EventBody::Delivery(d) => Some(d.outcome),
            _ => None,
        }
    }

    fn has_remote_recipient(&self) -> bool {
        let remote = |r: &Text<'_>| {
            let domain = r.rsplit_once('@').map_or("", |(_, d)| d);
            crate::host::is_local_domain(domain) == Some(false)
        };
        match &self.body {
            EventBody::MessageReceived(m) => m.recipients.iter().any(remote),
            EventBody::QueuedMessage(q) => q.recipients.iter().any(remote),
            EventBody::Delivery(d) => remote(&d.recipient),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn event(body: EventBody<'_>) -> Event<'_> {
        Event {
            id: 1,
            time: 0,
            body,
        }
    }

    #[test]
    fn filters_select_by_identity_and_outcome() {
        let mut m = testing::received("m1", "Nobody@host.example");
        let subs = [all(EventKind::MessageReceived).any_of([
            has(IdentityField::AuthId),
            equals(IdentityField::SenderLocalPart, &["nobody"]),
        ])];
        assert!(wants(&subs, &event(EventBody::MessageReceived(m.clone()))));
        m.identity = testing::sender("alice@host.example");
        assert!(!wants(&subs, &event(EventBody::MessageReceived(m.clone()))));
        m.identity.auth_id = Some("alice@host.example".into());
        assert!(wants(&subs, &event(EventBody::MessageReceived(m))));

        let d = testing::delivery(
            "m1",
            "a@b.example",
            DeliveryOutcome::Delivered,
            "x@y.example",
        );
        let subs = [all(EventKind::Delivery)
            .all_of([outcome(&[DeliveryOutcome::Failed])])
            .none_of([has(IdentityField::LocalUser)])];
        assert!(!wants(&subs, &event(EventBody::Delivery(d))));
        assert!(wants(
            &[all(EventKind::Delivery)],
            &event(EventBody::Delivery(testing::delivery(
                "m1",
                "a@b.example",
                DeliveryOutcome::Delivered,
                "x@y.example"
            )))
        ));
    }

    #[test]
    fn none_of_excludes_and_remote_recipient_needs_known_local_domains() {
        let subs = [all(EventKind::MessageReceived)
            .any_of([remote_recipient()])
            .none_of([has(IdentityField::AuthId)])];
        let mut m = testing::received("m1", "x@stranger.example");
        m.recipients = vec!["a@far.example".into()];
        // No local domains known: nothing is known to be remote.
        let _h = testing::Harness::<crate::testing::tests::Nothing>::new();
        assert!(!wants(&subs, &event(EventBody::MessageReceived(m.clone()))));
        let _h =
            testing::Harness::<crate::testing::tests::Nothing>::new().local_domain("shop.example");
        assert!(wants(&subs, &event(EventBody::MessageReceived(m.clone()))));
        m.identity.auth_id = Some("me@shop.example".into());
        assert!(!wants(&subs, &event(EventBody::MessageReceived(m.clone()))));
        m.identity.auth_id = None;
        m.recipients = vec!["info@shop.example".into()];
        assert!(!wants(&subs, &event(EventBody::MessageReceived(m))));
    }
}
