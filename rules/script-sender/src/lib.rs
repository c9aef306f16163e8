//! `script-sender`: web scripts sending volume or spoofed mail.
//!
//! A hijacked contact form or an uploaded mailer sends through PHP's mail():
//! Exim logs the script's directory (`cwd=`) and cPanel stamps the message
//! with `X-PHP-Script: <host>/<path> for <client ip>`. Two signals:
//!
//! - volume: one script sending more than `max_messages_per_hour`;
//! - spoofing: a queued message from a script whose `From:` domain is not
//!   owned by the account the script runs as — the mark of PHPMailer-based
//!   relays that send as banks, couriers or webmail users. A domain owned by
//!   the account (its main, addon or parked domains, or a subdomain of one)
//!   is fine, and so is a script with no known account (no judgement
//!   without ownership data).

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.script-sender]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Messages from one script per hour before it is reported.
    pub max_messages_per_hour: u32,
    /// Report a script's message whose `From:` domain the account doesn't own.
    pub flag_spoofed_from: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_messages_per_hour: 100,
            flag_spoofed_from: true,
        }
    }
}

/// The rule.
pub struct ScriptSender {
    settings: Settings,
}

/// The address inside a `From:` header value (`Name <a@b>` or `a@b`).
fn from_address(header: &str) -> Option<&str> {
    let inner = match (header.rfind('<'), header.rfind('>')) {
        (Some(open), Some(close)) if open < close => &header[open + 1..close],
        _ => header.trim(),
    };
    inner.contains('@').then_some(inner.trim())
}

/// Whether `domain` or one of its parents belongs to `account`.
fn owned_by(domain: &str, account: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    let mut rest = domain.as_str();
    loop {
        if host::domain_owner(rest).is_some_and(|o| o == account) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

impl ScriptSender {
    fn count(&self, cx: &mut Context<'_>, script: &str, owner: Option<&str>) {
        let total = host::window_add(&format!("script:{script}"), cx.time(), 3600, 1);
        let limit = u64::from(self.settings.max_messages_per_hour);
        if total != limit && total != 2 * limit {
            return;
        }
        let severity = if total >= 2 * limit {
            Severity::Critical
        } else {
            Severity::Warning
        };
        cx.report(
            Finding::new(
                severity,
                Target::Script(script.to_owned()),
                Action::FreezeMessage,
                format!("script {script} sent {total} messages in the last hour (limit {limit})"),
            )
            .evidence("messages", total)
            .evidence("account", owner.unwrap_or("-"))
            .evidence(
                "fix",
                format!("Freeze its queued mail and inspect {script} (a hijacked form or an uploaded mailer)"),
            ),
        );
    }
}

impl Rule for ScriptSender {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "script-sender",
            "Web scripts sending volume, or mail From domains their account doesn't own",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe_where(
            EventKind::MessageReceived,
            [filter::has(IdentityField::Script)],
        )
        .subscribe_where(
            EventKind::QueuedMessage,
            [filter::has(IdentityField::Script)],
        )
        .action(Action::FreezeMessage)
        .action(Action::HoldOutgoing)
        .setting(
            "max_messages_per_hour",
            "messages from one script per hour before it is reported",
        )
        .setting(
            "flag_spoofed_from",
            "report a script's message whose From: domain the account doesn't own",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.max_messages_per_hour == 0 {
            return Err("max_messages_per_hour must be at least 1".into());
        }
        Ok(ScriptSender { settings })
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        if let Some(script) = &m.identity.script {
            self.count(cx, script, m.identity.owner.as_deref());
        }
    }

    fn on_queued_message(&mut self, cx: &mut Context<'_>, q: &QueuedMessage) {
        let Some(script) = &q.identity.script else {
            return;
        };
        if !self.settings.flag_spoofed_from {
            return;
        }
        let (Some(owner), Some(from)) = (
            q.identity.owner.as_deref(),
            q.from_header.as_deref().and_then(from_address),
        ) else {
            return;
        };
        let from_domain = from.rsplit_once('@').map_or("", |(_, d)| d);
        if from_domain.is_empty() || owned_by(from_domain, owner) {
            return;
        }
        let header = |name: &str| {
            q.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Script(script.to_string()),
                Action::FreezeMessage,
                format!(
                    "script {script} of account {owner} sends as {from}, a domain {owner} doesn't own"
                ),
            )
            .evidence("message", &q.message_id)
            .evidence("from", from)
            .evidence("account", owner)
            .evidence("x_mailer", header("X-Mailer").unwrap_or("-"))
            .evidence("reply_to", header("Reply-To").unwrap_or("-"))
            .evidence("client_ip", q.identity.client_ip.as_deref().unwrap_or("-"))
            .evidence(
                "fix",
                format!("Freeze {} and clean or remove {script} in {owner}'s site", q.message_id),
            ),
        );
    }
}

spamward_sdk::export_rule!(ScriptSender);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness};

    fn queued(from: &str, script: &str) -> EventBody<'static> {
        EventBody::QueuedMessage(QueuedMessage {
            message_id: "1aaabbcccdddee02".into(),
            identity: Identity {
                owner: Some("exampleuser".into()),
                local_user: Some("exampleuser".into()),
                script: Some(testing::text(script)),
                ..testing::sender("exampleuser@cpanel.example.test")
            },
            age_seconds: 10,
            size: None,
            recipients: vec!["target@example.org".into()],
            frozen: false,
            bounce: false,
            from_header: Some(testing::text(from)),
            subject: None,
            headers: vec![("X-Mailer".into(), "PHPMailer 6.5.0".into())],
        })
    }

    fn harness() -> Harness<ScriptSender> {
        Harness::<ScriptSender>::new()
            .domain_owner("example.com", "exampleuser")
            .domain_owner("addon.example.com", "exampleuser")
    }

    #[test]
    fn spoofed_from_is_flagged_on_the_script() {
        let mut h = harness();
        let v = h.feed([(
            0,
            queued(
                "Naked <attacker@spoofed.example>",
                "hijacked.example.com/x.php",
            ),
        )]);
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].target,
            Target::Script("hijacked.example.com/x.php".into())
        );
        assert!(
            v[0].summary.contains("attacker@spoofed.example"),
            "{}",
            v[0].summary
        );
    }

    #[test]
    fn owned_domains_and_their_subdomains_are_fine() {
        let mut h = harness();
        let v = h.feed([
            (
                0,
                queued("Site <site@example.com>", "example.com/contact.php"),
            ),
            (
                1,
                queued("mail@addon.example.com", "addon.example.com/contact.php"),
            ),
            (
                2,
                queued("Shop <shop@blog.example.com>", "blog.example.com/x.php"),
            ),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn volume_from_one_script_is_reported_at_the_limit() {
        let mut h =
            Harness::<ScriptSender>::with_settings(r#"{"max_messages_per_hour": 3}"#).unwrap();
        let v = h.feed((0..4).map(|i| {
            let mut m = testing::received(&format!("m{i}"), "u@shop.example");
            m.identity.script = Some("/home/u/public_html/form".into());
            (i, EventBody::MessageReceived(m))
        }));
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].target,
            Target::Script("/home/u/public_html/form".into())
        );
    }
}
