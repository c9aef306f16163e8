//! spamward: stops a mail server from being used to send spam.
//!
//! The flow runs one way, a crate or module per stage:
//! sources read inputs and turn them into events (`spamward-exim`: the main
//! log, the queue; `spamward-cpanel`: the server's configuration) → the
//! engine (`spamward-engine`) batches them through sandboxed WebAssembly
//! rules → the policy decides what the rules' verdicts may do → [`report`]
//! shows it. `spamward-pipeline` reads `spamward.toml` and builds that
//! chain, once for every command. The events and what is known of the
//! server are `spamward-model`'s; the data rules see is
//! `spamward-contract`'s. [`cli`] is the `spamward` command.

#![warn(missing_docs)]

pub mod cli;
pub mod report;
