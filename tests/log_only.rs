//! End to end: each check finds its abuse in the log alone (issue 10 §2).
//!
//! A replay on a machine that is not the server has no `/etc/localdomains`,
//! no `/etc/valiases` and no maildirs: `spamward scan` runs here without
//! `--root`, on logs written in the forms a real Exim writes (the line
//! shapes are Exim's; the names and addresses are made up), and must still
//! name the abuse, and stay quiet on the look-alikes beside it.

mod common;

use std::fmt::Write as _;

use common::{assert_ok, clock, finding_keys, json_lines, key, spamward};

/// The findings `scan --json` makes of `log`, with no server state.
fn scan(log: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mainlog");
    std::fs::write(&path, log).unwrap();
    let out = spamward(
        &["scan", "--json", path.to_str().unwrap()],
        &dir.path().join("cache"),
    );
    assert_ok(&out);
    json_lines(&out)
}

/// `(rule, target kind, target value)` of the findings of one rule.
fn keys_of(findings: &[serde_json::Value], rule: &str) -> Vec<(String, String, String)> {
    finding_keys(findings)
        .into_iter()
        .filter(|(r, _, _)| r == rule)
        .collect()
}

/// A message id of the old format, unique for `n`.
fn msg_id(n: u32) -> String {
    format!("1a{n:04}-00{:04}-AB", n % 10_000)
}

// ---- open-relay and relay-volume: an open relay's traffic ---------------

/// Message `n` from an unauthenticated stranger at `ip`, delivered to a
/// remote host: what an open relay logs (Exim 4.96 forms, Debian routers).
fn relayed_for_stranger(log: &mut String, n: u32, at: u32, ip: &str) {
    let id = msg_id(n);
    let _ = writeln!(
        log,
        "{} {id} <= promo{n}@bulk.example H=(mail.bulk.example) [{ip}]:4{:04} I=[192.0.2.10]:25 P=esmtp S=2210 T=\"Cheap watches\" for t{n}@far{}.example",
        clock(at),
        n % 10_000,
        n % 40
    );
    let _ = writeln!(
        log,
        "{} {id} => t{n}@far{}.example R=dnslookup T=remote_smtp H=mx.far{}.example [198.51.100.{}] C=\"250 OK\"",
        clock(at),
        n % 40,
        n % 40,
        n % 200 + 1
    );
    let _ = writeln!(log, "{} {id} Completed", clock(at));
}

#[test]
fn an_open_relays_abuser_is_named_by_ip_by_open_relay_and_relay_volume() {
    // 300 messages in an hour relayed for one stranger: no login to count
    // them under, so relay-volume counts its IP; open-relay says it once.
    // A forward beside it (a local alias to a remote mailbox) is neither.
    let mut log = String::new();
    for n in 0..300 {
        relayed_for_stranger(&mut log, n, n * 10, "203.0.113.50");
    }
    let _ = writeln!(
        log,
        "{} 1b0001-000001-AB <= friend@far.example H=mx.far.example [198.51.100.9]:25000 P=esmtp S=900 for info@shop.example\n\
         {} 1b0001-000001-AB => owner@gmail.example <info@shop.example> R=dnslookup T=remote_smtp H=gmail-smtp-in.l.google.com [192.0.2.25] C=\"250 OK\"\n\
         {} 1b0001-000001-AB Completed",
        clock(50),
        clock(50),
        clock(50)
    );
    let findings = scan(&log);
    assert_eq!(
        keys_of(&findings, "open-relay"),
        [key("open-relay", "ip", "203.0.113.50")]
    );
    let volume = keys_of(&findings, "relay-volume");
    assert_eq!(volume, [key("relay-volume", "ip", "203.0.113.50")]);
    let critical = findings
        .iter()
        .find(|f| f["rule"] == "relay-volume")
        .unwrap();
    assert!(
        critical["summary"]
            .as_str()
            .unwrap()
            .starts_with("client 203.0.113.50 sent 250 emails"),
        "{critical}"
    );
}

// ---- queue-health: frozen bounces against the queue's size ---------------

/// An `exim -bp` listing of `normal` queued messages and `frozen_bounces`
/// frozen bounces, in the form Exim writes.
fn queue_listing(normal: u32, frozen_bounces: u32) -> String {
    let mut listing = String::new();
    for n in 0..normal {
        let _ = writeln!(
            listing,
            " 2h  3.1K {} <staff{}@shop.example>\n          client{n}@far.example\n",
            msg_id(n),
            n % 50
        );
    }
    for n in 0..frozen_bounces {
        let _ = writeln!(
            listing,
            "26h  4.2K {} <> *** frozen ***\n          forged{n}@victims.example\n",
            msg_id(5000 + n)
        );
    }
    listing
}

#[test]
fn a_small_queue_mostly_frozen_bounces_is_reported_a_big_one_with_a_few_is_not() {
    let small = scan(&queue_listing(20, 12));
    let queue = keys_of(&small, "queue-health");
    assert_eq!(
        queue,
        [key("queue-health", "setting", "exim:queue")],
        "{small:#?}"
    );
    let f = small.iter().find(|f| f["rule"] == "queue-health").unwrap();
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .starts_with("12 of the 32 messages in the queue are frozen bounces"),
        "{f}"
    );
    let big = scan(&queue_listing(400, 12));
    assert!(keys_of(&big, "queue-health").is_empty(), "{big:#?}");
}

// ---- default-address: backscatter and dictionary attacks ----------------

/// The findings of `default-address`.
fn default_address_findings(findings: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    findings
        .iter()
        .filter(|f| f["rule"] == "default-address")
        .collect()
}

/// A forged message `n` from `sender` (client 203.0.113.x) accepted for
/// `rcpt`, a user the server does not have; Exim fails it at routing
/// (`failure`: the text after the address, as cPanel or Debian write it,
/// `{sender}` standing for the sender),
/// returns it to the forged sender, and the bounce goes to the sender's
/// remote server. Lines in the forms a real Exim 4.96 wrote for the same
/// traffic, with cPanel's `mailnull`, `dkim_lookuphost` and `SMTP
/// connection outbound` line.
fn default_address_bounced_unknown_user(
    log: &mut String,
    n: u32,
    at: u32,
    rcpt: &str,
    sender: &str,
    failure: &str,
) {
    let (original, bounce) = (msg_id(n), msg_id(n + 5000));
    let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d);
    let ip = n % 250 + 1;
    let _ = writeln!(
        log,
        "{} {original} <= {sender} H=mx{n}.bulk.example [203.0.113.{ip}]:4{ip:04} I=[192.0.2.10]:25 P=esmtp S=1843 id={n}.x@bulk.example T=\"Re: your invoice\" for {rcpt}",
        clock(at)
    );
    let failure = failure.replace("{sender}", sender);
    let _ = writeln!(log, "{} {original} ** {rcpt} {failure}", clock(at));
    let _ = writeln!(
        log,
        "{} cwd=/var/spool/exim 7 args: /usr/sbin/exim -t -oem -oi -f <> -E{original}",
        clock(at)
    );
    let _ = writeln!(
        log,
        "{} {bounce} <= <> R={original} U=mailnull P=local S=2843 T=\"Mail delivery failed: returning message to sender\" from <> for {sender}",
        clock(at)
    );
    let _ = writeln!(log, "{} {original} Completed", clock(at));
    let _ = writeln!(
        log,
        "{} SMTP connection outbound {} {bounce} {domain} {sender}",
        clock(at + 1),
        1_714_557_600 + at + 1
    );
    let _ = writeln!(
        log,
        "{} {bounce} => {sender} R=dkim_lookuphost T=dkim_remote_smtp H=mx.{} [198.51.100.{ip}] X=TLS1.2:ECDHE-RSA-AES256-GCM-SHA384:256 CV=yes C=\"250 2.0.0 OK\"",
        clock(at + 1),
        sender.rsplit_once('@').map_or("", |(_, d)| d)
    );
    let _ = writeln!(log, "{} {bounce} Completed", clock(at + 1));
}

/// A client refused at RCPT for `rcpt`, a user the server does not have.
fn default_address_refused_rcpt(log: &mut String, at: u32, ip: &str, rcpt: &str, reason: &str) {
    let _ = writeln!(
        log,
        "{} H=({ip}) [{ip}]:{} I=[192.0.2.10]:25 F=<probe@harvest.example> rejected RCPT <{rcpt}>: {reason}",
        clock(at),
        40_000 + at
    );
}

#[test]
fn default_address_backscatter_names_the_domain() {
    // A spam run with forged senders at guessed names of blog.example: the
    // server accepts, fails them at routing, and bounces each to its
    // forged sender.
    let mut log = String::new();
    let failures = [
        "R=virtual_aliases: No Such User Here",
        "F=<{sender}>: Unrouteable address",
    ];
    for n in 0..15 {
        default_address_bounced_unknown_user(
            &mut log,
            n,
            n * 20,
            &format!("guess{n}@blog.example"),
            &format!("victim{n}@forged{}.example", n % 3),
            failures[n as usize % 2],
        );
    }
    let findings = scan(&log);
    assert_eq!(
        keys_of(&findings, "default-address"),
        vec![key("default-address", "domain", "blog.example")],
        "{findings:#?}"
    );
    let f = default_address_findings(&findings)[0];
    assert_eq!(f["severity"], "warning", "{f:#}");
    assert_eq!(f["evidence"]["pattern"], "backscatter", "{f:#}");
    assert_eq!(f["evidence"]["bounces_sent"], "10", "{f:#}");
    assert_eq!(f["evidence"]["remote_senders"], "10", "{f:#}");
    assert_eq!(f["evidence"]["unknown_recipients"], "10", "{f:#}");
    assert!(
        f["evidence"]["sample_recipient"]
            .as_str()
            .unwrap()
            .ends_with("@blog.example"),
        "{f:#}"
    );
    assert!(
        f["summary"].as_str().unwrap().contains("backscatter"),
        "{f:#}"
    );
}

#[test]
fn default_address_dictionary_attack_is_an_attack_not_backscatter() {
    // Guessed names of shop.example from five clients, every one refused
    // at RCPT (cPanel's `:fail:` text and Debian's), nothing bounced.
    let mut log = String::new();
    let names = ["admin", "info", "sales", "billing", "office", "hr"];
    for n in 0..36u32 {
        let reason = if n % 2 == 0 {
            "No Such User Here"
        } else {
            "Unknown user"
        };
        default_address_refused_rcpt(
            &mut log,
            n * 7,
            &format!("198.51.100.{}", n % 5 + 20),
            &format!("{}{}@shop.example", names[n as usize % 6], n / 6),
            reason,
        );
    }
    let findings = scan(&log);
    assert_eq!(
        keys_of(&findings, "default-address"),
        vec![key("default-address", "domain", "shop.example")],
        "{findings:#?}"
    );
    let f = default_address_findings(&findings)[0];
    assert_eq!(f["evidence"]["pattern"], "dictionary-attack", "{f:#}");
    assert_eq!(f["severity"], "info", "{f:#}");
    assert_eq!(f["evidence"]["clients"], "5", "{f:#}");
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("dictionary attack on shop.example"),
        "{summary}"
    );
    assert!(!summary.contains("backscatter"), "{summary}");
}

#[test]
fn default_address_a_few_unknown_user_failures_are_quiet() {
    // People mistype: three messages for absent users in an hour, each
    // returned to its (real) sender, and two refused at RCPT.
    let mut log = String::new();
    for n in 0..3 {
        default_address_bounced_unknown_user(
            &mut log,
            n,
            n * 900,
            &format!("jonh.smith{n}@blog.example"),
            &format!("customer{n}@mail.example"),
            "R=virtual_aliases: No Such User Here",
        );
    }
    default_address_refused_rcpt(
        &mut log,
        100,
        "198.51.100.9",
        "inf0@shop.example",
        "No Such User Here",
    );
    default_address_refused_rcpt(
        &mut log,
        200,
        "198.51.100.9",
        "sals@shop.example",
        "No Such User Here",
    );
    let findings = scan(&log);
    assert!(
        keys_of(&findings, "default-address").is_empty(),
        "{findings:#?}"
    );
}

// ---- bounce-bloat: a mailbox the server reports full --------------------

/// Message `n` from `sender`, a remote server's client, accepted at `at`
/// for `rcpt`, a mailbox of this server; then its delivery attempt at
/// `at`: `marker` (`==` deferred, `**` failed) and what Exim writes after
/// the address.
fn bounce_refused(
    log: &mut String,
    n: u32,
    at: u32,
    sender: &str,
    rcpt: &str,
    attempt: (&str, &str),
) {
    let id = msg_id(n);
    let _ = writeln!(
        log,
        "{} {id} <= {sender} H=mx.far.example [198.51.100.7]:4{n:04} I=[192.0.2.10]:25 P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no S=4312 id={n}.m@far.example T=\"Order {n}\" for {rcpt}",
        clock(at)
    );
    let (marker, rest) = attempt;
    let _ = writeln!(log, "{} {id} {marker} {rcpt} {rest}", clock(at));
}

#[test]
fn bounce_bloat_names_a_mailbox_the_server_reports_full() {
    // Exim's appendfile over a maildir quota defers, retries at the next
    // queue run, and cPanel ("Bounce email for users over quota") fails the
    // next message and returns it to its sender.
    let jane = "jane@shop.example";
    let full = "R=virtual_user T=virtual_userdelivery defer (-22): mailbox is full (MTA-imposed quota exceeded while writing to /home/shop/mail/shop.example/jane/new/1714557600.M1P2.host1)";
    let mut log = String::new();
    bounce_refused(&mut log, 1, 0, "ann@far.example", jane, ("==", full));
    bounce_refused(&mut log, 2, 300, "ben@far.example", jane, ("==", full));
    let _ = writeln!(log, "{} {} == {jane} {full}", clock(900), msg_id(1));
    bounce_refused(
        &mut log,
        3,
        1200,
        "cat@far.example",
        jane,
        (
            "**",
            "F=<cat@far.example> R=virtual_user T=virtual_userdelivery: Mailbox quota exceeded",
        ),
    );
    let _ = writeln!(
        log,
        "{} {} <= <> R={} U=mailnull P=local S=5312 T=\"Mail delivery failed: returning message to sender\" from <> for cat@far.example",
        clock(1200),
        msg_id(5003),
        msg_id(3)
    );
    let _ = writeln!(log, "{} {} Completed", clock(1200), msg_id(3));
    // Another mailbox refused once, by Dovecot over LMTP: a one-off.
    bounce_refused(
        &mut log,
        4,
        1800,
        "dan@far.example",
        "bob@shop.example",
        (
            "==",
            "R=virtual_user T=dovecot_virtual_delivery defer (-46): LMTP error after end of data: 452 4.2.2 <bob@shop.example> Quota exceeded (mailbox for user is full)",
        ),
    );
    let findings = scan(&log);
    assert_eq!(
        keys_of(&findings, "bounce-bloat"),
        vec![key("bounce-bloat", "mailbox", jane)],
        "{findings:#?}"
    );
    let f = findings
        .iter()
        .find(|f| f["rule"] == "bounce-bloat")
        .unwrap();
    assert_eq!(f["severity"], "critical", "a bounce went back: {f:#}");
    assert_eq!(f["evidence"]["refused"], "3", "{f:#}");
    assert_eq!(f["evidence"]["senders"], "3", "{f:#}");
    assert_eq!(f["evidence"]["bounced"], "1", "{f:#}");
    assert!(
        f["evidence"]["fix"]
            .as_str()
            .unwrap()
            .starts_with("Empty or enlarge the mailbox jane@shop.example"),
        "{f:#}"
    );
}
