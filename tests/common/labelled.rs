//! Labelled scenarios: logs a real Exim wrote, with the findings a scan of
//! them must give and the targets it must leave alone
//! (`tests/scenarios/<name>/expect.toml`, read here once for every test
//! that checks a log against it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{assert_ok, finding_keys, json_lines, spamward, workspace};

/// What a scenario's log must give.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Findings the scan must make.
    #[serde(default, rename = "finding")]
    pub findings: Vec<Expected>,
    /// Targets no finding may name but those listed in `findings`.
    #[serde(default, rename = "silent")]
    pub silences: Vec<Silent>,
}

/// One expected finding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub rule: String,
    pub kind: String,
    pub value: String,
    /// What in the log makes it (for the reader; not checked).
    pub why: String,
}

/// One target that must stay unnamed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silent {
    pub kind: String,
    pub value: String,
    /// The look-alike it is (for the reader; not checked).
    pub why: String,
}

/// The folder of scenario `name`.
pub fn dir(name: &str) -> PathBuf {
    workspace().join("tests/scenarios").join(name)
}

/// The expectations of scenario `name`, with `{root}` in values replaced
/// by `root` (the directory the run's paths start with).
pub fn expectations(name: &str, root: &Path) -> Expectations {
    let path = dir(name).join("expect.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("{root}", root.to_str().unwrap());
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Scans `log` with scenario `name`'s configuration and no server state
/// (the log alone), and checks every expected finding and silence. The
/// panic message lists everything that was wrong at once.
pub fn check(name: &str, log: &Path, root: &Path) {
    let want = expectations(name, root);
    let cache = tempfile::tempdir().unwrap();
    let config = dir(name).join("spamward.toml");
    let out = spamward(
        &[
            "scan",
            "--json",
            "--config",
            config.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        cache.path(),
    );
    assert_ok(&out);
    let found: BTreeSet<(String, String, String)> =
        finding_keys(&json_lines(&out)).into_iter().collect();
    let mut wrong = Vec::new();
    for e in &want.findings {
        let key = (e.rule.clone(), e.kind.clone(), e.value.clone());
        if !found.contains(&key) {
            wrong.push(format!("missing: {key:?} ({})", e.why));
        }
    }
    for s in &want.silences {
        for (rule, kind, value) in &found {
            let expected = want
                .findings
                .iter()
                .any(|e| &e.rule == rule && &e.kind == kind && &e.value == value);
            if kind == &s.kind && value == &s.value && !expected {
                wrong.push(format!(
                    "not silent: {rule} named {kind} {value} ({})",
                    s.why
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} on {}:\n  {}\nall findings: {found:#?}",
        name,
        log.display(),
        wrong.join("\n  ")
    );
}
