//! `open-relay`: mail relayed for a stranger, and strangers testing for it.
//!
//! An open relay accepts mail from any client for any destination; it is the
//! fastest way onto every blocklist. What the rule reads:
//!
//! - **From the log, always.** A message from an unauthenticated remote
//!   client (no `A=`, no local user) that Exim then *delivered to a remote
//!   host* (`=> ... T=remote_smtp H=host [ip]`) was relayed. This needs no
//!   configuration, so a replay on another machine finds it. Deliveries that
//!   only look like relaying are left out: a forward (the log names the
//!   local address it was redirected from, sent to the rule as a `redirect`
//!   extension just before the delivery), a delivery to a local domain when
//!   the host knows them, one back to this machine (a content filter on
//!   loopback), and mail for domains this server relays for on purpose
//!   (`relay_domains`, Debian's `*relay_to_domains` routers: a backup MX).
//! - **From the log, with the local domains** (`/etc/localdomains` and
//!   friends, when the host has them): an arrival from such a client listing
//!   a recipient in a domain that is not local — seen as it arrives, before
//!   any delivery.
//! - **Refused attempts**: a client refused `relay not permitted` for many
//!   recipients in an hour is a prober looking for open relays. It is
//!   reported as what it is, an attempt on the server (a warning, with a
//!   block requested), never as the server being open.
//! - **An offline probe**: the host runs `exim -bh <stranger ip>` with a
//!   relay attempt and sends the answer as a `relay-probe` extension.
//!
//! A relaying server relays thousands of messages an hour: each client IP
//! is reported once an hour, with how many messages it relayed by then, not
//! once per message, and only once its relayed mail reached two recipient
//! domains (`min_recipient_domains`): an abuser writes to the world, a
//! backup MX nobody listed in `relay_domains` to its one customer.

use serde::{Deserialize, Serialize};
use spamward_sdk::event::extension_kind;
use spamward_sdk::prelude::*;
use spamward_sdk::relay;

/// `[rules.open-relay]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Client IPs allowed to relay without authentication (the server's own
    /// addresses, a trusted smarthost's clients).
    pub trusted_clients: Vec<String>,
    /// Domains this server relays for on purpose (it is their backup MX or
    /// their smarthost): delivering their mail onwards is no relaying.
    pub relay_domains: Vec<String>,
    /// Distinct recipients a client must be refused relaying for within an
    /// hour before it is reported as a prober. One refusal is a
    /// misconfigured client; a probe tries several.
    pub probe_min_recipients: u32,
    /// Distinct recipient domains a client's relayed mail must reach in an
    /// hour before it is reported: a backup MX nobody listed relays for
    /// one domain, an abuser for many.
    pub min_recipient_domains: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trusted_clients: vec!["127.0.0.1".into(), "::1".into()],
            relay_domains: Vec::new(),
            probe_min_recipients: 5,
            min_recipient_domains: 2,
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

const PROBE_FIX: &str =
    "Nothing to fix on the server (it refused); block the client if it keeps trying";

/// Whether `ip` is in a private (RFC 1918, unique local) network: relaying
/// for it is usually a LAN the admin chose to trust, worth a warning
/// rather than the alarm a stranger on the Internet deserves.
fn is_private(ip: &str) -> bool {
    let mut octets = ip.split('.').map(|o| o.parse::<u8>().ok());
    match (octets.next().flatten(), octets.next().flatten()) {
        (Some(10), _) | (Some(192), Some(168)) => true,
        (Some(172), Some(b)) => (16..32).contains(&b),
        _ => {
            let lower = ip.get(..2).map(str::to_ascii_lowercase);
            matches!(lower.as_deref(), Some("fc" | "fd"))
        }
    }
}

/// Whether a refusal is Exim's (or a common ACL's) refusal to relay.
fn is_relay_refusal(reason: &str) -> bool {
    reason.contains("relay not permitted")
        || reason.contains("elaying denied")
        || reason.contains("nable to relay")
}

/// The domain of an address, as written.
fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

impl OpenRelay {
    fn trusted(&self, ip: &str) -> bool {
        self.settings.trusted_clients.iter().any(|t| t == ip)
    }

    fn relays_for(&self, domain: &str) -> bool {
        self.settings
            .relay_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Counts a relayed message for `ip` and reports it at most once an
    /// hour, whichever evidence (arrival or delivery) showed it first.
    ///
    /// A client relayed for is reported once its mail went to
    /// `min_recipient_domains` domains in the hour: an abuser sends to the
    /// world, while a backup MX or smarthost nobody listed in
    /// `relay_domains` relays for its one customer's domain.
    fn relayed<'d>(
        &self,
        cx: &mut Context<'_>,
        ip: &str,
        domains: impl IntoIterator<Item = &'d str>,
        finding: impl FnOnce(u64) -> Finding,
    ) {
        let at = cx.time();
        let relayed = host::window_add(&format!("relayed:{ip}"), at, HOUR, 1);
        let mut spread = 0;
        for domain in domains {
            spread = relay::domains_reached(ip, domain, at);
        }
        if spread >= self.settings.min_recipient_domains
            && host::once_per_window(&format!("reported:{ip}"), at, HOUR)
        {
            cx.report(finding(relayed));
        }
    }

    /// Critical for a stranger; a warning for a private address, which is
    /// most often a LAN the admin let relay.
    fn severity(ip: &str) -> Severity {
        if is_private(ip) {
            Severity::Warning
        } else {
            Severity::Critical
        }
    }
}

impl Rule for OpenRelay {
    type Settings = Settings;

    fn info() -> Info {
        let stranger = [
            filter::has(IdentityField::AuthId),
            filter::has(IdentityField::LocalUser),
        ];
        Info::new(
            "open-relay",
            "Mail from unauthenticated strangers relayed to remote hosts, and clients probing for it",
        )
        .version(env!("CARGO_PKG_VERSION"))
        // Only unauthenticated clients sending to a remote domain can be
        // relayed for; the host drops everything else (most mail) unseen.
        .subscribe_matching(
            filter::all(EventKind::MessageReceived)
                .all_of([filter::remote_recipient()])
                .none_of(stranger.clone()),
        )
        .subscribe_matching(
            filter::all(EventKind::Delivery)
                .all_of([
                    filter::outcome(&[DeliveryOutcome::Delivered]),
                    filter::has(IdentityField::ClientIp),
                ])
                .none_of(stranger),
        )
        .subscribe(EventKind::Rejection)
        .subscribe(EventKind::Extension)
        .action(Action::Alert)
        .action(Action::BlockIp)
        .setting(
            "trusted_clients",
            "client IPs allowed to relay without authentication",
        )
        .setting(
            "relay_domains",
            "domains this server relays for on purpose (backup MX, smarthost)",
        )
        .setting(
            "min_recipient_domains",
            "distinct recipient domains a client's relayed mail must reach in an hour",
        )
        .setting(
            "probe_min_recipients",
            "refused relay recipients from one client in an hour that make it a prober",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.probe_min_recipients == 0 || settings.min_recipient_domains == 0 {
            return Err("probe_min_recipients and min_recipient_domains must be at least 1".into());
        }
        Ok(OpenRelay { settings })
    }

    fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) {
        let id = &m.identity;
        let Some(ip) = id.client_ip.as_deref() else {
            return;
        };
        if id.auth_id.is_some() || id.local_user.is_some() || m.bounce || self.trusted(ip) {
            return;
        }
        let remote: Vec<&str> = m
            .recipients
            .iter()
            .map(|r| r.as_str())
            .filter(|r| {
                let domain = domain_of(r);
                // `None`: the host doesn't know the local domains; the
                // deliveries will tell.
                !self.relays_for(domain) && host::is_local_domain(domain) == Some(false)
            })
            .collect();
        if remote.is_empty() {
            return;
        }
        self.relayed(cx, ip, remote.iter().map(|r| domain_of(r)), |relayed| {
            Finding::new(
                Self::severity(ip),
                Target::Ip(ip.to_owned()),
                Action::Alert,
                format!(
                    "accepted mail from unauthenticated client {ip} for {} remote recipient(s), e.g. {}",
                    remote.len(),
                    remote[0]
                ),
            )
            .evidence("client_ip", ip)
            .evidence("sender", id.sender.as_deref().unwrap_or("<>"))
            .evidence("remote_recipients", remote.len())
            .evidence("relayed_messages_in_hour", relayed)
            .evidence("message", &m.message_id)
            .evidence("fix", FIX)
        });
    }

    fn on_delivery(&mut self, cx: &mut Context<'_>, d: &Delivery) {
        let Some(ip) = relay::relayed_for(d, cx.time()) else {
            return;
        };
        if self.trusted(ip) || self.relays_for(domain_of(&d.recipient)) {
            return;
        }
        let remote = d
            .remote_host
            .as_deref()
            .or(d.remote_ip.as_deref())
            .unwrap_or("?");
        self.relayed(cx, ip, [domain_of(&d.recipient)], |relayed| {
            Finding::new(
                Self::severity(ip),
                Target::Ip(ip.to_owned()),
                Action::Alert,
                format!(
                    "relayed mail for unauthenticated client {ip} to {} at {remote}",
                    d.recipient
                ),
            )
            .evidence("client_ip", ip)
            .evidence("sender", d.identity.sender.as_deref().unwrap_or("<>"))
            .evidence("recipient", &d.recipient)
            .evidence("transport", d.transport.as_deref().unwrap_or("?"))
            .evidence("remote_host", remote)
            .evidence("relayed_messages_in_hour", relayed)
            .evidence("message", &d.message_id)
            .evidence("fix", FIX)
        });
    }

    fn on_rejection(&mut self, cx: &mut Context<'_>, r: &Rejection) {
        if !is_relay_refusal(&r.reason) {
            return;
        }
        let Some(ip) = r.client_ip.as_deref() else {
            return;
        };
        if self.trusted(ip) {
            return;
        }
        let at = cx.time();
        let recipient = r.recipient.as_deref().unwrap_or("?");
        let tried = host::distinct_add(&format!("probe:{ip}"), recipient, at, HOUR);
        if tried < self.settings.probe_min_recipients
            || !host::once_per_window(&format!("probed:{ip}"), at, HOUR)
        {
            return;
        }
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Ip(ip.to_owned()),
                Action::BlockIp,
                format!(
                    "{ip} tried to relay through the server for {tried} recipients in an hour and was refused: a prober, the server is not open"
                ),
            )
            .evidence("client_ip", ip)
            .evidence("refused_recipients_in_hour", tried)
            .evidence("example_recipient", recipient)
            .evidence("sender", r.sender.as_deref().unwrap_or("?"))
            .evidence("reason", &r.reason)
            .evidence("fix", PROBE_FIX),
        );
    }

    fn on_extension(&mut self, cx: &mut Context<'_>, e: &Extension) {
        if relay::note_redirect(e, cx.time()) {
            return;
        }
        if e.kind != extension_kind::RELAY_PROBE {
            return;
        }
        let ip = e.field("client_ip").unwrap_or("?");
        let response = e.field("response").unwrap_or("");
        if e.field("accepted") == Some("true") {
            cx.report(
                Finding::new(
                    Severity::Critical,
                    Target::Setting("exim:relay".into()),
                    Action::Alert,
                    format!(
                        "Exim accepts relaying for a stranger: {ip} → {} answered \"{response}\"",
                        e.field("recipient").unwrap_or("?")
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
        let v = h.feed([
            (0, inbound("203.0.113.5", "victim@far.example")),
            (1, inbound("203.0.113.5", "victim@far2.example")),
        ]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].target, Target::Ip("203.0.113.5".into()));
    }

    #[test]
    fn a_thousand_relayed_messages_are_one_verdict_an_hour() {
        // Verdicts in proportion to what is found: one relaying client,
        // not one verdict per message (it was 100,000 for 100,000).
        let mut h = Harness::<OpenRelay>::new().local_domain("shop.example");
        let relayed = (0..1000).map(|i| {
            let rcpt = format!("v{i}@far{}.example", i % 7);
            (i * 3, inbound("203.0.113.5", &rcpt))
        });
        let later = [
            (3600 + 10, inbound("203.0.113.5", "again@far.example")),
            (3600 + 11, inbound("203.0.113.5", "again@far2.example")),
        ];
        let other = [
            (20, inbound("198.51.100.7", "x@far.example")),
            (21, inbound("198.51.100.7", "y@far3.example")),
        ];
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

    /// A delivery of message `id` from unauthenticated client `ip` to
    /// `rcpt` at a remote host, as the parser makes it from
    /// `=> rcpt R=dnslookup T=remote_smtp H=mx.far.example [remote]`.
    fn relayed(id: &str, ip: &str, rcpt: &str, remote: &str) -> EventBody<'static> {
        let mut d = testing::delivery(id, "x@stranger.example", DeliveryOutcome::Delivered, rcpt);
        d.identity.client_ip = Some(testing::text(ip));
        d.router = Some("dnslookup".into());
        d.transport = Some("remote_smtp".into());
        d.remote_host = Some("mx.far.example".into());
        d.remote_ip = Some(testing::text(remote));
        EventBody::Delivery(d)
    }

    fn redirect(id: &str, rcpt: &str, parent: &str) -> EventBody<'static> {
        EventBody::Extension(Extension {
            kind: extension_kind::REDIRECT.into(),
            fields: vec![
                ("message_id".into(), testing::text(id)),
                ("recipient".into(), testing::text(rcpt)),
                ("parent".into(), testing::text(parent)),
            ],
        })
    }

    #[test]
    fn without_local_domains_a_remote_delivery_for_a_stranger_is_relaying() {
        let mut h = Harness::<OpenRelay>::new();
        let v = h.feed([
            (
                0,
                relayed(
                    "1abc23-000456-AB",
                    "203.0.113.5",
                    "victim@far.example",
                    "192.0.2.25",
                ),
            ),
            (
                1,
                relayed(
                    "1abc23-000457-AB",
                    "203.0.113.5",
                    "other@far9.example",
                    "192.0.2.25",
                ),
            ),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].target, Target::Ip("203.0.113.5".into()));
        assert_eq!(
            testing::evidence(&v[0], "recipient"),
            Some("other@far9.example")
        );
    }

    #[test]
    fn forwards_loopback_filters_and_backup_mx_domains_are_not_relaying() {
        let mut h = Harness::<OpenRelay>::with_settings(r#"{"relay_domains": ["client.example"]}"#)
            .unwrap();
        let mut backup = relayed(
            "1abc23-000458-AB",
            "203.0.113.7",
            "a@other.example",
            "192.0.2.27",
        );
        if let EventBody::Delivery(d) = &mut backup {
            d.router = Some("dnslookup_relay_to_domains".into());
        }
        let mut filter = relayed(
            "1abc23-000457-AB",
            "203.0.113.6",
            "x@far.example",
            "127.0.0.1",
        );
        if let EventBody::Delivery(d) = &mut filter {
            d.transport = Some("amavis".into());
        }
        let mut authed = relayed(
            "1abc23-000459-AB",
            "203.0.113.8",
            "a@far.example",
            "192.0.2.28",
        );
        if let EventBody::Delivery(d) = &mut authed {
            d.identity.auth_id = Some("staff@shop.example".into());
        }
        let v = h.feed([
            // A forwarder: info@shop.example → owner@gmail.example.
            (
                0,
                redirect(
                    "1abc23-000456-AB",
                    "owner@gmail.example",
                    "info@shop.example",
                ),
            ),
            (
                0,
                relayed(
                    "1abc23-000456-AB",
                    "203.0.113.5",
                    "owner@gmail.example",
                    "192.0.2.25",
                ),
            ),
            // Handed to a content filter on this machine.
            (1, filter),
            // Backup MX for a client's domain, by setting and by router.
            (
                2,
                relayed(
                    "1abc23-000460-AB",
                    "203.0.113.9",
                    "b@client.example",
                    "192.0.2.29",
                ),
            ),
            (3, backup),
            (4, authed),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_smarthost_or_test_network_on_loopback_still_relays() {
        // Exim's Internet transport to a loopback address: a smarthost on
        // this machine, or a test's Internet (the real-Exim harness).
        let mut h = Harness::<OpenRelay>::new();
        let v = h.feed([
            (
                0,
                relayed(
                    "1abc23-000456-AB",
                    "127.0.0.77",
                    "x@far.example",
                    "127.0.0.1",
                ),
            ),
            (
                1,
                relayed(
                    "1abc23-000457-AB",
                    "127.0.0.77",
                    "other@far9.example",
                    "127.0.0.1",
                ),
            ),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Ip("127.0.0.77".into()));
    }

    #[test]
    fn an_unlisted_backup_mx_relaying_for_one_domain_is_not_reported() {
        // Strangers' mail for one customer's domain, passed on to its
        // primary MX: a backup MX nobody listed in relay_domains.
        let mut h = Harness::<OpenRelay>::new();
        let v = h.feed((0..50).map(|i| {
            let id = format!("1abc{i:02}-000456-AB");
            (
                i,
                relayed(&id, "203.0.113.5", "staff@customer.example", "192.0.2.25"),
            )
        }));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_lan_client_relaying_is_a_warning() {
        let mut h = Harness::<OpenRelay>::new();
        let v = h.feed([
            (
                0,
                relayed(
                    "1abc23-000456-AB",
                    "192.168.1.20",
                    "x@far.example",
                    "192.0.2.25",
                ),
            ),
            (
                1,
                relayed(
                    "1abc23-000457-AB",
                    "192.168.1.20",
                    "other@far9.example",
                    "192.0.2.25",
                ),
            ),
        ]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Warning);
    }

    fn refused(ip: &str, rcpt: &str) -> EventBody<'static> {
        EventBody::Rejection(Rejection {
            client_ip: Some(testing::text(ip)),
            client_host: Some("yakult.com.tw".into()),
            sender: Some("menacedsj04@listserv.eurasia.org".into()),
            recipient: Some(testing::text(rcpt)),
            stage: SmtpStage::RcptTo,
            reason: "relay not permitted".into(),
            message_id: None,
        })
    }

    #[test]
    fn a_client_refused_relaying_for_many_recipients_is_a_prober_not_an_open_server() {
        let mut h = Harness::<OpenRelay>::new();
        let probe = (0..8).map(|i| (i, refused("202.132.70.178", &format!("dir{i}@ml3.ru"))));
        // The same recipient again and again is one attempt retried.
        let retry = (0..8).map(|i| (i, refused("198.51.100.4", "one@ml3.ru")));
        let v = h.feed(probe.chain(retry));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Ip("202.132.70.178".into()));
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].action, Action::BlockIp);
        assert!(v[0].summary.contains("not open"), "{}", v[0].summary);
    }

    #[test]
    fn accepted_relay_probe_is_critical_and_refused_one_is_quiet() {
        let mut h = Harness::<OpenRelay>::new();
        let probe = |accepted: &'static str| {
            EventBody::Extension(Extension {
                kind: extension_kind::RELAY_PROBE.into(),
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
