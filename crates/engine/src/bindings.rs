//! Host-side bindings generated from `wit/v0.2.2/rule.wit` (`spamward:rule@0.2.2`).
//!
//! Only the engine sees these types; it converts them to the contract's
//! (`spamward-contract`) at the boundary.
//!
//! 0.2.1 and 0.2.2 only add host functions (and the types they take) to
//! 0.2.0, so one set of bindings serves all three: the component linker
//! satisfies an older import with the newest definition, and finds an older
//! export when asked for the newest one.

wasmtime::component::bindgen!({
    world: "rule",
    path: "../../wit/v0.2.2",
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
pub const INTERFACE_VERSION: &str = "0.2.2";

/// Every interface version this host runs rules of.
pub const SERVED_VERSIONS: [&str; 3] = ["0.2.0", "0.2.1", "0.2.2"];

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    /// Each released interface as it was released: rules built against it
    /// exist, so its file must never change. A change goes into a new
    /// folder, with a new line here.
    const FROZEN: [(&str, &str); 3] = [
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
