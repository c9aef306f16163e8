//! spamward: stops a mail server from being used to send spam.
//!
//! The flow runs one way, one stage per module:
//! [`sources`] read inputs → [`normalize`] turns lines into typed events →
//! [`engine`] batches them through sandboxed WebAssembly rules → [`policy`]
//! decides what the rules' verdicts may do → [`report`] shows it.
//! [`pipeline`] builds that chain from the configuration, once for every
//! command. [`state`] holds what the host knows about the server; [`config`]
//! is `spamward.toml`; [`cli`] is the `spamward` command.

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod engine;
pub mod ingest;
pub mod normalize;
pub mod pipeline;
pub mod policy;
pub mod report;
pub mod sources;
pub mod state;
