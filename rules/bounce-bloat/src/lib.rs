//! `bounce-bloat`: mailboxes swollen with bounces.
//!
//! A mailbox full of delivery failures means its owner sends mail that
//! bounces — an account pushing spam to harvested addresses — or that
//! spammers forge its address and the world's bounces come home. Either way
//! the account is worth a look. A mailbox is reported when it holds at least
//! `min_bounces` bounces that make up at least `min_bounce_percent` % of its
//! messages, critical at ten times `min_bounces`.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.bounce-bloat]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Bounces a mailbox must hold before it is reported; ten times this
    /// makes it critical.
    pub min_bounces: u32,
    /// Share of the mailbox's messages, in percent, the bounces must make up.
    pub min_bounce_percent: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_bounces: 20,
            min_bounce_percent: 30,
        }
    }
}

/// The rule.
pub struct BounceBloat {
    settings: Settings,
}

/// `bytes` for a person: `512 B`, `3.4 MB`, `1.2 GB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

impl Rule for BounceBloat {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "bounce-bloat",
            "Mailboxes swollen with bounces: an account sending spam or an address being forged",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::MailboxStats)
        .action(Action::Alert)
        .setting(
            "min_bounces",
            "bounces a mailbox must hold before it is reported (ten times this is critical)",
        )
        .setting(
            "min_bounce_percent",
            "share of the mailbox's messages, in percent, the bounces must make up",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.min_bounces == 0 {
            return Err("min_bounces must be at least 1".into());
        }
        if settings.min_bounce_percent > 100 {
            return Err(format!(
                "min_bounce_percent must be 0..=100, not {}",
                settings.min_bounce_percent
            ));
        }
        Ok(BounceBloat { settings })
    }

    fn on_mailbox_stats(&mut self, cx: &mut Context<'_>, m: &MailboxStats) {
        let bounces = u64::from(m.bounces);
        let messages = u64::from(m.messages);
        let min = u64::from(self.settings.min_bounces);
        if bounces < min || bounces * 100 < messages * u64::from(self.settings.min_bounce_percent) {
            return;
        }
        let severity = if bounces >= 10 * min {
            Severity::Critical
        } else {
            Severity::Warning
        };
        // "(default)" is the account's own system mailbox, not an address.
        let (target, mailbox) = if m.domain == "(default)" {
            (
                Target::Account(m.account.to_string()),
                format!("the main mailbox of {}", m.account),
            )
        } else {
            let address = format!("{}@{}", m.mailbox, m.domain);
            (Target::Mailbox(address.clone()), address)
        };
        let percent = bounces * 100 / messages.max(bounces).max(1);
        cx.report(
            Finding::new(
                severity,
                target,
                Action::Alert,
                format!(
                    "{mailbox} holds {bounces} bounces ({percent}% of {messages} messages, {}): its account may be sending spam or its address is forged",
                    human_size(m.bytes)
                ),
            )
            .evidence("account", &m.account)
            .evidence("bytes", m.bytes)
            .evidence("messages", messages)
            .evidence("bounces", bounces)
            .evidence("percent", percent)
            .evidence(
                "fix",
                format!(
                    "Empty the bounces from {mailbox} and check {} for outgoing spam",
                    m.account
                ),
            ),
        );
    }
}

spamward_sdk::export_rule!(BounceBloat);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness, evidence};

    fn stats(
        domain: &str,
        mailbox: &str,
        messages: u32,
        bounces: u32,
    ) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::MailboxStats(MailboxStats {
                account: "shopacct".into(),
                domain: testing::text(domain),
                mailbox: testing::text(mailbox),
                bytes: 38 * 1024 * 1024,
                messages,
                bounces,
            }),
        )
    }

    #[test]
    fn mailbox_full_of_bounces_is_a_warning_on_the_mailbox() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([stats("shop.example", "info", 120, 60)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Mailbox("info@shop.example".into()));
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary
                .contains("info@shop.example holds 60 bounces (50% of 120 messages, 38.0 MB)"),
            "{}",
            v[0].summary
        );
        assert_eq!(evidence(&v[0], "bytes"), Some("39845888"));
        assert_eq!(evidence(&v[0], "messages"), Some("120"));
        assert_eq!(evidence(&v[0], "bounces"), Some("60"));
        assert_eq!(
            evidence(&v[0], "fix"),
            Some("Empty the bounces from info@shop.example and check shopacct for outgoing spam")
        );
    }

    #[test]
    fn ten_times_the_minimum_is_critical() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([
            stats("shop.example", "a", 400, 200),
            stats("shop.example", "b", 400, 199),
        ]);
        let severities: Vec<_> = v.iter().map(|v| v.severity).collect();
        assert_eq!(severities, vec![Severity::Critical, Severity::Warning]);
    }

    #[test]
    fn the_default_mailbox_is_reported_on_the_account() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([stats("(default)", "shopacct", 30, 25)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Account("shopacct".into()));
        assert!(
            v[0].summary.contains("the main mailbox of shopacct"),
            "{}",
            v[0].summary
        );
        assert_eq!(
            evidence(&v[0], "fix"),
            Some(
                "Empty the bounces from the main mailbox of shopacct and check shopacct for outgoing spam"
            )
        );
    }

    #[test]
    fn thresholds_are_inclusive() {
        let mut h = Harness::<BounceBloat>::new();
        // 20 bounces, but 29.9 % of the mailbox.
        let v = h.feed([stats("shop.example", "info", 67, 20)]);
        assert!(v.is_empty(), "{v:?}");
        // Exactly 30 %, and exactly 20 bounces.
        let v = h.feed([stats("shop.example", "info", 200, 60)]);
        assert_eq!(v.len(), 1, "{v:?}");
        let v = h.feed([stats("shop.example", "sales", 60, 20)]);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn few_bounces_or_a_big_healthy_mailbox_are_quiet() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([
            // All bounces, but only 19 of them.
            stats("shop.example", "a", 19, 19),
            // Many bounces, but a small share of a busy mailbox.
            stats("shop.example", "b", 10_000, 500),
            stats("shop.example", "c", 0, 0),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn more_bounces_than_messages_does_not_overflow_the_percentage() {
        let mut h = Harness::<BounceBloat>::new();
        let v = h.feed([stats("shop.example", "info", 0, u32::MAX)]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(evidence(&v[0], "percent"), Some("100"));
    }

    #[test]
    fn settings_are_checked() {
        let mut h =
            Harness::<BounceBloat>::with_settings(r#"{"min_bounces": 5, "min_bounce_percent": 0}"#)
                .unwrap();
        assert_eq!(h.feed([stats("a.example", "x", 10_000, 5)]).len(), 1);
        let err = Harness::<BounceBloat>::with_settings(r#"{"min_bounce_percent": 101}"#).err();
        assert_eq!(
            err.as_deref(),
            Some("min_bounce_percent must be 0..=100, not 101")
        );
        let err = Harness::<BounceBloat>::with_settings(r#"{"min_bounces": 0}"#).err();
        assert_eq!(err.as_deref(), Some("min_bounces must be at least 1"));
        let err = Harness::<BounceBloat>::with_settings(r#"{"min_bounce": 5}"#)
            .err()
            .unwrap();
        assert!(err.contains("min_bounce"), "{err}");
    }

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GB");
    }
}
