//! `default-address`: catch-alls that bounce, and the bounces they cause.
//!
//! A domain's default address (`*` in `/etc/valiases/<domain>`) set to
//! `:fail:` makes the server answer every message for an unknown user with a
//! bounce. Spammers forge their victims' addresses as the sender, so those
//! bounces go to innocent people (backscatter) and put the server's IP on
//! blocklists. `:blackhole:` (cPanel's "Discard") or a forward to a real
//! mailbox does not. Each `:fail:` catch-all is reported once, on its domain.
//!
//! The same damage shows in the log: bounces the MTA generates itself
//! (`<>` messages submitted by its own user) counted over an hour. Past
//! `max_bounces_per_hour` the rule says so, once per hour.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.default-address]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Locally generated bounces per hour above which the server is
    /// reported as sending backscatter.
    pub max_bounces_per_hour: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_bounces_per_hour: 300,
        }
    }
}

/// The rule.
pub struct DefaultAddress {
    settings: Settings,
}

const HOUR: u32 = 3600;

/// Local users the MTA submits its own bounces as (cPanel, Debian, others).
const MTA_USERS: [&str; 3] = ["mailnull", "Debian-exim", "exim"];

/// Whether an alias target is `:fail:` (any case, leading spaces allowed).
fn is_fail(target: &str) -> bool {
    target
        .trim_start()
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case(":fail:"))
}

impl Rule for DefaultAddress {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "default-address",
            "Catch-all addresses set to :fail: and floods of locally generated bounces (backscatter)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::MailAlias)
        // Bounces are submitted by the MTA's own user; the host drops the
        // rest of the mail before it crosses the boundary.
        .subscribe_where(
            EventKind::MessageReceived,
            [filter::equals(IdentityField::LocalUser, &MTA_USERS)],
        )
        .action(Action::Alert)
        .setting(
            "max_bounces_per_hour",
            "locally generated bounces per hour above which the server is reported",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.max_bounces_per_hour == 0 {
            return Err("max_bounces_per_hour must be at least 1".into());
        }
        Ok(DefaultAddress { settings })
    }

    fn on_mail_alias(&mut self, cx: &mut Context<'_>, a: &MailAlias) {
        if a.local_part != "*" || !is_fail(&a.target) {
            return;
        }
        let domain = a.domain.to_ascii_lowercase();
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Domain(domain.clone()),
                Action::Alert,
                format!(
                    "default address (catch-all) of {domain} is :fail: — mail for unknown users is accepted, then bounced to forged senders (backscatter)"
                ),
            )
            .evidence("catch_all", a.target.trim())
            .evidence(
                "fix",
                format!(
                    "cPanel → Email → Default Address for {domain}: \"Discard\" (:blackhole:) or forward to a mailbox"
                ),
            ),
        );
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        if !m.bounce {
            return;
        }
        let at = cx.time();
        let bounces = host::window_add("bounces", at, HOUR, 1);
        let limit = u64::from(self.settings.max_bounces_per_hour);
        if bounces <= limit {
            return;
        }
        // One report per hour: remember when we last spoke.
        if !host::once_per_window("reported:bounces", at, HOUR) {
            return;
        }
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Setting("exim:bounces".into()),
                Action::Alert,
                format!(
                    "the server generated {bounces} bounces in the last hour (limit {limit}): likely backscatter to forged senders"
                ),
            )
            .evidence("bounces", bounces)
            .evidence("limit", limit)
            .evidence("window_minutes", HOUR / 60)
            .evidence("sample_bounce", &m.message_id)
            .evidence("bounce_of", m.bounce_of.as_deref().unwrap_or("-"))
            .evidence(
                "fix",
                "cPanel → Email → Default Address: set every domain's catch-all to \"Discard\" (:blackhole:) or a mailbox, not :fail:, and find the account whose mail is bouncing",
            ),
        );
    }
}

spamward_sdk::export_rule!(DefaultAddress);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness, evidence};

    fn alias(domain: &str, local_part: &str, target: &str) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::MailAlias(MailAlias {
                domain: testing::text(domain),
                local_part: testing::text(local_part),
                target: testing::text(target),
            }),
        )
    }

    fn bounce(i: i64, user: &str) -> (i64, EventBody<'static>) {
        let mut m = testing::received(&format!("b{i}"), "");
        m.identity.local_user = Some(testing::text(user));
        m.bounce_of = Some(format!("orig{i}").into());
        (
            testing::at("2024-05-01 10:00:00") + i,
            EventBody::MessageReceived(m),
        )
    }

    #[test]
    fn fail_catch_all_is_a_warning_on_the_domain_with_the_fix() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed([alias("Shop.example", "*", ":fail: No Such User Here")]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Domain("shop.example".into()));
        assert_eq!(v[0].action, Action::Alert);
        assert!(v[0].summary.contains("backscatter"), "{}", v[0].summary);
        assert_eq!(
            evidence(&v[0], "fix"),
            Some(
                "cPanel → Email → Default Address for shop.example: \"Discard\" (:blackhole:) or forward to a mailbox"
            )
        );
        assert_eq!(
            evidence(&v[0], "catch_all"),
            Some(":fail: No Such User Here")
        );
        assert_eq!(v[0].events, vec![1]);
    }

    #[test]
    fn fail_is_recognised_in_any_case_and_after_spaces() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed([
            alias("a.example", "*", "  :FAIL: No Such User Here"),
            alias("b.example", "*", ":Fail:"),
        ]);
        let targets: Vec<_> = v.iter().map(|v| v.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                Target::Domain("a.example".into()),
                Target::Domain("b.example".into())
            ]
        );
    }

    #[test]
    fn blackhole_user_address_and_pipe_catch_alls_are_fine() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed([
            alias("a.example", "*", ":blackhole:"),
            alias("b.example", "*", "cpclient"),
            alias("c.example", "*", "a@b.example,c@d.example"),
            alias("d.example", "*", "\"|/home/x/pipe.php\""),
            alias("e.example", "*", ""),
            alias("f.example", "*", ":failure-is-not-fail"),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn fail_on_an_ordinary_alias_is_not_a_catch_all() {
        let mut h = Harness::<DefaultAddress>::new();
        let v = h.feed([alias("a.example", "olduser", ":fail: gone")]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn bounce_flood_is_reported_once_per_hour() {
        let mut h =
            Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 10}"#).unwrap();
        let v = h.feed((0..30).map(|i| bounce(i, "mailnull")));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Setting("exim:bounces".into()));
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary
                .contains("11 bounces in the last hour (limit 10)"),
            "{}",
            v[0].summary
        );
        assert!(evidence(&v[0], "fix").unwrap().contains("Default Address"));
        assert_eq!(evidence(&v[0], "bounce_of"), Some("orig10"));

        // An hour later the flood goes on: one more report.
        let t = testing::at("2024-05-01 11:00:30");
        let v = h.feed((0..30).map(|i| {
            let (_, body) = bounce(100 + i, "Debian-exim");
            (t + i, body)
        }));
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn bounces_at_the_limit_or_spread_out_are_quiet() {
        let mut h =
            Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 10}"#).unwrap();
        assert!(h.feed((0..10).map(|i| bounce(i, "exim"))).is_empty());
        let mut h =
            Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 10}"#).unwrap();
        // 30 bounces, one every 10 minutes: 6 an hour.
        assert!(
            h.feed((0..30).map(|i| {
                let (_, body) = bounce(i, "mailnull");
                (i * 600, body)
            }))
            .is_empty()
        );
    }

    #[test]
    fn bounces_from_users_and_real_mail_from_the_mta_are_not_counted() {
        let mut h =
            Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 1}"#).unwrap();
        let mut not_bounce = testing::received("n1", "mailer@host.example");
        not_bounce.identity.local_user = Some("mailnull".into());
        let v = h.feed(
            (0..5)
                .map(|i| bounce(i, "alice"))
                .chain((0..5).map(|i| (i, EventBody::MessageReceived(not_bounce.clone())))),
        );
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn zero_limit_and_unknown_settings_are_refused() {
        let err = Harness::<DefaultAddress>::with_settings(r#"{"max_bounces_per_hour": 0}"#).err();
        assert_eq!(
            err.as_deref(),
            Some("max_bounces_per_hour must be at least 1")
        );
        let err = Harness::<DefaultAddress>::with_settings(r#"{"max_bounce_per_hour": 5}"#)
            .err()
            .unwrap();
        assert!(err.contains("max_bounce_per_hour"), "{err}");
    }
}
