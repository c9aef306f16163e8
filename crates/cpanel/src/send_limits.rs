//! Sending limits and who is already stopped: `/etc/email_send_limits`, the
//! per-account `/var/cpanel/users/<user>` files and the
//! `/etc/outgoing_mail_{hold,suspended}_users` lists.
//!
//! cPanel keeps the same limits in two places: the users files are what WHM
//! edits, `email_send_limits` is the table Exim's governor reads at SMTP time
//! (rebuilt from the users files). Both are read so a rule can see a limit
//! the admin set that never reached Exim. The hold and suspend lists say
//! whose outgoing mail is already stopped, so a rule need not ask for it
//! again.

use super::{Scan, is_word};

/// `/etc/email_send_limits`, under the root.
const LIMITS_PATH: &str = "etc/email_send_limits";

/// Its fields after `DOMAIN:`, in order (`#format DOMAIN:
/// MAX_EMAIL_PER_HOUR,MAX_DEFER_FAIL_PERCENTAGE,MIN_DEFER_FAIL_TO_TRIGGER_PROTECTION`).
const LIMIT_KEYS: [&str; 3] = [
    "max_emails_per_hour",
    "max_defer_fail_percentage",
    "min_defer_fail_to_trigger_protection",
];

/// One file per cPanel account, named after it.
const USERS_DIR: &str = "var/cpanel/users";

/// Keys of a users file kept as settings; `DNS1`, `DNS2`, ... are matched
/// apart. The rest (contact address, theme, feature list, ...) is the
/// account's business, not spamward's.
const USER_KEYS: [&str; 6] = [
    "MAX_EMAIL_PER_HOUR",
    "MAX_DEFER_FAIL_PERCENTAGE",
    "DNS",
    "OWNER",
    "SUSPENDED",
    "PLAN",
];

/// The lists of stopped senders and their `source`.
const LISTS: [(&str, &str); 2] = [
    ("etc/outgoing_mail_hold_users", "outgoing_mail_hold_users"),
    (
        "etc/outgoing_mail_suspended_users",
        "outgoing_mail_suspended_users",
    ),
];

/// Reads all three kinds of files.
pub(super) fn read(scan: &mut Scan) {
    read_limits(scan);
    read_users(scan);
    for (rel, source) in LISTS {
        read_list(scan, rel, source);
    }
}

/// `domain: a,b,c` → three settings scoped to the domain (`*` is the
/// server-wide default); an empty field is `None` (no limit of its own).
fn read_limits(scan: &mut Scan) {
    let path = scan.path(LIMITS_PATH);
    scan.each_line(&path, |sink, origin, line| {
        let Some((domain, fields)) = line.split_once(':') else {
            return Err(format!(
                "expected `DOMAIN: MAX_EMAIL_PER_HOUR,MAX_DEFER_FAIL_PERCENTAGE,\
                 MIN_DEFER_FAIL_TO_TRIGGER_PROTECTION`, found {line:?}"
            ));
        };
        let domain = domain.trim();
        if !is_word(domain) {
            return Err(format!("not a domain: {domain:?}"));
        }
        let fields: Vec<&str> = fields.split(',').map(str::trim).collect();
        if fields.len() != LIMIT_KEYS.len() {
            return Err(format!(
                "expected 3 comma-separated limits after `{domain}:`, found {}",
                fields.len()
            ));
        }
        // Domains compare case-insensitively everywhere else (sender
        // domains are lower-cased), so the scope is too.
        let domain = domain.to_ascii_lowercase();
        for (key, value) in LIMIT_KEYS.iter().zip(fields) {
            let value = (!value.is_empty()).then_some(value);
            sink.setting(origin, "email_send_limits", Some(&domain), key, value);
        }
        Ok(())
    });
}

/// One `cpanel-users` setting per kept `KEY=VALUE` line, scoped to the
/// account (the file name). `KEY=` gives `Some("")`, as written.
fn read_users(scan: &mut Scan) {
    let dir = scan.path(USERS_DIR);
    for entry in scan.files_in(&dir) {
        let user = entry.name;
        scan.each_line(&entry.path, |sink, origin, line| {
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("expected `KEY=VALUE`, found {line:?}"));
            };
            let key = key.trim();
            if is_user_key(key) {
                sink.setting(origin, "cpanel-users", Some(&user), key, Some(value.trim()));
            }
            Ok(())
        });
    }
}

/// The kept keys, and `DNS<n>` (the account's other domains).
fn is_user_key(key: &str) -> bool {
    USER_KEYS.contains(&key)
        || key
            .strip_prefix("DNS")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// One user or address per line → `listed = 1` scoped to it.
fn read_list(scan: &mut Scan, rel: &str, source: &str) {
    let path = scan.path(rel);
    scan.each_line(&path, |sink, origin, line| {
        let entry = line.trim();
        if !is_word(entry) {
            return Err(format!(
                "expected one user or address per line, found {line:?}"
            ));
        }
        sink.setting(origin, source, Some(entry), "listed", Some("1"));
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use crate::tests::{Tree, settings};

    fn s(scope: &str, key: &str, value: Option<&str>, line: u64) -> crate::tests::S {
        (
            Some(scope.to_owned()),
            key.to_owned(),
            value.map(str::to_owned),
            line,
        )
    }

    #[test]
    fn email_send_limits_three_settings_per_line() {
        let tree = Tree::new();
        tree.write(
            "etc/email_send_limits",
            "#version 1.0\n\
             #format DOMAIN: MAX_EMAIL_PER_HOUR,MAX_DEFER_FAIL_PERCENTAGE,MIN_DEFER_FAIL_TO_TRIGGER_PROTECTION\n\
             *: 200,25,5\n\
             Shop.Example: ,,\n\
             broken.example: 1,2\n\
             no colon here\n",
        );
        let (events, report) = tree.read();
        assert_eq!(
            settings(&events, "email_send_limits"),
            vec![
                s("*", "max_emails_per_hour", Some("200"), 3),
                s("*", "max_defer_fail_percentage", Some("25"), 3),
                s("*", "min_defer_fail_to_trigger_protection", Some("5"), 3),
                s("shop.example", "max_emails_per_hour", None, 4),
                s("shop.example", "max_defer_fail_percentage", None, 4),
                s(
                    "shop.example",
                    "min_defer_fail_to_trigger_protection",
                    None,
                    4
                ),
            ]
        );
        let lines: Vec<_> = report.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(5), Some(6)]);
    }

    #[test]
    fn users_files_keep_only_limit_domain_and_owner_keys() {
        let tree = Tree::new();
        tree.write(
            "var/cpanel/users/shopco",
            "CONTACTEMAIL=owner@example.org\n\
             DNS=shop.example\n\
             DNS1=shop-mail.example\n\
             DNS12=other.example\n\
             DNSLINK=ignored\n\
             FEATURELIST=default\n\
             MAX_DEFER_FAIL_PERCENTAGE=unlimited\n\
             MAX_EMAIL_PER_HOUR=\n\
             OWNER=root\n\
             PLAN=default\n\
             SUSPENDED=0\n",
        );
        tree.write("var/cpanel/users/.shopco.swp", "DNS=editor.example\n");
        tree.mkdir("var/cpanel/users/subdir");
        let (events, report) = tree.read();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(
            settings(&events, "cpanel-users"),
            vec![
                s("shopco", "DNS", Some("shop.example"), 2),
                s("shopco", "DNS1", Some("shop-mail.example"), 3),
                s("shopco", "DNS12", Some("other.example"), 4),
                s("shopco", "MAX_DEFER_FAIL_PERCENTAGE", Some("unlimited"), 7),
                s("shopco", "MAX_EMAIL_PER_HOUR", Some(""), 8),
                s("shopco", "OWNER", Some("root"), 9),
                s("shopco", "PLAN", Some("default"), 10),
                s("shopco", "SUSPENDED", Some("0"), 11),
            ]
        );
    }

    #[test]
    fn hold_and_suspend_lists() {
        let tree = Tree::new();
        tree.write(
            "etc/outgoing_mail_hold_users",
            "shopco\nsales@shop.example\n\n",
        );
        tree.write("etc/outgoing_mail_suspended_users", "spammer\ntwo words\n");
        let (events, report) = tree.read();
        assert_eq!(
            settings(&events, "outgoing_mail_hold_users"),
            vec![
                s("shopco", "listed", Some("1"), 1),
                s("sales@shop.example", "listed", Some("1"), 2),
            ]
        );
        assert_eq!(
            settings(&events, "outgoing_mail_suspended_users"),
            vec![s("spammer", "listed", Some("1"), 1)]
        );
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].line, Some(2));
    }
}
