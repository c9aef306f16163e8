//! Subscriptions: which events a rule wants. The host tests them before
//! calling a rule, so a rule is not called for events it would ignore.
//!
//! This is the one implementation of the matching: the host applies it to
//! its events, the SDK's native harness to the events a test feeds, so a
//! rule under `cargo test` sees exactly the events it would in the host.

use crate::event::{DeliveryOutcome, EventBody, EventKind, Identity, Text};

/// A field of an event's sender identity a filter can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum IdentityField {
    Sender,
    /// The part of the sender before the last `@`.
    SenderLocalPart,
    SenderDomain,
    AuthId,
    LocalUser,
    Owner,
    Script,
    ClientIp,
    /// The client's host name or HELO, as logged. (0.3.0)
    ClientHost,
}

impl Identity<'_> {
    /// The value of `field` (the sender's local part is derived); empty
    /// strings count as absent.
    #[inline]
    pub fn field(&self, field: IdentityField) -> Option<&str> {
        let value = match field {
            IdentityField::Sender => self.sender.as_deref(),
            IdentityField::SenderLocalPart => self
                .sender
                .as_deref()
                .and_then(|s| s.rsplit_once('@'))
                .map(|(local, _)| local),
            IdentityField::SenderDomain => self.sender_domain.as_deref(),
            IdentityField::AuthId => self.auth_id.as_deref(),
            IdentityField::LocalUser => self.local_user.as_deref(),
            IdentityField::Owner => self.owner.as_deref(),
            IdentityField::Script => self.script.as_deref(),
            IdentityField::ClientIp => self.client_ip.as_deref(),
            IdentityField::ClientHost => self.client_host.as_deref(),
        };
        value.filter(|v| !v.is_empty())
    }
}

/// An identity field and the values it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldValues {
    /// The field.
    pub field: IdentityField,
    /// Accepted values, compared ASCII case-insensitively.
    pub values: Vec<String>,
}

/// An identity field and patterns it may match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPatterns {
    /// The field.
    pub field: IdentityField,
    /// Patterns, matched ASCII case-insensitively: `*` is any run of
    /// characters (none included), `?` exactly one.
    pub patterns: Vec<String>,
}

/// Whether `text` matches the glob `pattern` (see [`FieldPatterns`]).
///
/// Greedy with one backtrack point, the last `*`: linear in practice and
/// never worse than text × pattern, whatever a rule declares.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// One test on an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// The identity has this field.
    Has(IdentityField),
    /// The identity's field equals one of the values.
    Equals(FieldValues),
    /// A delivery with one of these outcomes.
    Outcome(Vec<DeliveryOutcome>),
    /// A message with a recipient whose domain the host knows is not local.
    RemoteRecipient,
    /// The identity's field matches one of the patterns.
    Matches(FieldPatterns),
}

/// The events of one kind a rule wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The kind.
    pub kind: EventKind,
    /// Keep events matching at least one of these (all when empty).
    pub any_of: Vec<EventFilter>,
    /// Keep only events matching every one of these.
    pub all_of: Vec<EventFilter>,
    /// Drop events matching any of these.
    pub none_of: Vec<EventFilter>,
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

/// The identity's `field` matches one of the glob `patterns` (`*`, `?`,
/// ASCII case-insensitive).
pub fn matches(field: IdentityField, patterns: &[&str]) -> EventFilter {
    EventFilter::Matches(FieldPatterns {
        field,
        patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
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

/// Whether `subscriptions` want an event with `body`. `is_local_domain`
/// answers for the server's local domains, `None` when they are unknown
/// (then no recipient is known to be remote).
pub fn wants(
    subscriptions: &[Subscription],
    body: &EventBody<'_>,
    is_local_domain: impl Fn(&str) -> Option<bool>,
) -> bool {
    let kind = body.kind();
    subscriptions.iter().filter(|s| s.kind == kind).any(|s| {
        let matches = |f: &EventFilter| test(f, body, &is_local_domain);
        (s.any_of.is_empty() || s.any_of.iter().any(matches))
            && s.all_of.iter().all(matches)
            && !s.none_of.iter().any(matches)
    })
}

fn test(
    filter: &EventFilter,
    body: &EventBody<'_>,
    is_local_domain: &impl Fn(&str) -> Option<bool>,
) -> bool {
    match filter {
        EventFilter::Has(field) => body.identity().and_then(|id| id.field(*field)).is_some(),
        EventFilter::Equals(fv) => body
            .identity()
            .and_then(|id| id.field(fv.field))
            .is_some_and(|v| fv.values.iter().any(|want| want.eq_ignore_ascii_case(v))),
        EventFilter::Matches(fp) => body
            .identity()
            .and_then(|id| id.field(fp.field))
            .is_some_and(|v| fp.patterns.iter().any(|p| glob_matches(p, v))),
        EventFilter::Outcome(outcomes) => match body {
            EventBody::Delivery(d) => outcomes.contains(&d.outcome),
            _ => false,
        },
        EventFilter::RemoteRecipient => {
            let remote = |r: &Text<'_>| {
                let domain = r.rsplit_once('@').map_or("", |(_, d)| d);
                is_local_domain(domain) == Some(false)
            };
            match body {
                EventBody::MessageReceived(m) => m.recipients.iter().any(remote),
                EventBody::QueuedMessage(q) => q.recipients.iter().any(remote),
                EventBody::Delivery(d) => remote(&d.recipient),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Delivery, Identity, MessageReceived};

    fn received(sender: &str) -> MessageReceived<'static> {
        let mut identity = Identity::default();
        identity.set_sender(sender);
        MessageReceived {
            message_id: "m1".into(),
            identity,
            protocol: None,
            size: None,
            recipients: vec!["a@b.example".into()],
            subject: None,
            bounce: false,
            bounce_of: None,
        }
    }

    fn delivery(outcome: DeliveryOutcome) -> Delivery<'static> {
        Delivery {
            message_id: "m1".into(),
            outcome,
            recipient: "a@b.example".into(),
            router: None,
            transport: None,
            remote_host: None,
            remote_ip: None,
            error: None,
            identity: Identity::default(),
        }
    }

    fn unknown(_: &str) -> Option<bool> {
        None
    }

    #[test]
    fn filters_select_by_identity_and_outcome() {
        let mut m = received("Nobody@host.example");
        let subs = [all(EventKind::MessageReceived).any_of([
            has(IdentityField::AuthId),
            equals(IdentityField::SenderLocalPart, &["nobody"]),
        ])];
        assert!(wants(
            &subs,
            &EventBody::MessageReceived(m.clone()),
            unknown
        ));
        m.identity.set_sender("alice@host.example");
        assert!(!wants(
            &subs,
            &EventBody::MessageReceived(m.clone()),
            unknown
        ));
        m.identity.auth_id = Some("alice@host.example".into());
        assert!(wants(&subs, &EventBody::MessageReceived(m), unknown));

        let subs = [all(EventKind::Delivery)
            .all_of([outcome(&[DeliveryOutcome::Failed])])
            .none_of([has(IdentityField::LocalUser)])];
        let delivered = EventBody::Delivery(delivery(DeliveryOutcome::Delivered));
        assert!(!wants(&subs, &delivered, unknown));
        assert!(wants(
            &subs,
            &EventBody::Delivery(delivery(DeliveryOutcome::Failed)),
            unknown
        ));
        assert!(wants(&[all(EventKind::Delivery)], &delivered, unknown));
        assert!(!wants(&[all(EventKind::Rejection)], &delivered, unknown));
    }

    #[test]
    fn none_of_excludes_and_remote_recipient_needs_known_local_domains() {
        let subs = [all(EventKind::MessageReceived)
            .any_of([remote_recipient()])
            .none_of([has(IdentityField::AuthId)])];
        let shop = |d: &str| Some(d == "shop.example");
        let mut m = received("x@stranger.example");
        m.recipients = vec!["a@far.example".into()];
        // No local domains known: nothing is known to be remote.
        assert!(!wants(
            &subs,
            &EventBody::MessageReceived(m.clone()),
            unknown
        ));
        assert!(wants(&subs, &EventBody::MessageReceived(m.clone()), shop));
        m.identity.auth_id = Some("me@shop.example".into());
        assert!(!wants(&subs, &EventBody::MessageReceived(m.clone()), shop));
        m.identity.auth_id = None;
        m.recipients = vec!["info@shop.example".into()];
        assert!(!wants(&subs, &EventBody::MessageReceived(m), shop));
    }

    #[test]
    fn globs_match_whole_values_case_insensitively() {
        for (pattern, text, want) in [
            ("WIN-???????????", "WIN-CLJ1B0GQ6JP", true),
            ("WIN-???????????", "win-clj1b0gq6jp", true),
            ("WIN-???????????", "WIN-CLJ1B0GQ6J", false),
            ("User", "user", true),
            ("User", "Users", false),
            ("*.localdomain", "localhost.localdomain", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("**?", "x", true),
        ] {
            assert_eq!(glob_matches(pattern, text), want, "{pattern:?} ~ {text:?}");
        }
        let mut m = received("x@y.example");
        m.identity.client_host = Some("ylmf-pc".into());
        let subs = [all(EventKind::MessageReceived)
            .all_of([matches(IdentityField::ClientHost, &["User", "YLMF-PC"])])];
        assert!(wants(&subs, &EventBody::MessageReceived(m), unknown));
    }

    #[test]
    fn empty_identity_fields_count_as_absent() {
        let mut m = received("x@y.example");
        m.identity.auth_id = Some("".into());
        let subs = [all(EventKind::MessageReceived).all_of([has(IdentityField::AuthId)])];
        assert!(!wants(&subs, &EventBody::MessageReceived(m), unknown));
    }
}
