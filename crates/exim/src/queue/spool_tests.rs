//! Tests of the spool `-H` reader: the CSM production captures, hand-made
//! files for every field Exim writes, a spool written by the real Exim, and
//! hostile input.

use super::*;
use crate::queue::messages_and_tally;
use spamward_model::EventKind;

/// The real-world corpus the repository carries (`tests/corpus/`).
fn corpus() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus"))
}

fn queued(ev: &Event) -> &QueuedMessage {
    match &ev.body {
        EventBody::QueuedMessage(q) => q,
        other => panic!("not a queued message: {other:?}"),
    }
}

fn header<'m>(m: &'m QueuedMessage, name: &str) -> Option<&'m str> {
    m.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Epoch the CSM fixtures were received at (2026-04-28).
const CSM_RECEIVED: i64 = 1_777_409_086;

struct Csm {
    file: &'static str,
    id: &'static str,
    sender: &'static str,
    script: Option<&'static str>,
    client_ip: Option<&'static str>,
    from: &'static str,
    recipient: &'static str,
}

const CSM: &[Csm] = &[
    Csm {
        file: "attack_naked_phpmailer.H",
        id: "1aaabbcccdddee02",
        sender: "exampleuser@cpanel.example.test",
        script: Some("hijacked.example.com/wp-content/plugins/x.php"),
        client_ip: Some("192.0.2.11"),
        from: "Naked <attacker@spoofed.example>",
        recipient: "target@example.org",
    },
    Csm {
        file: "attack_phpmailer_spoofed_from.H",
        id: "1aaabbcccdddee01",
        sender: "exampleuser@cpanel.example.test",
        script: Some("rentvsloan.example.com/wp-admin/admin-ajax.php"),
        client_ip: Some("192.0.2.10"),
        from: "Spoof <attacker@spoofed.example>",
        recipient: "info@example.com",
    },
    Csm {
        file: "legit_busy_contact_form.H",
        id: "1aaabbcccdddee07",
        sender: "exampleuser@cpanel.example.test",
        script: Some("example.com/wp-admin/admin-ajax.php"),
        client_ip: Some("192.0.2.15"),
        from: "Site <site@example.com>",
        recipient: "inquiries@example.com",
    },
    Csm {
        file: "legit_cpanel_system_mail.H",
        id: "1aaabbcccdddee05",
        sender: "exampleuser@cpanel.example.test",
        script: Some("cpanel.example.test/cpanel/notify.php"),
        client_ip: Some("192.0.2.14"),
        from: "cPanel <cPanel@example.com>",
        recipient: "exampleuser@example.com",
    },
    Csm {
        file: "legit_mailchimp_forwarder.H",
        id: "1aaabbcccdddee06",
        sender: "bounce@mc.example.org",
        script: None,
        client_ip: None,
        from: "Newsletter <news@mc.example.org>",
        recipient: "exampleuser@example.com",
    },
    Csm {
        file: "legit_phpmailer_account_domain.H",
        id: "1aaabbcccdddee08",
        sender: "exampleuser@cpanel.example.test",
        script: Some("addon.example.com/contact.php"),
        client_ip: Some("192.0.2.16"),
        from: "Mail <mail@addon.example.com>",
        recipient: "admin@example.com",
    },
    Csm {
        file: "legit_wc_order_notification.H",
        id: "1aaabbcccdddee03",
        sender: "exampleuser@cpanel.example.test",
        script: Some("shop.example.com/wp-content/plugins/woocommerce/wc-emails.php"),
        client_ip: Some("192.0.2.12"),
        from: "Shop <shop@example.com>",
        recipient: "customer@example.org",
    },
    Csm {
        file: "legit_wp_admin_notify.H",
        id: "1aaabbcccdddee04",
        sender: "exampleuser@cpanel.example.test",
        script: Some("blog.example.com/wp-includes/pluggable.php"),
        client_ip: Some("192.0.2.13"),
        from: "WordPress <wordpress@example.com>",
        recipient: "admin@example.com",
    },
    Csm {
        file: "sample_phpmailer.H",
        id: "1wHpIU-0000000G8Fo-1FA1",
        sender: "exampleuser@cpanel.example.test",
        script: Some("rentvsloan.example.com/wp-admin/admin-ajax.php"),
        client_ip: Some("192.0.2.10"),
        from: "Spoof <attacker@spoofed.example>",
        recipient: "info@example.com",
    },
];

#[test]
fn every_csm_capture_parses_with_its_identity() {
    let dir = corpus().join("peer/csm-php-relay");
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".H"))
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = CSM.iter().map(|c| c.file.to_owned()).collect();
    known.sort();
    assert_eq!(on_disk, known, "a capture was added or removed: update CSM");

    let now = Timestamp::naive(CSM_RECEIVED + 600);
    for c in CSM {
        let path = dir.join(c.file);
        let ev = read_header_file(&path, now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ev.kind(), EventKind::QueuedMessage);
        assert_eq!(ev.time, now, "{}", c.file);
        assert_eq!(&*ev.file, path.display().to_string());
        assert_eq!(ev.line, 0);
        let m = queued(&ev);
        let ctx = c.file;
        assert_eq!(m.message_id, c.id, "{ctx}");
        assert_eq!(m.identity.sender.as_deref(), Some(c.sender), "{ctx}");
        assert_eq!(
            m.identity.sender_domain.as_deref(),
            c.sender.rsplit_once('@').map(|(_, d)| d),
            "{ctx}"
        );
        assert_eq!(
            m.identity.local_user.as_deref(),
            Some("exampleuser"),
            "{ctx}"
        );
        assert_eq!(m.identity.owner.as_deref(), Some("exampleuser"), "{ctx}");
        assert_eq!(m.identity.script.as_deref(), c.script, "{ctx}");
        assert_eq!(m.identity.client_ip.as_deref(), c.client_ip, "{ctx}");
        assert_eq!(m.identity.auth_id, None, "{ctx}");
        assert_eq!(m.from_header.as_deref(), Some(c.from), "{ctx}");
        assert_eq!(m.recipients, [c.recipient], "{ctx}");
        assert_eq!(m.age_seconds, 600, "{ctx}");
        assert!(!m.frozen && !m.bounce, "{ctx}");
        assert_eq!(m.size, None, "no -D beside a .H fixture: {ctx}");
        assert!(m.subject.is_some(), "{ctx}");
        assert!(header(m, "X-Mailer").is_some(), "{ctx}");
        assert!(
            header(m, "Received").is_some_and(|r| r.starts_with("from ")),
            "{ctx}"
        );
        assert_eq!(
            header(m, "X-PHP-Script").is_some(),
            c.script.is_some(),
            "{ctx}"
        );
    }
}

#[test]
fn csm_attack_details() {
    let dir = corpus().join("peer/csm-php-relay");
    let now = Timestamp::naive(CSM_RECEIVED + 60);
    let ev = read_header_file(&dir.join("attack_phpmailer_spoofed_from.H"), now).unwrap();
    let m = queued(&ev);
    assert_eq!(m.subject.as_deref(), Some("New message from realvision"));
    assert_eq!(header(m, "Reply-To"), Some("attacker@gmail.example"));
    assert_eq!(
        header(m, "X-Mailer"),
        Some("PHPMailer 7.0.0 (https://github.com/PHPMailer/PHPMailer)")
    );
    assert_eq!(
        header(m, "X-PHP-Script"),
        Some("rentvsloan.example.com/wp-admin/admin-ajax.php for 192.0.2.10")
    );
    // Uninteresting headers are not carried.
    assert!(
        m.headers
            .iter()
            .all(|(n, _)| n != "Date" && n != "MIME-Version")
    );

    // Received before the snapshot? Age saturates at zero.
    let early = Timestamp::naive(CSM_RECEIVED - 10);
    let ev = read_header_file(&dir.join("attack_naked_phpmailer.H"), early).unwrap();
    assert_eq!(queued(&ev).age_seconds, 0);
}

/// A header line with the length Exim would write (text incl. newline).
fn h(flag: char, text: &str) -> String {
    format!("{:03}{flag} {text}", text.len())
}

/// A complete, self-consistent `-H` file.
fn handmade() -> String {
    let acl_value = "a\nXX"; // a newline, and text that would end the flags
    let mut s = String::new();
    s += "1hIAif-00H7J4-Lb-H\n";
    s += "webacct 1001 -1\n";
    s += "<Vani@Teletek-Intl.com>\n";
    s += "1700000000 2\n";
    s += "-received_time_usec .296607\n";
    s += "-ident webacct\n";
    s += "-received_protocol esmtpsa\n";
    s += &format!("-aclc _spamward {}\n{acl_value}\n", acl_value.len());
    s += "-aclm 0 3\nabc\n";
    s += "-body_linecount 18\n";
    s += "-auth_id vani@teletek-intl.com\n";
    s += "-auth_sender vani@teletek-intl.com\n";
    s += "-host_address 192.0.2.7.51234\n";
    s += "-host_name client.example\n";
    s += "-helo_name helo.example\n";
    s += "-interface_address 198.51.100.1.587\n";
    s += "-local\n";
    s += "-frozen 1700000100\n";
    s += "-manual_thaw\n";
    s += "-deliver_firsttime\n";
    s += "-spam_score 5.1\n";
    s += "-some_future_flag with a value\n";
    s += "XX\n";
    s += "3\n";
    s += "a@remote.example\n";
    // DSN format: `<address> <orcpt> <len>,<dsn flags> <errors_to> <len>,<pno>#3`.
    let orcpt = "rfc822;b@remote.example";
    let errors_to = "bounces@host.example";
    s += &format!(
        "b@remote.example {orcpt} {},0 {errors_to} {},-1#3\n",
        orcpt.len(),
        errors_to.len()
    );
    s += "c@remote.example  0,0  0,-1#3\n";
    s += "\n";
    s += &h(
        'P',
        "Received: from client.example ([192.0.2.7])\n\tby host.example with esmtpsa\n\tid 1hIAif-00H7J4-Lb;\n",
    );
    s += &h('P', "Received: from relay.example by client.example\n");
    s += &h('*', "Subject: rewritten away\n");
    s += &h(' ', "Subject: Invoice\n  overdue\n");
    // A continuation that looks like a header start is only right because
    // the length says so.
    s += &h(
        'F',
        "From: \"Accounts\"\n123  <accounts@teletek-intl.com>\n",
    );
    s += &h('R', "Reply-To: payme@elsewhere.example\n");
    s += &h(' ', "X-Mailer: Spammer 1.0\n");
    s += &h(' ', "X-Source: /opt/cpanel/ea-php81/root/usr/bin/php-cgi\n");
    s += &h(
        ' ',
        "X-Source-Args: php-cgi /home/webacct/public_html/x.php\n",
    );
    s += &h(' ', "X-Source-Dir: teletek-intl.com:/public_html\n");
    s += &h('I', "Message-Id: <abc@teletek-intl.com>\n");
    s += &h(
        ' ',
        "X-PHP-Script: teletek-intl.com/x.php for 203.0.113.9\n",
    );
    s
}

#[test]
fn handmade_file_every_field() {
    let now = Timestamp::naive(1_700_000_300);
    let ev = parse_header_bytes(handmade().as_bytes(), "spool/x-H", now, Some(4321)).unwrap();
    let m = queued(&ev);
    assert_eq!(m.message_id, "1hIAif-00H7J4-Lb");
    assert_eq!(m.identity.sender.as_deref(), Some("Vani@Teletek-Intl.com"));
    assert_eq!(
        m.identity.sender_domain.as_deref(),
        Some("teletek-intl.com")
    );
    assert_eq!(m.identity.local_user.as_deref(), Some("webacct"));
    assert_eq!(m.identity.owner.as_deref(), Some("webacct"));
    assert_eq!(m.identity.auth_id.as_deref(), Some("vani@teletek-intl.com"));
    assert_eq!(
        m.identity.client_ip.as_deref(),
        Some("192.0.2.7"),
        "the SMTP peer wins over the X-PHP-Script visitor"
    );
    assert_eq!(m.identity.client_host.as_deref(), Some("client.example"));
    assert_eq!(m.identity.script.as_deref(), Some("teletek-intl.com/x.php"));
    assert!(m.frozen);
    assert!(!m.bounce);
    assert_eq!(m.age_seconds, 300);
    assert_eq!(m.size, Some(4321));
    assert_eq!(
        m.recipients,
        ["a@remote.example", "b@remote.example", "c@remote.example"]
    );
    assert_eq!(m.subject.as_deref(), Some("Invoice overdue"));
    assert_eq!(
        m.from_header.as_deref(),
        Some("\"Accounts\" 123  <accounts@teletek-intl.com>")
    );
    let names: Vec<&str> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Received",
            "Reply-To",
            "X-Mailer",
            "X-Source",
            "X-Source-Args",
            "X-Source-Dir",
            "Message-ID",
            "X-PHP-Script"
        ]
    );
    assert_eq!(
        header(m, "Received"),
        Some("from client.example ([192.0.2.7]) by host.example with esmtpsa id 1hIAif-00H7J4-Lb;")
    );
    assert_eq!(header(m, "Message-ID"), Some("<abc@teletek-intl.com>"));
    assert_eq!(
        header(m, "X-Source-Dir"),
        Some("teletek-intl.com:/public_html")
    );

    let json = serde_json::to_value(&ev).unwrap();
    assert_eq!(json["kind"], "queued_message");
    assert_eq!(json["file"], "spool/x-H");
    assert_eq!(json["auth_id"], "vani@teletek-intl.com");
}

/// A minimal valid file with the given flag lines and recipient section.
fn minimal(login: &str, sender: &str, flags: &str, recipients: &str) -> String {
    format!(
        "1hIAif-00H7J4-Lb-H\n{login} 99 99\n<{sender}>\n1700000000 0\n{flags}{recipients}\n{}",
        h(' ', "Subject: x\n")
    )
}

fn parse(s: &str) -> Result<QueuedMessage, QueueError> {
    parse_header_bytes(s.as_bytes(), "f-H", Timestamp::naive(1_700_000_000), None)
        .map(|ev| queued(&ev).clone())
}

#[test]
fn ipv6_and_portless_host_addresses() {
    for (flag, ip) in [
        ("-host_address 2001:db8::7.2525\n", "2001:db8::7"),
        ("-host_address ::ffff:192.0.2.9.25\n", "::ffff:192.0.2.9"),
        ("-host_address [2001:db8::8].25\n", "2001:db8::8"),
        ("-host_address 192.0.2.7\n", "192.0.2.7"),
        ("-host_address 2001:db8::9\n", "2001:db8::9"),
        ("-host_address fe80::1%eth0.25\n", "fe80::1%eth0"),
    ] {
        let m = parse(&minimal("u", "a@b.example", flag, "XX\n1\nr@x.example\n")).unwrap();
        assert_eq!(m.identity.client_ip.as_deref(), Some(ip), "{flag}");
    }
}

#[test]
fn bounce_system_users_and_nobody() {
    let m = parse(&minimal("mailnull", "", "", "XX\n1\nr@x.example\n")).unwrap();
    assert!(m.bounce);
    assert_eq!(m.identity.sender, None);
    assert_eq!(m.identity.local_user.as_deref(), Some("mailnull"));
    assert_eq!(m.identity.owner, None);
    let m = parse(&minimal(
        "nobody",
        "nobody@host.example",
        "",
        "XX\n1\nr@x.example\n",
    ))
    .unwrap();
    assert_eq!(m.identity.local_user.as_deref(), Some("nobody"));
    assert_eq!(
        m.identity.owner, None,
        "nobody is the web server, not an owner"
    );
    // Logins may contain spaces; uid and gid are read from the end.
    let m = parse(&minimal(
        "odd login",
        "a@b.example",
        "",
        "XX\n1\nr@x.example\n",
    ))
    .unwrap();
    assert_eq!(m.identity.local_user.as_deref(), Some("odd login"));
}

#[test]
fn non_recipients_tree_removes_delivered_recipients() {
    // Pre-order: the root has a left subtree (`Y`) and a right one (`Y`).
    let tree = "YY b@x.example\nNN a@x.example\nNN C@X.example\n";
    let m = parse(&minimal(
        "u",
        "s@x.example",
        "",
        &format!("{tree}4\na@x.example\nb@x.example\nc@x.example\nd@x.example\n"),
    ))
    .unwrap();
    assert_eq!(m.recipients, ["d@x.example"]);
}

#[test]
fn old_recipient_formats() {
    let m = parse(&minimal(
        "u",
        "s@x.example",
        "",
        "XX\n4\na@x.example 3\nb@x.example 1,2,3\nc d@x.example\ne@x.example 2,1#1\n",
    ))
    .unwrap();
    assert_eq!(
        m.recipients,
        ["a@x.example", "b@x.example", "c d@x.example", "e@x.example"]
    );
}

#[test]
fn errors_name_file_and_line() {
    let cases: &[(&str, u64, &str)] = &[
        ("", 1, "empty file"),
        ("1hIAif-00H7J4-Lb-X\n", 1, "first line"),
        ("-H\n", 1, "first line"),
        ("id-H\n", 2, "file ends"),
        ("id-H\nuser\n", 2, "login"),
        ("id-H\nuser 1 1\nsender@x\n", 3, "sender"),
        ("id-H\nuser 1 1\n<s@x>\nsoon 0\n", 4, "received"),
        ("id-H\nuser 1 1\n<s@x>\n1 0\n-local\n", 6, "file ends"),
        (
            "id-H\nuser 1 1\n<s@x>\n1 0\n-aclc x 99\nab\n",
            5,
            "past the end",
        ),
        ("id-H\nuser 1 1\n<s@x>\n1 0\n-aclc x\nab\n", 5, "-acl"),
        (
            "id-H\nuser 1 1\n<s@x>\n1 0\nXX\nmany\n",
            6,
            "recipient count",
        ),
        (
            "id-H\nuser 1 1\n<s@x>\n1 0\nXX\n3\na@x\n",
            8,
            "after 1 of 3",
        ),
        (
            "id-H\nuser 1 1\n<s@x>\n1 0\nYN a@x\n1\nb@x\n",
            6,
            "tree node",
        ),
        (
            "id-H\nuser 1 1\n<s@x>\n1 0\nXX\n1\na@x\nnot blank\n",
            8,
            "blank line",
        ),
        (
            "id-H\nuser 1 1\n<s@x>\n1 0\nXX\n1\na@x\n",
            8,
            "before the headers",
        ),
        (
            "id-H\nuser 1 1\n<s@x>\n1 0\nXX\n1\na@x\n\nSubject: x\n",
            9,
            "header line",
        ),
    ];
    for (text, line, what) in cases {
        let e = parse(text).expect_err(text);
        assert_eq!(e.line, *line, "{text:?}: {e}");
        assert!(e.what.contains(what), "{text:?}: {e}");
        assert_eq!(e.path, "f-H");
        assert!(e.to_string().starts_with(&format!("f-H:{line}: ")), "{e}");
    }
}

#[test]
fn never_panics_on_truncation_corruption_or_binary() {
    let good = handmade().into_bytes();
    let now = Timestamp::naive(0);
    for cut in 0..good.len() {
        let _ = parse_header_bytes(&good[..cut], "t", now, None);
    }
    // Flip bytes one at a time, and feed pseudo-random binary.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] = (next() & 0xff) as u8;
        let _ = parse_header_bytes(&bad, "t", now, None);
    }
    for len in [1, 2, 7, 64, 4096] {
        let junk: Vec<u8> = (0..len).map(|_| (next() & 0xff) as u8).collect();
        let _ = parse_header_bytes(&junk, "t", now, None);
    }
    for text in [
        "\u{0}-H\n",
        "é-H\nü 1 1\n<é@ü>\n1 0\nXX\n1\né\n\n003é Subject: é\n",
        "id-H\nu 1 1\n<>\n1 0\nXX\n99999999999999999999\n",
        "id-H\nu 1 1\n<>\n1 0\nXX\n1\na@x ,#3\n\n",
        "id-H\nu 1 1\n<>\n1 0\nXX\n1\na@x 99,0 q 5,-1#3\n\n",
        "id-H\nu 1 1\n<>\n1 0\nXX\n1\n#3\n\n",
        "id-H\nu 1 1\n<>\n1 0\nXX\n1\n 1\n\n",
        "id-H\nu 1 1\n<>\n1 0\n-aclc x 18446744073709551615\n",
        "id-H\nu 1 1\n<>\n-9223372036854775808 0\nXX\n0\n\n",
        "id-H\nu 1 1\n<>\n1 0\nXX\n0\n\n99999999999999999999999  X: y\n",
        "id-H\nu 1 1\n<>\n1 0\nXX\n0\n\n000  X: y",
    ] {
        let _ = parse_header_bytes(text.as_bytes(), "t", Timestamp::naive(i64::MAX), None);
        let _ = parse_header_bytes(text.as_bytes(), "t", Timestamp::naive(i64::MIN), None);
    }
}

#[test]
fn invalid_utf8_is_replaced() {
    let text = b"id-H\nu 1 1\n<caf\xe9@x.example>\n1 0\nXX\n1\nr@x\n\n019  Subject: caf\xe9 ok\n";
    let ev = parse_header_bytes(text, "t", Timestamp::naive(1), None).unwrap();
    let m = queued(&ev);
    assert_eq!(m.identity.sender.as_deref(), Some("caf\u{FFFD}@x.example"));
    assert_eq!(m.subject.as_deref(), Some("caf\u{FFFD} ok"));
}

#[test]
fn spool_directory_split_and_flat_with_data_size_and_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    fs::create_dir_all(input.join("L")).unwrap();
    let good = handmade();
    let other = good.replace("1hIAif-00H7J4-Lb-H", "1hIAiL-00H7J4-Lc-H");
    fs::write(input.join("1hIAif-00H7J4-Lb-H"), &good).unwrap();
    fs::write(
        input.join("1hIAif-00H7J4-Lb-D"),
        b"1hIAif-00H7J4-Lb-D\nbody\n",
    )
    .unwrap();
    fs::write(input.join("L/1hIAiL-00H7J4-Lc-H"), &other).unwrap();
    fs::write(input.join("L/1hIAiL-00H7J4-Ld-H"), b"garbage\n").unwrap();
    fs::write(input.join("hdr.12345"), b"a temporary file Exim is writing").unwrap();
    fs::create_dir_all(dir.path().join("msglog")).unwrap();
    fs::write(dir.path().join("msglog/1hIAif-00H7J4-Lb"), b"log").unwrap();

    let now = Timestamp::naive(1_700_000_300);
    for given in [dir.path().to_path_buf(), input.clone()] {
        let mut out = Vec::new();
        let errors = read_spool_dir(&given, now, &mut out);
        let tally = out.last().map(|e| e.time);
        messages_and_tally(&mut out);
        assert_eq!(tally, Some(now), "the tally is at the snapshot's time");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let bad = input.join("L/1hIAiL-00H7J4-Ld-H");
        assert_eq!(errors[0].path, bad.display().to_string());
        assert_eq!(errors[0].line, 1);
        let ids: Vec<&str> = out.iter().map(|e| queued(e).message_id.as_str()).collect();
        assert_eq!(ids, ["1hIAif-00H7J4-Lb", "1hIAiL-00H7J4-Lc"]);
        assert_eq!(queued(&out[0]).size, Some(24), "size of the -D file");
        assert_eq!(queued(&out[1]).size, None, "no -D file");
        assert!(out.iter().all(|e| e.time == now));
    }

    let mut out = Vec::new();
    let errors = read_spool_dir(&dir.path().join("missing"), now, &mut out);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].what.contains("cannot list directory"),
        "{}",
        errors[0]
    );
    assert!(out.is_empty());
    let e = read_header_file(&dir.path().join("missing-H"), now).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.what.starts_with("cannot read"), "{e}");
}

/// Exim to test against: `SPAMWARD_EXIM`, else Debian's or the stock path.
pub(crate) fn exim_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPAMWARD_EXIM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/sbin/exim4", "/usr/sbin/exim"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A private Exim installation: a config whose spool is in `dir`, run as the
/// current user (Exim drops privilege for `-C` and then must own the
/// spool), and a wrapper script so callers can run plain `<exim> -bp`.
pub(crate) fn private_exim(dir: &Path, exim: &Path) -> PathBuf {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::metadata(dir).unwrap();
    let conf = dir.join("exim.conf");
    fs::write(
        &conf,
        format!(
            "spool_directory = {d}/spool\nlog_file_path = {d}/%slog\nprimary_hostname = host.example\n\
             exim_user = {u}\nexim_group = {g}\nnever_users =\nkeep_environment =\n\
             acl_not_smtp = acl_ns\nbegin acl\nacl_ns:\n  warn set acl_m_note = two\\nlines\n  accept\n\
             begin routers\nbegin transports\n",
            d = dir.display(),
            u = meta.uid(),
            g = meta.gid()
        ),
    )
    .unwrap();
    let wrapper = dir.join("exim");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} -C {} \"$@\"\n",
            exim.display(),
            conf.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// Queues a message with the private Exim (no routers: it stays queued).
pub(crate) fn submit(wrapper: &Path, sender: &str, rcpt: &str, message: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(wrapper)
        .args(["-odq", "-f", sender, rcpt])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "exim refused the message");
}

#[test]
fn spool_written_by_real_exim() {
    let Some(exim) = exim_binary() else {
        eprintln!("skipped: no Exim installed (set SPAMWARD_EXIM)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wrapper = private_exim(dir.path(), &exim);
    submit(
        &wrapper,
        "sender@x.example",
        "rcpt@remote.example",
        "From: Me <me@x.example>\nSubject: hello\nX-PHP-Script: a.example/x.php for 192.0.2.9\n\
         Received: from a\n\tby b\n\nbody\n",
    );
    let now = Timestamp::naive(i64::MAX / 2);
    let mut out = Vec::new();
    let errors = read_spool_dir(&dir.path().join("spool"), now, &mut out);
    assert!(errors.is_empty(), "{errors:?}");
    messages_and_tally(&mut out);
    assert_eq!(out.len(), 1);
    let m = queued(&out[0]);
    assert_eq!(m.identity.sender.as_deref(), Some("sender@x.example"));
    assert_eq!(m.recipients, ["rcpt@remote.example"]);
    assert_eq!(m.subject.as_deref(), Some("hello"));
    assert_eq!(m.from_header.as_deref(), Some("Me <me@x.example>"));
    assert_eq!(m.identity.script.as_deref(), Some("a.example/x.php"));
    assert_eq!(m.identity.client_ip.as_deref(), Some("192.0.2.9"));
    assert!(m.size.is_some_and(|s| s > 0));
    assert!(!m.frozen);
    // Exim's own Received: header comes first, folded over lines.
    let received = header(m, "Received").unwrap();
    assert!(
        received.starts_with("from ") && received.contains(" id "),
        "{received}"
    );
    assert!(header(m, "Message-ID").is_some());
}
