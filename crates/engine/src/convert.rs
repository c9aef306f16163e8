//! The host's side of the wasm boundary: events into a rule's batch (the
//! contract's encoding), and what a rule says (its description, its
//! verdicts) from the types wasmtime generated for `wit/v0.3.0` into the
//! contract's (a 0.2.x rule's are upgraded to those first).

use spamward_contract::counter::{CountOf, CounterSpec};
use spamward_contract::event::{self as contract, DeliveryOutcome, EventKind};
use spamward_contract::filter::{
    EventFilter, FieldPatterns, FieldValues, IdentityField, Subscription,
};
use spamward_contract::verdict::{Action, Severity, Target, Verdict};

use crate::bindings::wit;
use spamward_model as n;

/// Appends `event`, numbered `id`, to an encoded batch.
pub fn encode(id: u64, event: &n::Event, batch: &mut Vec<u8>) {
    contract::encode_parts(id, event.time.seconds, &event.body, batch);
}

/// The contract's kind for a WIT kind.
pub fn kind(kind: wit::EventKind) -> EventKind {
    use wit::EventKind as W;
    match kind {
        W::MessageReceived => EventKind::MessageReceived,
        W::Delivery => EventKind::Delivery,
        W::MessageCompleted => EventKind::MessageCompleted,
        W::MessageFrozen => EventKind::MessageFrozen,
        W::Rejection => EventKind::Rejection,
        W::AuthFailure => EventKind::AuthFailure,
        W::GovernorAction => EventKind::GovernorAction,
        W::QueuedMessage => EventKind::QueuedMessage,
        W::Setting => EventKind::Setting,
        W::MailAlias => EventKind::MailAlias,
        W::MailboxStats => EventKind::MailboxStats,
        W::ServiceState => EventKind::ServiceState,
        W::Extension => EventKind::Extension,
    }
}

/// The contract's subscription for a WIT one, so the host filters with
/// the contract's matching (the code the SDK's harness runs).
pub fn subscription(s: &wit::Subscription) -> Subscription {
    let outcome = |o: &wit::DeliveryOutcome| match o {
        wit::DeliveryOutcome::Delivered => DeliveryOutcome::Delivered,
        wit::DeliveryOutcome::Deferred => DeliveryOutcome::Deferred,
        wit::DeliveryOutcome::Failed => DeliveryOutcome::Failed,
    };
    let filter = |f: &wit::EventFilter| match f {
        wit::EventFilter::Has(f) => EventFilter::Has(identity_field(*f)),
        wit::EventFilter::Equals(fv) => EventFilter::Equals(FieldValues {
            field: identity_field(fv.field),
            values: fv.values.clone(),
        }),
        wit::EventFilter::Outcome(os) => EventFilter::Outcome(os.iter().map(outcome).collect()),
        wit::EventFilter::RemoteRecipient => EventFilter::RemoteRecipient,
        wit::EventFilter::Matches(fp) => EventFilter::Matches(FieldPatterns {
            field: identity_field(fp.field),
            patterns: fp.patterns.clone(),
        }),
    };
    Subscription {
        kind: kind(s.kind),
        any_of: s.any_of.iter().map(filter).collect(),
        all_of: s.all_of.iter().map(filter).collect(),
        none_of: s.none_of.iter().map(filter).collect(),
    }
}

/// The contract's identity field for a WIT one.
fn identity_field(f: wit::IdentityField) -> IdentityField {
    match f {
        wit::IdentityField::Sender => IdentityField::Sender,
        wit::IdentityField::SenderLocalPart => IdentityField::SenderLocalPart,
        wit::IdentityField::SenderDomain => IdentityField::SenderDomain,
        wit::IdentityField::AuthId => IdentityField::AuthId,
        wit::IdentityField::LocalUser => IdentityField::LocalUser,
        wit::IdentityField::Owner => IdentityField::Owner,
        wit::IdentityField::Script => IdentityField::Script,
        wit::IdentityField::ClientIp => IdentityField::ClientIp,
        wit::IdentityField::ClientHost => IdentityField::ClientHost,
    }
}

/// The contract's counter for a WIT counter spec (0.2.2).
pub fn counter_spec(s: &wit::CounterSpec) -> CounterSpec {
    CounterSpec {
        name: s.name.clone(),
        events: subscription(&s.events),
        per: identity_field(s.per),
        count: match s.count {
            wit::CountOf::Events => CountOf::Events,
            wit::CountOf::Recipients => CountOf::Recipients,
            wit::CountOf::DistinctIdentity(f) => CountOf::DistinctIdentity(identity_field(f)),
            wit::CountOf::DistinctRecipientDomains => CountOf::DistinctRecipientDomains,
            wit::CountOf::DistinctMessageRecipients => CountOf::DistinctMessageRecipients,
        },
        window_seconds: s.window_seconds,
        thresholds: s.thresholds.clone(),
        then_every: s.then_every,
        step_seconds: s.step_seconds,
    }
}

/// The contract's action for a WIT action.
pub fn action(a: wit::Action) -> Action {
    match a {
        wit::Action::Alert => Action::Alert,
        wit::Action::HoldOutgoing => Action::HoldOutgoing,
        wit::Action::SuspendOutgoing => Action::SuspendOutgoing,
        wit::Action::FreezeMessage => Action::FreezeMessage,
        wit::Action::BlockIp => Action::BlockIp,
        wit::Action::ResetPassword => Action::ResetPassword,
    }
}

/// The contract's verdict for a WIT verdict.
pub fn verdict(v: wit::Verdict) -> Verdict {
    Verdict {
        severity: match v.severity {
            wit::Severity::Info => Severity::Info,
            wit::Severity::Warning => Severity::Warning,
            wit::Severity::Critical => Severity::Critical,
        },
        target: match v.target {
            wit::Target::Account(s) => Target::Account(s),
            wit::Target::Mailbox(s) => Target::Mailbox(s),
            wit::Target::Domain(s) => Target::Domain(s),
            wit::Target::Ip(s) => Target::Ip(s),
            wit::Target::Message(s) => Target::Message(s),
            wit::Target::Script(s) => Target::Script(s),
            wit::Target::Setting(s) => Target::Setting(s),
        },
        action: action(v.action),
        summary: v.summary,
        evidence: v.evidence,
        events: v.events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Events of every kind, from the repository's own inputs.
    fn events_of_every_kind() -> Vec<n::Event> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
            let s = spamward_exim::ingest::ingest_file(
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
        let s = spamward_exim::ingest::ingest_file(
            &log,
            &Default::default(),
            &mut |e| events.push(e),
            &mut |_, _| {},
        );
        assert!(s.is_complete(), "{s:?}");
        let root = repo.join("tests/fixtures/servers/bad");
        spamward_cpanel::read_server_state(&root, n::Timestamp::naive(0), &mut events);
        let origin = n::Origin {
            file: "hand-made".into(),
            line: 1,
        };
        events.push(n::Event::new(
            n::Timestamp::naive(-5),
            &origin,
            n::EventBody::Extension(n::Extension {
                kind: "x-test".into(),
                fields: vec![("a".into(), "é ✓".into()), ("".into(), "".into())],
            }),
        ));
        events
    }

    #[test]
    fn a_mixed_batch_decodes_in_a_rule_to_each_events_own_fields() {
        let events = events_of_every_kind();
        let kinds: BTreeSet<&str> = events.iter().map(|e| e.kind().name()).collect();
        assert_eq!(kinds.len(), 13, "every kind is exercised: {kinds:?}");

        let mut batch = Vec::new();
        for (id, event) in (1..).zip(&events) {
            encode(id, event, &mut batch);
        }
        let decoded: Vec<contract::Event<'_>> = contract::decode(&batch)
            .collect::<Result<_, _>>()
            .expect("the SDK decodes what the host encodes");
        assert_eq!(decoded.len(), events.len());

        let mut lists_seen = 0;
        for ((id, record), event) in (1..).zip(&decoded).zip(&events) {
            assert_eq!(record.id, id);
            assert_eq!(record.time, event.time.seconds);
            assert_eq!(
                record.body, event.body,
                "event {id} decodes to what was encoded"
            );
            let has_list = match &record.body {
                contract::EventBody::MessageReceived(m) => !m.recipients.is_empty(),
                contract::EventBody::QueuedMessage(q) => !q.recipients.is_empty(),
                contract::EventBody::ServiceState(s) => !s.details.is_empty(),
                contract::EventBody::Extension(e) => !e.fields.is_empty(),
                _ => false,
            };
            lists_seen += usize::from(has_list);
        }
        assert!(lists_seen > 100, "{lists_seen} events with lists");
    }
}
