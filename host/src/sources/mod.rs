//! Sources: they read inputs — log files, the queue (spool files, `exim
//! -bp`), the server's configuration state, Exim's own answer to a relay
//! probe — and hand records to the normalizer or, for structured inputs,
//! events. `input` opens what the command line names and `detect` tells
//! input formats apart by content; `regular_file` opens the files that must
//! be plain files without ever blocking on a pipe.

pub mod detect;
pub mod gzip;
pub mod input;
pub mod log_file;
pub mod queue;
pub mod regular_file;
pub mod relay_probe;
pub mod server;
