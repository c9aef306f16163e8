//! Reading the files a mail server leaves, safely.
//!
//! A log, a spool file or a server's configuration is named by paths that
//! others may control: [`regular_file`] opens only plain files, never
//! following a link out of where it was sent and never blocking on a pipe
//! or device put in a file's place. [`gzip`] decodes rotated, compressed
//! logs member by member as they stream, telling a damaged file from one
//! that ends in padding. [`tail`] follows a log as it is written, and
//! [`line`] turns a line's bytes into text.

#![warn(missing_docs)]

pub mod gzip;
pub mod line;
pub mod regular_file;
pub mod tail;
