//! The allow-list: accounts, mailboxes, domains, IPs and CIDR ranges that
//! no action ever touches, whatever a rule says about them.
//!
//! It is checked against a verdict's [`Target`] before anything runs. A
//! target is allowed when it *is* an entry or *belongs to* one: a mailbox
//! belongs to its domain, an IP to a range, a script under `/home/<user>/`
//! to that account. Names compare without regard to ASCII case, as mail
//! addresses and domains do.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use spamward_contract::verdict::Target;

/// One entry as the admin wrote it, typed by its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A cPanel account or a local login (`root`, `bob`).
    Account(String),
    /// An address (`owner@example.com`).
    Mailbox(String),
    /// A domain (`example.com`): itself and its mailboxes.
    Domain(String),
    /// An address range (a single IP is a /32 or /128).
    Net(IpNet),
}

/// An entry that is none of the shapes above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an account, mailbox, domain, IP or CIDR range ({why})")]
pub struct BadEntry {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// What no action touches. Built from the defaults ([`AllowList::defaults`])
/// plus what `[policy] allow` adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// The defaults: the system users (root, cpanel, mailman, the MTA's
    /// own), loopback, and `own` (this server's addresses).
    pub fn defaults(own: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut list = AllowList::default();
        for user in spamward_contract::SYSTEM_USERS {
            list.entries.push(Entry::Account(user.to_ascii_lowercase()));
        }
        list.entries.extend(loopback().map(Entry::Net));
        for ip in own {
            list.entries.push(Entry::Net(IpNet::from(ip)));
        }
        list
    }

    /// Takes loopback (`127.0.0.0/8`, `::1`) off the list, for a server
    /// whose attackers reach it through a local proxy, or a test whose
    /// clients are all on loopback (`[policy] allow_loopback = false`).
    /// This server's own addresses stay.
    pub fn expose_loopback(&mut self) {
        let loopback: Vec<IpNet> = loopback().collect();
        self.entries
            .retain(|e| !matches!(e, Entry::Net(n) if loopback.contains(n)));
    }

    /// Adds one entry as an admin writes it.
    pub fn add(&mut self, entry: &str) -> Result<(), BadEntry> {
        let bad = |why| BadEntry {
            entry: entry.to_owned(),
            why,
        };
        let text = entry.trim();
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(bad("it holds a space"));
        }
        let parsed = if let Ok(ip) = text.parse::<IpAddr>() {
            Entry::Net(IpNet::from(ip))
        } else if text.contains('/') {
            Entry::Net(text.parse().map_err(|_| bad("a bad CIDR range"))?)
        } else if let Some((local, domain)) = text.split_once('@') {
            if local.is_empty() || domain.is_empty() || domain.contains('@') {
                return Err(bad("an address needs one @ between a name and a domain"));
            }
            Entry::Mailbox(text.to_ascii_lowercase())
        } else if text.contains('.') {
            Entry::Domain(text.trim_end_matches('.').to_ascii_lowercase())
        } else {
            Entry::Account(text.to_ascii_lowercase())
        };
        if !self.entries.contains(&parsed) {
            self.entries.push(parsed);
        }
        Ok(())
    }

    /// The entry that covers `target`, if one does.
    pub fn covering(&self, target: &Target) -> Option<Allowed<'_>> {
        self.entries
            .iter()
            .find(|e| e.covers(target))
            .map(|entry| Allowed { entry })
    }
}

/// The loopback ranges, on the list by default.
fn loopback() -> impl Iterator<Item = IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .into_iter()
        .map(|net| net.parse().expect("a valid literal range"))
}

impl Entry {
    fn covers(&self, target: &Target) -> bool {
        let value = target.value();
        match (self, target) {
            (Entry::Account(a), Target::Account(v)) => a.eq_ignore_ascii_case(v),
            (Entry::Account(a), Target::Script(path)) => path
                .strip_prefix("/home/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(user, _)| a.eq_ignore_ascii_case(user)),
            // A login without a domain is a local user's mailbox.
            (Entry::Account(a), Target::Mailbox(v)) => a.eq_ignore_ascii_case(v),
            (Entry::Mailbox(m), Target::Mailbox(v)) => m.eq_ignore_ascii_case(v),
            (Entry::Domain(d), Target::Domain(v)) => {
                d.eq_ignore_ascii_case(v.trim_end_matches('.'))
            }
            (Entry::Domain(d), Target::Mailbox(v)) => v
                .rsplit_once('@')
                .is_some_and(|(_, domain)| d.eq_ignore_ascii_case(domain)),
            (Entry::Net(net), Target::Ip(_)) => value
                .parse::<IpAddr>()
                .is_ok_and(|ip| net.contains(&canonical(ip))),
            _ => false,
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`, as a dual-stack
/// Exim logs it) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The allow-list entry that spared a target, for the journal.
#[derive(Debug, Clone, Copy)]
pub struct Allowed<'a> {
    entry: &'a Entry,
}

impl fmt::Display for Allowed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            Entry::Account(a) => write!(f, "account {a}"),
            Entry::Mailbox(m) => write!(f, "mailbox {m}"),
            Entry::Domain(d) => write!(f, "domain {d}"),
            Entry::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "ip {}", n.addr()),
            Entry::Net(n) => write!(f, "range {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        let mut l = AllowList::defaults(["192.0.2.10".parse().unwrap()]);
        for e in entries {
            l.add(e).unwrap();
        }
        l
    }

    fn covered_by(l: &AllowList, target: Target) -> Option<String> {
        l.covering(&target).map(|a| a.to_string())
    }

    #[test]
    fn defaults_cover_system_users_loopback_and_the_servers_own_address() {
        let l = list(&[]);
        assert_eq!(
            covered_by(&l, Target::Account("root".into())).as_deref(),
            Some("account root")
        );
        assert_eq!(
            covered_by(&l, Target::Account("cpanel".into())).as_deref(),
            Some("account cpanel")
        );
        assert_eq!(
            covered_by(&l, Target::Ip("127.0.0.1".into())).as_deref(),
            Some("range 127.0.0.0/8")
        );
        assert!(covered_by(&l, Target::Ip("::1".into())).is_some());
        assert_eq!(
            covered_by(&l, Target::Ip("192.0.2.10".into())).as_deref(),
            Some("ip 192.0.2.10")
        );
        assert_eq!(covered_by(&l, Target::Ip("192.0.2.11".into())), None);
        assert_eq!(covered_by(&l, Target::Account("bob".into())), None);
    }

    #[test]
    fn entries_cover_what_belongs_to_them() {
        let l = list(&[
            "203.0.113.0/24",
            "Owner@Example.com",
            "shop.example",
            "alice",
        ]);
        assert!(covered_by(&l, Target::Ip("203.0.113.77".into())).is_some());
        assert!(covered_by(&l, Target::Ip("::ffff:203.0.113.77".into())).is_some());
        assert!(covered_by(&l, Target::Ip("203.0.114.1".into())).is_none());
        assert!(covered_by(&l, Target::Mailbox("owner@example.COM".into())).is_some());
        assert!(covered_by(&l, Target::Mailbox("other@example.com".into())).is_none());
        assert!(covered_by(&l, Target::Mailbox("anyone@shop.example".into())).is_some());
        assert!(covered_by(&l, Target::Domain("SHOP.example".into())).is_some());
        assert!(covered_by(&l, Target::Domain("evil.shop.example".into())).is_none());
        assert!(covered_by(&l, Target::Account("Alice".into())).is_some());
        assert!(covered_by(&l, Target::Script("/home/alice/public_html/x.php".into())).is_some());
        assert!(covered_by(&l, Target::Script("/home/alicex/public_html/x.php".into())).is_none());
        // A message id is never allow-listed by an owner it does not name.
        assert!(covered_by(&l, Target::Message("1abcde-000001-AB".into())).is_none());
    }

    #[test]
    fn loopback_can_be_exposed_the_servers_own_address_stays() {
        let mut l = AllowList::defaults(["127.0.0.1".parse().unwrap()]);
        l.expose_loopback();
        assert_eq!(covered_by(&l, Target::Ip("127.0.0.50".into())), None);
        assert_eq!(covered_by(&l, Target::Ip("::1".into())), None);
        assert_eq!(
            covered_by(&l, Target::Ip("127.0.0.1".into())).as_deref(),
            Some("ip 127.0.0.1")
        );
        assert!(covered_by(&l, Target::Account("root".into())).is_some());
    }

    #[test]
    fn bad_entries_are_named_with_the_reason() {
        let mut l = AllowList::default();
        for (entry, why) in [
            ("", "it is empty"),
            ("bob smith", "it holds a space"),
            ("203.0.113.0/33", "a bad CIDR range"),
            (
                "@example.com",
                "an address needs one @ between a name and a domain",
            ),
        ] {
            let e = l.add(entry).unwrap_err();
            assert_eq!(e.why, why, "{entry:?}");
            assert!(e.to_string().contains(&format!("{entry:?}")));
        }
    }
}
