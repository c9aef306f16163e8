//! Telling mail relayed for a stranger from mail that only looks like it.
//!
//! Two bundled checks count relaying (`open-relay` reports it, `relay-volume`
//! counts it per client); both must agree on what it is, so it is decided
//! here once. A delivery was relayed for a stranger when the message came
//! from an unauthenticated remote client (no login, no local user, no
//! owning account or script), had a sender (a bounce is the server's own),
//! and went to another machine. It was not, though it looks the same, when
//! the address was a forwarder's (the host says so with a `redirect`
//! extension just before the delivery: feed it to [`note_redirect`]), when
//! it was handed to a content filter on this machine (loopback, by a
//! transport other than Exim's Internet one, `remote_smtp`), when the
//! recipient's domain is local, or when Exim routed it as a domain it
//! relays for on purpose (Debian's `*relay_to_domains` routers).

use crate::event::{Delivery, Extension, extension_kind};
use crate::host;

/// How long a redirect is remembered for its delivery, which follows at
/// once; the window forgets it without a delete. Also the window over
/// which a client's recipient domains are counted.
const REDIRECT_WINDOW: u32 = 3600;

/// Whether `ip` is this machine.
pub fn is_loopback(ip: &str) -> bool {
    ip.starts_with("127.") || ip == "::1"
}

/// Whether a delivery to `remote_ip` handed the message to a content filter
/// or daemon on this machine (amavis, a spam scanner, LMTP) rather than
/// sending it on: loopback, by a transport that is not Exim's Internet
/// transport (`remote_smtp`, cPanel's `dkim_remote_smtp`, Debian's
/// `remote_smtp_smarthost`), which a smarthost on loopback would use.
fn is_filter_handoff(d: &Delivery<'_>, remote_ip: &str) -> bool {
    is_loopback(remote_ip)
        && !d
            .transport
            .as_deref()
            .is_some_and(|t| t.contains("remote_smtp"))
}

/// Notes that mail relayed for `ip` at `at` went to `domain`; returns how
/// many distinct recipient domains the client's relayed mail reached in
/// the hour. An abuser of an open relay writes to the world; a backup MX
/// or smarthost nobody configured as such relays for one customer's
/// domain, so a rule accuses a client only past one domain.
pub fn domains_reached(ip: &str, domain: &str, at: i64) -> u32 {
    host::distinct_add(
        &format!("relay-domains:{ip}"),
        &domain.to_ascii_lowercase(),
        at,
        REDIRECT_WINDOW,
    )
}

/// Remembers a `redirect` extension for the delivery it precedes; false
/// for any other extension, which the caller may then read itself.
pub fn note_redirect(e: &Extension<'_>, at: i64) -> bool {
    if e.kind != extension_kind::REDIRECT {
        return false;
    }
    if let (Some(id), Some(rcpt)) = (e.field("message_id"), e.field("recipient")) {
        host::window_add(&format!("redirect:{id} {rcpt}"), at, REDIRECT_WINDOW, 1);
    }
    true
}

/// The client IP `d` was relayed for, or `None` when it was no relaying
/// (see the module header). Cheap tests first: host calls are made only
/// for deliveries that already look relayed.
pub fn relayed_for<'d>(d: &'d Delivery<'_>, at: i64) -> Option<&'d str> {
    let id = &d.identity;
    let ip = id.client_ip.as_deref()?;
    id.sender.as_ref()?;
    if id.auth_id.is_some() || id.local_user.is_some() || id.owner.is_some() || id.script.is_some()
    {
        return None;
    }
    if is_filter_handoff(d, d.remote_ip.as_deref().filter(|r| !r.is_empty())?)
        || d.router
            .as_deref()
            .is_some_and(|r| r.contains("relay_to_domains"))
    {
        return None;
    }
    let forward = format!("redirect:{} {}", d.message_id, d.recipient);
    if host::window_total(&forward, at, REDIRECT_WINDOW) > 0 {
        return None;
    }
    let domain = d.recipient.rsplit_once('@').map_or("", |(_, dom)| dom);
    if host::is_local_domain(domain) == Some(true) {
        return None;
    }
    Some(ip)
}
