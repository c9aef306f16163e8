//! `queue-health`: a mail queue that says the server is sending spam.
//!
//! A spamming server's queue grows, fills with frozen bounces (undeliverable
//! replies to forged senders), and is dominated by one sender. Queue
//! snapshots (`exim -bp`, the spool) arrive as `queued-message` events that
//! share the snapshot's time, so a window of one second counts one snapshot.
//! The mainlog adds `message-frozen` events, counted per hour.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.queue-health]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Messages in one queue snapshot.
    pub max_queued: u32,
    /// Frozen messages in one snapshot.
    pub max_frozen: u32,
    /// Messages of one sender in one snapshot.
    pub max_per_sender: u32,
    /// Messages frozen per hour, from the log.
    pub max_frozen_per_hour: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_queued: 1000,
            max_frozen: 50,
            max_per_sender: 200,
            max_frozen_per_hour: 50,
        }
    }
}

/// The rule.
pub struct QueueHealth {
    settings: Settings,
}

/// A snapshot's events all carry its time: a one-second window is the
/// snapshot.
const SNAPSHOT: u32 = 1;

fn crossed(total: u64, limit: u32) -> bool {
    total == u64::from(limit)
}

impl Rule for QueueHealth {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "queue-health",
            "Queue size, frozen messages and one sender dominating the queue",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::QueuedMessage)
        .subscribe(EventKind::MessageFrozen)
        .action(Action::Alert)
        .action(Action::FreezeMessage)
        .setting("max_queued", "messages in one queue snapshot")
        .setting("max_frozen", "frozen messages in one snapshot")
        .setting("max_per_sender", "messages of one sender in one snapshot")
        .setting(
            "max_frozen_per_hour",
            "messages frozen per hour, from the log",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.max_queued == 0 || settings.max_frozen == 0 || settings.max_per_sender == 0 {
            return Err("queue limits must be at least 1".into());
        }
        Ok(QueueHealth { settings })
    }

    fn on_queued_message(&mut self, cx: &mut Context<'_>, q: &QueuedMessage) {
        let at = cx.time();
        let total = host::window_add("queued", at, SNAPSHOT, 1);
        if crossed(total, self.settings.max_queued) {
            cx.report(
                Finding::new(
                    Severity::Warning,
                    Target::Setting("exim:queue".into()),
                    Action::Alert,
                    format!("{total} messages or more in the queue"),
                )
                .evidence("queued", total)
                .evidence(
                    "fix",
                    "Find the top sender in the queue (exim -bp | exiqsumm) and stop it",
                ),
            );
        }
        if q.frozen {
            let frozen = host::window_add("frozen", at, SNAPSHOT, 1);
            let bounces = if q.bounce {
                host::window_add("frozen-bounces", at, SNAPSHOT, 1)
            } else {
                host::window_total("frozen-bounces", at, SNAPSHOT)
            };
            if crossed(frozen, self.settings.max_frozen) {
                cx.report(
                    Finding::new(
                        Severity::Warning,
                        Target::Setting("exim:queue".into()),
                        Action::Alert,
                        format!("{frozen} frozen messages in the queue ({bounces} of them bounces)"),
                    )
                    .evidence("frozen", frozen)
                    .evidence("frozen_bounces", bounces)
                    .evidence("oldest_seen_seconds", q.age_seconds)
                    .evidence("fix", "Frozen bounces mean backscatter: set default addresses to :blackhole:, then remove them (exiqgrep -z -i | xargs exim -Mrm)"),
                );
            }
        }
        let sender = q
            .identity
            .owner
            .as_ref()
            .map(|o| (Target::Account(o.to_string()), format!("account:{o}")))
            .or_else(|| {
                q.identity
                    .sender
                    .as_ref()
                    .map(|s| (Target::Mailbox(s.to_string()), format!("sender:{s}")))
            });
        if let Some((target, key)) = sender {
            let n = host::window_add(&key, at, SNAPSHOT, 1);
            if crossed(n, self.settings.max_per_sender) {
                cx.report(
                    Finding::new(
                        Severity::Warning,
                        target.clone(),
                        Action::FreezeMessage,
                        format!(
                            "{n} queued messages from one sender ({})",
                            match &target {
                                Target::Account(a) => format!("account {a}"),
                                Target::Mailbox(m) => m.clone(),
                                _ => unreachable!("only these two are built"),
                            }
                        ),
                    )
                    .evidence("queued_from_sender", n)
                    .evidence(
                        "fix",
                        "Freeze this sender's queued mail and check the account for a compromise",
                    ),
                );
            }
        }
    }

    fn on_message_frozen(&mut self, cx: &mut Context<'_>, m: &MessageState) {
        let n = host::window_add("frozen-log", cx.time(), 3600, 1);
        if crossed(n, self.settings.max_frozen_per_hour) {
            cx.report(
                Finding::new(
                    Severity::Warning,
                    Target::Setting("exim:queue".into()),
                    Action::Alert,
                    format!("{n} messages frozen in the last hour"),
                )
                .evidence("frozen_per_hour", n)
                .evidence("sample_message", &m.message_id)
                .evidence("fix", "Frozen messages are usually bounces to forged senders: check default addresses (:fail: → :blackhole:) and the top senders"),
            );
        }
    }
}

spamward_sdk::export_rule!(QueueHealth);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness};

    fn queued(i: u32, sender: &str, frozen: bool) -> (i64, EventBody<'static>) {
        (
            1000,
            EventBody::QueuedMessage(QueuedMessage {
                message_id: format!("m{i}").into(),
                identity: testing::sender(sender),
                age_seconds: 60,
                size: Some(1000),
                recipients: vec!["x@y.example".into()],
                frozen,
                bounce: sender.is_empty(),
                from_header: None,
                subject: None,
                headers: vec![],
            }),
        )
    }

    #[test]
    fn frozen_bounces_and_a_dominant_sender_are_reported() {
        let mut h =
            Harness::<QueueHealth>::with_settings(r#"{"max_frozen": 3, "max_per_sender": 4}"#)
                .unwrap();
        let mut events: Vec<_> = (0..3).map(|i| queued(i, "", true)).collect();
        events.extend((10..15).map(|i| queued(i, "spam@bakery.example", false)));
        let v = h.feed(events);
        let targets: Vec<_> = v.iter().map(|v| v.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                Target::Setting("exim:queue".into()),
                Target::Mailbox("spam@bakery.example".into())
            ]
        );
        assert!(
            v[0].summary
                .contains("3 frozen messages (3 of them bounces)")
                || v[0].summary.contains("3 frozen"),
            "{}",
            v[0].summary
        );
    }

    #[test]
    fn a_small_healthy_queue_is_quiet() {
        let mut h = Harness::<QueueHealth>::new();
        let v = h.feed((0..20).map(|i| queued(i, &format!("u{i}@shop.example"), false)));
        assert!(v.is_empty());
    }

    #[test]
    fn snapshots_are_counted_separately() {
        let mut h = Harness::<QueueHealth>::with_settings(r#"{"max_queued": 3}"#).unwrap();
        let mut events: Vec<_> = (0..2).map(|i| queued(i, "a@b.example", false)).collect();
        events.extend((0..2).map(|i| (2000, queued(i, "a@b.example", false).1)));
        assert!(h.feed(events).is_empty());
    }
}
