//! Peer suite: fail2ban's annotated Exim logs. Every log line preceded by a
//! `# failJSON: {... "match": true ...}` annotation must give an event from
//! `spamward events` whose `client_ip` is the annotation's `host` and whose
//! `time` is its `time` (when it gives one).

mod common;

use std::collections::HashMap;

use common::{assert_ok, corpus, json_lines, spamward};

fn check(file: &str) -> usize {
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
    checked
}

#[test]
fn fail2ban_exim_match_lines_give_host_and_time() {
    assert_eq!(check("exim"), 48);
}

#[test]
fn fail2ban_exim_spam_match_lines_give_host_and_time() {
    assert_eq!(check("exim-spam"), 8);
}
