//! Tests of the `exim -bp` reader: the listings quoted in the corpus
//! (`real-lines.md` §2), Exim's own output, and hostile input.

use super::*;
use crate::queue::messages_and_tally;
use crate::queue::spool::tests::{exim_binary, private_exim, submit};

fn parse(text: &str) -> (Vec<QueuedMessage>, Vec<Event>, Vec<QueueError>) {
    let mut out = Vec::new();
    let errors = parse_queue_listing(text, "mailq.txt", Timestamp::naive(1_000_000), &mut out);
    let msgs = messages_and_tally(&mut out);
    (msgs, out, errors)
}

#[test]
fn listing_from_the_exim_spec() {
    // `real-lines.md` §2, from the Exim spec; `<other addresses>` is the
    // manual's placeholder, kept as a recipient like any indented line.
    let text = "25m  2.9K 0t5C6f-0000c8-00 <alice@wonderland.fict.example>
          red.king@looking-glass.fict.example
          <other addresses>
";
    let (m, ev, errors) = parse(text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].message_id, "0t5C6f-0000c8-00");
    assert_eq!(m[0].age_seconds, 25 * 60);
    assert_eq!(m[0].size, Some(2970), "2.9 × 1024, rounded");
    assert_eq!(
        m[0].identity.sender.as_deref(),
        Some("alice@wonderland.fict.example")
    );
    assert_eq!(
        m[0].identity.sender_domain.as_deref(),
        Some("wonderland.fict.example")
    );
    assert_eq!(
        m[0].recipients,
        ["red.king@looking-glass.fict.example", "<other addresses>"]
    );
    assert!(!m[0].frozen && !m[0].bounce);
    assert_eq!(ev[0].line, 1);
    assert_eq!(&*ev[0].file, "mailq.txt");
    assert_eq!(ev[0].time, Timestamp::naive(1_000_000));
}

#[test]
fn frozen_bounce_from_check_mailq() {
    // `real-lines.md` §2, from nagios-plugins' check_mailq.pl.
    let (m, _, errors) =
        parse("22m  1.7K 19aEEr-0007hx-Dy <> *** frozen ***\n          root@exlixams.glups.fr\n");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(m.len(), 1);
    assert!(m[0].frozen);
    assert!(m[0].bounce);
    assert_eq!(m[0].identity.sender, None);
    assert_eq!(m[0].size, Some(1741));
    assert_eq!(m[0].recipients, ["root@exlixams.glups.fr"]);
}

#[test]
fn several_messages_delivered_recipients_units_and_lines() {
    let text = "
 5m   367 1xWjHO-0003vo-0m <sender@x.example> *** frozen ***
          a@remote.example
        D b@remote.example
          c@remote.example
        +D d@remote.example

45s   512 1hIAif-00H7J4-Lb <www@host.example> (webacct)
          e@remote.example

 3h  1.2M 1wHpIU-0000000G8Fo-1FA1 <nobody@host.example> (nobody)
          f@remote.example
 2d  10M 1hIAig-00H7J4-Lc <x y@host.example>
          g@remote.example
 1w     1hIAih-00H7J4-Ld <empty@host.example>

";
    let (m, ev, errors) = parse(text);
    assert!(errors.is_empty(), "{errors:?}");
    let lines: Vec<u64> = ev.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 8, 11, 13, 15]);
    assert_eq!(m[0].age_seconds, 300);
    assert!(m[0].frozen);
    assert_eq!(m[0].recipients, ["a@remote.example", "c@remote.example"]);
    assert_eq!(m[1].age_seconds, 45);
    assert_eq!(m[1].size, Some(512));
    assert_eq!(m[1].identity.local_user.as_deref(), Some("webacct"));
    assert_eq!(m[1].identity.owner.as_deref(), Some("webacct"));
    assert_eq!(m[2].message_id, "1wHpIU-0000000G8Fo-1FA1");
    assert_eq!(m[2].age_seconds, 3 * 3600);
    assert_eq!(m[2].size, Some(1_258_291));
    assert_eq!(m[2].identity.local_user.as_deref(), Some("nobody"));
    assert_eq!(m[2].identity.owner, None);
    assert_eq!(m[3].age_seconds, 2 * 86_400);
    assert_eq!(m[3].size, Some(10 * 1024 * 1024));
    assert_eq!(m[3].identity.sender.as_deref(), Some("x y@host.example"));
    assert_eq!(
        m[3].recipients,
        ["g@remote.example"],
        "no blank line needed"
    );
    assert_eq!(m[4].age_seconds, 7 * 86_400);
    assert_eq!(m[4].size, None, "Exim prints an empty message's size blank");
    assert!(m[4].recipients.is_empty());
}

#[test]
fn unreadable_lines_are_errors_with_line_numbers() {
    let text = "stray text
          orphan@recipient.example
25m  2.9K 0t5C6f-0000c8-00 <alice@x.example>
    *** spool format error: size=1234 ***
25m  2.9K 0t5C6f-0000c8-01 <alice@x.example> trailing junk
Xm  2.9K 0t5C6f-0000c8-02 <alice@x.example>
";
    let (m, ev, errors) = parse(text);
    let at: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(at, [1, 2, 4, 5, 6], "{errors:?}");
    assert!(errors.iter().all(|e| e.path == "mailq.txt"));
    assert_eq!(errors[2].what, "*** spool format error: size=1234 ***");
    assert!(
        errors[0]
            .to_string()
            .starts_with("mailq.txt:1: not a queue listing line: stray text")
    );
    // The message with the unreadable spool file is still in the queue.
    assert_eq!(m.len(), 1);
    assert_eq!(ev[0].line, 3);
}

#[test]
fn never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = " \t\n<>*0123456789.KMGsmhdwD-éx@";
    let chars: Vec<char> = alphabet.chars().collect();
    for _ in 0..2000 {
        let len = (next() % 80) as usize;
        let s: String = (0..len)
            .map(|_| chars[(next() % chars.len() as u64) as usize])
            .collect();
        let _ = parse(&s);
    }
    for s in [
        "99999999999999999999999w 1K 1hIAif-00H7J4-Lb <a>",
        "1w 99999999999999999999999999999G 1hIAif-00H7J4-Lb <a>",
        "1w 1e400K 1hIAif-00H7J4-Lb <a>",
        "1w ...K 1hIAif-00H7J4-Lb <a>",
        "1é 1K 1hIAif-00H7J4-Lb <a>",
        "1m 1K 1hIAif-00H7J4-Lb <",
        "1m 1K 1hIAif-00H7J4-Lb >",
        "1m 1K 1hIAif-00H7J4-Lb <>>",
        "1m 1K 1hIAif-00H7J4-Lb <> ()",
        "1m 1K 1hIAif-00H7J4-Lb *** frozen ***",
        "m 1K",
        "\u{0}",
    ] {
        let _ = parse(s);
    }
    let (m, _, _) = parse("1w 99999999999999999999999999999G 1hIAif-00H7J4-Lb <a>");
    assert!(m.is_empty(), "an absurd size is not a listing line");
}

#[test]
fn run_exim_bp_reports_a_missing_binary() {
    let mut out = Vec::new();
    let e = run_exim_bp(
        Path::new("/nonexistent/exim"),
        Timestamp::naive(0),
        &mut out,
    )
    .unwrap_err();
    assert_eq!(e.path, "/nonexistent/exim -bp");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/exim -bp:0: could not run: "),
        "{e}"
    );
}

#[test]
fn run_exim_bp_reports_a_failing_command() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("exim");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'exim: permission denied' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = run_exim_bp(&fake, Timestamp::naive(0), &mut Vec::new()).unwrap_err();
    assert!(e.what.contains("failed"), "{e}");
    assert!(e.what.ends_with(": exim: permission denied"), "{e}");
}

#[test]
fn real_exim_listing() {
    let Some(exim) = exim_binary() else {
        eprintln!("skipped: no Exim installed (set SPAMWARD_EXIM)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wrapper = private_exim(dir.path(), &exim);
    submit(
        &wrapper,
        "a@x.example",
        "r1@remote.example",
        "Subject: one\n\nbody\n",
    );
    submit(&wrapper, "", "r2@remote.example", "Subject: two\n\nbody\n");
    let mut out = Vec::new();
    let errors = run_exim_bp(&wrapper, Timestamp::naive(0), &mut out).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let mut msgs = messages_and_tally(&mut out);
    msgs.sort_by(|a, b| a.recipients.cmp(&b.recipients));
    assert_eq!(msgs.len(), 2, "{out:?}");
    assert_eq!(msgs[0].identity.sender.as_deref(), Some("a@x.example"));
    assert_eq!(msgs[0].recipients, ["r1@remote.example"]);
    assert!(msgs[1].bounce);
    assert_eq!(msgs[1].recipients, ["r2@remote.example"]);
    assert!(msgs.iter().all(|m| m.size.is_some() && !m.frozen));

    // Freeze one and the listing says so.
    let id = &msgs[0].message_id;
    let st = std::process::Command::new(&wrapper)
        .args(["-Mf", id])
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let mut out = Vec::new();
    run_exim_bp(&wrapper, Timestamp::naive(0), &mut out).unwrap();
    let frozen: Vec<bool> = out
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::QueuedMessage(q) if &q.message_id == id => Some(q.frozen),
            _ => None,
        })
        .collect();
    assert_eq!(frozen, [true]);
}
