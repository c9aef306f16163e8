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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spamward_files::regular_file::{self, OpenError};
use spamward_model::{EventBody, MailboxStats, Origin, Text};

use super::{Entry, Kind, Scan};

/// Messages read for bounce detection per mailbox, picked evenly from all
/// of them (every n-th): the bounce count of a larger mailbox is estimated
/// from that sample, so one mailbox of a million bounces does not stall a
/// whole audit, nor pass for clean because only its first files were read.
const MAX_EXAMINED: u64 = 20_000;

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
    /// Bounces among the messages examined.
    bounces: u64,
    examined: u64,
    unreadable: u64,
    first_error: Option<String>,
}

impl Tally {
    fn failed(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.unreadable += 1;
        self.first_error
            .get_or_insert_with(|| format!("{}: {e}", path.display()));
    }

    /// The bounces of the whole mailbox: counted when every message was
    /// examined, else estimated from the even sample.
    fn bounces(&self) -> u64 {
        if self.examined == 0 || self.examined >= self.messages {
            return self.bounces;
        }
        let estimate =
            u128::from(self.bounces) * u128::from(self.messages) + u128::from(self.examined / 2);
        u64::try_from(estimate / u128::from(self.examined)).unwrap_or(u64::MAX)
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
    let mut parts: Vec<PathBuf> = Vec::new();
    for e in entries.iter().filter(|e| e.kind == Kind::Dir) {
        if e.name == "cur" || e.name == "new" {
            parts.push(e.path.clone());
        }
    }
    for folder in entries
        .iter()
        .filter(|e| e.kind == Kind::Dir && e.name.starts_with('.'))
    {
        for sub in ["cur", "new"] {
            parts.push(folder.path.join(sub));
        }
    }
    let mut tally = tally_mailbox(scan, &parts, MAX_EXAMINED);
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
            account: Text::owned(account),
            domain: Text::owned(domain),
            mailbox: Text::owned(mailbox),
            bytes: tally.bytes,
            messages: u32::try_from(tally.messages).unwrap_or(u32::MAX),
            bounces: u32::try_from(tally.bounces()).unwrap_or(u32::MAX),
        }),
    );
}

/// Counts the messages of a mailbox's `cur/` and `new/` directories
/// (`parts`) by metadata, then reads every n-th one's head so that at most
/// `max_examined` are read, evenly spread over all of them.
fn tally_mailbox(scan: &mut Scan, parts: &[PathBuf], max_examined: u64) -> Tally {
    let mut tally = Tally::default();
    for part in parts {
        each_message(scan, part, &mut |_, meta| {
            tally.bytes = tally.bytes.saturating_add(meta.len());
            tally.messages += 1;
        });
    }
    let step = tally.messages.div_ceil(max_examined.max(1)).max(1);
    let mut index = 0u64;
    for part in parts {
        each_message(scan, part, &mut |path, _| {
            let pick = index.is_multiple_of(step) && tally.examined < max_examined;
            index += 1;
            if !pick {
                return;
            }
            match read_head(path) {
                Ok(head) => {
                    tally.examined += 1;
                    tally.bounces += u64::from(is_bounce(&head));
                }
                Err(e) => tally.failed(path, e),
            }
        });
    }
    tally
}

/// Calls `f` for each regular file of one `cur/` or `new/`, streaming the
/// directory (a mailbox may hold millions). Links and anything else that is
/// not a plain file are skipped, never opened.
fn each_message(scan: &mut Scan, dir: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) {
    let real = match scan.resolve(dir) {
        super::Resolved::Inside(real) => real,
        super::Resolved::Missing | super::Resolved::Refused => return,
    };
    let listing = match fs::read_dir(&real) {
        Ok(listing) => listing,
        Err(e) => {
            scan.problem(dir, None, format!("cannot list: {e}"));
            return;
        }
    };
    for entry in listing.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = dir.join(entry.file_name());
        // `symlink_metadata`: the listing said "file", and a file swapped
        // for a link since must still not be followed.
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => f(&path, &meta),
            _ => {}
        }
    }
}

/// The first [`HEAD_BYTES`] of a message, if it is still a regular file
/// (not swapped for a link or a pipe since it was listed).
fn read_head(path: &Path) -> Result<Vec<u8>, OpenError> {
    let (file, _) = regular_file::open_no_follow(path)?;
    let mut head = Vec::with_capacity(HEAD_BYTES as usize);
    file.take(HEAD_BYTES).read_to_end(&mut head)?;
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
    use spamward_model::Event;

    use crate::tests::Tree;

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

    /// Regression: only the first 20,000 messages were examined but the
    /// share divided by all of them, so a mailbox of 100 % bounces past that
    /// size read as mostly clean. The sample is now even and the count is
    /// scaled from it.
    #[test]
    fn a_large_mailbox_is_sampled_evenly_and_its_bounces_scaled() {
        let tree = Tree::new();
        let bounce = "Return-Path: <>\n\n";
        for i in 0..100 {
            tree.write(&format!("home/u/mail/cur/{i}"), bounce);
        }
        // A quarter plain, spread over a second directory.
        for i in 0..40 {
            let body = if i % 2 == 0 { PLAIN } else { bounce };
            tree.write(&format!("home/u/mail/new/{i}"), body);
        }
        let parts = [
            tree.root().join("home/u/mail/cur"),
            tree.root().join("home/u/mail/new"),
        ];
        let mut scan = tree.scan();
        let all_bounces = tally_mailbox(&mut scan, &parts[..1], 10);
        assert_eq!((all_bounces.messages, all_bounces.examined), (100, 10));
        assert_eq!(all_bounces.bounces(), 100, "100 % stays 100 %");

        let mixed = tally_mailbox(&mut scan, &parts, 14);
        assert_eq!((mixed.messages, mixed.examined), (140, 14));
        // 120 of 140 are bounces; every 10th file is read.
        let estimate = mixed.bounces();
        assert!((110..=130).contains(&estimate), "{estimate}");

        let whole = tally_mailbox(&mut scan, &parts, MAX_EXAMINED);
        assert_eq!(
            (whole.examined, whole.bounces()),
            (140, 120),
            "counted, not estimated"
        );
    }

    #[test]
    fn a_message_swapped_for_a_pipe_is_not_waited_on() {
        let tree = Tree::new();
        tree.write("home/u/mail/cur/a", "Return-Path: <>\n\n");
        let fifo = tree.root().join("home/u/mail/cur/b");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo does not keep it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (events, _) = tree.read();
        let s = stats(&events);
        assert_eq!((s[0].messages, s[0].bounces), (1, 1));
    }
}
