//! The parser's memory, saved with a daemon's checkpoint and restored at its
//! next start, so the lines it reads again after a crash join to the
//! arrivals before them exactly as they did.
//!
//! Most of it is small and saved whole (events held for a join, recent
//! `cwd=` lines, the clock). The senders of up to half a million messages
//! are not: each save hands over only the messages remembered, changed or
//! forgotten since the last, for the caller to keep beside the checkpoint.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use spamward_model::{Identity, LocalClock, LocalZone, SavedEvent};

use super::{Cwd, EximLogParser, Held, MsgInfo, MsgKey, WeakClaim, message_key};

/// One message's sender, as the parser remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedMessage {
    /// The Exim message id.
    pub id: String,
    /// When it was first seen, counted in messages (the order in which the
    /// parser forgets).
    pub seq: u64,
    /// The sender and whether the message is frozen, as JSON; `None` once
    /// the parser forgot the message.
    pub info: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'static"))]
struct Core {
    lines: u64,
    clock: (Option<(i64, i32)>, Option<i64>),
    now: i64,
    last_line: Option<i64>,
    held: Vec<SavedHeld>,
    waiting: usize,
    cwd_by_pid: Vec<(u32, String, i64)>,
    pending_cwds: Vec<(String, i64)>,
    seq: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'static"))]
struct SavedHeld {
    event: SavedEvent,
    wait: Option<String>,
    deadline: u64,
    claim: Option<(String, u64)>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'static"))]
struct SavedInfo {
    identity: Identity,
    frozen: bool,
}

fn id(key: &MsgKey) -> String {
    String::from_utf8_lossy(&key.bytes[..usize::from(key.len)]).into_owned()
}

fn key(id: &str) -> Result<MsgKey, String> {
    message_key(id).ok_or_else(|| format!("{id:?} is not an Exim message id"))
}

/// Reads JSON into owned values (no string borrowed from `bytes`).
fn owned<T: Deserialize<'static>>(bytes: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_reader(bytes);
    T::deserialize(&mut de).map_err(|e| e.to_string())
}

impl EximLogParser {
    /// The small part of the parser's memory, whole: everything but the
    /// messages' senders (those are saved as changes, with
    /// [`EximLogParser::drain_changed`]).
    pub fn save_core(&self) -> Vec<u8> {
        let core = Core {
            lines: self.lines,
            clock: self.clock.memory(),
            now: self.now,
            last_line: self.last_line,
            held: self
                .held
                .iter()
                .map(|h| SavedHeld {
                    event: SavedEvent::from(&h.event),
                    wait: h.wait.as_ref().map(id),
                    deadline: h.deadline,
                    claim: h.claim.map(|c| (id(&c.key), c.until_line)),
                })
                .collect(),
            waiting: self.waiting,
            cwd_by_pid: self
                .cwd_by_pid
                .iter()
                .map(|(pid, c)| (*pid, c.path.clone(), c.time))
                .collect(),
            pending_cwds: self
                .pending_cwds
                .iter()
                .map(|c| (c.path.clone(), c.time))
                .collect(),
            seq: self.seq,
        };
        serde_json::to_vec(&core).expect("the parser's state always encodes")
    }

    /// The messages remembered, changed or forgotten since the last drain,
    /// one at a time: after a backlog they can be half a million, which a
    /// caller writes out as they come rather than hold all at once.
    pub fn drain_changed(&mut self) -> impl Iterator<Item = SavedMessage> + '_ {
        let messages = &mut self.messages;
        self.changed.drain().map(move |k| {
            let info = messages.get_mut(&k).map(|i| {
                i.saved = true;
                &*i
            });
            SavedMessage {
                id: id(&k),
                seq: info.map_or(0, |i| i.seq),
                info: info.map(|i| {
                    serde_json::to_string(&SavedInfo {
                        identity: i.identity.clone(),
                        frozen: i.frozen,
                    })
                    .expect("an identity always encodes")
                }),
            }
        })
    }

    /// Marks every message remembered as changed, so the next drain hands
    /// them all over: the changes drained last were not saved.
    pub fn mark_all_changed(&mut self) {
        self.changed.extend(self.messages.keys().copied());
    }

    /// A parser for a log written in `zone` that remembers what was saved:
    /// `core` from the last [`EximLogParser::save_core`], and every message
    /// kept from all the drains (the latest of each, forgotten ones left
    /// out).
    pub fn restore(
        zone: LocalZone,
        core: &[u8],
        messages: impl IntoIterator<Item = SavedMessage>,
    ) -> Result<Self, String> {
        let core: Core = owned(core)?;
        let mut parser = EximLogParser {
            lines: core.lines,
            clock: LocalClock::remembering(zone, core.clock),
            now: core.now,
            last_line: core.last_line,
            waiting: core.waiting,
            seq: core.seq,
            tracking: true,
            ..EximLogParser::default()
        };
        for h in core.held {
            parser.held.push_back(Held {
                event: h.event.into(),
                wait: h.wait.as_deref().map(key).transpose()?,
                deadline: h.deadline,
                claim: match h.claim {
                    Some((k, until_line)) => Some(WeakClaim {
                        key: key(&k)?,
                        until_line,
                    }),
                    None => None,
                },
            });
        }
        parser.cwd_by_pid = core
            .cwd_by_pid
            .into_iter()
            .map(|(pid, path, time)| (pid, Cwd { path, time }))
            .collect();
        parser.pending_cwds = core
            .pending_cwds
            .into_iter()
            .map(|(path, time)| Cwd { path, time })
            .collect::<VecDeque<_>>();
        let mut kept: Vec<(u64, MsgKey, MsgInfo)> = Vec::new();
        for m in messages {
            let Some(info) = m.info else { continue };
            let saved: SavedInfo = owned(info.as_bytes())?;
            kept.push((
                m.seq,
                key(&m.id)?,
                MsgInfo {
                    identity: saved.identity,
                    frozen: saved.frozen,
                    seq: m.seq,
                    saved: true,
                },
            ));
        }
        kept.sort_by_key(|(seq, _, _)| *seq);
        for (_, k, info) in kept {
            parser.order.push_back(k);
            parser.messages.insert(k, info);
        }
        Ok(parser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_model::{Event, Origin};

    /// Feeds `lines` to `parser`, numbering them from `first`.
    fn feed(parser: &mut EximLogParser, lines: &[&str], first: u64) -> Vec<Event> {
        let mut out = Vec::new();
        for (n, line) in (first..).zip(lines) {
            let origin = Origin {
                file: "mainlog".into(),
                line: n,
            };
            parser.push_line(line, &origin, &mut out);
        }
        out
    }

    #[test]
    fn a_restored_parser_joins_later_lines_as_the_one_saved_would_have() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/logs/mainlog-sample"
        ))
        .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut whole = EximLogParser::new();
        let mut all = feed(&mut whole, &lines, 1);
        whole.finish(&mut all);

        for cut in [1, 17, 1000, 2500, lines.len() - 1] {
            let mut first = EximLogParser::new().tracking_changes();
            let mut events = feed(&mut first, &lines[..cut], 1);
            // Two saves: messages carried by the first, changes by the second.
            let early: Vec<SavedMessage> = first.drain_changed().collect();
            let late: Vec<SavedMessage> = first.drain_changed().collect();
            assert!(late.is_empty(), "nothing changed between saves");
            let mut resumed = EximLogParser::restore(
                LocalZone::utc(),
                &first.save_core(),
                early.into_iter().chain(late),
            )
            .unwrap();
            events.extend(feed(&mut resumed, &lines[cut..], cut as u64 + 1));
            resumed.finish(&mut events);
            assert_eq!(events, all, "cut at line {cut}");
        }
        assert!(EximLogParser::restore(LocalZone::utc(), b"{", []).is_err());
    }

    #[test]
    fn a_completed_message_is_forgotten_in_the_next_save_too() {
        let mut p = EximLogParser::new().tracking_changes();
        feed(
            &mut p,
            &[
                "2024-05-01 10:00:00 1kHR5j-2tdk01-01 <= a@b.example H=(x) [192.0.2.1] P=esmtpa A=login:a@b.example S=100",
                "2024-05-01 10:00:01 1kHR5j-2tdk01-01 => c@d.example R=r T=t",
            ],
            1,
        );
        let saved: Vec<SavedMessage> = p.drain_changed().collect();
        assert!(saved.iter().any(|m| m.info.is_some()), "{saved:?}");
        feed(
            &mut p,
            &["2024-05-01 10:00:02 1kHR5j-2tdk01-01 Completed"],
            3,
        );
        let saved: Vec<SavedMessage> = p.drain_changed().collect();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].info, None, "forgotten");

        // A save that failed: the next drain hands over every message.
        feed(
            &mut p,
            &[
                "2024-05-01 10:00:03 1kHR5k-2tdk01-02 <= e@f.example H=(x) [192.0.2.1] P=esmtp S=100",
            ],
            4,
        );
        assert_eq!(p.drain_changed().count(), 1);
        assert_eq!(p.drain_changed().count(), 0);
        p.mark_all_changed();
        let again: Vec<SavedMessage> = p.drain_changed().collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, "1kHR5k-2tdk01-02");
        assert!(again[0].info.is_some());
    }

    #[test]
    fn a_message_gone_before_any_save_leaves_nothing_to_save() {
        let arrival = |id: &str| {
            format!("2024-05-01 10:00:00 {id} <= a@b.example H=(x) [192.0.2.1] P=esmtp S=100")
        };
        let completed = |id: &str| format!("2024-05-01 10:00:01 {id} Completed");
        let mut p = EximLogParser::new().tracking_changes();
        let a = "1kHR5j-2tdk01-01";
        let b = "1kHR5k-2tdk01-02";
        feed(&mut p, &[&arrival(a), &completed(a), &arrival(b)], 1);
        let saved: Vec<SavedMessage> = p.drain_changed().collect();
        assert_eq!(saved.len(), 1, "{saved:?}");
        assert_eq!(saved[0].id, b);
        feed(&mut p, &[&completed(b)], 4);
        let saved: Vec<SavedMessage> = p.drain_changed().collect();
        assert_eq!(
            (saved.len(), saved[0].info.as_ref()),
            (1, None),
            "saved, so its end too"
        );

        // A replay saves nothing and keeps no list of changes, and the
        // order it forgets in holds about what it remembers, not every
        // message it ever saw.
        let mut replay = EximLogParser::new();
        for i in 0..20_000u32 {
            let id = format!("1kHR{:02}-{:06}-01", i % 60, i);
            feed(
                &mut replay,
                &[&arrival(&id), &completed(&id)],
                2 * u64::from(i) + 1,
            );
        }
        assert_eq!(replay.drain_changed().count(), 0);
        assert!(replay.changed.is_empty());
        assert!(
            replay.order.len() <= 2 * replay.messages.len() + 1025,
            "{}",
            replay.order.len()
        );
    }
}
