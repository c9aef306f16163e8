//! Host-side bindings, one set per incompatible interface version: 0.3.0
//! (`wit/v0.3.0`), and 0.2.2 (`wit/v0.2.2`), which also serves 0.2.0 and
//! 0.2.1 rules.
//!
//! 0.2.1 and 0.2.2 only add host functions (and the types they take) to
//! 0.2.0, so one set of bindings serves all three: the component linker
//! satisfies an older import with the newest definition, and finds an older
//! export when asked for the newest one. 0.3.0 changes types, so its rules
//! link against bindings of their own, beside the 0.2 ones in the same
//! linker; the engine converts what a 0.2 rule says into 0.3.0's types
//! ([`crate::upgrade`]) and works with those alone.
//!
//! Only the engine sees these types; it converts them to the contract's
//! (`spamward-contract`) at the boundary.

use wasmtime::component::InstancePre;

use crate::sandbox::StoreData;

/// The bindings of the `rule` world in the WIT folder `$path`, with the
/// same options for every version, so they cannot drift apart.
macro_rules! rule_bindings {
    ($path:literal) => {
        wasmtime::component::bindgen!({
            world: "rule",
            path: $path,
            // Arguments borrow: an encoded event batch is lowered straight
            // from the host's buffer.
            ownership: Borrowing {
                duplicate_if_necessary: true
            },
            // State that would pass the rule's quota fails the rule: these
            // may trap.
            imports: {
                "spamward:rule/host.window-add": trappable,
                "spamward:rule/host.distinct-add": trappable,
                "spamward:rule/host.kv-set": trappable,
            },
        });
    };
}

/// `spamward:rule@0.3.0`.
pub mod v0_3 {
    rule_bindings!("../../wit/v0.3.0");
}

/// `spamward:rule@0.2.2`, serving 0.2.0 and 0.2.1 too.
pub mod v0_2 {
    rule_bindings!("../../wit/v0.2.2");
}

pub use self::v0_3::spamward::rule::types as wit;

/// The WIT package version this host's newest bindings are generated from.
pub const INTERFACE_VERSION: &str = "0.3.0";

/// A rule compiled and linked, ready to instantiate, by the interface
/// version it was built for.
pub(crate) enum RulePre {
    V0_2(v0_2::RulePre<StoreData>),
    V0_3(v0_3::RulePre<StoreData>),
}

/// A live rule instance.
pub(crate) enum Guest {
    V0_2(v0_2::Rule),
    V0_3(v0_3::Rule),
}

impl RulePre {
    /// The bindings `pre` exports: 0.3.0's if it exports them, else 0.2's.
    pub fn new(pre: InstancePre<StoreData>) -> wasmtime::Result<Self> {
        match v0_3::RulePre::new(pre.clone()) {
            Ok(pre) => Ok(RulePre::V0_3(pre)),
            Err(newest) => v0_2::RulePre::new(pre)
                .map(RulePre::V0_2)
                .map_err(|_| newest),
        }
    }

    /// The engine it was compiled for.
    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            RulePre::V0_2(pre) => pre.engine(),
            RulePre::V0_3(pre) => pre.engine(),
        }
    }

    /// A fresh instance in `store`.
    pub fn instantiate(&self, store: &mut wasmtime::Store<StoreData>) -> wasmtime::Result<Guest> {
        Ok(match self {
            RulePre::V0_2(pre) => Guest::V0_2(pre.instantiate(store)?),
            RulePre::V0_3(pre) => Guest::V0_3(pre.instantiate(store)?),
        })
    }
}

impl Guest {
    /// `describe`, in 0.3.0's types.
    pub fn describe(
        &self,
        store: &mut wasmtime::Store<StoreData>,
    ) -> wasmtime::Result<wit::RuleInfo> {
        Ok(match self {
            Guest::V0_2(g) => {
                crate::upgrade::rule_info(g.spamward_rule_guest().call_describe(store)?)
            }
            Guest::V0_3(g) => g.spamward_rule_guest().call_describe(store)?,
        })
    }

    /// `init`.
    pub fn init(
        &self,
        store: &mut wasmtime::Store<StoreData>,
        settings_json: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Guest::V0_2(g) => g.spamward_rule_guest().call_init(store, settings_json),
            Guest::V0_3(g) => g.spamward_rule_guest().call_init(store, settings_json),
        }
    }

    /// `on-events`, its verdicts in 0.3.0's types.
    pub fn on_events(
        &self,
        store: &mut wasmtime::Store<StoreData>,
        batch: &[u8],
    ) -> wasmtime::Result<Vec<wit::Verdict>> {
        Ok(match self {
            Guest::V0_2(g) => g
                .spamward_rule_guest()
                .call_on_events(store, batch)?
                .into_iter()
                .map(crate::upgrade::verdict)
                .collect(),
            Guest::V0_3(g) => g.spamward_rule_guest().call_on_events(store, batch)?,
        })
    }
}

/// Every interface version this host runs rules of.
pub const SERVED_VERSIONS: [&str; 4] = ["0.2.0", "0.2.1", "0.2.2", "0.3.0"];

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    /// Each released interface as it was released: rules built against it
    /// exist, so its file must never change. A change goes into a new
    /// folder, with a new line here.
    const FROZEN: [(&str, &str); 4] = [
        (
            "0.2.0",
            "14eb7faa0d5bddb85add637db3898e0c3392b4874bd0a168c752fc1f4ed7c5bf",
        ),
        (
            "0.2.1",
            "17ec53b915b8ba2a62178c6dca66324dd22f957732abfe79f32b0a7391f073dd",
        ),
        (
            "0.2.2",
            "3214640e40eefb5b7db8ef310f41f5cc2c6748879df5146da6e62b975bb599ed",
        ),
        (
            "0.3.0",
            "dac1a126ae9671adcd6c7de1701c2731f1a4f0b28b8ab65a487429270f963d7f",
        ),
    ];

    #[test]
    fn every_released_interface_is_frozen_in_its_folder_and_served() {
        let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let mut folders: Vec<String> = std::fs::read_dir(&wit)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let released: Vec<String> = FROZEN.iter().map(|(v, _)| format!("v{v}")).collect();
        assert_eq!(
            folders, released,
            "every folder of wit/ is a released version"
        );
        for (version, sha) in FROZEN {
            let file = wit.join(format!("v{version}/rule.wit"));
            let text = std::fs::read(&file).unwrap();
            assert_eq!(
                format!("{:x}", Sha256::digest(&text)),
                sha,
                "{} changed after its release: put the change in a new version",
                file.display()
            );
            let package = format!("package spamward:rule@{version};");
            assert!(
                String::from_utf8_lossy(&text).contains(&package),
                "{} declares {package}",
                file.display()
            );
            assert!(SERVED_VERSIONS.contains(&version), "{version} is served");
        }
        assert_eq!(FROZEN.last().map(|(v, _)| *v), Some(INTERFACE_VERSION));
        assert_eq!(INTERFACE_VERSION, spamward_contract::INTERFACE_VERSION);
    }
}
