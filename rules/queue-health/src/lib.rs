//! `queue-health`: a mail queue that says the server is sending spam.
//!
//! A spamming server's queue grows, fills with frozen bounces (undeliverable
//! replies to forged senders), and is dominated by one sender. Queue
//! snapshots (`exim -bp`, the spool) arrive as `queued-message` events that
//! share the snapshot's time, so a window of one second counts one snapshot.
//! The mainlog adds `message-frozen` events, counted per hour.
//!
//! Frozen bounces are judged against the queue's size, so the rule fits a
//! small VPS as well as a big server: after each whole snapshot the host
//! sends its tally (a `queue-snapshot` extension), and a queue whose frozen
//! bounces are at least `min_frozen_bounces` *and* `frozen_bounce_percent`
//! of its messages is reported (ten frozen bounces in a queue of thirty is
//! backscatter; ten in a queue of ten thousand is noise).
//!
//! The queue is named `exim:queue` under the `setting` target kind until the
//! interface has a target kind of its own for it.
use serde::{Deserialize, Serialize};
use spamward_sdk::event::extension_kind;
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
    /// Frozen bounces a snapshot must hold before their share counts.
    pub min_frozen_bounces: u32,
    /// Share of the queue, in percent, the frozen bounces must make up.
    pub frozen_bounce_percent: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_queued: 1000,
            max_frozen: 50,
            max_per_sender: 200,
            max_frozen_per_hour: 50,
            min_frozen_bounces: 10,
            frozen_bounce_percent: 20,
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
        .subscribe(EventKind::Extension)
        .action(Action::Alert)
        .action(Action::FreezeMessage)
        .setting("max_queued", "messages in one queue snapshot")
        .setting("max_frozen", "frozen messages in one snapshot")
        .setting("max_per_sender", "messages of one sender in one snapshot")
        .setting(
            "max_frozen_per_hour",
            "messages frozen per hour, from the log",
        )
        .setting(
            "min_frozen_bounces",
            "frozen bounces a snapshot must hold before their share counts",
        )
        .setting(
            "frozen_bounce_percent",
            "share of the queue, in percent, frozen bounces must make up",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.max_queued == 0 || settings.max_frozen == 0 || settings.max_per_sender == 0 {
            return Err("queue limits must be at least 1".into());
        }
        if !(1..=100).contains(&settings.frozen_bounce_percent) {
            return Err(format!(
                "frozen_bounce_percent must be 1..=100, not {}",
                settings.frozen_bounce_percent
            ));
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

    fn on_extension(&mut self, cx: &mut Context<'_>, e: &Extension) {
        if e.kind != extension_kind::QUEUE_SNAPSHOT {
            return;
        }
        let field = |name: &str| {
            e.field(name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (messages, frozen_bounces) = (field("messages"), field("frozen_bounces"));
        let enough = frozen_bounces >= u64::from(self.settings.min_frozen_bounces)
            && frozen_bounces * 100 >= messages * u64::from(self.settings.frozen_bounce_percent);
        // A snapshot comes every minute in the daemon: one finding an hour.
        if !enough || !host::once_per_window("frozen-bounce-share", cx.time(), 3600) {
            return;
        }
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Setting("exim:queue".into()),
                Action::Alert,
                format!(
                    "{frozen_bounces} of the {messages} messages in the queue are frozen bounces ({}%)",
                    frozen_bounces * 100 / messages.max(1)
                ),
            )
            .evidence("queued", messages)
            .evidence("frozen_bounces", frozen_bounces)
            .evidence("frozen", field("frozen"))
            .evidence("fix", "Frozen bounces mean backscatter or a dead remote: find whom they were for (exiqgrep -z -f '^<>$'), fix the cause (default addresses :fail: → :blackhole:), then remove them (exiqgrep -z -i | xargs exim -Mrm)"),
        );
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

    fn tally(messages: u32, frozen_bounces: u32) -> (i64, EventBody<'static>) {
        let field = |k: &str, v: u32| (testing::text(k), testing::text(&v.to_string()));
        (
            1000,
            EventBody::Extension(Extension {
                kind: extension_kind::QUEUE_SNAPSHOT.into(),
                fields: vec![
                    field("messages", messages),
                    field("frozen", frozen_bounces),
                    field("bounces", frozen_bounces),
                    field("frozen_bounces", frozen_bounces),
                ],
            }),
        )
    }

    #[test]
    fn frozen_bounces_are_judged_against_the_queue_size() {
        // A small VPS: 12 frozen bounces in a queue of 30.
        let mut h = Harness::<QueueHealth>::new();
        let v = h.feed([tally(30, 12)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].summary.starts_with("12 of the 30 messages"),
            "{}",
            v[0].summary
        );
        // The next snapshot a minute later says nothing new.
        let (t, e) = tally(31, 12);
        assert!(h.feed([(t + 60, e)]).is_empty());

        // 12 in a queue of 5,000 is noise; 9 in a queue of 10 too few.
        for (messages, frozen) in [(5000, 12), (10, 9)] {
            let mut h = Harness::<QueueHealth>::new();
            assert!(
                h.feed([tally(messages, frozen)]).is_empty(),
                "{messages} {frozen}"
            );
        }
    }

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
