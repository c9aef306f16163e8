//! Peer suite: fail2ban's annotated Exim logs. Every log line preceded by a
//! `# failJSON: {... "match": true ...}` annotation must give an event from
//! `spamward events` whose `client_ip` is the annotation's `host` and whose
//! `time` is its `time` (when it gives one). One kind of line differs on
//! purpose: fail2ban's aggressive mode bans a host whose reverse lookup
//! failed (`no host name found for IP address`, `no IP address found for
//! host`), but Exim refused nothing,
//! so spamward makes no rejection of it; such lines must give no event.

mod common;

use std::collections::HashMap;

use common::{assert_ok, corpus, json_lines, spamward};

/// The annotated match lines of `file`: those that gave the host and time,
/// and the reverse-lookup notes that rightly gave nothing.
fn check(file: &str) -> (usize, usize) {
    let path = corpus().join("peer/fail2ban").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = spamward(&["events", path.to_str().unwrap()], cache.path());
    assert_ok(&out);
    let mut by_line: HashMap<u64, Vec<serde_json::Value>> = HashMap::new();
    for e in json_lines(&out) {
        by_line
            .entry(e["line"].as_u64().unwrap())
            .or_default()
            .push(e);
    }

    let lines: Vec<&str> = text.lines().collect();
    let mut checked = 0;
    let mut lookups = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(json) = line.trim_start().strip_prefix("# failJSON:") else {
            continue;
        };
        let ann: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        if ann["match"] != true {
            continue;
        }
        // The annotated log line is the next line that is not a comment.
        let (n, log_line) = lines[i + 1..]
            .iter()
            .enumerate()
            .map(|(k, l)| (i + 2 + k, *l))
            .find(|(_, l)| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .unwrap();
        if log_line.contains("no host name found for IP address")
            || log_line.contains("no IP address found for host")
        {
            assert!(
                !by_line.contains_key(&(n as u64)),
                "{file}:{n}: a failed reverse lookup is no rejection: {log_line}"
            );
            lookups += 1;
            continue;
        }
        let events = by_line
            .get(&(n as u64))
            .unwrap_or_else(|| panic!("{file}:{n}: no event for {log_line}"));
        let host = ann["host"].as_str().unwrap();
        let hit = events
            .iter()
            .any(|e| e["client_ip"] == host && ann.get("time").is_none_or(|t| e["time"] == *t));
        assert!(
            hit,
            "{file}:{n}: want host {host} time {} in {events:?}\n  {log_line}",
            ann["time"]
        );
        checked += 1;
    }
    (checked, lookups)
}

#[test]
fn fail2ban_exim_match_lines_give_host_and_time() {
    let (checked, lookups) = check("exim");
    assert_eq!(checked + lookups, 48);
    assert!(lookups >= 1, "the reverse-lookup case is in the suite");
}

#[test]
fn fail2ban_exim_spam_match_lines_give_host_and_time() {
    assert_eq!(check("exim-spam"), (8, 0));
}
