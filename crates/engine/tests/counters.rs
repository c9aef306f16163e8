//! Counters (interface 0.2.2) in the real engine: the host counts what a
//! rule's counters match without calling the rule, hands it a crossing
//! right after the event that made it, and the verdict cites that event's
//! line.

use std::sync::Arc;

mod common;

use spamward_engine::{DispatchOptions, Dispatcher, Limits, RuleRunner, Sandbox};
use spamward_model::{Event, EventBody, HostLookups, Identity, MessageReceived, Text, Timestamp};

fn sent(line: u64, domain: &str) -> Event {
    Event {
        time: Timestamp::naive(1_714_557_600 + line as i64),
        file: "mainlog".into(),
        line,
        body: EventBody::MessageReceived(MessageReceived {
            message_id: Text::from(format!("1abc{line:02}-000001-AA")),
            identity: Identity {
                sender: Some(Text::from(format!("info@{domain}"))),
                sender_domain: Some(Text::from(domain.to_owned())),
                auth_id: Some(Text::from(format!("info@{domain}"))),
                ..Identity::default()
            },
            recipients: vec![Text::from("someone@remote.example".to_owned())],
            ..MessageReceived::default()
        }),
    }
}

#[test]
fn a_counted_event_never_reaches_the_rule_only_the_crossing_does() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let rule = common::bundled_rule(&sandbox, "hourly-limit");
    let mut settings = rule.meta.default_settings();
    settings.insert("report_rate_above".into(), 5.into());
    let lookups = Arc::new(HostLookups::default());
    let runner =
        RuleRunner::new(Arc::new(rule), settings, lookups.clone(), Limits::default()).unwrap();
    let options = DispatchOptions {
        batch_size: 256,
        workers: 1,
    };
    let mut dispatcher = Dispatcher::new(vec![runner], options, lookups);
    let mut verdicts = Vec::new();
    // Twelve messages from shop.example, interleaved with two from a quiet
    // domain: the fifth from shop.example (line 5) reaches the line.
    for (line, domain) in (1..=14).zip(
        std::iter::repeat_n("shop.example", 5)
            .chain(["quiet.example", "quiet.example"])
            .chain(std::iter::repeat_n("shop.example", 7)),
    ) {
        dispatcher.push(sent(line, domain), &mut |v| verdicts.push(v));
    }
    let reports = dispatcher.finish(&mut |v| verdicts.push(v));

    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    let v = &verdicts[0];
    assert_eq!(
        v.verdict.target,
        spamward_contract::verdict::Target::Domain("shop.example".into())
    );
    assert!(
        v.verdict.summary.contains("sent 5 emails"),
        "{}",
        v.verdict.summary
    );
    let lines: Vec<u64> = v.citations.iter().map(|c| c.line).collect();
    assert_eq!(lines, [5], "the crossing cites the message that made it");
    let health = &reports[0].health;
    assert_eq!(health.events, 1, "only the crossing crossed the boundary");
}
