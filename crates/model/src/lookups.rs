//! Answers to the `domain-owner` and `is-local-domain` imports: who owns a
//! domain and which domains are local, from the `userdomains` and
//! `localdomains` settings a server-state reader produced (cPanel's
//! `/etc/userdomains` and `/etc/localdomains`).

use std::collections::{HashMap, HashSet};

use crate::{Event, EventBody};

/// Domain → owning account, and the set of locally delivered domains.
#[derive(Debug, Default, Clone)]
pub struct HostLookups {
    owners: HashMap<String, String>,
    local: HashSet<String>,
}

impl HostLookups {
    /// The lookups the domain settings among `events` describe (the
    /// `userdomains` owners and `localdomains` entries of a server-state
    /// read).
    pub fn from_events(events: &[Event]) -> Self {
        let mut lookups = HostLookups::default();
        for event in events {
            let EventBody::Setting(s) = &event.body else {
                continue;
            };
            let (Some(domain), Some(value)) = (&s.scope, &s.value) else {
                continue;
            };
            match (s.source.as_str(), s.key.as_str()) {
                ("userdomains", "owner") => lookups.add_owner(domain, value),
                ("localdomains", "local") => {
                    lookups.local.insert(domain.to_ascii_lowercase());
                }
                _ => {}
            }
        }
        lookups
    }

    /// Records that `owner` owns `domain` (and that it is local).
    pub fn add_owner(&mut self, domain: &str, owner: &str) {
        let domain = domain.to_ascii_lowercase();
        self.local.insert(domain.clone());
        self.owners.insert(domain, owner.to_owned());
    }

    /// The account that owns `domain`.
    pub fn domain_owner(&self, domain: &str) -> Option<&str> {
        self.owners
            .get(domain)
            .or_else(|| self.owners.get(&domain.to_ascii_lowercase()))
            .map(String::as_str)
    }

    /// Whether any local domain is known (else "not local" means "can't
    /// tell").
    pub fn knows_local_domains(&self) -> bool {
        !self.local.is_empty()
    }

    /// Whether `domain` is delivered locally; `None` when the server's
    /// local domains are unknown (the answer of the `is-local-domain`
    /// import, and what subscription filters ask).
    pub fn is_local_domain(&self, domain: &str) -> Option<bool> {
        self.knows_local_domains().then(|| {
            self.local.contains(domain) || self.local.contains(&domain.to_ascii_lowercase())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Origin, Setting, Text, Timestamp};

    fn setting(source: &str, domain: &str, key: &str, value: &str) -> Event {
        let origin = Origin {
            file: source.into(),
            line: 1,
        };
        Event::new(
            Timestamp::naive(0),
            &origin,
            EventBody::Setting(Setting {
                source: Text::owned(source),
                scope: Some(Text::owned(domain)),
                key: Text::owned(key),
                value: Some(Text::owned(value)),
            }),
        )
    }

    #[test]
    fn owners_and_local_domains_come_from_domain_settings() {
        let l = HostLookups::from_events(&[
            setting("userdomains", "Shop.Example", "owner", "shopuser"),
            setting("localdomains", "host.example", "local", ""),
            setting("cpanel.config", "x.example", "owner", "nobody"),
        ]);
        assert_eq!(l.domain_owner("shop.example"), Some("shopuser"));
        assert_eq!(l.domain_owner("x.example"), None);
        assert_eq!(l.is_local_domain("HOST.example"), Some(true));
        assert_eq!(l.is_local_domain("shop.example"), Some(true));
        assert_eq!(l.is_local_domain("remote.example"), Some(false));
        assert_eq!(HostLookups::default().is_local_domain("host.example"), None);
    }
}
