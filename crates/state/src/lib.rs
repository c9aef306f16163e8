//! The daemon's state file: one SQLite database (WAL, so `spamward status`
//! reads it while the daemon writes) holding where each log was read to,
//! every rule's host state, the policy's open findings, the findings made,
//! each rule as the daemon last saw it, and the enforcement journal: every
//! action decision, the actions in force, and operators' release requests.
//!
//! It stores rows and opaque bytes the daemon builds; it knows nothing of
//! rules or events. A checkpoint is one transaction, so after a crash the
//! daemon resumes from a consistent point. The schema is versioned
//! (`PRAGMA user_version`) from the first release: a newer file is refused,
//! an older one migrated.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// Each schema version's migration, in order: `MIGRATIONS[n]` takes a file
/// from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE sources (
        path TEXT PRIMARY KEY,
        dev INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        head BLOB NOT NULL,
        offset INTEGER NOT NULL,
        lines INTEGER NOT NULL,
        unparsed INTEGER NOT NULL,
        parser BLOB NOT NULL
    );
    CREATE TABLE parser_messages (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        info TEXT NOT NULL,
        PRIMARY KEY (source, id)
    );
    CREATE TABLE rule_state (rule TEXT PRIMARY KEY, state BLOB NOT NULL);
    CREATE TABLE daemon (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE findings (
        key TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        last_seen INTEGER,
        updated_at INTEGER NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX findings_updated ON findings (updated_at);
    CREATE TABLE rules (
        name TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        hash TEXT NOT NULL,
        origin TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        updated_at INTEGER NOT NULL
    );
",
    "
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        action_id INTEGER,
        rule TEXT NOT NULL,
        target TEXT NOT NULL,
        action TEXT NOT NULL,
        decision TEXT NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX journal_action ON journal (action_id);
    CREATE INDEX journal_at ON journal (at);
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        action TEXT NOT NULL,
        rule TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        expires_at INTEGER,
        json TEXT NOT NULL
    );
    CREATE TABLE releases (
        id INTEGER PRIMARY KEY,
        selector TEXT NOT NULL,
        by TEXT NOT NULL,
        at INTEGER NOT NULL,
        answer TEXT
    );
",
];

/// Days of journal kept: a daemon that runs for years keeps a bounded file.
pub const JOURNAL_DAYS: i64 = 90;

/// A state file problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory it goes in does not exist.
    #[error("state file {}: its directory does not exist (create it, or give another with --state)", path.display())]
    NoDirectory {
        /// The state file.
        path: PathBuf,
    },
    /// It does not exist (for a reader).
    #[error("state file {}: does not exist (has `spamward run` run with this --state?)", path.display())]
    Missing {
        /// The state file.
        path: PathBuf,
    },
    /// Created, but its tables not written yet (a daemon is starting).
    #[error("state file {}: not set up yet (is `spamward run` just starting?)", path.display())]
    NotReady {
        /// The state file.
        path: PathBuf,
    },
    /// Written by a newer spamward.
    #[error("state file {}: written by a newer spamward (schema {found}; this one knows up to {known})", path.display())]
    Newer {
        /// The state file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// SQLite refused (not a database, locked, disk full, ...).
    #[error("state file {}: {source}", path.display())]
    Sqlite {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// Where one followed log was read to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// The log's path.
    pub path: String,
    /// Device of the file read.
    pub dev: u64,
    /// Inode of the file read.
    pub inode: u64,
    /// Its first bytes (up to 64): a reused inode is not the same file.
    pub head: Vec<u8>,
    /// Byte offset of the next unread line.
    pub offset: u64,
    /// Lines read since it was first followed.
    pub lines: u64,
    /// Lines that could not be read.
    pub unparsed: u64,
    /// The parser's state at that offset (opaque).
    pub parser: Vec<u8>,
}

/// A change to what a log's parser remembers of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// The log's path.
    pub source: String,
    /// The message id.
    pub id: String,
    /// The order the parser forgets in.
    pub seq: u64,
    /// What it remembers (opaque); `None`: forgotten.
    pub info: Option<String>,
}

/// Everything saved at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// When (wall clock, Unix seconds).
    pub at: i64,
    /// Events processed since the first start.
    pub events: u64,
    /// Each log's position.
    pub sources: Vec<SourceRow>,
    /// Each rule's host state (opaque).
    pub rule_states: Vec<(String, Vec<u8>)>,
    /// The policy's open findings (opaque).
    pub policy: Vec<u8>,
}

/// How much a checkpoint keeps: what must stay bounded however long the
/// daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Every rule's host state, in bytes.
    pub rule_state_bytes: u64,
    /// The policy's open findings, in bytes.
    pub policy_bytes: u64,
    /// Messages the parsers remember.
    pub parser_messages: u64,
}

/// One stored finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    /// Stable identity: storing the same finding again replaces the row.
    pub key: String,
    /// The rule that made it.
    pub rule: String,
    /// Event time of its last verdict (Unix seconds).
    pub last_seen: Option<i64>,
    /// When it was stored or last changed (wall clock, Unix seconds).
    pub updated_at: i64,
    /// The finding as `spamward scan --json` prints it.
    pub json: String,
}

/// One rule as the daemon last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its component.
    pub hash: String,
    /// `bundled` or its file.
    pub origin: String,
    /// `running`, `quarantined`, `failed to load`, ...
    pub status: String,
    /// Why, when it is not simply running.
    pub reason: Option<String>,
    /// When this row last changed (wall clock, Unix seconds).
    pub updated_at: i64,
}

/// One decision of the enforcement journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    /// Its place in the journal (0 until stored).
    pub id: i64,
    /// When (wall clock, Unix seconds).
    pub at: i64,
    /// The action it is about, if one was started.
    pub action_id: Option<u64>,
    /// The rule.
    pub rule: String,
    /// The target, as `kind value`.
    pub target: String,
    /// The action's name.
    pub action: String,
    /// `ran`, `dry-run`, `refused-…`, `failed`, `expired`, `released`, ...
    pub decision: String,
    /// The whole entry (opaque).
    pub json: String,
}

/// One action in force (or recorded in dry-run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRow {
    /// Its id.
    pub id: u64,
    /// The target, as `kind value`.
    pub target: String,
    /// The action's name.
    pub action: String,
    /// The rule that asked.
    pub rule: String,
    /// Only recorded, never run.
    pub dry_run: bool,
    /// When it started (wall clock, Unix seconds).
    pub started_at: i64,
    /// When it is undone, if ever.
    pub expires_at: Option<i64>,
    /// The whole action (opaque).
    pub json: String,
}

/// An operator's request to release actions, for the daemon to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// Its id.
    pub id: i64,
    /// An action id or a target.
    pub selector: String,
    /// Who asked.
    pub by: String,
}

/// What `spamward status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// When the last checkpoint was saved.
    pub checkpoint_at: Option<i64>,
    /// Events processed as of that checkpoint.
    pub events: u64,
    /// Each log's position as of that checkpoint.
    pub sources: Vec<SourceRow>,
    /// Each rule.
    pub rules: Vec<RuleRow>,
    /// Findings stored.
    pub findings: u64,
    /// Actions in force (dry-run records aside).
    pub actions_in_force: u64,
}

/// An open state file.
pub struct Store {
    path: PathBuf,
    conn: Connection,
}

impl Store {
    /// Opens `path` for the daemon, creating it (not its directory) and
    /// bringing its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            return Err(StoreError::NoDirectory {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open(path).map_err(|e| sqlite(path, e))?;
        let mut store = Store {
            path: path.to_path_buf(),
            conn,
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens `path` to read, while a daemon may be writing it.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite(path, e))?;
        let store = Store {
            path: path.to_path_buf(),
            conn,
        };
        store
            .conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| store.err(e))?;
        let version = store.version()?;
        if version as usize > MIGRATIONS.len() {
            return Err(store.newer(version));
        }
        if version == 0 {
            return Err(StoreError::NotReady {
                path: path.to_path_buf(),
            });
        }
        Ok(store)
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| self.err(e))?;
        // WAL: readers (`status`) never block the writer; NORMAL: a power
        // cut may lose the last checkpoint, never corrupt the file.
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.err(e))?;
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.err(e))
    }

    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn newer(&self, found: i64) -> StoreError {
        StoreError::Newer {
            path: self.path.clone(),
            found,
            known: MIGRATIONS.len() as i64,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version = self.version()?;
        if version as usize > MIGRATIONS.len() {
            return Err(self.newer(version));
        }
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(|e| sqlite(&self.path, e))?;
            tx.execute_batch(sql).map_err(|e| sqlite(&self.path, e))?;
            tx.pragma_update(None, "user_version", (n + 1) as i64)
                .map_err(|e| sqlite(&self.path, e))?;
            tx.commit().map_err(|e| sqlite(&self.path, e))?;
        }
        Ok(())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sqlite(&self.path, e)
    }

    /// Saves `cp` in one transaction: its sources, rule states and policy
    /// replace the previous checkpoint's, and `messages` (what the parsers'
    /// memory gained or lost since the last checkpoint) update what they
    /// remember. The messages are written as the iterator yields them.
    pub fn checkpoint(
        &mut self,
        cp: &Checkpoint,
        messages: impl IntoIterator<Item = MessageRow>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute("DELETE FROM sources", []).map_err(e)?;
        for s in &cp.sources {
            tx.execute(
                "INSERT INTO sources (path, dev, inode, head, offset, lines, unparsed, parser) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.path,
                    s.dev as i64,
                    s.inode as i64,
                    s.head,
                    s.offset as i64,
                    s.lines as i64,
                    s.unparsed as i64,
                    s.parser
                ],
            )
            .map_err(e)?;
        }
        {
            // Half a million rows after a backlog: two statements prepared
            // once, each row written as it comes.
            let mut keep = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO parser_messages (source, id, seq, info) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(e)?;
            let mut forget = tx
                .prepare_cached("DELETE FROM parser_messages WHERE source = ?1 AND id = ?2")
                .map_err(e)?;
            for m in messages {
                match &m.info {
                    Some(info) => keep.execute(params![m.source, m.id, m.seq as i64, info]),
                    None => forget.execute(params![m.source, m.id]),
                }
                .map_err(e)?;
            }
        }
        tx.execute("DELETE FROM rule_state", []).map_err(e)?;
        for (rule, state) in &cp.rule_states {
            tx.execute(
                "INSERT INTO rule_state (rule, state) VALUES (?1, ?2)",
                params![rule, state],
            )
            .map_err(e)?;
        }
        let put = |key: &str, value: Vec<u8>| {
            tx.execute(
                "INSERT OR REPLACE INTO daemon (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
        };
        put("checkpoint_at", cp.at.to_string().into_bytes()).map_err(e)?;
        put("events", cp.events.to_string().into_bytes()).map_err(e)?;
        put("policy", cp.policy.clone()).map_err(e)?;
        tx.commit().map_err(e)
    }

    /// The last checkpoint; `None` in a fresh file.
    pub fn load_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let Some(at) = self.daemon_number("checkpoint_at")? else {
            return Ok(None);
        };
        let mut cp = Checkpoint {
            at,
            events: self.daemon_number("events")?.unwrap_or(0) as u64,
            sources: self.sources()?,
            ..Checkpoint::default()
        };
        let mut stmt = self
            .conn
            .prepare("SELECT rule, state FROM rule_state ORDER BY rule")
            .map_err(|e| self.err(e))?;
        cp.rule_states = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        cp.policy = self.daemon_value("policy")?.unwrap_or_default();
        Ok(Some(cp))
    }

    /// How much the last checkpoint keeps.
    pub fn kept(&self) -> Result<Kept, StoreError> {
        let count = |sql: &str| -> Result<u64, StoreError> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        };
        Ok(Kept {
            rule_state_bytes: count("SELECT COALESCE(SUM(LENGTH(state)), 0) FROM rule_state")?,
            policy_bytes: count(
                "SELECT COALESCE(SUM(LENGTH(value)), 0) FROM daemon WHERE key = 'policy'",
            )?,
            parser_messages: count("SELECT COUNT(*) FROM parser_messages")?,
        })
    }

    /// What the parser of `source` remembered of messages as of the last
    /// checkpoint, in the order it forgets them.
    pub fn parser_messages(&self, source: &str) -> Result<Vec<MessageRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, seq, info FROM parser_messages WHERE source = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        stmt.query_map([source], |r| {
            Ok(MessageRow {
                source: source.to_owned(),
                id: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                info: Some(r.get(2)?),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    fn daemon_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row("SELECT value FROM daemon WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    fn daemon_number(&self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .daemon_value(key)?
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok()))
    }

    fn sources(&self) -> Result<Vec<SourceRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, dev, inode, head, offset, lines, unparsed, parser \
                 FROM sources ORDER BY path",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(SourceRow {
                path: r.get(0)?,
                dev: r.get::<_, i64>(1)? as u64,
                inode: r.get::<_, i64>(2)? as u64,
                head: r.get(3)?,
                offset: r.get::<_, i64>(4)? as u64,
                lines: r.get::<_, i64>(5)? as u64,
                unparsed: r.get::<_, i64>(6)? as u64,
                parser: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Stores `rows` in one transaction; a row whose key is stored already
    /// replaces it.
    pub fn upsert_findings(&mut self, rows: &[FindingRow]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        for f in rows {
            tx.execute(
                "INSERT OR REPLACE INTO findings (key, rule, last_seen, updated_at, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![f.key, f.rule, f.last_seen, f.updated_at, f.json],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    /// Findings stored or changed at `since` or later (all without it),
    /// the most recently changed first.
    pub fn findings(&self, since: Option<i64>) -> Result<Vec<FindingRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT key, rule, last_seen, updated_at, json FROM findings \
                 WHERE updated_at >= ?1 ORDER BY updated_at DESC, key",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([since.unwrap_or(i64::MIN)], |r| {
            Ok(FindingRow {
                key: r.get(0)?,
                rule: r.get(1)?,
                last_seen: r.get(2)?,
                updated_at: r.get(3)?,
                json: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Replaces every rule row with `rows`.
    pub fn set_rules(&mut self, rows: &[RuleRow]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute("DELETE FROM rules", []).map_err(e)?;
        for r in rows {
            tx.execute(
                "INSERT OR REPLACE INTO rules (name, version, hash, origin, status, reason, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.name, r.version, r.hash, r.origin, r.status, r.reason, r.updated_at],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    /// What `spamward status` shows.
    pub fn status(&self) -> Result<Status, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, version, hash, origin, status, reason, updated_at \
                 FROM rules ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        let rules = stmt
            .query_map([], |r| {
                Ok(RuleRow {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    hash: r.get(2)?,
                    origin: r.get(3)?,
                    status: r.get(4)?,
                    reason: r.get(5)?,
                    updated_at: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let findings: i64 = self
            .conn
            .query_row("SELECT count(*) FROM findings", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let actions_in_force: i64 = self
            .conn
            .query_row("SELECT count(*) FROM actions WHERE dry_run = 0", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?;
        Ok(Status {
            checkpoint_at: self.daemon_number("checkpoint_at")?,
            events: self.daemon_number("events")?.unwrap_or(0) as u64,
            sources: self.sources()?,
            rules,
            findings: findings as u64,
            actions_in_force: actions_in_force as u64,
        })
    }

    /// Records what enforcement did, in one transaction: `journal` is
    /// appended (entries older than [`JOURNAL_DAYS`] before the newest go),
    /// and the actions in force become `actions`, with the ledger's own
    /// form `ledger` to resume from.
    pub fn record_actions(
        &mut self,
        journal: &[JournalRow],
        actions: &[ActionRow],
        ledger: &[u8],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        for j in journal {
            tx.execute(
                "INSERT INTO journal (at, action_id, rule, target, action, decision, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    j.at,
                    j.action_id.map(|id| id as i64),
                    j.rule,
                    j.target,
                    j.action,
                    j.decision,
                    j.json
                ],
            )
            .map_err(e)?;
        }
        if let Some(newest) = journal.iter().map(|j| j.at).max() {
            tx.execute(
                "DELETE FROM journal WHERE at < ?1",
                [newest.saturating_sub(JOURNAL_DAYS * 86_400)],
            )
            .map_err(e)?;
        }
        tx.execute("DELETE FROM actions", []).map_err(e)?;
        for a in actions {
            tx.execute(
                "INSERT INTO actions (id, target, action, rule, dry_run, started_at, expires_at, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![a.id as i64, a.target, a.action, a.rule, a.dry_run, a.started_at, a.expires_at, a.json],
            )
            .map_err(e)?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO daemon (key, value) VALUES ('ledger', ?1)",
            [ledger],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// The ledger as [`Store::record_actions`] last saved it.
    pub fn ledger(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.daemon_value("ledger")
    }

    /// The journal, oldest first: the last `limit` entries.
    pub fn journal(&self, limit: u32) -> Result<Vec<JournalRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, at, action_id, rule, target, action, decision, json FROM \
                 (SELECT * FROM journal ORDER BY id DESC LIMIT ?1) ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([limit], |r| {
            Ok(JournalRow {
                id: r.get(0)?,
                at: r.get(1)?,
                action_id: r.get::<_, Option<i64>>(2)?.map(|id| id as u64),
                rule: r.get(3)?,
                target: r.get(4)?,
                action: r.get(5)?,
                decision: r.get(6)?,
                json: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The actions in force, oldest first.
    pub fn actions(&self) -> Result<Vec<ActionRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, target, action, rule, dry_run, started_at, expires_at, json \
                 FROM actions ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(ActionRow {
                id: r.get::<_, i64>(0)? as u64,
                target: r.get(1)?,
                action: r.get(2)?,
                rule: r.get(3)?,
                dry_run: r.get(4)?,
                started_at: r.get(5)?,
                expires_at: r.get(6)?,
                json: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Files an operator's release for the daemon; its id, to wait for the
    /// answer with [`Store::release_answer`].
    pub fn request_release(
        &mut self,
        selector: &str,
        by: &str,
        at: i64,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO releases (selector, by, at) VALUES (?1, ?2, ?3)",
                params![selector, by, at],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The release requests not answered yet, oldest first.
    pub fn open_releases(&self) -> Result<Vec<ReleaseRequest>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, selector, by FROM releases WHERE answer IS NULL ORDER BY id")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(ReleaseRequest {
                id: r.get(0)?,
                selector: r.get(1)?,
                by: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Answers release request `id`.
    pub fn answer_release(&mut self, id: i64, answer: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE releases SET answer = ?2 WHERE id = ?1",
                params![id, answer],
            )
            .map_err(|e| self.err(e))
            .map(|_| ())
    }

    /// The daemon's answer to release request `id`, once it gave one.
    pub fn release_answer(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT answer FROM releases WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }
}

fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
