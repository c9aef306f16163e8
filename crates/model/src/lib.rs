//! The host's model of a mail server: what happened on it ([`event`]: the
//! contract's records, with when and where each was written), how its
//! local times become instants ([`clock`]), and what is known of its
//! domains ([`lookups`]).
//!
//! Every source (Exim's log and queue, cPanel's configuration) produces
//! these events; the engine hands them to rules and the report reads them.

#![warn(missing_docs)]

pub mod clock;
pub mod event;
pub mod lookups;

pub use clock::{LocalClock, LocalZone, WrittenTime};
pub use event::*;
pub use lookups::HostLookups;

/// Local users that are the MTA or the system, never an owning account.
pub use spamward_contract::SYSTEM_USERS;
