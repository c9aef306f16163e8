//! `/var/cpanel/cpanel.config`: WHM's Tweak Settings, `key=value` per line.
//!
//! Every key becomes a `Setting` (source `cpanel.config`, no scope), not only
//! the ones today's rules read: the settings that matter against spam
//! (`nobodyspam`, `smtpmailgidonly`, `maxemailsperhour`, the
//! `email_send_limits_*` family, `skipmailman`) sit among hundreds of others,
//! and a rule written next year should not need a host change. A bare `key`
//! is how cPanel writes "unset" (e.g. `maxemailsperhour` with no limit), so it
//! is kept as `value: None`, distinct from `key=` (`Some("")`).

use std::path::PathBuf;

use super::{Scan, is_word};

/// Where the file lives under the root.
const PATH: &str = "var/cpanel/cpanel.config";

/// `source` of the settings read here.
const SOURCE: &str = "cpanel.config";

/// What was read, for the readers that depend on a setting (Mailman).
#[derive(Debug)]
pub(super) struct CpanelConfig {
    /// `root.join(PATH)`.
    pub(super) path: PathBuf,
    /// `(key, value, line)` in file order.
    entries: Vec<(String, Option<String>, u64)>,
}

impl CpanelConfig {
    /// The value of `key` and its line. When a key repeats, the last line
    /// wins, as it does for cPanel's own loader.
    pub(super) fn get(&self, key: &str) -> Option<(Option<&str>, u64)> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, line)| (v.as_deref(), *line))
    }
}

/// Reads `cpanel.config` into settings; `None` when the server has none (or
/// it could not be read), which also tells the caller it is not cPanel.
pub(super) fn read(scan: &mut Scan) -> Option<CpanelConfig> {
    let path = scan.path(PATH);
    let mut entries = Vec::new();
    let read = scan.each_line(&path, |sink, origin, line| {
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (line.trim(), None),
        };
        if !is_word(key) {
            return Err(format!(
                "expected `key=value` or a bare `key`, found {line:?}"
            ));
        }
        sink.setting(origin, SOURCE, None, key, value);
        entries.push((key.to_owned(), value.map(str::to_owned), origin.line));
        Ok(())
    });
    read.then_some(CpanelConfig { path, entries })
}

#[cfg(test)]
mod tests {
    use crate::tests::{Tree, settings};

    #[test]
    fn every_key_is_a_setting_bare_key_is_unset() {
        let tree = Tree::new();
        tree.write(
            "var/cpanel/cpanel.config",
            "# WHM tweak settings\n\
             nobodyspam=1\r\n\
             \n\
             maxemailsperhour\n\
             emailsperdaynotify=\n\
             email_send_limits_defer_cutoff = 125 \n\
             some_future_key=a=b\n",
        );
        let (events, report) = tree.read();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(
            settings(&events, "cpanel.config"),
            vec![
                (None, "nobodyspam".into(), Some("1".into()), 2),
                (None, "maxemailsperhour".into(), None, 4),
                (None, "emailsperdaynotify".into(), Some("".into()), 5),
                (
                    None,
                    "email_send_limits_defer_cutoff".into(),
                    Some("125".into()),
                    6
                ),
                (None, "some_future_key".into(), Some("a=b".into()), 7),
            ]
        );
        let origin = &events[0];
        assert_eq!(
            &*origin.file,
            tree.root()
                .join("var/cpanel/cpanel.config")
                .display()
                .to_string()
        );
        assert_eq!(origin.time, crate::tests::at());
    }

    #[test]
    fn garbage_lines_are_problems_with_line_numbers() {
        let tree = Tree::new();
        tree.write_bytes(
            "var/cpanel/cpanel.config",
            b"nobodyspam=0\nthis is not a key\n=orphan value\n\xff\xfe\n",
        );
        let (events, report) = tree.read();
        assert_eq!(settings(&events, "cpanel.config").len(), 1);
        let lines: Vec<_> = report.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(2), Some(3), Some(4)]);
        assert!(report.problems[0].to_string().contains("cpanel.config:2: "));
    }
}
