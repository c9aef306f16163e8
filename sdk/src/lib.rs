//! The spamward rule SDK.
//!
//! A rule is a type implementing [`Rule`]: it says what it is
//! ([`Rule::info`]), is built from its typed settings ([`Rule::new`]) and
//! answers events through per-kind methods whose defaults do nothing. One
//! macro, [`export_rule!`], turns it into a WebAssembly component for the
//! spamward host. The same rule runs natively under [`testing::Harness`] so
//! `cargo test` exercises it against an in-memory host whose windows behave
//! exactly like the real host's (both use [`state`]).
//!
//! ```text
//! use spamward_sdk::prelude::*;
//!
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! struct Settings { limit: u64 }
//!
//! struct MyRule { settings: Settings }
//!
//! impl Rule for MyRule {
//!     type Settings = Settings;
//!     fn info() -> Info { Info::new("my-rule", "Says hello").subscribe(EventKind::MessageReceived) }
//!     fn new(settings: Settings) -> Result<Self, String> { Ok(MyRule { settings }) }
//!     fn on_message_received(&mut self, cx: &mut Context<'_>, m: &MessageReceived) { /* ... */ }
//! }
//! spamward_sdk::export_rule!(MyRule);
//! ```

#![warn(missing_docs)]

extern crate self as spamward_sdk;

mod boundary;
pub mod counter;
pub mod host;
pub mod relay;
mod rule;
pub mod testing;
pub mod text;

pub use spamward_contract::{event, filter, state};

#[doc(hidden)]
pub mod runtime;

pub use rule::{Context, Finding, Info, NoSettings, Rule};

/// Version of the `spamward:rule` WIT package this SDK builds rules against.
pub use spamward_contract::INTERFACE_VERSION;
/// Local users that are the MTA or the system, never a customer.
pub use spamward_contract::SYSTEM_USERS;

/// Version of this SDK, reported by every rule in `rule-info.sdk-version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bindings generated from `wit/rule.wit`.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rule",
        path: "../wit/v0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_spamward_rule",
        default_bindings_module: "::spamward_sdk::bindings",
        runtime_path: "::spamward_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq, Clone],
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The interface types: events in, verdicts out.
pub mod types {
    pub use spamward_contract::event::{
        AuthFailure, Delivery, DeliveryOutcome, Event, EventBody, EventKind, Extension,
        GovernorAction, GovernorLimit, Identity, MailAlias, MailboxStats, MessageReceived,
        MessageState, QueuedMessage, Rejection, ServiceState, Setting, SmtpStage, Text, Timestamp,
    };
    pub use spamward_contract::filter::{EventFilter, FieldValues, IdentityField, Subscription};
    pub use spamward_contract::rule_info::{RuleInfo, SettingSpec};
    pub use spamward_contract::verdict::{Action, Severity, Target, Verdict};
}

/// Everything a rule author usually needs.
pub mod prelude {
    pub use crate::counter::{self, CountOf, Counter, Crossing};
    pub use crate::filter;
    pub use crate::host::{self, LogLevel};
    pub use crate::types::*;
    pub use crate::{Context, Finding, Info, NoSettings, Rule};
}

/// Exports a [`Rule`] implementation as the component's `guest` interface.
///
/// Use it once per rule crate, at the crate root.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        // Natively (under `cargo test`) the harness calls the rule directly;
        // the component exports exist only in the wasm build.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        struct __SpamwardGuest;

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::spamward::rule::guest::Guest for __SpamwardGuest {
            fn describe() -> $crate::bindings::spamward::rule::types::RuleInfo {
                $crate::runtime::describe_for_host::<$rule>()
            }
            fn init(settings_json: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::init::<$rule>(&settings_json)
            }
            fn on_events(
                events: ::std::vec::Vec<u8>,
            ) -> ::std::vec::Vec<$crate::bindings::spamward::rule::types::Verdict> {
                // Verdicts went to the host one by one (`report`) as they
                // were made; none are left to return.
                $crate::runtime::on_events::<$rule>(&events);
                ::std::vec::Vec::new()
            }
        }

        // Natively, reference the rule so it type-checks as a `Rule` and
        // counts as used.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::types::RuleInfo = $crate::runtime::describe::<$rule>;

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_spamward_rule!(__SpamwardGuest with_types_in $crate::bindings);
    };
}
