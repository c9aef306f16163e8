//! Host-side bindings generated from `wit/rule.wit` (`spamward:rule@0.1.0`).
//!
//! Only the engine sees these types; the rest of the host works with the
//! normalizer's event model and the policy's findings.

wasmtime::component::bindgen!({
    world: "rule",
    path: "../wit",
    // Events go to rules as records that borrow the normalizer's strings:
    // nothing is copied on the host side before wasmtime lowers them.
    ownership: Borrowing {
        duplicate_if_necessary: true
    },
});

pub use self::spamward::rule::types as wit;

/// The WIT package version this host serves.
pub const INTERFACE_VERSION: &str = "0.1.0";
