//! The contract between the spamward host and its rules: the one definition
//! of the data that crosses the WebAssembly boundary, used by both sides.
//!
//! - [`event`]: the events a rule receives and the batch encoding they cross in;
//! - [`filter`]: subscriptions, and the one implementation of their matching;
//! - [`counter`]: counters the host keeps for a rule, and when they tell it;
//! - [`state`]: the semantics of a rule's windows, distinct sets and key/value
//!   pairs;
//! - [`verdict`]: what a rule answers: severity, target, requested action;
//! - [`rule_info`]: what a rule says about itself.
//!
//! The WIT package (`wit/`) describes the same data to the component model.
//! The host (wasmtime) and the SDK (wit-bindgen) each generate bindings from
//! it and convert between those and these types at the boundary, so neither
//! side keeps a copy of the other's types.

#![warn(missing_docs)]

pub mod counter;
pub mod event;
pub mod filter;
pub mod rule_info;
pub mod state;
pub mod verdict;

/// Local users that submit mail for the MTA or the system rather than for a
/// customer: never an owning account, never a sender a rule should count
/// as a customer's (the host's parsers and the bundled rules agree on it).
pub const SYSTEM_USERS: &[&str] = &[
    "root",
    "mailnull",
    "exim",
    "Debian-exim",
    "mail",
    "mailman",
    "cpanel",
];

/// Version of the `spamward:rule` WIT package this contract describes; the
/// event encoding is part of it.
pub const INTERFACE_VERSION: &str = "0.3.0";
