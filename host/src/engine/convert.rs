//! Conversion of the normalizer's events into what crosses the wasm
//! boundary: the SDK's event records (borrowing the events' strings),
//! encoded into a rule's batch; and the host's and WIT's event kinds.

use spamward_sdk::event as sdk;

use super::bindings::wit;
use crate::normalize as n;

/// Appends `event`, numbered `id`, to an encoded batch.
pub fn encode(id: u64, event: &n::Event, batch: &mut Vec<u8>) {
    let record = sdk::Event {
        id,
        time: event.time.seconds,
        body: body(&event.body),
    };
    sdk::encode(&record, batch);
}

fn text(s: &str) -> sdk::Text<'_> {
    s.into()
}

fn opt(s: &Option<String>) -> Option<sdk::Text<'_>> {
    s.as_deref().map(text)
}

fn texts(list: &[String]) -> Vec<sdk::Text<'_>> {
    list.iter().map(|s| text(s)).collect()
}

fn pairs(list: &[(String, String)]) -> Vec<(sdk::Text<'_>, sdk::Text<'_>)> {
    list.iter().map(|(k, v)| (text(k), text(v))).collect()
}

fn body(body: &n::EventBody) -> sdk::EventBody<'_> {
    use sdk::EventBody as S;
    match body {
        n::EventBody::MessageReceived(m) => S::MessageReceived(sdk::MessageReceived {
            message_id: text(&m.message_id),
            identity: identity(&m.identity),
            protocol: opt(&m.protocol),
            size: m.size,
            recipients: texts(&m.recipients),
            subject: opt(&m.subject),
            bounce: m.bounce,
            bounce_of: opt(&m.bounce_of),
        }),
        n::EventBody::Delivery(d) => S::Delivery(sdk::Delivery {
            message_id: text(&d.message_id),
            outcome: outcome(d.outcome),
            recipient: text(&d.recipient),
            router: opt(&d.router),
            transport: opt(&d.transport),
            remote_host: opt(&d.remote_host),
            remote_ip: opt(&d.remote_ip),
            error: opt(&d.error),
            identity: identity(&d.identity),
        }),
        n::EventBody::MessageCompleted(m) => S::MessageCompleted(message_state(m)),
        n::EventBody::MessageFrozen(m) => S::MessageFrozen(message_state(m)),
        n::EventBody::Rejection(r) => S::Rejection(sdk::Rejection {
            client_ip: opt(&r.client_ip),
            client_host: opt(&r.client_host),
            sender: opt(&r.sender),
            recipient: opt(&r.recipient),
            stage: match r.stage {
                n::SmtpStage::Connect => sdk::SmtpStage::Connect,
                n::SmtpStage::Helo => sdk::SmtpStage::Helo,
                n::SmtpStage::MailFrom => sdk::SmtpStage::MailFrom,
                n::SmtpStage::RcptTo => sdk::SmtpStage::RcptTo,
                n::SmtpStage::Data => sdk::SmtpStage::Data,
                n::SmtpStage::Other => sdk::SmtpStage::Other,
            },
            reason: text(&r.reason),
            message_id: opt(&r.message_id),
        }),
        n::EventBody::AuthFailure(a) => S::AuthFailure(sdk::AuthFailure {
            client_ip: opt(&a.client_ip),
            client_host: opt(&a.client_host),
            authenticator: text(&a.authenticator),
            set_id: opt(&a.set_id),
            reason: opt(&a.reason),
        }),
        n::EventBody::GovernorAction(g) => S::GovernorAction(sdk::GovernorAction {
            message_id: opt(&g.message_id),
            domain: opt(&g.domain),
            limit: match g.limit {
                n::GovernorLimit::MaxEmailsPerHour => sdk::GovernorLimit::MaxEmailsPerHour,
                n::GovernorLimit::MaxDefersAndFailures => sdk::GovernorLimit::MaxDefersAndFailures,
                n::GovernorLimit::OutgoingHold => sdk::GovernorLimit::OutgoingHold,
                n::GovernorLimit::OutgoingSuspension => sdk::GovernorLimit::OutgoingSuspension,
                n::GovernorLimit::NobodyRestricted => sdk::GovernorLimit::NobodyRestricted,
                n::GovernorLimit::Other => sdk::GovernorLimit::Other,
            },
            count: g.count,
            maximum: g.maximum,
            discarded: g.discarded,
            recipient: opt(&g.recipient),
            identity: identity(&g.identity),
        }),
        n::EventBody::QueuedMessage(q) => S::QueuedMessage(sdk::QueuedMessage {
            message_id: text(&q.message_id),
            identity: identity(&q.identity),
            age_seconds: q.age_seconds,
            size: q.size,
            recipients: texts(&q.recipients),
            frozen: q.frozen,
            bounce: q.bounce,
            from_header: opt(&q.from_header),
            subject: opt(&q.subject),
            headers: pairs(&q.headers),
        }),
        n::EventBody::Setting(s) => S::Setting(sdk::Setting {
            source: text(&s.source),
            scope: opt(&s.scope),
            key: text(&s.key),
            value: opt(&s.value),
        }),
        n::EventBody::MailAlias(a) => S::MailAlias(sdk::MailAlias {
            domain: text(&a.domain),
            local_part: text(&a.local_part),
            target: text(&a.target),
        }),
        n::EventBody::MailboxStats(m) => S::MailboxStats(sdk::MailboxStats {
            account: text(&m.account),
            domain: text(&m.domain),
            mailbox: text(&m.mailbox),
            bytes: m.bytes,
            messages: m.messages,
            bounces: m.bounces,
        }),
        n::EventBody::ServiceState(s) => S::ServiceState(sdk::ServiceState {
            name: text(&s.name),
            enabled: s.enabled,
            details: pairs(&s.details),
        }),
        n::EventBody::Extension(e) => S::Extension(sdk::Extension {
            kind: text(&e.kind),
            fields: pairs(&e.fields),
        }),
    }
}

fn identity(id: &n::Identity) -> sdk::Identity<'_> {
    sdk::Identity {
        sender: opt(&id.sender),
        sender_domain: opt(&id.sender_domain),
        auth_id: opt(&id.auth_id),
        local_user: opt(&id.local_user),
        owner: opt(&id.owner),
        script: opt(&id.script),
        client_ip: opt(&id.client_ip),
        client_host: opt(&id.client_host),
    }
}

fn message_state(m: &n::MessageState) -> sdk::MessageState<'_> {
    sdk::MessageState {
        message_id: text(&m.message_id),
        reason: opt(&m.reason),
        identity: identity(&m.identity),
    }
}

fn outcome(o: n::DeliveryOutcome) -> sdk::DeliveryOutcome {
    match o {
        n::DeliveryOutcome::Delivered => sdk::DeliveryOutcome::Delivered,
        n::DeliveryOutcome::Deferred => sdk::DeliveryOutcome::Deferred,
        n::DeliveryOutcome::Failed => sdk::DeliveryOutcome::Failed,
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
        match &self.0.body {
            n::EventBody::Delivery(d) => Some(outcome(d.outcome)),
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
        let csm = repo.join("tests/corpus/peer/csm-php-relay");
        for entry in std::fs::read_dir(&csm).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "H") {
                inputs.push(path);
            }
        }
        for path in inputs {
            let s = crate::ingest::ingest_file(
                &path,
                &Default::default(),
                &mut |e| events.push(e),
                &mut |_, _| {},
            );
            assert!(s.is_complete(), "{s:?}");
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
        let s = crate::ingest::ingest_file(
            &log,
            &Default::default(),
            &mut |e| events.push(e),
            &mut |_, _| {},
        );
        assert!(s.is_complete(), "{s:?}");
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
    fn a_mixed_batch_decodes_in_the_sdk_to_each_events_own_fields() {
        let events = events_of_every_kind();
        let kinds: BTreeSet<&str> = events.iter().map(|e| e.kind().name()).collect();
        assert_eq!(kinds.len(), 13, "every kind is exercised: {kinds:?}");

        let mut batch = Vec::new();
        for (id, event) in (1..).zip(&events) {
            encode(id, event, &mut batch);
        }
        let decoded: Vec<sdk::Event<'_>> = sdk::decode(&batch)
            .collect::<Result<_, _>>()
            .expect("the SDK decodes what the host encodes");
        assert_eq!(decoded.len(), events.len());

        let pairs = |v: &[(sdk::Text<'_>, sdk::Text<'_>)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let strings =
            |v: &[sdk::Text<'_>]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        let mut lists_seen = 0;
        for ((id, record), event) in (1..).zip(&decoded).zip(&events) {
            assert_eq!(record.id, id);
            assert_eq!(record.time, event.time.seconds);
            assert_eq!(
                record.body.kind(),
                sdk_kind(event.kind()),
                "event {id} keeps its kind"
            );
            let identity = event.body.identity().map(|i| {
                (
                    i.sender.clone(),
                    i.auth_id.clone(),
                    i.client_ip.clone(),
                    i.script.clone(),
                )
            });
            let decoded_identity = record.body.identity().map(|i| {
                let s = |t: &Option<sdk::Text<'_>>| t.as_deref().map(str::to_owned);
                (s(&i.sender), s(&i.auth_id), s(&i.client_ip), s(&i.script))
            });
            assert_eq!(decoded_identity, identity, "event {id} keeps its identity");
            match (&record.body, &event.body) {
                (sdk::EventBody::MessageReceived(r), n::EventBody::MessageReceived(e)) => {
                    assert_eq!(strings(&r.recipients), e.recipients);
                    assert_eq!(r.message_id, e.message_id.as_str());
                    lists_seen += 1;
                }
                (sdk::EventBody::QueuedMessage(r), n::EventBody::QueuedMessage(e)) => {
                    assert_eq!(strings(&r.recipients), e.recipients);
                    assert_eq!(pairs(&r.headers), e.headers);
                    lists_seen += 1;
                }
                (sdk::EventBody::ServiceState(r), n::EventBody::ServiceState(e)) => {
                    assert_eq!(pairs(&r.details), e.details);
                    lists_seen += 1;
                }
                (sdk::EventBody::Extension(r), n::EventBody::Extension(e)) => {
                    assert_eq!(pairs(&r.fields), e.fields);
                    lists_seen += 1;
                }
                (sdk::EventBody::Delivery(r), n::EventBody::Delivery(e)) => {
                    assert_eq!(r.recipient, e.recipient.as_str());
                    assert_eq!(r.error.as_deref(), e.error.as_deref());
                }
                _ => {}
            }
        }
        assert!(lists_seen > 100, "{lists_seen} events with lists");
    }
}
