//! `spamward run`: the daemon.
//!
//! It follows each Exim main log as Exim writes it ([`source`]), feeds the
//! lines through the same pipeline `scan` builds, and stores what it finds
//! as it finds it. Every few seconds, and when it stops, it saves in one
//! transaction where each log was read to, every rule's host state and the
//! policy's open findings ([`checkpoint`]): after a crash it resumes from
//! there, and the lines it reads again rebuild the state they built before.
//!
//! The loop ([`daemon`]) runs on one thread with tokio: file changes
//! (inotify through `notify`, with a slow poll for file systems without
//! it), timers (flush, checkpoint, and the snapshots of the server state and
//! the queue, [`snapshot`]) and signals (SIGTERM and
//! SIGINT stop it cleanly). Rules run on the reading thread, or on the
//! engine's worker threads (`[engine] workers`).
//! What the ledger decides to do is carried out on a thread of its own
//! ([`enforcement`]), which [`script_mail`] tells which messages each web
//! script sent.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod daemon;
pub mod enforcement;
pub mod script_mail;
pub mod snapshot;
pub mod source;

pub use daemon::{DaemonError, DaemonOptions, run};
