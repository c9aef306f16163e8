//! Host-side bindings generated from `wit/rule.wit` (`spamward:rule@0.2.1`).
//!
//! Only the engine sees these types; the rest of the host works with the
//! normalizer's event model and the policy's findings.
//!
//! 0.2.1 only adds host functions to 0.2.0, so one set of bindings serves
//! both: the component linker satisfies a 0.2.0 import with the 0.2.1
//! definition, and finds a 0.2.0 export when asked for the 0.2.1 one.

wasmtime::component::bindgen!({
    world: "rule",
    path: "../wit",
    // Arguments borrow: an encoded event batch is lowered straight from the
    // host's buffer.
    ownership: Borrowing {
        duplicate_if_necessary: true
    },
    // State that would pass the rule's quota fails the rule: these may trap.
    imports: {
        "spamward:rule/host.window-add": trappable,
        "spamward:rule/host.distinct-add": trappable,
        "spamward:rule/host.kv-set": trappable,
    },
});

pub use self::spamward::rule::types as wit;

/// The WIT package version this host's bindings are generated from.
pub const INTERFACE_VERSION: &str = "0.2.1";

/// Every interface version this host runs rules of.
pub const SERVED_VERSIONS: [&str; 2] = ["0.2.0", "0.2.1"];
