//! Host state: what the host knows about the server that rules may look up
//! (domain owners, local domains). Per-rule windows, distinct sets and kv
//! pairs are `spamward_sdk::state::RuleState`, owned by each rule's runner.

mod lookups;

pub use lookups::HostLookups;
