//! `open-relay`: mail relayed for a stranger.
//!
//! An open relay accepts mail from any client for any destination; it is the
//! fastest way onto every blocklist. Two kinds of evidence:
//!
//! - in the log, a message from an unauthenticated remote client (no `A=`, no
//!   local user) accepted for a recipient whose domain is not local;
//! - an offline probe: the host runs `exim -bh <stranger ip>` with a relay
//!   attempt and reports whether Exim accepted the recipient, as an
//!   `extension` event of kind `relay-probe` with fields `client_ip`,
//!   `recipient`, `response` and `accepted` (`true`/`false`).
//!
//! The log test needs the server's local domains; when the host doesn't know
//! them it can't tell relaying from local delivery, and stays silent.
//!
//! A relaying server relays thousands of messages an hour: each client IP
//! is reported once an hour, with how many messages it relayed by then, not
//! once per message.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.open-relay]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Client IPs allowed to relay without authentication (the server's own
    /// addresses, a trusted smarthost's clients).
    pub trusted_clients: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trusted_clients: vec!["127.0.0.1".into(), "::1".into()],
        }
    }
}

/// The rule.
pub struct OpenRelay {
    settings: Settings,
}

/// The window a client's relaying is reported once in.
const HOUR: u32 = 3600;

const FIX: &str = "Allow relaying only for authenticated users and localhost (WHM → Exim Configuration Manager: relay_from_hosts / SMTP AUTH); never for the world";

impl Rule for OpenRelay {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "open-relay",
            "Mail from unauthenticated strangers relayed to remote domains",
        )
        .version(env!("CARGO_PKG_VERSION"))
        // Only unauthenticated clients sending to a remote domain can be
        // relayed for; the host drops everything else (most mail) unseen.
        .subscribe_matching(
            filter::all(EventKind::MessageReceived)
                .all_of([filter::remote_recipient()])
                .none_of([
                    filter::has(IdentityField::AuthId),
                    filter::has(IdentityField::LocalUser),
                ]),
        )
        .subscribe(EventKind::Extension)
        .action(Action::Alert)
        .action(Action::BlockIp)
        .setting(
            "trusted_clients",
            "client IPs allowed to relay without authentication",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        Ok(OpenRelay { settings })
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        let id = &m.identity;
        let Some(ip) = id.client_ip.as_deref() else {
            return;
        };
        if id.auth_id.is_some()
            || id.local_user.is_some()
            || m.bounce
            || self.settings.trusted_clients.iter().any(|t| t == ip)
        {
            return;
        }
        let remote: Vec<&str> = m
            .recipients
            .iter()
            .filter(|r| {
                let domain = r.rsplit_once('@').map_or("", |(_, d)| d);
                // `None`: the host doesn't know the local domains; no verdict.
                host::is_local_domain(domain) == Some(false)
            })
            .map(|r| r.as_str())
            .collect();
        if remote.is_empty() {
            return;
        }
        let at = cx.time();
        let relayed = host::window_add(&format!("relayed:{ip}"), at, HOUR, 1);
        if !host::once_per_window(&format!("reported:{ip}"), at, HOUR) {
            return;
        }
        cx.report(
            Finding::new(
                Severity::Critical,
                Target::Ip(ip.to_owned()),
                Action::Alert,
                format!(
                    "relayed mail for unauthenticated client {ip} to {} remote recipient(s), e.g. {}",
                    remote.len(),
                    remote[0]
                ),
            )
            .evidence("client_ip", ip)
            .evidence("sender", id.sender.as_deref().unwrap_or("<>"))
            .evidence("remote_recipients", remote.len())
            .evidence("relayed_messages_in_hour", relayed)
            .evidence("message", &m.message_id)
            .evidence("fix", FIX),
        );
    }

    fn on_extension(&mut self, cx: &mut Context<'_>, e: &Extension) {
        if e.kind != "relay-probe" {
            return;
        }
        let field = |name: &str| {
            e.fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let ip = field("client_ip").unwrap_or("?");
        let response = field("response").unwrap_or("");
        if field("accepted") == Some("true") {
            cx.report(
                Finding::new(
                    Severity::Critical,
                    Target::Setting("exim:relay".into()),
                    Action::Alert,
                    format!(
                        "Exim accepts relaying for a stranger: {ip} → {} answered \"{response}\"",
                        field("recipient").unwrap_or("?")
                    ),
                )
                .evidence("probe_client", ip)
                .evidence("response", response)
                .evidence("fix", FIX),
            );
        }
    }
}

spamward_sdk::export_rule!(OpenRelay);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness};

    fn inbound(ip: &str, rcpt: &str) -> EventBody<'static> {
        let mut m = testing::received("1abc23-000456-AB", "x@stranger.example");
        m.identity.client_ip = Some(testing::text(ip));
        m.recipients = vec![testing::text(rcpt)];
        EventBody::MessageReceived(m)
    }

    #[test]
    fn stranger_relayed_to_a_remote_domain_is_critical() {
        let mut h = Harness::<OpenRelay>::new().local_domain("shop.example");
        let v = h.feed([(0, inbound("203.0.113.5", "victim@far.example"))]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].target, Target::Ip("203.0.113.5".into()));
    }

    #[test]
    fn a_thousand_relayed_messages_are_one_verdict_an_hour() {
        // Verdicts in proportion to what is found: one relaying client,
        // not one verdict per message (it was 100,000 for 100,000).
        let mut h = Harness::<OpenRelay>::new().local_domain("shop.example");
        let relayed =
            (0..1000).map(|i| (i * 3, inbound("203.0.113.5", &format!("v{i}@far.example"))));
        let later = [(3600 + 10, inbound("203.0.113.5", "again@far.example"))];
        let other = [(20, inbound("198.51.100.7", "x@far.example"))];
        let v = h.feed(relayed.chain(other).chain(later));
        let targets: Vec<&Target> = v.iter().map(|v| &v.target).collect();
        assert_eq!(
            targets,
            [
                &Target::Ip("203.0.113.5".into()),
                &Target::Ip("198.51.100.7".into()),
                &Target::Ip("203.0.113.5".into()),
            ],
            "{v:?}"
        );
        let again = v[2]
            .evidence
            .iter()
            .find(|(k, _)| k == "relayed_messages_in_hour");
        assert!(again.is_some(), "{:?}", v[2].evidence);
    }

    #[test]
    fn mail_for_local_domains_and_authenticated_mail_is_fine() {
        let mut h = Harness::<OpenRelay>::new().local_domain("shop.example");
        let local = inbound("203.0.113.5", "info@shop.example");
        let mut authed = inbound("203.0.113.6", "friend@far.example");
        if let EventBody::MessageReceived(m) = &mut authed {
            m.identity.auth_id = Some("staff@shop.example".into());
        }
        assert!(h.feed([(0, local), (1, authed)]).is_empty());
    }

    #[test]
    fn unknown_local_domains_mean_no_verdict() {
        let mut h = Harness::<OpenRelay>::new();
        assert!(
            h.feed([(0, inbound("203.0.113.5", "victim@far.example"))])
                .is_empty()
        );
    }

    #[test]
    fn accepted_relay_probe_is_critical_and_refused_one_is_quiet() {
        let mut h = Harness::<OpenRelay>::new();
        let probe = |accepted: &'static str| {
            EventBody::Extension(Extension {
                kind: "relay-probe".into(),
                fields: vec![
                    ("client_ip".into(), "192.0.2.1".into()),
                    ("recipient".into(), "probe@relay-test.invalid".into()),
                    ("response".into(), "250 Accepted".into()),
                    ("accepted".into(), accepted.into()),
                ],
            })
        };
        let v = h.feed([(0, probe("true")), (1, probe("false"))]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].target, Target::Setting("exim:relay".into()));
    }
}
