//! Answers to the `domain-owner` and `is-local-domain` imports: who owns a
//! domain and which domains are local, from a server's `/etc/userdomains`
//! and `/etc/localdomains`.
//!
//! Those files are read by the one reader of server state
//! ([`read_domains`]), with its checks: nothing outside the root, no
//! special files, a size cap, a problem named per file and line.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::normalize::{Event, EventBody, Timestamp};
use crate::sources::server::{ServerStateReport, read_domains};

/// Domain → owning account, and the set of locally delivered domains.
#[derive(Debug, Default, Clone)]
pub struct HostLookups {
    owners: HashMap<String, String>,
    local: HashSet<String>,
}

impl HostLookups {
    /// Reads `<root>/etc/userdomains` and `<root>/etc/localdomains`; a
    /// missing file means nothing is known (not every server is cPanel).
    /// The report says what could not be read.
    pub fn load(root: &Path) -> (Self, ServerStateReport) {
        let mut events = Vec::new();
        let report = read_domains(root, Timestamp::naive(0), &mut events);
        (HostLookups::from_events(&events), report)
    }

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
    use std::fs;

    fn root_with(userdomains: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/userdomains"), userdomains).unwrap();
        root
    }

    #[test]
    fn reads_userdomains_and_localdomains() {
        let root = root_with("shop.example: shopuser\n*: nobody\nBlog.Example: blogger\n");
        fs::write(root.path().join("etc/localdomains"), "host.example\n").unwrap();
        let (l, report) = HostLookups::load(root.path());
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(l.domain_owner("shop.example"), Some("shopuser"));
        assert_eq!(l.domain_owner("BLOG.example"), Some("blogger"));
        assert_eq!(l.domain_owner("*"), None);
        assert_eq!(l.is_local_domain("host.example"), Some(true));
        assert_eq!(l.is_local_domain("shop.example"), Some(true));
        assert_eq!(l.is_local_domain("remote.example"), Some(false));
        assert_eq!(HostLookups::default().is_local_domain("host.example"), None);
    }

    #[test]
    fn missing_files_mean_nothing_known() {
        let root = tempfile::tempdir().unwrap();
        let (l, report) = HostLookups::load(root.path());
        assert_eq!(l.domain_owner("x.example"), None);
        assert!(!l.knows_local_domains());
        assert!(report.problems.is_empty());
    }

    #[test]
    fn a_link_out_of_the_root_is_refused_not_read() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("shadow");
        fs::write(
            &secret,
            "root:$6$hash:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n",
        )
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&secret, root.path().join("etc/userdomains")).unwrap();
        let (l, report) = HostLookups::load(root.path());
        assert_eq!(l.domain_owner("root"), None);
        assert!(!l.knows_local_domains());
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            report.problems[0]
                .message
                .starts_with("leads outside the server root"),
            "{}",
            report.problems[0]
        );
    }

    #[test]
    fn a_directory_or_fifo_in_its_place_is_a_problem_not_a_failure_or_a_hang() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc/userdomains")).unwrap();
        let fifo = root.path().join("etc/localdomains");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo does not keep it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (l, report) = HostLookups::load(root.path());
        assert!(!l.knows_local_domains());
        let messages: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].ends_with("etc/userdomains: is a directory, expected a file"));
        assert!(messages[1].contains("etc/localdomains: is a named pipe"));
    }
}
