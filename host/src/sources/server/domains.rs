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
    use super::super::tests::{Tree, settings};

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
