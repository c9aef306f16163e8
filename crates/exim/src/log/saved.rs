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

/// What [`EximLogParser::save`] hands over.
#[derive(Debug, Clone, PartialEq)]
pub struct ParserState {
    /// Everything but the messages' senders, as bytes.
    pub core: Vec<u8>,
    /// The messages remembered, changed or forgotten since the last save.
    pub messages: Vec<SavedMessage>,
}

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
    /// The parser's memory as it is now: the small part whole, the senders
    /// of the messages changed since the last save (see [`ParserState`]).
    pub fn save(&mut self) -> ParserState {
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
        let messages = self
            .changed
            .drain()
            .map(|k| {
                let info = self.messages.get(&k);
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
            .collect();
        ParserState {
            core: serde_json::to_vec(&core).expect("the parser's state always encodes"),
            messages,
        }
    }

    /// A parser for a log written in `zone` that remembers what a save
    /// handed over: `core` from the last [`ParserState`], and every message
    /// kept from all the saves (the latest of each, forgotten ones left
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
            let mut first = EximLogParser::new();
            let mut events = feed(&mut first, &lines[..cut], 1);
            // Two saves: messages carried by the first, changes by the second.
            let early = first.save();
            let late = first.save();
            assert!(late.messages.is_empty(), "nothing changed between saves");
            let mut resumed = EximLogParser::restore(
                LocalZone::utc(),
                &late.core,
                early.messages.into_iter().chain(late.messages),
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
        let mut p = EximLogParser::new();
        feed(
            &mut p,
            &[
                "2024-05-01 10:00:00 1kHR5j-2tdk01-01 <= a@b.example H=(x) [192.0.2.1] P=esmtpa A=login:a@b.example S=100",
                "2024-05-01 10:00:01 1kHR5j-2tdk01-01 => c@d.example R=r T=t",
            ],
            1,
        );
        let saved = p.save();
        assert!(saved.messages.iter().any(|m| m.info.is_some()), "{saved:?}");
        feed(
            &mut p,
            &["2024-05-01 10:00:02 1kHR5j-2tdk01-01 Completed"],
            3,
        );
        let saved = p.save();
        assert_eq!(saved.messages.len(), 1);
        assert_eq!(saved.messages[0].info, None, "forgotten");
    }
}
