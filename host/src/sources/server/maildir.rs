//! Mailbox sizes and bounce counts: one `MailboxStats` per maildir.
//!
//! A mailbox swollen with bounces is the after-image of a spam run: the
//! account sent to dead or forged addresses and the failures came home. The
//! layout is cPanel's: `/home/<user>/mail/<domain>/<box>/` for each address,
//! and `/home/<user>/mail/` itself for the account's default mailbox
//! (reported as domain `(default)`, mailbox `<user>`). A mailbox counts the
//! messages in `cur/` and `new/` (not `tmp/`, which holds deliveries in
//! progress) and in the same directories of its `.Folder`s.
//!
//! Symlinks are never followed below `/home`: cPanel links
//! `mail/.box@domain_tld` to `mail/domain/box` for old IMAP clients, so
//! following them would count a mailbox twice, and on a copy of a server a
//! link may lead out of the tree.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::normalize::{EventBody, MailboxStats, Origin};

use super::{Entry, Kind, Scan};

/// Messages read for bounce detection per mailbox; the rest count for size
/// and number from metadata alone, so one mailbox of a million bounces does
/// not stall a whole audit.
const MAX_EXAMINED: usize = 20_000;

/// Bytes of a message read for bounce detection: the headers that tell a
/// bounce sit at the top.
const HEAD_BYTES: u64 = 8 * 1024;

/// The domain reported for an account's default mailbox.
const DEFAULT_DOMAIN: &str = "(default)";

/// Reads every mailbox of every account under `/home`.
pub(super) fn read(scan: &mut Scan) {
    let home = scan.path("home");
    let Some(accounts) = scan.list_dir(&home, false) else {
        return;
    };
    for account in accounts.iter().filter(|e| is_real_dir(e)) {
        read_account(scan, account);
    }
}

/// A directory that is not hidden and not reached through a link.
fn is_real_dir(e: &Entry) -> bool {
    e.kind == Kind::Dir && !e.name.starts_with('.')
}

fn is_maildir_part(name: &str) -> bool {
    matches!(name, "cur" | "new" | "tmp")
}

/// Whether a listing is a maildir's: it has `cur/` or `new/`.
fn has_maildir(entries: &[Entry]) -> bool {
    entries
        .iter()
        .any(|e| e.kind == Kind::Dir && matches!(e.name.as_str(), "cur" | "new"))
}

/// The default mailbox, then each `<domain>/<box>` of one account.
fn read_account(scan: &mut Scan, account: &Entry) {
    let mail = account.path.join("mail");
    // System users and accounts without mail simply have no `mail/`.
    let Some(entries) = scan.list_dir(&mail, false) else {
        return;
    };
    if has_maildir(&entries) {
        read_mailbox(
            scan,
            &account.name,
            DEFAULT_DOMAIN,
            &account.name,
            &mail,
            &entries,
        );
    }
    for domain in entries
        .iter()
        .filter(|e| is_real_dir(e) && !is_maildir_part(&e.name))
    {
        let Some(boxes) = scan.list_dir(&domain.path, false) else {
            continue;
        };
        let domain_name = domain.name.to_ascii_lowercase();
        for mailbox in boxes.iter().filter(|e| is_real_dir(e)) {
            let Some(parts) = scan.list_dir(&mailbox.path, false) else {
                continue;
            };
            if has_maildir(&parts) {
                read_mailbox(
                    scan,
                    &account.name,
                    &domain_name,
                    &mailbox.name,
                    &mailbox.path,
                    &parts,
                );
            }
        }
    }
}

/// Running totals for one mailbox.
#[derive(Default)]
struct Tally {
    bytes: u64,
    messages: u64,
    bounces: u64,
    examined: usize,
    unreadable: u64,
    first_error: Option<String>,
}

impl Tally {
    fn failed(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.unreadable += 1;
        self.first_error
            .get_or_insert_with(|| format!("{}: {e}", path.display()));
    }
}

/// Counts `dir/cur`, `dir/new` and those of each `.Folder`, then emits.
fn read_mailbox(
    scan: &mut Scan,
    account: &str,
    domain: &str,
    mailbox: &str,
    dir: &Path,
    entries: &[Entry],
) {
    let mut tally = Tally::default();
    let mut parts: Vec<&Path> = Vec::new();
    for e in entries.iter().filter(|e| e.kind == Kind::Dir) {
        if e.name == "cur" || e.name == "new" {
            parts.push(&e.path);
        }
    }
    let folders: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == Kind::Dir && e.name.starts_with('.'))
        .collect();
    for part in parts {
        count_messages(scan, part, &mut tally);
    }
    for folder in folders {
        for sub in ["cur", "new"] {
            count_messages(scan, &folder.path.join(sub), &mut tally);
        }
    }
    if tally.unreadable > 0 {
        let first = tally.first_error.take().unwrap_or_default();
        scan.problem(
            dir,
            None,
            format!(
                "{} messages could not be read (first: {first})",
                tally.unreadable
            ),
        );
    }
    scan.report.files_read.push(dir.to_path_buf());
    let origin = Origin {
        file: Arc::from(dir.display().to_string()),
        line: 0,
    };
    scan.sink.emit(
        &origin,
        EventBody::MailboxStats(MailboxStats {
            account: account.to_owned(),
            domain: domain.to_owned(),
            mailbox: mailbox.to_owned(),
            bytes: tally.bytes,
            messages: u32::try_from(tally.messages).unwrap_or(u32::MAX),
            bounces: u32::try_from(tally.bounces).unwrap_or(u32::MAX),
        }),
    );
}

/// Adds the regular files of one `cur/` or `new/` to the tally. Links and
/// anything else that is not a plain file are skipped, never opened.
fn count_messages(scan: &mut Scan, dir: &Path, tally: &mut Tally) {
    let Some(files) = scan.list_dir(dir, false) else {
        return;
    };
    for file in files.iter().filter(|e| e.kind == Kind::File) {
        // `symlink_metadata`: the listing said "file", and a file swapped
        // for a link since must still not be followed.
        let meta = match fs::symlink_metadata(&file.path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(e) => {
                tally.failed(&file.path, e);
                continue;
            }
        };
        tally.bytes = tally.bytes.saturating_add(meta.len());
        tally.messages += 1;
        if tally.examined >= MAX_EXAMINED {
            continue;
        }
        tally.examined += 1;
        match read_head(&file.path) {
            Ok(head) if is_bounce(&head) => tally.bounces += 1,
            Ok(_) => {}
            Err(e) => tally.failed(&file.path, e),
        }
    }
}

/// The first [`HEAD_BYTES`] of a message.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_BYTES as usize);
    fs::File::open(path)?
        .take(HEAD_BYTES)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Whether a message's header says it is a bounce (a delivery status
/// notification): a null `Return-Path: <>`, a `multipart/report` of
/// `report-type=delivery-status`, or a `From:` of `MAILER-DAEMON` / `Mail
/// Delivery System` (how Exim and most MTAs sign them). Only the header is
/// looked at: a forwarded bounce quoted in a body is not a bounce.
fn is_bounce(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut field = String::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            // A folded continuation: `Content-Type: multipart/report;\n\t
            // report-type=delivery-status` is one field.
            field.push(' ');
            field.push_str(line.trim());
            continue;
        }
        if header_is_bounce(&field) {
            return true;
        }
        if line.trim().is_empty() {
            return false;
        }
        field.clear();
        field.push_str(line);
    }
    header_is_bounce(&field)
}

/// One unfolded header field.
fn header_is_bounce(field: &str) -> bool {
    let Some((name, value)) = field.split_once(':') else {
        return false;
    };
    let value = value.trim().to_ascii_lowercase();
    match name.trim().to_ascii_lowercase().as_str() {
        "return-path" => value == "<>",
        "content-type" => {
            // Parameters may be spaced or quoted: `report-type="delivery-status"`.
            let compact: String = value
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '"')
                .collect();
            compact.starts_with("multipart/report")
                && compact.contains("report-type=delivery-status")
        }
        "from" => value.contains("mailer-daemon") || value.contains("mail delivery system"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Event;

    use super::super::tests::Tree;

    fn stats(events: &[Event]) -> Vec<MailboxStats> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::MailboxStats(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    const PLAIN: &str = "Return-Path: <alice@example.org>\nFrom: Alice <alice@example.org>\nSubject: hi\n\nFrom: MAILER-DAEMON in the body\n";

    #[test]
    fn bounce_headers() {
        for head in [
            "Return-Path: <>\nFrom: x@y\n\nbody",
            "return-path:   <>  \n\n",
            "From: Mail Delivery System <Mailer-Daemon@host.example>\n\n",
            "From: MAILER-DAEMON@host.example\n\n",
            "Content-Type: multipart/report;\n\treport-type=delivery-status;\n\tboundary=\"x\"\n\n",
            "Content-Type: Multipart/Report; report-type=\"Delivery-Status\"\r\n\r\n",
        ] {
            assert!(is_bounce(head.as_bytes()), "{head:?}");
        }
        for head in [
            PLAIN,
            "Content-Type: multipart/report; report-type=disposition-notification\n\n",
            "Subject: Return-Path: <>\n\n",
            "",
            "\u{0}\u{1}garbage without colon",
        ] {
            assert!(!is_bounce(head.as_bytes()), "{head:?}");
        }
        // A bounce header past the 8 KiB read is not seen.
        let mut late = "X-Pad: a\n".repeat(1000);
        late.push_str("Return-Path: <>\n\n");
        let cut = late
            .as_bytes()
            .get(..HEAD_BYTES as usize)
            .unwrap_or_default();
        assert!(!is_bounce(cut));
    }

    #[test]
    fn default_and_domain_mailboxes_with_folders_links_skipped() {
        let tree = Tree::new();
        let bounce = "Return-Path: <>\nFrom: Mail Delivery System <Mailer-Daemon@h>\n\nx\n";
        tree.write("home/shopco/mail/cur/1.a", PLAIN);
        tree.write("home/shopco/mail/new/2.a", bounce);
        tree.write("home/shopco/mail/tmp/3.a", bounce);
        tree.write("home/shopco/mail/.Trash/cur/4.a", bounce);
        tree.write("home/shopco/mail/Shop.Example/info/cur/5.a", bounce);
        tree.write("home/shopco/mail/Shop.Example/info/new/6.a", PLAIN);
        tree.write("home/shopco/mail/Shop.Example/info/.Sent/cur/7.a", PLAIN);
        tree.write("home/shopco/mail/Shop.Example/info/maildirsize", "100 1\n");
        // cPanel's compatibility link must not count `info` twice, and a
        // linked message must not count at all.
        tree.symlink(
            &tree.root().join("home/shopco/mail/Shop.Example/info"),
            "home/shopco/mail/.info@shop_example",
        );
        tree.symlink(
            &tree.root().join("home/shopco/mail/cur/1.a"),
            "home/shopco/mail/Shop.Example/info/cur/linked",
        );
        // Not a mailbox: no cur/ nor new/.
        tree.mkdir("home/shopco/mail/Shop.Example/empty/tmp");
        tree.mkdir("home/nomail/public_html");
        let (events, report) = tree.read();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let b = bounce.len() as u64;
        let p = PLAIN.len() as u64;
        assert_eq!(
            stats(&events),
            vec![
                MailboxStats {
                    account: "shopco".into(),
                    domain: "(default)".into(),
                    mailbox: "shopco".into(),
                    bytes: p + 2 * b,
                    messages: 3,
                    bounces: 2,
                },
                MailboxStats {
                    account: "shopco".into(),
                    domain: "shop.example".into(),
                    mailbox: "info".into(),
                    bytes: b + 2 * p,
                    messages: 3,
                    bounces: 1,
                },
            ]
        );
        let origins: Vec<_> = events
            .iter()
            .map(|e| (e.file.to_string(), e.line))
            .collect();
        assert_eq!(
            origins,
            vec![
                (
                    tree.root().join("home/shopco/mail").display().to_string(),
                    0
                ),
                (
                    tree.root()
                        .join("home/shopco/mail/Shop.Example/info")
                        .display()
                        .to_string(),
                    0
                ),
            ]
        );
    }

    #[test]
    fn home_linked_out_of_the_root_is_refused() {
        let tree = Tree::new();
        let outside = Tree::new();
        outside.write("shopco/mail/cur/1", PLAIN);
        tree.symlink(outside.root(), "home");
        let (events, report) = tree.read();
        assert!(stats(&events).is_empty());
        assert_eq!(report.problems.len(), 1);
        assert!(
            report.problems[0]
                .message
                .contains("outside the server root")
        );
    }

    #[test]
    fn examined_cap_counts_the_rest_by_metadata() {
        let tree = Tree::new();
        // Lower the cap's cost: MAX_EXAMINED + 3 tiny files would be slow,
        // so check the arithmetic through a pre-filled tally instead.
        tree.write("home/u/mail/cur/a", "Return-Path: <>\n\n");
        tree.write("home/u/mail/cur/b", "Return-Path: <>\n\n");
        let mut scan = tree.scan();
        let mut tally = Tally {
            examined: MAX_EXAMINED - 1,
            ..Tally::default()
        };
        count_messages(&mut scan, &tree.root().join("home/u/mail/cur"), &mut tally);
        assert_eq!(tally.messages, 2);
        assert_eq!(tally.bounces, 1);
        assert_eq!(tally.bytes, 2 * 17);
        assert_eq!(tally.examined, MAX_EXAMINED);
    }
}
