//! Host-side bindings generated from `wit/rule.wit` (`spamward:rule@0.2.0`).
//!
//! Only the engine sees these types; the rest of the host works with the
//! normalizer's event model and the policy's findings.

wasmtime::component::bindgen!({
    world: "rule",
    path: "../wit",
    // Arguments borrow: an encoded event batch is lowered straight from the
    // host's buffer.
    ownership: Borrowing {
        duplicate_if_necessary: true
    },
});

pub use self::spamward::rule::types as wit;

/// The WIT package version this host serves.
pub const INTERFACE_VERSION: &str = "0.2.0";
