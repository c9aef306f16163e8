//! How PHP runs, and so whose name a script's mail goes out under: the
//! EasyApache 4 handler per PHP version (`/etc/cpanel/ea4/php.conf`) and
//! whether Apache's suEXEC is installed.
//!
//! Under `dso` (mod_php), and under `cgi` without suEXEC, every site's
//! scripts run as `nobody`, so a spamming form cannot be traced to its
//! account. `suphp`, `lsapi`, `fpm` and `cgi` with suEXEC run them as the
//! account. These are facts for the `suexec` rule, which judges them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spamward_model::{EventBody, Origin, ServiceState};

use super::{Kind, Scan};

/// EasyApache 4's handler table, under the root.
const PHP_CONF: &str = "etc/cpanel/ea4/php.conf";

/// Apache's homes: on EA4 and on older EasyApache layouts. Without either
/// the server does not run Apache, and "no suEXEC" would be a false alarm.
const APACHE_DIRS: [&str; 2] = ["etc/apache2", "usr/local/apache"];

/// Files whose presence shows suEXEC is installed, checked in order.
const SUEXEC_MODULES: [&str; 2] = [
    "etc/apache2/modules/mod_suexec.so",
    "usr/local/apache/modules/mod_suexec.so",
];

/// Directories of module load files: EA4's `conf.modules.d/*suexec*.conf`,
/// then Debian's `mods-enabled/suexec.load` (plain Apache hosts).
const LOAD_FILE_DIRS: [&str; 2] = ["etc/apache2/conf.modules.d", "etc/apache2/mods-enabled"];

/// The suEXEC wrapper binary.
const SUEXEC_BINARY: &str = "usr/sbin/suexec";

/// Reads the handler table and, when there is one, the suEXEC state that
/// qualifies it: without PHP handlers to judge, whether suEXEC is there
/// says nothing (a plain Apache host is not a finding, nor a pass).
/// The handlers, then whether suEXEC is on: it is read only when there are
/// handlers, but handed over before them, since a rule judges each handler
/// by it.
pub(super) fn read(scan: &mut Scan) {
    let start = scan.sink.events.len();
    if read_handlers(scan) {
        let handlers = scan.sink.events.len() - start;
        read_suexec(scan);
        let suexec = scan.sink.events.len() - start - handlers;
        scan.sink.events[start..].rotate_right(suexec);
    }
}

/// One `php-handler` event per version line of `php.conf`, e.g. `ea-php81:
/// suphp`, with whether it is the `default:` version.
///
/// The file is YAML as cPanel writes it: flat `key: value` lines after a
/// `---`. That is all it ever holds, so a small reader suffices and an
/// indented (nested) line is reported rather than guessed at.
///
/// Returns whether the file was read.
fn read_handlers(scan: &mut Scan) -> bool {
    let path = scan.path(PHP_CONF);
    let mut default = None;
    let mut versions: Vec<(u64, String, String)> = Vec::new();
    let read = scan.each_line(&path, |_, origin, line| {
        let trimmed = line.trim();
        if trimmed == "---" || trimmed == "..." {
            return Ok(());
        }
        if line.starts_with(char::is_whitespace) {
            return Err(format!("nested YAML is not expected in php.conf: {line:?}"));
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            return Err(format!("expected `key: value`, found {line:?}"));
        };
        let key = unquote(key.trim());
        let value = unquote(strip_comment(value.trim()));
        if key.is_empty() || value.is_empty() {
            return Err(format!("expected `key: value`, found {line:?}"));
        }
        if key == "default" {
            default = Some(value.to_owned());
        } else {
            versions.push((origin.line, key.to_owned(), value.to_owned()));
        }
        Ok(())
    });
    if !read {
        return false;
    }
    // `default:` may come before or after the versions, so events are built
    // once the whole file is read.
    let file: Arc<str> = path.display().to_string().into();
    for (line, version, handler) in versions {
        let is_default = default.as_deref() == Some(version.as_str());
        let origin = Origin {
            file: file.clone(),
            line,
        };
        scan.sink.emit(
            &origin,
            EventBody::ServiceState(ServiceState {
                name: "php-handler".into(),
                enabled: true,
                details: vec![
                    ("version".into(), version.into()),
                    ("handler".into(), handler.into()),
                    ("default".into(), is_default.to_string().into()),
                ],
            }),
        );
    }
    true
}

/// Drops a YAML ` # comment` after an unquoted value.
fn strip_comment(value: &str) -> &str {
    if value.starts_with(['"', '\'']) {
        return value;
    }
    value.split_once(" #").map_or(value, |(v, _)| v.trim_end())
}

/// `"x"` or `'x'` → `x`; anything else as is.
fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// One `suexec` event when Apache is there: enabled when any sign of the
/// suEXEC module or wrapper is found, with the first one as evidence.
fn read_suexec(scan: &mut Scan) {
    let Some(apache_dir) = APACHE_DIRS
        .iter()
        .map(|rel| scan.path(rel))
        .find(|p| scan.present(p))
    else {
        return;
    };
    let evidence = find_suexec(scan);
    if let Some(found) = &evidence {
        scan.report.files_read.push(found.clone());
    }
    let origin = Origin {
        file: evidence
            .as_deref()
            .unwrap_or(&apache_dir)
            .display()
            .to_string()
            .into(),
        line: 0,
    };
    scan.sink.emit(
        &origin,
        EventBody::ServiceState(ServiceState {
            name: "suexec".into(),
            enabled: evidence.is_some(),
            details: vec![(
                "evidence".into(),
                evidence
                    .as_deref()
                    .map_or_else(|| "none".into(), |p| p.display().to_string().into()),
            )],
        }),
    );
}

/// The first sign of suEXEC, in the order of the module files, a load file,
/// then the wrapper binary.
fn find_suexec(scan: &mut Scan) -> Option<PathBuf> {
    let found = |scan: &Scan, rel: &str| Some(scan.path(rel)).filter(|p| scan.present(p));
    if let Some(p) = SUEXEC_MODULES.iter().find_map(|rel| found(scan, rel)) {
        return Some(p);
    }
    for rel in LOAD_FILE_DIRS {
        let dir = scan.path(rel);
        if let Some(p) = suexec_load_file(scan, &dir) {
            return Some(p);
        }
    }
    found(scan, SUEXEC_BINARY)
}

/// A file in `dir` whose name mentions suexec, e.g. `090_mod_suexec.conf`.
fn suexec_load_file(scan: &mut Scan, dir: &Path) -> Option<PathBuf> {
    scan.list_dir(dir, false)?
        .into_iter()
        .filter(|e| matches!(e.kind, Kind::File | Kind::Symlink))
        .find(|e| e.name.to_ascii_lowercase().contains("suexec") && scan.present(&e.path))
        .map(|e| e.path)
}

#[cfg(test)]
mod tests {
    use crate::tests::{Tree, services};

    /// A tree with a PHP handler table, which the suEXEC state qualifies.
    fn with_handlers() -> Tree {
        let tree = Tree::new();
        tree.write(
            "etc/cpanel/ea4/php.conf",
            "---\nea-php81: cgi\ndefault: ea-php81\n",
        );
        tree
    }

    #[test]
    fn one_event_per_version_with_default_flag() {
        let tree = Tree::new();
        tree.write(
            "etc/cpanel/ea4/php.conf",
            "---\n\
             ea-php80: cgi\n\
             ea-php81: 'suphp'\n\
             default: \"ea-php81\"\n\
             ea-php82: lsapi # set by WHM\n\
             broken line\n  nested: yes\n",
        );
        let (events, report) = tree.read();
        assert_eq!(
            services(&events, "php-handler"),
            vec![
                (
                    true,
                    vec![
                        ("version".into(), "ea-php80".into()),
                        ("handler".into(), "cgi".into()),
                        ("default".into(), "false".into()),
                    ],
                    2
                ),
                (
                    true,
                    vec![
                        ("version".into(), "ea-php81".into()),
                        ("handler".into(), "suphp".into()),
                        ("default".into(), "true".into()),
                    ],
                    3
                ),
                (
                    true,
                    vec![
                        ("version".into(), "ea-php82".into()),
                        ("handler".into(), "lsapi".into()),
                        ("default".into(), "false".into()),
                    ],
                    5
                ),
            ]
        );
        let lines: Vec<_> = report.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(6), Some(7)]);
    }

    #[test]
    fn no_apache_no_suexec_event() {
        let tree = with_handlers();
        tree.write("usr/sbin/suexec", "");
        let (events, _) = tree.read();
        assert!(services(&events, "suexec").is_empty());
    }

    #[test]
    fn apache_without_php_handlers_says_nothing_about_suexec() {
        // A plain Apache host (a bare Debian root): nothing to judge.
        let tree = Tree::new();
        tree.mkdir("etc/apache2/modules");
        tree.write("usr/sbin/suexec", "");
        let (events, _) = tree.read();
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn apache_without_suexec_is_disabled() {
        let tree = with_handlers();
        tree.mkdir("etc/apache2/modules");
        let (events, _) = tree.read();
        assert_eq!(
            services(&events, "suexec"),
            vec![(false, vec![("evidence".into(), "none".into())], 0)]
        );
        let ev = events.iter().find(|e| e.line == 0).unwrap();
        assert_eq!(
            &*ev.file,
            tree.root().join("etc/apache2").display().to_string()
        );
    }

    #[test]
    fn each_kind_of_suexec_evidence() {
        for rel in [
            "etc/apache2/modules/mod_suexec.so",
            "usr/local/apache/modules/mod_suexec.so",
            "etc/apache2/conf.modules.d/090_mod_suexec.conf",
            "etc/apache2/mods-enabled/suexec.load",
            "usr/sbin/suexec",
        ] {
            let tree = with_handlers();
            tree.mkdir("usr/local/apache");
            tree.write(rel, "");
            let (events, _) = tree.read();
            let path = tree.root().join(rel).display().to_string();
            assert_eq!(
                services(&events, "suexec"),
                vec![(true, vec![("evidence".into(), path)], 0)],
                "{rel}"
            );
        }
    }

    #[test]
    fn suexec_link_leading_out_of_the_root_is_not_evidence() {
        let tree = with_handlers();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("mod_suexec.so");
        std::fs::write(&target, "").unwrap();
        tree.mkdir("etc/apache2/modules");
        tree.symlink(&target, "etc/apache2/modules/mod_suexec.so");
        let (events, _) = tree.read();
        assert_eq!(
            services(&events, "suexec"),
            vec![(false, vec![("evidence".into(), "none".into())], 0)]
        );
    }
}
