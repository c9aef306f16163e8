//! Peer suite: CSM's PHP-relay fixtures (real spool `-H` files). The account
//! `exampleuser` owns the domains in `userdata_account_with_domains.yaml`;
//! `script-sender` must fire on every `attack_*` file and stay silent on
//! every `legit_*` one.

mod common;

use std::fs;

use common::{assert_ok, corpus, json_lines, spamward};

/// The domains of the account, from the fixture's userdata (a small YAML:
/// `main_domain: d`, `addon_domains:` map keys, `sub_domains:` list items).
fn owned_domains(yaml: &str) -> Vec<String> {
    let mut domains = Vec::new();
    let mut section = "";
    for line in yaml.lines() {
        if let Some(d) = line.strip_prefix("main_domain:") {
            domains.push(d.trim().to_owned());
        } else if !line.starts_with(' ') {
            section = line.split(':').next().unwrap_or("");
        } else if section == "addon_domains" || section == "parked_domains" {
            if let Some((d, _)) = line.trim().split_once(':') {
                domains.push(d.trim().to_owned());
            }
        } else if section == "sub_domains"
            && let Some(d) = line.trim().strip_prefix("- ")
        {
            domains.push(d.trim().to_owned());
        }
    }
    domains
}

#[test]
fn script_sender_fires_on_attacks_and_not_on_legit_mail() {
    let dir = corpus().join("peer/csm-php-relay");
    let yaml = fs::read_to_string(dir.join("userdata_account_with_domains.yaml")).unwrap();
    let domains = owned_domains(&yaml);
    assert!(
        domains.contains(&"example.com".to_owned())
            && domains.contains(&"addon.example.com".to_owned()),
        "{domains:?}"
    );

    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("etc")).unwrap();
    let userdomains: String = domains
        .iter()
        .map(|d| format!("{d}: exampleuser\n"))
        .collect();
    fs::write(root.path().join("etc/userdomains"), userdomains).unwrap();

    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "H"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("attack_") || name.starts_with("legit_")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let cache = root.path().join("cache");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let out = spamward(
            &[
                "scan",
                "--json",
                "--root",
                root.path().to_str().unwrap(),
                file.to_str().unwrap(),
            ],
            &cache,
        );
        assert_ok(&out);
        let fired: Vec<_> = json_lines(&out)
            .into_iter()
            .filter(|f| f["rule"] == "script-sender")
            .collect();
        if name.starts_with("attack_") {
            assert_eq!(
                fired.len(),
                1,
                "{name}: script-sender should fire: {fired:?}"
            );
            assert_eq!(fired[0]["target"]["kind"], "script", "{name}");
        } else {
            assert!(
                fired.is_empty(),
                "{name}: script-sender should stay silent: {fired:?}"
            );
        }
    }
}
