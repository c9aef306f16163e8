//! Labelled scenarios, replayed from their committed logs: what a real Exim
//! wrote in a run of `tests/real_exim.rs`, kept compressed in
//! `tests/scenarios/<name>/mainlog.gz`, must give every finding its
//! `expect.toml` lists and name none of the targets it says must stay
//! quiet. The same expectations are checked on a fresh run of the real Exim
//! in `tests/real_exim.rs`; this test needs no Exim, so it holds on every
//! machine.

mod common;

use common::labelled;

/// The temp dir the committed run's paths start with (`run.toml`).
fn recorded_root(name: &str) -> std::path::PathBuf {
    let path = labelled::dir(name).join("run.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let run: toml::Table = toml::from_str(&text).unwrap();
    run["root"].as_str().expect("run.toml: root").into()
}

#[test]
fn the_committed_real_exim_run_gives_every_labelled_finding_and_silence() {
    let name = "real-exim";
    let log = labelled::dir(name).join("mainlog.gz");
    labelled::check(name, &log, &recorded_root(name));
}
