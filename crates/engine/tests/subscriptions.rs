//! Subscription filters in the real engine: tested on the reading thread as
//! each batch is built, with the server's domains as they were when the
//! event was pushed.

use std::sync::Arc;

mod common;

use spamward_engine::{DispatchOptions, Dispatcher, Limits, RuleRunner, Sandbox};
use spamward_model::{Event, EventBody, HostLookups, Identity, MessageReceived, Text, Timestamp};

/// An unauthenticated message from a remote client to `partner.example`.
fn relayed(line: u64) -> Event {
    Event {
        time: Timestamp::naive(1_714_557_600 + line as i64),
        file: "mainlog".into(),
        line,
        body: EventBody::MessageReceived(MessageReceived {
            message_id: Text::from(format!("1abc{line:02}-000001-AA")),
            identity: Identity {
                sender: Some(Text::from("someone@far.example")),
                sender_domain: Some(Text::from("far.example")),
                client_ip: Some(Text::from("198.51.100.7")),
                ..Identity::default()
            },
            recipients: vec![Text::from("someone@partner.example")],
            ..MessageReceived::default()
        }),
    }
}

/// Local domains: `host.example`, and `partner.example` when `partner_local`.
fn lookups(partner_local: bool) -> Arc<HostLookups> {
    let mut lookups = HostLookups::default();
    lookups.add_owner("host.example", "host");
    if partner_local {
        lookups.add_owner("partner.example", "partner");
    }
    Arc::new(lookups)
}

#[test]
fn events_queued_before_the_domains_change_are_chosen_with_the_old_domains() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    // open-relay wants only messages to a recipient the host knows is remote.
    let rule = common::bundled_rule(&sandbox, "open-relay");
    let settings = rule.meta.default_settings();
    let remote = lookups(false);
    let runner =
        RuleRunner::new(Arc::new(rule), settings, remote.clone(), Limits::default()).unwrap();
    // A batch far larger than the input: both events wait in one queue.
    let options = DispatchOptions {
        batch_size: 1024,
        workers: 1,
    };
    let mut dispatcher = Dispatcher::new(vec![runner], options, remote);
    let mut verdicts = Vec::new();
    dispatcher.push(relayed(1), &mut |v| verdicts.push(v));
    // partner.example is hosted here from now on: the message already
    // pushed was relayed when it came, the next one is local mail.
    dispatcher.set_lookups(&mut |v| verdicts.push(v), lookups(true));
    dispatcher.push(relayed(2), &mut |v| verdicts.push(v));
    let reports = dispatcher.finish(&mut |v| verdicts.push(v));

    assert_eq!(
        reports[0].health.events, 1,
        "only the message pushed while partner.example was remote reached the rule"
    );
}
