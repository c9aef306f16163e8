//! Sources: they read inputs (log files now; live tails, the queue and
//! configuration later) and produce raw records for the normalizer. A source
//! knows nothing of what a record means.

pub mod log_file;
