//! `mailman`: Mailman left on with nothing to do, or sending a flood.
//!
//! Mailman is one of the three users WHM's SMTP Restrictions still let send,
//! and its subscription and "password reminder" mails are a known way to
//! push spam through a server. A server with Mailman enabled but no lists
//! carries that risk for nothing: it is reported, asking to turn Mailman off.
//! A server with lists keeps Mailman (the rule notes how many); messages
//! submitted by the `mailman` user are counted over an hour, and past
//! `max_messages_per_hour` the rule says so, once per hour.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.mailman]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Messages submitted by Mailman per hour above which it is reported.
    pub max_messages_per_hour: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_messages_per_hour: 500,
        }
    }
}

/// The rule.
pub struct Mailman {
    settings: Settings,
}

const HOUR: u32 = 3600;

/// Host kv key of the number of lists last seen.
const LISTS_KEY: &str = "lists";

fn detail<'a>(s: &'a ServiceState, key: &str) -> Option<&'a str> {
    s.details
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Rule for Mailman {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "mailman",
            "Mailman enabled with no lists, or sending more than a list server should",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::ServiceState)
        // Only Mailman's own submissions; the host drops the rest.
        .subscribe_where(
            EventKind::MessageReceived,
            [filter::equals(IdentityField::LocalUser, &["mailman"])],
        )
        .action(Action::Alert)
        .setting(
            "max_messages_per_hour",
            "messages submitted by Mailman per hour above which it is reported",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.max_messages_per_hour == 0 {
            return Err("max_messages_per_hour must be at least 1".into());
        }
        Ok(Mailman { settings })
    }

    fn on_service_state(&mut self, cx: &mut Context<'_>, s: &ServiceState) {
        if s.name != "mailman" {
            return;
        }
        if !s.enabled {
            host::kv_set(LISTS_KEY, None);
            return;
        }
        // An unreadable count is not judged.
        let Some(lists) = detail(s, "lists").and_then(|n| n.trim().parse::<u32>().ok()) else {
            return;
        };
        host::kv_set(LISTS_KEY, Some(&lists.to_string()));
        if lists > 0 {
            return;
        }
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Setting("cpanel.config:skipmailman".into()),
                Action::Alert,
                "Mailman is enabled but has no lists: an unused way to send mail from the server",
            )
            .evidence("lists", lists)
            .evidence("lists_dir", detail(s, "lists_dir").unwrap_or("-"))
            .evidence("fix", "WHM → Tweak Settings → Mail → Mailman: Off"),
        );
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        let at = cx.time();
        let messages = host::window_add("messages", at, HOUR, 1);
        let limit = u64::from(self.settings.max_messages_per_hour);
        if messages <= limit {
            return;
        }
        // One report per hour: remember when we last spoke.
        if !host::once_per_window("reported", at, HOUR) {
            return;
        }
        let lists = host::kv_get(LISTS_KEY).unwrap_or_else(|| "unknown".to_owned());
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Account("mailman".into()),
                Action::Alert,
                format!(
                    "Mailman submitted {messages} messages in the last hour (limit {limit}): a list may be abused to send spam"
                ),
            )
            .evidence("messages", messages)
            .evidence("limit", limit)
            .evidence("window_minutes", HOUR / 60)
            .evidence("lists", lists)
            .evidence("sample_message", &m.message_id)
            .evidence("sample_subject", m.subject.as_deref().unwrap_or("-"))
            .evidence(
                "fix",
                "Find the list sending the mail (cPanel → Email → Mailing Lists), moderate or delete it, and require confirmation for subscriptions",
            ),
        );
    }
}

spamward_sdk::export_rule!(Mailman);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness, evidence};

    fn mailman(enabled: bool, lists: &str) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::ServiceState(ServiceState {
                name: "mailman".into(),
                enabled,
                details: vec![
                    ("lists".into(), testing::text(lists)),
                    (
                        "lists_dir".into(),
                        "/usr/local/cpanel/3rdparty/mailman/lists".into(),
                    ),
                ],
            }),
        )
    }

    fn sent(i: i64, user: &str) -> (i64, EventBody<'static>) {
        let mut m = testing::received(&format!("m{i}"), "list-bounces@lists.example");
        m.identity.local_user = Some(testing::text(user));
        m.subject = Some("Your list password".into());
        (
            testing::at("2024-05-01 10:00:00") + i,
            EventBody::MessageReceived(m),
        )
    }

    #[test]
    fn enabled_without_lists_is_a_warning_with_the_fix() {
        let mut h = Harness::<Mailman>::new();
        let v = h.feed([mailman(true, "0")]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(
            v[0].target,
            Target::Setting("cpanel.config:skipmailman".into())
        );
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary
                .starts_with("Mailman is enabled but has no lists"),
            "{}",
            v[0].summary
        );
        assert_eq!(
            evidence(&v[0], "fix"),
            Some("WHM → Tweak Settings → Mail → Mailman: Off")
        );
    }

    #[test]
    fn enabled_with_lists_or_disabled_is_quiet_but_the_lists_are_counted() {
        let mut h = Harness::<Mailman>::new();
        assert!(h.feed([mailman(true, "3")]).is_empty());
        assert_eq!(
            h.host(|host| host.state.kv_get("lists")),
            Some("3".to_owned())
        );
        assert!(h.feed([mailman(false, "0")]).is_empty());
        assert_eq!(h.host(|host| host.state.kv_get("lists")), None);
    }

    #[test]
    fn an_unreadable_list_count_or_another_service_is_not_judged() {
        let mut h = Harness::<Mailman>::new();
        let (t, _) = mailman(true, "0");
        let v = h.feed([
            mailman(true, "many"),
            (
                t,
                EventBody::ServiceState(ServiceState {
                    name: "suexec".into(),
                    enabled: true,
                    details: vec![("lists".into(), "0".into())],
                }),
            ),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_mailman_flood_is_reported_once_per_hour_on_the_mailman_account() {
        let mut h = Harness::<Mailman>::with_settings(r#"{"max_messages_per_hour": 20}"#).unwrap();
        h.feed([mailman(true, "2")]);
        let v = h.feed((0..60).map(|i| sent(i, "mailman")));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Account("mailman".into()));
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary
                .contains("Mailman submitted 21 messages in the last hour (limit 20)"),
            "{}",
            v[0].summary
        );
        assert_eq!(evidence(&v[0], "lists"), Some("2"));
        assert!(evidence(&v[0], "fix").unwrap().contains("Mailing Lists"));
    }

    #[test]
    fn ordinary_list_traffic_and_other_users_are_quiet() {
        let mut h = Harness::<Mailman>::with_settings(r#"{"max_messages_per_hour": 20}"#).unwrap();
        // 60 messages, one every 5 minutes: 12 an hour.
        let v = h.feed((0..60).map(|i| {
            let (_, body) = sent(i, "mailman");
            (i * 300, body)
        }));
        assert!(v.is_empty(), "{v:?}");
        let v = h.feed((0..60).map(|i| sent(i, "alice")));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn settings_are_checked() {
        let err = Harness::<Mailman>::with_settings(r#"{"max_messages_per_hour": 0}"#).err();
        assert_eq!(
            err.as_deref(),
            Some("max_messages_per_hour must be at least 1")
        );
        let err = Harness::<Mailman>::with_settings(r#"{"max_message_per_hour": 5}"#)
            .err()
            .unwrap();
        assert!(err.contains("max_message_per_hour"), "{err}");
    }
}
