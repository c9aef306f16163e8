//! Sources: they read inputs — log files, the queue (spool files, `exim
//! -bp`), the server's configuration state, Exim's own answer to a relay
//! probe — and hand records to the normalizer or, for structured inputs,
//! events. `detect` tells input formats apart by content.

pub mod detect;
pub mod log_file;
pub mod queue;
pub mod relay_probe;
pub mod server;
