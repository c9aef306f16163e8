//! Which domains the server serves and who owns them: `/etc/userdomains`
//! (`domain: user`) and `/etc/localdomains` (one domain per line).
//!
//! Ownership is how a sender domain seen in the log is charged to a hosting
//! account; "local" is how a rule tells outgoing mail from mail the server
//! delivers to itself (and spots an open relay). Domains are lower-cased:
//! they compare case-insensitively and the event model lower-cases sender
//! domains.

use super::{Scan, is_word};

/// Reads both files.
pub(super) fn read(scan: &mut Scan) {
    read_userdomains(scan);
    read_localdomains(scan);
}

/// `domain: user` → `owner = user` scoped to the domain. cPanel's closing
/// `*: nobody` is its wildcard fallback, not a domain anyone owns, so it is
/// skipped.
fn read_userdomains(scan: &mut Scan) {
    let path = scan.path("etc/userdomains");
    scan.each_line(&path, |sink, origin, line| {
        let Some((domain, user)) = line.split_once(':') else {
            return Err(format!("expected `domain: user`, found {line:?}"));
        };
        let (domain, user) = (domain.trim(), user.trim());
        if !is_word(domain) || !is_word(user) {
            return Err(format!("expected `domain: user`, found {line:?}"));
        }
        if domain == "*" {
            return Ok(());
        }
        let domain = domain.to_ascii_lowercase();
        sink.setting(origin, "userdomains", Some(&domain), "owner", Some(user));
        Ok(())
    });
}

/// One domain per line → `local = 1` scoped to it.
fn read_localdomains(scan: &mut Scan) {
    let path = scan.path("etc/localdomains");
    scan.each_line(&path, |sink, origin, line| {
        let domain = line.trim();
        if !is_word(domain) {
            return Err(format!("expected one domain per line, found {line:?}"));
        }
        let domain = domain.to_ascii_lowercase();
        sink.setting(origin, "localdomains", Some(&domain), "local", Some("1"));
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use crate::tests::{Tree, settings};

    #[test]
    fn userdomains_owner_lowercased_wildcard_skipped() {
        let tree = Tree::new();
        tree.write(
            "etc/userdomains",
            "Shop.Example: shopco\nshop-mail.example: shopco\n*: nobody\nmissing-user.example:\n",
        );
        let (events, report) = tree.read();
        assert_eq!(
            settings(&events, "userdomains"),
            vec![
                (
                    Some("shop.example".into()),
                    "owner".into(),
                    Some("shopco".into()),
                    1
                ),
                (
                    Some("shop-mail.example".into()),
                    "owner".into(),
                    Some("shopco".into()),
                    2
                ),
            ]
        );
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].line, Some(4));
    }

    #[test]
    fn localdomains_one_per_line() {
        let tree = Tree::new();
        tree.write("etc/localdomains", "host.example.net\nshop.example\n");
        let (events, report) = tree.read();
        assert!(report.problems.is_empty());
        assert_eq!(
            settings(&events, "localdomains"),
            vec![
                (
                    Some("host.example.net".into()),
                    "local".into(),
                    Some("1".into()),
                    1
                ),
                (
                    Some("shop.example".into()),
                    "local".into(),
                    Some("1".into()),
                    2
                ),
            ]
        );
    }
}

#[cfg(test)]
mod lookup_tests {
    use spamward_model::HostLookups;
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
        let (l, report) = crate::domain_lookups(root.path());
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
        let (l, report) = crate::domain_lookups(root.path());
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
        let (l, report) = crate::domain_lookups(root.path());
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
        let (l, report) = crate::domain_lookups(root.path());
        assert!(!l.knows_local_domains());
        let messages: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].ends_with("etc/userdomains: is a directory, expected a file"));
        assert!(messages[1].contains("etc/localdomains: is a named pipe"));
    }
}
