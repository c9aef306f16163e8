//! `nobody-sender`: mail sent as the `nobody` user.
//!
//! When PHP runs without suEXEC, web scripts send as `nobody` and their mail
//! can't be traced to an account: the classic sign of a hijacked form or an
//! uploaded mailer. Any such message is worth a look (cPanel's "Prevent
//! nobody from sending mail" should stop them), and a stream of them is an
//! attack. The rule counts them per source (script directory if known, else
//! the owning account, else the sender domain) over a window, and reports a
//! source when it reaches `min_messages` and again at `critical_messages`.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.nobody-sender]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Local users that count as "nobody" (the web server's user).
    pub users: Vec<String>,
    /// Messages from one source within the window before it is reported.
    pub min_messages: u32,
    /// Messages from one source within the window that make it critical.
    pub critical_messages: u32,
    /// Window length in minutes.
    pub window_minutes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            users: vec!["nobody".into(), "apache".into(), "www-data".into()],
            min_messages: 1,
            critical_messages: 50,
            window_minutes: 60,
        }
    }
}

/// The rule.
pub struct NobodySender {
    settings: Settings,
}

impl NobodySender {
    fn is_nobody(&self, id: &Identity) -> bool {
        let user_is_nobody = id
            .local_user
            .as_deref()
            .is_some_and(|u| self.settings.users.iter().any(|n| n == u));
        let sender_is_nobody = id
            .sender
            .as_deref()
            .and_then(|s| s.split_once('@'))
            .is_some_and(|(local, _)| self.settings.users.iter().any(|n| n == local));
        user_is_nobody || sender_is_nobody
    }

    fn judge(&self, cx: &mut Context<'_>, id: &Identity<'_>, n: u32) {
        if !self.is_nobody(id) {
            return;
        }
        let target = if let Some(script) = &id.script {
            Target::Script(script.to_string())
        } else if let Some(owner) = &id.owner {
            Target::Account(owner.to_string())
        } else if let Some(domain) = &id.sender_domain {
            Target::Domain(domain.to_string())
        } else {
            Target::Account("nobody".into())
        };
        let key = match &target {
            Target::Script(s) => format!("script:{s}"),
            Target::Account(a) => format!("account:{a}"),
            Target::Domain(d) => format!("domain:{d}"),
            _ => unreachable!("only the three targets above are built"),
        };
        let window = self.settings.window_minutes.max(1) * 60;
        let total = host::window_add(&key, cx.time(), window, n);
        let before = total - u64::from(n);
        let crossed = |limit: u32| before < u64::from(limit) && total >= u64::from(limit);
        let severity = if crossed(self.settings.critical_messages) {
            Severity::Critical
        } else if crossed(self.settings.min_messages) {
            Severity::Warning
        } else {
            return;
        };
        let who = match &target {
            Target::Script(s) => format!("script {s}"),
            Target::Account(a) => format!("account {a}"),
            Target::Domain(d) => format!("domain {d}"),
            _ => unreachable!("only the three targets above are built"),
        };
        let sender = id.sender.as_deref().unwrap_or("<>");
        let user = id.local_user.as_deref().unwrap_or("-");
        cx.report(
            Finding::new(
                severity,
                target,
                Action::FreezeMessage,
                format!(
                    "{total} message(s) sent as nobody by {who} in {} min; turn on \"Prevent nobody from sending mail\" and find the script",
                    window / 60
                ),
            )
            .evidence("messages", total)
            .evidence("window_minutes", window / 60)
            .evidence("sender", sender)
            .evidence("local_user", user),
        );
    }
}

impl Rule for NobodySender {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "nobody-sender",
            "Mail sent as the nobody user: web scripts that can't be traced to an account",
        )
        .version(env!("CARGO_PKG_VERSION"))
        // Only local submissions and nobody@ senders can be nobody's mail;
        // the host drops the rest before they cross the boundary.
        .subscribe_where(EventKind::MessageReceived, nobody_filters())
        .subscribe_where(EventKind::QueuedMessage, nobody_filters())
        // cPanel's "Prevent nobody from sending mail" (`nobodyspam`).
        .subscribe(EventKind::Setting)
        .action(Action::FreezeMessage)
        .action(Action::Alert)
        .setting("users", "local users that count as nobody")
        .setting(
            "min_messages",
            "messages per source in the window before it is reported",
        )
        .setting(
            "critical_messages",
            "messages per source in the window that make it critical",
        )
        .setting("window_minutes", "window length in minutes")
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.min_messages == 0 {
            return Err("min_messages must be at least 1".into());
        }
        Ok(NobodySender { settings })
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        self.judge(cx, &m.identity, 1);
    }

    fn on_queued_message(&mut self, cx: &mut Context<'_>, q: &QueuedMessage) {
        self.judge(cx, &q.identity, 1);
    }

    fn on_setting(&mut self, cx: &mut Context<'_>, s: &Setting) {
        if s.source != "cpanel.config" || s.key != "nobodyspam" || s.value.as_deref() == Some("1") {
            return;
        }
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Setting("cpanel.config:nobodyspam".into()),
                Action::Alert,
                "the nobody user may send mail: scripts can send without being traced to an account",
            )
            .evidence("nobodyspam", s.value.as_deref().unwrap_or("(unset)"))
            .evidence("fix", "WHM → Tweak Settings → Mail → Prevent \"nobody\" from sending mail: On"),
        );
    }
}

fn nobody_filters() -> [EventFilter; 2] {
    [
        filter::has(IdentityField::LocalUser),
        filter::equals(
            IdentityField::SenderLocalPart,
            &["nobody", "apache", "www-data"],
        ),
    ]
}

spamward_sdk::export_rule!(NobodySender);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness};

    fn nobody_message(id: &str, script: Option<&str>) -> EventBody<'static> {
        let mut m = testing::received(id, "nobody@server.example");
        m.identity.local_user = Some("nobody".into());
        m.identity.script = script.map(testing::text);
        EventBody::MessageReceived(m)
    }

    #[test]
    fn first_nobody_message_is_a_warning_on_the_script() {
        let mut h = Harness::<NobodySender>::new();
        let t = testing::at("2024-05-01 10:00:00");
        let v = h.feed([(
            t,
            nobody_message("1abc23-000456-AB", Some("/home/u/public_html")),
        )]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Script("/home/u/public_html".into()));
        assert_eq!(v[0].action, Action::FreezeMessage);
        assert_eq!(v[0].events, vec![1]);
    }

    #[test]
    fn critical_when_the_stream_reaches_the_threshold_and_not_in_between() {
        let mut h = Harness::<NobodySender>::with_settings(r#"{"critical_messages": 5}"#).unwrap();
        let t = testing::at("2024-05-01 10:00:00");
        let v = h.feed((0..6).map(|i| (t + i, nobody_message(&format!("m{i}"), None))));
        let severities: Vec<_> = v.iter().map(|v| v.severity).collect();
        assert_eq!(severities, vec![Severity::Warning, Severity::Critical]);
        assert_eq!(v[1].target, Target::Domain("server.example".into()));
    }

    #[test]
    fn ordinary_senders_are_ignored() {
        let mut h = Harness::<NobodySender>::new();
        let mut m = testing::received("m1", "alice@shop.example");
        m.identity.local_user = Some("alice".into());
        let v = h.feed([(0, EventBody::MessageReceived(m))]);
        assert!(v.is_empty());
    }

    #[test]
    fn nobodyspam_off_or_unset_is_flagged_and_on_is_fine() {
        let setting = |value: Option<&str>| {
            EventBody::Setting(Setting {
                source: "cpanel.config".into(),
                scope: None,
                key: "nobodyspam".into(),
                value: value.map(testing::text),
            })
        };
        let mut h = Harness::<NobodySender>::new();
        let v = h.feed([
            (0, setting(Some("0"))),
            (0, setting(None)),
            (0, setting(Some("1"))),
        ]);
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0].target,
            Target::Setting("cpanel.config:nobodyspam".into())
        );
        assert!(
            v[0].evidence
                .iter()
                .any(|(k, v)| k == "fix" && v.contains("Prevent"))
        );
    }

    #[test]
    fn zero_min_messages_is_refused() {
        let err = Harness::<NobodySender>::with_settings(r#"{"min_messages": 0}"#).err();
        assert_eq!(err.as_deref(), Some("min_messages must be at least 1"));
    }

    #[test]
    fn unknown_setting_is_refused_by_name() {
        let err = Harness::<NobodySender>::with_settings(r#"{"min_mesages": 3}"#)
            .err()
            .unwrap();
        assert!(err.contains("min_mesages"), "{err}");
    }
}
