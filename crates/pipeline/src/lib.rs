//! spamward's pipeline as a library: [`config`] reads `spamward.toml`;
//! [`Pipeline::from_config`] builds from it the chain every command runs —
//! events into the engine's sandboxed rules, their verdicts through the
//! [`policy`] stage, findings out. `scan`, `audit` and the daemon differ
//! only in where events come from and what is done with the findings.

#![warn(missing_docs)]

pub mod config;
mod pipeline;
pub mod policy;

pub use pipeline::{Change, Pipeline, PipelineError, Rules, Saved};
