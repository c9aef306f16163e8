use super::*;

fn source(path: &str, offset: u64) -> SourceRow {
    SourceRow {
        path: path.into(),
        dev: 2049,
        inode: 77,
        head: b"2024-05-01 10:00:00 ".to_vec(),
        offset,
        lines: offset / 80,
        unparsed: 1,
        parser: b"{}".to_vec(),
    }
}

fn finding(key: &str, updated_at: i64, json: &str) -> FindingRow {
    FindingRow {
        key: key.into(),
        rule: "relay-volume".into(),
        last_seen: Some(updated_at - 5),
        updated_at,
        json: json.into(),
    }
}

#[test]
fn a_checkpoint_round_trips_and_replaces_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.load_checkpoint().unwrap(), None, "a fresh file");
    let first = Checkpoint {
        at: 1_700_000_000,
        events: 10,
        sources: vec![source("/var/log/a", 800), source("/var/log/b", 80)],
        rule_states: vec![("r1".into(), vec![1, 2]), ("r2".into(), vec![3])],
        policy: b"policy".to_vec(),
    };
    store.checkpoint(&first, []).unwrap();
    assert_eq!(store.load_checkpoint().unwrap(), Some(first));
    assert_eq!(
        store.kept().unwrap(),
        Kept {
            rule_state_bytes: 3,
            policy_bytes: 6,
            parser_messages: 0
        }
    );
    let second = Checkpoint {
        at: 1_700_000_005,
        events: 20,
        sources: vec![source("/var/log/a", 1600)],
        rule_states: vec![("r1".into(), vec![9])],
        policy: Vec::new(),
    };
    store.checkpoint(&second, []).unwrap();
    assert_eq!(
        store.load_checkpoint().unwrap(),
        Some(second.clone()),
        "a dropped source and rule are gone"
    );
    // Kept without any close, as after a crash.
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.load_checkpoint().unwrap(), Some(second));
}

#[test]
fn a_finding_stored_again_replaces_its_row_and_since_filters_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.db")).unwrap();
    store
        .upsert_findings(&[finding("a", 100, "{\"count\":1}"), finding("b", 200, "{}")])
        .unwrap();
    store
        .upsert_findings(&[finding("a", 300, "{\"count\":2}")])
        .unwrap();
    let all = store.findings(None).unwrap();
    let keys: Vec<&str> = all.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"], "one row per key, newest first");
    assert_eq!(all[0].json, "{\"count\":2}");
    let recent = store.findings(Some(250)).unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(store.status().unwrap().findings, 2);
}

#[test]
fn a_reader_sees_what_the_running_writer_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut writer = Store::open(&path).unwrap();
    writer
        .set_rules(&[RuleRow {
            name: "open-relay".into(),
            version: "0.1.0".into(),
            hash: "ab".repeat(32),
            origin: "bundled".into(),
            status: "running".into(),
            reason: None,
            updated_at: 5,
        }])
        .unwrap();
    writer
        .checkpoint(
            &Checkpoint {
                at: 42,
                events: 7,
                sources: vec![source("/var/log/exim_mainlog", 160)],
                ..Checkpoint::default()
            },
            [],
        )
        .unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    let status = reader.status().unwrap();
    assert_eq!(status.checkpoint_at, Some(42));
    assert_eq!(status.events, 7);
    assert_eq!(status.rules[0].name, "open-relay");
    assert_eq!(status.sources[0].offset, 160);
    writer.upsert_findings(&[finding("k", 9, "{}")]).unwrap();
    assert_eq!(reader.findings(None).unwrap().len(), 1, "seen while open");
}

#[test]
fn files_that_are_not_ours_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("hello.db");
    fs_write(
        &text,
        b"hello, this is not a database at all, but long enough to look like a header",
    );
    let e = Store::open(&text).err().expect("refused").to_string();
    assert!(
        e.starts_with(&format!("state file {}:", text.display())),
        "{e}"
    );

    let newer = dir.path().join("newer.db");
    let conn = Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let e = Store::open(&newer).err().expect("refused").to_string();
    assert!(e.contains("schema 99; this one knows up to 2"), "{e}");
    let e = Store::open_read_only(&newer)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("newer spamward"), "{e}");

    let starting = dir.path().join("starting.db");
    drop(Connection::open(&starting).unwrap());
    let e = Store::open_read_only(&starting)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("not set up yet"), "{e}");

    let nowhere = dir.path().join("no/such/dir/state.db");
    let e = Store::open(&nowhere).err().expect("refused").to_string();
    assert!(e.contains("its directory does not exist"), "{e}");
    let e = Store::open_read_only(&dir.path().join("absent.db"))
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn reopening_keeps_the_schema_and_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path).unwrap();
    store.upsert_findings(&[finding("k", 1, "{}")]).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(store.findings(None).unwrap().len(), 1);
}

#[test]
fn a_file_from_before_the_journal_is_migrated_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO findings (key, rule, last_seen, updated_at, json) VALUES ('k', 'r', 1, 1, '{}')",
        [],
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.version().unwrap(), 2);
    assert_eq!(store.findings(None).unwrap().len(), 1);
    assert!(store.journal(10).unwrap().is_empty());
    assert_eq!(store.status().unwrap().actions_in_force, 0);
}

fn fs_write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn parser_messages_keep_only_the_changes_each_checkpoint_brings() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.db")).unwrap();
    let m = |id: &str, seq, info: Option<&str>| MessageRow {
        source: "/var/log/exim_mainlog".into(),
        id: id.into(),
        seq,
        info: info.map(str::to_owned),
    };
    store
        .checkpoint(
            &Checkpoint::default(),
            [m("b", 2, Some("B")), m("a", 1, Some("A"))],
        )
        .unwrap();
    store
        .checkpoint(
            &Checkpoint::default(),
            [m("a", 1, None), m("b", 2, Some("B2")), m("c", 3, Some("C"))],
        )
        .unwrap();
    let kept = store.parser_messages("/var/log/exim_mainlog").unwrap();
    assert_eq!(kept, [m("b", 2, Some("B2")), m("c", 3, Some("C"))]);
    assert_eq!(store.kept().unwrap().parser_messages, 2);
    assert!(store.parser_messages("/other").unwrap().is_empty());
}

fn journal_row(at: i64, decision: &str) -> JournalRow {
    JournalRow {
        id: 0,
        at,
        action_id: Some(1),
        rule: "compromised-account".into(),
        target: "mailbox a@x.example".into(),
        action: "hold-outgoing".into(),
        decision: decision.into(),
        json: format!("{{\"decision\":\"{decision}\"}}"),
    }
}

#[test]
fn the_journal_grows_while_the_actions_in_force_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.ledger().unwrap(), None);
    let action = ActionRow {
        id: 1,
        target: "mailbox a@x.example".into(),
        action: "hold-outgoing".into(),
        rule: "compromised-account".into(),
        dry_run: false,
        started_at: 100,
        expires_at: Some(3700),
        json: "{}".into(),
    };
    store
        .record_actions(
            &[journal_row(100, "ran")],
            std::slice::from_ref(&action),
            b"L1",
        )
        .unwrap();
    assert_eq!(store.status().unwrap().actions_in_force, 1);
    store
        .record_actions(&[journal_row(3700, "expired")], &[], b"L2")
        .unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    let journal = reader.journal(10).unwrap();
    assert_eq!(
        journal
            .iter()
            .map(|j| j.decision.as_str())
            .collect::<Vec<_>>(),
        ["ran", "expired"]
    );
    assert!(journal[0].id < journal[1].id);
    assert_eq!(
        reader.journal(1).unwrap()[0].decision,
        "expired",
        "the newest"
    );
    assert!(reader.actions().unwrap().is_empty());
    assert_eq!(reader.ledger().unwrap().as_deref(), Some(&b"L2"[..]));
    assert_eq!(reader.status().unwrap().actions_in_force, 0);
}

#[test]
fn the_journal_keeps_its_last_ninety_days() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("state.db")).unwrap();
    let day = 86_400;
    store
        .record_actions(
            &[journal_row(0, "ran"), journal_row(10 * day, "expired")],
            &[],
            b"L",
        )
        .unwrap();
    assert_eq!(store.journal(10).unwrap().len(), 2);
    store
        .record_actions(
            &[journal_row((JOURNAL_DAYS + 5) * day, "dry-run")],
            &[],
            b"L",
        )
        .unwrap();
    let kept: Vec<_> = store
        .journal(10)
        .unwrap()
        .into_iter()
        .map(|j| j.decision)
        .collect();
    assert_eq!(kept, ["expired", "dry-run"], "the entry 95 days older went");
}

#[test]
fn a_release_request_is_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("state.db")).unwrap();
    let id = store.request_release("a@x.example", "alice", 100).unwrap();
    assert_eq!(store.release_answer(id).unwrap(), None);
    let open = store.open_releases().unwrap();
    assert_eq!(
        open,
        [ReleaseRequest {
            id,
            selector: "a@x.example".into(),
            by: "alice".into()
        }]
    );
    store.answer_release(id, "released 1 action").unwrap();
    assert!(store.open_releases().unwrap().is_empty());
    assert_eq!(
        store.release_answer(id).unwrap().as_deref(),
        Some("released 1 action")
    );
    assert_eq!(store.release_answer(id + 1).unwrap(), None);
}
