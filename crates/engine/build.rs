//! Builds the bundled rules (every crate under `rules/`) and the bad fixture
//! rules used by the sandbox tests (`tests/fixtures/rules/`) to
//! `wasm32-wasip2` components, and embeds the bundled ones in the binary.
//!
//! This is the pattern of wasmtime's `crates/test-programs/artifacts/build.rs`:
//! a nested `cargo build` for the wasm target with its own target directory
//! (so it never waits on the outer build's lock), then `include_bytes!` of
//! the results from a generated file.
//!
//! The `wasm32-wasip2` target is listed in `rust-toolchain.toml`, but with
//! `RUSTUP_AUTO_INSTALL=0` rustup does not install listed targets by itself,
//! so this script adds it when it is missing and says so.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .expect("crates/engine/ sits in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    for watched in [
        "rules",
        "sdk",
        "crates/contract",
        "wit",
        "tests/fixtures/rules",
        "examples",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    ensure_wasm_target();

    let bundled = crate_dirs(&workspace.join("rules"));
    // Built but not bundled: the bad rules the sandbox tests load, and the
    // example third-party rule the end-to-end tests load with `--rules`.
    let fixtures = crate_dirs(&workspace.join("tests/fixtures/rules"));
    let examples = crate_dirs(&workspace.join("examples"));
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm-guests");

    let packages: Vec<String> = bundled
        .iter()
        .chain(&fixtures)
        .chain(&examples)
        .map(|dir| package_name(dir))
        .collect();
    build_guests(&workspace, &target_dir, &packages);

    let wasm_dir = target_dir.join(WASM_TARGET).join("release");
    let mut generated = String::from(
        "/// Bundled rules: `(file stem, component bytes)`, built from `rules/`.\n\
         pub const BUNDLED_RULES: &[(&str, &[u8])] = &[\n",
    );
    for dir in &bundled {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let wasm = wasm_dir.join(format!("{}.wasm", package_name(dir).replace('-', "_")));
        assert!(
            wasm.exists(),
            "the guest build did not produce {}",
            wasm.display()
        );
        writeln!(
            generated,
            "    ({name:?}, include_bytes!({:?})),",
            wasm.display().to_string()
        )
        .unwrap();
    }
    generated.push_str("];\n");
    fs::write(out_dir.join("bundled_rules.rs"), generated).expect("write bundled_rules.rs");

    // The end-to-end tests load the fixture and example rules from here.
    println!(
        "cargo:rustc-env=SPAMWARD_GUEST_WASM_DIR={}",
        wasm_dir.display()
    );
}

/// Adds the wasm target through rustup when the toolchain lacks it.
fn ensure_wasm_target() {
    let sysroot = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(WASM_TARGET).exists() {
        return;
    }
    println!(
        "cargo:warning=installing the {WASM_TARGET} target (rustup target add {WASM_TARGET}) to build the bundled rules"
    );
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .expect("run rustup to add the wasm target");
    assert!(
        status.success(),
        "`rustup target add {WASM_TARGET}` failed; install it by hand and build again"
    );
}

/// Every directory with a `Cargo.toml` directly under `dir`, sorted.
fn crate_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    dirs
}

/// A guest crate's package name: `rule-<dir>` for rules, `fixture-<dir>` for
/// the bad fixture rules, `example-<dir>` for examples.
fn package_name(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_string_lossy();
    let kind = dir
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_string_lossy();
    let grandparent = dir
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    match (kind.as_ref(), grandparent.as_deref()) {
        ("rules", Some("fixtures")) => format!("fixture-{name}"),
        ("examples", _) => format!("example-{name}"),
        _ => format!("rule-{name}"),
    }
}

fn build_guests(workspace: &Path, target_dir: &Path, packages: &[String]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and target are for the host, not the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the wasm rules");
    assert!(
        status.success(),
        "building the wasm rules failed (see the errors above)"
    );
}
