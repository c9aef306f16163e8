//! Answers to the `domain-owner` and `is-local-domain` imports, read from a
//! server's `/etc/userdomains` (`domain: user`) and `/etc/localdomains`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

/// Domain → owning account, and the set of locally delivered domains.
#[derive(Debug, Default, Clone)]
pub struct HostLookups {
    owners: HashMap<String, String>,
    local: HashSet<String>,
}

impl HostLookups {
    /// Reads `<root>/etc/userdomains` and `<root>/etc/localdomains`; a
    /// missing file means nothing is known (not every server is cPanel).
    pub fn load(root: &Path) -> io::Result<Self> {
        let mut lookups = HostLookups::default();
        if let Some(text) = read_optional(&root.join("etc/userdomains"))? {
            for line in text.lines() {
                if let Some((domain, user)) = line.split_once(':') {
                    let (domain, user) = (domain.trim(), user.trim());
                    // `*: nobody` is cPanel's catch-all line, not an owner.
                    if !domain.is_empty() && domain != "*" && !user.is_empty() {
                        lookups.add_owner(domain, user);
                    }
                }
            }
        }
        if let Some(text) = read_optional(&root.join("etc/localdomains"))? {
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                lookups.local.insert(line.to_ascii_lowercase());
            }
        }
        Ok(lookups)
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

    /// Whether `domain` is delivered locally.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.local.contains(domain) || self.local.contains(&domain.to_ascii_lowercase())
    }
}

fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_userdomains_and_localdomains() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(
            root.path().join("etc/userdomains"),
            "shop.example: shopuser\n*: nobody\nBlog.Example: blogger\n",
        )
        .unwrap();
        fs::write(root.path().join("etc/localdomains"), "host.example\n").unwrap();
        let l = HostLookups::load(root.path()).unwrap();
        assert_eq!(l.domain_owner("shop.example"), Some("shopuser"));
        assert_eq!(l.domain_owner("BLOG.example"), Some("blogger"));
        assert_eq!(l.domain_owner("*"), None);
        assert!(l.is_local_domain("host.example"));
        assert!(l.is_local_domain("shop.example"));
        assert!(!l.is_local_domain("remote.example"));
    }

    #[test]
    fn missing_files_mean_nothing_known() {
        let root = tempfile::tempdir().unwrap();
        let l = HostLookups::load(root.path()).unwrap();
        assert_eq!(l.domain_owner("x.example"), None);
    }
}
