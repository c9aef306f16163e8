//! What a checkpoint saves and how it is put back: each log's position,
//! every rule's host state and the policy's open findings, all from one
//! moment — the rules have judged every line before the saved offsets and
//! none after.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use spamward_pipeline::Saved;
use spamward_pipeline::policy::Finding;
use spamward_state::{Checkpoint, FindingRow, SourceRow};

/// Wall-clock seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The checkpoint of `sources` read to their rows, `pipeline` saved at the
/// same moment, after `events` events.
pub fn build(sources: Vec<SourceRow>, pipeline: Saved, events: u64) -> Checkpoint {
    Checkpoint {
        at: now(),
        events,
        sources,
        rule_states: pipeline.rule_states.into_iter().collect(),
        policy: pipeline.policy.unwrap_or_default(),
    }
}

/// What the pipeline resumes from.
pub fn pipeline_saved(cp: &Checkpoint) -> Saved {
    Saved {
        rule_states: cp.rule_states.iter().cloned().collect::<BTreeMap<_, _>>(),
        policy: (!cp.policy.is_empty()).then(|| cp.policy.clone()),
    }
}

/// A finding as the store keeps it: one row per finding, keyed so that
/// storing it again after a replay replaces it rather than adding one.
pub fn finding_row(f: &Finding) -> FindingRow {
    let first = f
        .first_seen
        .map_or_else(|| "-".to_owned(), |t| t.seconds.to_string());
    FindingRow {
        key: format!(
            "{}|{}|{}|{}|{first}",
            f.rule,
            f.target.kind(),
            f.target.value(),
            f.action
        ),
        rule: f.rule.clone(),
        last_seen: f.last_seen.map(|t| t.seconds),
        updated_at: now(),
        json: serde_json::to_string(f).expect("a finding always encodes"),
    }
}
