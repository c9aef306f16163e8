//! `defer-fail-ratio`: sender domains whose deliveries mostly fail or defer.
//!
//! Spam goes to harvested and guessed addresses, so a spamming domain's
//! deliveries bounce and defer far more than a real sender's. cPanel's
//! governor holds a domain when (failed + deferred) / attempts passes a
//! percentage with at least a minimum of failures in an hour; this rule
//! applies the same test on event time, per sender domain.
//!
//! A forwarder to a full mailbox or one remote site's outage can trip a plain
//! ratio, so the failures must also span `min_failing_domains` distinct
//! recipient domains before the rule speaks.
//!
//! Attempts and failures count recipients of messages, not log lines: a
//! deferred recipient is logged again at every retry, and those retries are
//! not new failures.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.defer-fail-ratio]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Percentage of (failed + deferred) / attempts that trips the rule.
    pub max_percent: u32,
    /// Failures (failed + deferred) needed before the ratio counts.
    pub min_failures: u32,
    /// Distinct recipient domains the failures must span.
    pub min_failing_domains: u32,
    /// Window length in minutes.
    pub window_minutes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_percent: 20,
            min_failures: 5,
            min_failing_domains: 2,
            window_minutes: 60,
        }
    }
}

/// The rule.
pub struct DeferFailRatio {
    settings: Settings,
}

impl Rule for DeferFailRatio {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "defer-fail-ratio",
            "Sender domains whose failed + deferred deliveries pass the governor's ratio",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .action(Action::HoldOutgoing)
        .setting(
            "max_percent",
            "percentage of failed + deferred deliveries that trips the rule",
        )
        .setting(
            "min_failures",
            "failed + deferred deliveries needed before the ratio counts",
        )
        .setting(
            "min_failing_domains",
            "distinct recipient domains the failures must span",
        )
        .setting("window_minutes", "window length in minutes")
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.max_percent > 100 {
            return Err(format!(
                "max_percent must be 0..=100, not {}",
                settings.max_percent
            ));
        }
        Ok(DeferFailRatio { settings })
    }

    /// Attempts, failures and failing recipient domains per sender domain,
    /// all counted by the host: the rule hears of a domain at each new
    /// failure once it has `min_failures`, and judges the ratio then.
    fn counters(&self) -> Vec<Counter> {
        let window = self.window();
        // Outgoing mail with a sender: bounces (null sender) belong to
        // nobody's sending reputation, even when the log names the domain
        // they were charged to.
        let deliveries = filter::all(EventKind::Delivery)
            .any_of(filter::local_sender())
            .all_of([filter::has(IdentityField::Sender)]);
        let failing = deliveries.clone().all_of([filter::outcome(&[
            DeliveryOutcome::Failed,
            DeliveryOutcome::Deferred,
        ])]);
        let per = IdentityField::SenderDomain;
        vec![
            counter::of(ATTEMPTS, deliveries, per)
                .count(CountOf::DistinctMessageRecipients)
                .window(window),
            counter::of(FAILING_DOMAINS, failing.clone(), per)
                .count(CountOf::DistinctRecipientDomains)
                .window(window),
            // Declared last, so the other two have counted the failure
            // when it is judged.
            counter::of(FAILURES, failing, per)
                .count(CountOf::DistinctMessageRecipients)
                .window(window)
                .threshold(u64::from(self.settings.min_failures.max(1)))
                .then_every(1),
        ]
    }

    fn on_counter(&mut self, cx: &mut Context<'_>, c: &Crossing) {
        if c.counter != FAILURES {
            return;
        }
        let (domain, failures, at, window) = (c.key.as_str(), c.total, cx.time(), self.window());
        let attempts = counter::total(ATTEMPTS, domain, at);
        let failing_domains = counter::total(FAILING_DOMAINS, domain, at);
        let tripped = failing_domains >= u64::from(self.settings.min_failing_domains)
            && failures * 100 > attempts * u64::from(self.settings.max_percent);
        // One report per domain per window: remember when we last spoke.
        if !tripped || !host::once_per_window(&format!("reported:{domain}"), at, window) {
            return;
        }
        let percent = failures * 100 / attempts.max(1);
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Domain(domain.to_string()),
                Action::HoldOutgoing,
                format!(
                    "{failures} of {attempts} deliveries from {domain} failed or deferred in {} min ({percent}% > {}%)",
                    window / 60,
                    self.settings.max_percent
                ),
            )
            .evidence("attempts", attempts)
            .evidence("failed_or_deferred", failures)
            .evidence("percent", percent)
            .evidence("failing_recipient_domains", failing_domains)
            .evidence("last_error", c.error.as_deref().unwrap_or("-")),
        );
    }
}

impl DeferFailRatio {
    fn window(&self) -> u32 {
        self.settings.window_minutes.max(1) * 60
    }
}

/// The host counters, per sender domain: recipients attempted, recipients
/// failed or deferred, and the recipient domains of those failures.
const ATTEMPTS: &str = "attempts";
const FAILURES: &str = "failures";
const FAILING_DOMAINS: &str = "failing-domains";

spamward_sdk::export_rule!(DeferFailRatio);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness};

    fn attempt(i: i64, outcome: DeliveryOutcome, rcpt: &str) -> (i64, EventBody<'static>) {
        let mut d = testing::delivery(&format!("m{i}"), "news@spam.example", outcome, rcpt);
        d.identity.local_user = Some("newsacct".into());
        (
            testing::at("2024-05-01 10:00:00") + i * 30,
            EventBody::Delivery(d),
        )
    }

    #[test]
    fn mostly_failing_domain_is_reported_once() {
        let mut h = Harness::<DeferFailRatio>::new();
        let v = h.feed((0..20).map(|i| {
            let outcome = if i % 4 == 0 {
                DeliveryOutcome::Delivered
            } else {
                DeliveryOutcome::Failed
            };
            attempt(i, outcome, &format!("u{i}@site{}.example", i % 7))
        }));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Domain("spam.example".into()));
        assert_eq!(v[0].action, Action::HoldOutgoing);
    }

    #[test]
    fn retries_of_the_same_recipients_are_not_new_failures() {
        // Three recipients of one message at three domains, deferred and
        // retried ten times each: three failures, below `min_failures`.
        let mut h = Harness::<DeferFailRatio>::new();
        let v = h.feed((0..30).map(|i| {
            let (t, mut body) = attempt(
                i,
                DeliveryOutcome::Deferred,
                &format!("u@d{}.example", i % 3),
            );
            if let EventBody::Delivery(d) = &mut body {
                d.message_id = testing::text("1kHR5j-2tdk01-01");
            }
            (t, body)
        }));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn below_min_failures_is_quiet() {
        let mut h = Harness::<DeferFailRatio>::new();
        let v = h.feed(
            (0..4).map(|i| attempt(i, DeliveryOutcome::Deferred, &format!("u@d{i}.example"))),
        );
        assert!(v.is_empty());
    }

    #[test]
    fn one_remote_outage_is_not_enough() {
        let mut h = Harness::<DeferFailRatio>::new();
        let v = h.feed((0..30).map(|i| attempt(i, DeliveryOutcome::Deferred, "u@down.example")));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn inbound_mail_from_a_failing_remote_domain_is_not_ours_to_judge() {
        let mut h = Harness::<DeferFailRatio>::new();
        let v = h.feed((0..20).map(|i| {
            let (t, mut body) = attempt(i, DeliveryOutcome::Failed, &format!("u@d{i}.example"));
            if let EventBody::Delivery(d) = &mut body {
                d.identity.local_user = None;
            }
            (t, body)
        }));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn healthy_ratio_is_quiet() {
        let mut h = Harness::<DeferFailRatio>::new();
        let v = h.feed((0..100).map(|i| {
            let outcome = if i % 10 == 0 {
                DeliveryOutcome::Failed
            } else {
                DeliveryOutcome::Delivered
            };
            attempt(i, outcome, &format!("u{i}@d{i}.example"))
        }));
        assert!(v.is_empty(), "{v:?}");
    }
}
