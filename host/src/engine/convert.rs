//! Conversion of the normalizer's events into the WIT event records handed to
//! rules. One function per record, field for field.
//!
//! The records borrow the events' strings. WIT's borrowed `list<string>` is a
//! slice of `&str` (and `list<tuple<string, string>>` a slice of pairs),
//! which the events do not hold as such: a batch's lists are gathered into
//! one [`Lists`] first, and the records then take consecutive slices of it.

use super::bindings::wit;
use crate::normalize as n;

/// The string lists of a batch's events, gathered before conversion.
#[derive(Default)]
pub struct Lists<'e> {
    strings: Vec<&'e str>,
    pairs: Vec<(&'e str, &'e str)>,
}

impl<'e> Lists<'e> {
    /// Gathers the lists of `events`, in order.
    pub fn gather<'x>(events: impl IntoIterator<Item = &'x &'e n::Event>) -> Self
    where
        'e: 'x,
    {
        let mut lists = Lists::default();
        for event in events {
            match &event.body {
                n::EventBody::MessageReceived(m) => lists.add_strings(&m.recipients),
                n::EventBody::QueuedMessage(q) => {
                    lists.add_strings(&q.recipients);
                    lists.add_pairs(&q.headers);
                }
                n::EventBody::ServiceState(s) => lists.add_pairs(&s.details),
                n::EventBody::Extension(x) => lists.add_pairs(&x.fields),
                _ => {}
            }
        }
        lists
    }

    fn add_strings(&mut self, list: &'e [String]) {
        self.strings.extend(list.iter().map(String::as_str));
    }

    fn add_pairs(&mut self, list: &'e [(String, String)]) {
        self.pairs
            .extend(list.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    /// The WIT records of `events` (each with its run-wide id), which must
    /// be the events gathered, in the same order.
    pub fn records<'a>(&'a self, events: &[(u64, &'e n::Event)]) -> Vec<wit::Event<'a>> {
        let mut cursor = Cursor {
            lists: self,
            strings: 0,
            pairs: 0,
        };
        events
            .iter()
            .map(|&(id, event)| wit::Event {
                id,
                time: event.time.seconds,
                body: cursor.body(&event.body),
            })
            .collect()
    }
}

/// Hands out the gathered lists in gathering order.
struct Cursor<'a, 'e> {
    lists: &'a Lists<'e>,
    strings: usize,
    pairs: usize,
}

impl<'a, 'e: 'a> Cursor<'a, 'e> {
    fn strings(&mut self, len: usize) -> &'a [&'a str] {
        let start = self.strings;
        self.strings += len;
        &self.lists.strings[start..self.strings]
    }

    fn pairs(&mut self, len: usize) -> &'a [(&'a str, &'a str)] {
        let start = self.pairs;
        self.pairs += len;
        &self.lists.pairs[start..self.pairs]
    }

    fn body(&mut self, body: &'a n::EventBody) -> wit::EventBody<'a> {
        use wit::EventBody as W;
        match body {
            n::EventBody::MessageReceived(m) => W::MessageReceived(wit::MessageReceived {
                message_id: &m.message_id,
                identity: identity(&m.identity),
                protocol: m.protocol.as_deref(),
                size: m.size,
                recipients: self.strings(m.recipients.len()),
                subject: m.subject.as_deref(),
                bounce: m.bounce,
                bounce_of: m.bounce_of.as_deref(),
            }),
            n::EventBody::Delivery(d) => W::Delivery(wit::Delivery {
                message_id: &d.message_id,
                outcome: match d.outcome {
                    n::DeliveryOutcome::Delivered => wit::DeliveryOutcome::Delivered,
                    n::DeliveryOutcome::Deferred => wit::DeliveryOutcome::Deferred,
                    n::DeliveryOutcome::Failed => wit::DeliveryOutcome::Failed,
                },
                recipient: &d.recipient,
                router: d.router.as_deref(),
                transport: d.transport.as_deref(),
                remote_host: d.remote_host.as_deref(),
                remote_ip: d.remote_ip.as_deref(),
                error: d.error.as_deref(),
                identity: identity(&d.identity),
            }),
            n::EventBody::MessageCompleted(m) => W::MessageCompleted(message_state(m)),
            n::EventBody::MessageFrozen(m) => W::MessageFrozen(message_state(m)),
            n::EventBody::Rejection(r) => W::Rejection(wit::Rejection {
                client_ip: r.client_ip.as_deref(),
                client_host: r.client_host.as_deref(),
                sender: r.sender.as_deref(),
                recipient: r.recipient.as_deref(),
                stage: match r.stage {
                    n::SmtpStage::Connect => wit::SmtpStage::Connect,
                    n::SmtpStage::Helo => wit::SmtpStage::Helo,
                    n::SmtpStage::MailFrom => wit::SmtpStage::MailFrom,
                    n::SmtpStage::RcptTo => wit::SmtpStage::RcptTo,
                    n::SmtpStage::Data => wit::SmtpStage::Data,
                    n::SmtpStage::Other => wit::SmtpStage::Other,
                },
                reason: &r.reason,
                message_id: r.message_id.as_deref(),
            }),
            n::EventBody::AuthFailure(a) => W::AuthFailure(wit::AuthFailure {
                client_ip: a.client_ip.as_deref(),
                client_host: a.client_host.as_deref(),
                authenticator: &a.authenticator,
                set_id: a.set_id.as_deref(),
                reason: a.reason.as_deref(),
            }),
            n::EventBody::GovernorAction(g) => W::GovernorAction(wit::GovernorAction {
                message_id: g.message_id.as_deref(),
                domain: g.domain.as_deref(),
                limit: match g.limit {
                    n::GovernorLimit::MaxEmailsPerHour => wit::GovernorLimit::MaxEmailsPerHour,
                    n::GovernorLimit::MaxDefersAndFailures => {
                        wit::GovernorLimit::MaxDefersAndFailures
                    }
                    n::GovernorLimit::OutgoingHold => wit::GovernorLimit::OutgoingHold,
                    n::GovernorLimit::OutgoingSuspension => wit::GovernorLimit::OutgoingSuspension,
                    n::GovernorLimit::NobodyRestricted => wit::GovernorLimit::NobodyRestricted,
                    n::GovernorLimit::Other => wit::GovernorLimit::Other,
                },
                count: g.count,
                maximum: g.maximum,
                discarded: g.discarded,
                recipient: g.recipient.as_deref(),
                identity: identity(&g.identity),
            }),
            n::EventBody::QueuedMessage(q) => W::QueuedMessage(wit::QueuedMessage {
                message_id: &q.message_id,
                identity: identity(&q.identity),
                age_seconds: q.age_seconds,
                size: q.size,
                recipients: self.strings(q.recipients.len()),
                frozen: q.frozen,
                bounce: q.bounce,
                from_header: q.from_header.as_deref(),
                subject: q.subject.as_deref(),
                headers: self.pairs(q.headers.len()),
            }),
            n::EventBody::Setting(s) => W::Setting(wit::Setting {
                source: &s.source,
                scope: s.scope.as_deref(),
                key: &s.key,
                value: s.value.as_deref(),
            }),
            n::EventBody::MailAlias(a) => W::MailAlias(wit::MailAlias {
                domain: &a.domain,
                local_part: &a.local_part,
                target: &a.target,
            }),
            n::EventBody::MailboxStats(m) => W::MailboxStats(wit::MailboxStats {
                account: &m.account,
                domain: &m.domain,
                mailbox: &m.mailbox,
                bytes: m.bytes,
                messages: m.messages,
                bounces: m.bounces,
            }),
            n::EventBody::ServiceState(s) => W::ServiceState(wit::ServiceState {
                name: &s.name,
                enabled: s.enabled,
                details: self.pairs(s.details.len()),
            }),
            n::EventBody::Extension(e) => W::Extension(wit::Extension {
                kind: &e.kind,
                fields: self.pairs(e.fields.len()),
            }),
        }
    }
}

fn identity(id: &n::Identity) -> wit::Identity<'_> {
    wit::Identity {
        sender: id.sender.as_deref(),
        sender_domain: id.sender_domain.as_deref(),
        auth_id: id.auth_id.as_deref(),
        local_user: id.local_user.as_deref(),
        owner: id.owner.as_deref(),
        script: id.script.as_deref(),
        client_ip: id.client_ip.as_deref(),
        client_host: id.client_host.as_deref(),
    }
}

fn message_state(m: &n::MessageState) -> wit::MessageState<'_> {
    wit::MessageState {
        message_id: &m.message_id,
        reason: m.reason.as_deref(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Events of every kind, from the repository's own inputs.
    fn events_of_every_kind() -> Vec<n::Event> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut events = Vec::new();
        let mut inputs = vec![repo.join("examples/logs/mainlog-sample")];
        let csm = repo.join("../shared/corpus/peer/csm-php-relay");
        for entry in std::fs::read_dir(&csm).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "H") {
                inputs.push(path);
            }
        }
        for path in inputs {
            crate::ingest::ingest_file(&path, &mut |e| events.push(e), &mut |_, _| {}).unwrap();
        }
        // The sample log has neither frozen messages nor cPanel's governor.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mainlog");
        std::fs::write(
            &log,
            "2026-08-13 20:45:33 1wuZUi-0000000BrCR-0u0H Frozen (delivery error message)\n\
             2026-04-11 12:00:00 1abc23-000456-AB == f@kos.net R=check_mail_permissions defer (-1): Domain pigdog.org has exceeded the max emails per hour (12/10 (120%)) allowed.  Message will be reattempted later\n",
        )
        .unwrap();
        crate::ingest::ingest_file(&log, &mut |e| events.push(e), &mut |_, _| {}).unwrap();
        let root = repo.join("tests/fixtures/servers/bad");
        crate::sources::server::read_server_state(&root, n::Timestamp::naive(0), &mut events);
        let origin = n::Origin {
            file: "hand-made".into(),
            line: 1,
        };
        events.push(n::Event::new(
            n::Timestamp::naive(-5),
            &origin,
            n::EventBody::Extension(n::Extension {
                kind: "x-test".into(),
                fields: vec![("a".into(), "é ✓".into()), (String::new(), String::new())],
            }),
        ));
        events
    }

    #[test]
    fn records_take_each_events_own_lists_in_a_mixed_batch() {
        let events = events_of_every_kind();
        let kinds: BTreeSet<&str> = events.iter().map(|e| e.kind().name()).collect();
        assert_eq!(kinds.len(), 13, "every kind is exercised: {kinds:?}");

        let numbered: Vec<(u64, &n::Event)> = (1..).zip(&events).collect();
        let lists = Lists::gather(numbered.iter().map(|(_, e)| e));
        let records = lists.records(&numbered);

        assert_eq!(records.len(), events.len());
        let pairs = |v: &[(String, String)]| -> Vec<(String, String)> { v.to_vec() };
        let wit_pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let mut lists_seen = 0;
        for (record, event) in records.iter().zip(&events) {
            assert_eq!(record.time, event.time.seconds);
            match (&record.body, &event.body) {
                (wit::EventBody::MessageReceived(r), n::EventBody::MessageReceived(e)) => {
                    assert_eq!(r.recipients, e.recipients);
                    assert_eq!(r.message_id, e.message_id);
                    lists_seen += 1;
                }
                (wit::EventBody::QueuedMessage(r), n::EventBody::QueuedMessage(e)) => {
                    assert_eq!(r.recipients, e.recipients);
                    assert_eq!(wit_pairs(r.headers), pairs(&e.headers));
                    lists_seen += 1;
                }
                (wit::EventBody::ServiceState(r), n::EventBody::ServiceState(e)) => {
                    assert_eq!(wit_pairs(r.details), pairs(&e.details));
                    lists_seen += 1;
                }
                (wit::EventBody::Extension(r), n::EventBody::Extension(e)) => {
                    assert_eq!(wit_pairs(r.fields), pairs(&e.fields));
                    lists_seen += 1;
                }
                (record, event) => assert_eq!(
                    format!("{record:?}").split('(').next(),
                    Some(format!("EventBody::{event:?}").split('(').next().unwrap()),
                    "same kind"
                ),
            }
        }
        assert!(lists_seen > 100, "{lists_seen} events with lists");
    }
}
