//! cPanel's bundled Mailman: whether it is enabled and how many lists exist.
//!
//! Mailman left enabled with no lists is attack surface for nothing (its
//! subscription and bounce mail is a known spam vector), so the `mailman`
//! rule wants both facts. cPanel turns it off with `skipmailman=1` in
//! `cpanel.config`, hence this is read only on servers that have that file.

use std::sync::Arc;

use spamward_model::{EventBody, Origin, ServiceState};

use super::cpanel_config::CpanelConfig;
use super::{Kind, Scan};

/// Where cPanel's Mailman keeps one directory per list.
const LISTS_DIR: &str = "usr/local/cpanel/3rdparty/mailman/lists";

/// Mailman's own site list, present on every install: not a customer list.
const SITE_LIST: &str = "mailman";

/// One `mailman` event. Its origin is the `skipmailman` line of
/// `cpanel.config` (line 0 when the key is absent, which means enabled):
/// that line is what an admin would change.
pub(super) fn read(scan: &mut Scan, config: &CpanelConfig) {
    let (skip, line) = config.get("skipmailman").unwrap_or((None, 0));
    let enabled = skip != Some("1");
    let lists_dir = scan.path(LISTS_DIR);
    let lists = scan.list_dir(&lists_dir, true).map_or(0, |entries| {
        entries
            .iter()
            .filter(|e| e.kind == Kind::Dir && e.name != SITE_LIST)
            .count()
    });
    let file: Arc<str> = config.path.display().to_string().into();
    scan.sink.emit(
        &Origin { file, line },
        EventBody::ServiceState(ServiceState {
            name: "mailman".into(),
            enabled,
            details: vec![
                ("lists".into(), lists.to_string().into()),
                ("lists_dir".into(), lists_dir.display().to_string().into()),
            ],
        }),
    );
}

#[cfg(test)]
mod tests {
    use crate::tests::{Tree, services};

    fn details(tree: &Tree, lists: usize) -> Vec<(String, String)> {
        vec![
            ("lists".into(), lists.to_string()),
            (
                "lists_dir".into(),
                tree.root()
                    .join("usr/local/cpanel/3rdparty/mailman/lists")
                    .display()
                    .to_string(),
            ),
        ]
    }

    #[test]
    fn not_cpanel_no_event() {
        let tree = Tree::new();
        tree.mkdir("usr/local/cpanel/3rdparty/mailman/lists/news_shop.example");
        let (events, _) = tree.read();
        assert!(services(&events, "mailman").is_empty());
    }

    #[test]
    fn enabled_unless_skipmailman_is_1_and_site_list_not_counted() {
        let tree = Tree::new();
        tree.write("var/cpanel/cpanel.config", "nobodyspam=1\nskipmailman=0\n");
        tree.mkdir("usr/local/cpanel/3rdparty/mailman/lists/mailman");
        tree.mkdir("usr/local/cpanel/3rdparty/mailman/lists/news_shop.example");
        tree.write("usr/local/cpanel/3rdparty/mailman/lists/stray-file", "");
        let (events, _) = tree.read();
        assert_eq!(
            services(&events, "mailman"),
            vec![(true, details(&tree, 1), 2)]
        );

        tree.write("var/cpanel/cpanel.config", "skipmailman=1\n");
        let (events, _) = tree.read();
        assert_eq!(
            services(&events, "mailman"),
            vec![(false, details(&tree, 1), 1)]
        );
    }

    #[test]
    fn absent_key_means_enabled_and_missing_lists_dir_means_none() {
        let tree = Tree::new();
        tree.write("var/cpanel/cpanel.config", "nobodyspam=1\n");
        let (events, report) = tree.read();
        assert!(report.problems.is_empty());
        assert_eq!(
            services(&events, "mailman"),
            vec![(true, details(&tree, 0), 0)]
        );
    }
}
