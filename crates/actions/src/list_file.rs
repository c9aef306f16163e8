//! spamward's hold and suspend lists for plain Exim: one login, address,
//! account or domain a line, read by the shipped ACL with `lsearch`.
//!
//! The file is rewritten whole (a temporary file renamed over it), so Exim
//! reading it mid-change sees the old list or the new one, never half.
//! Lines starting with `#` are comments to Exim and are kept.

use std::io;
use std::path::{Path, PathBuf};

/// The header a new list starts with.
const HEADER: &str = "# Managed by spamward: one login, address, account or domain a line.\n\
                      # Exim's ACL reads it with lsearch; `spamward actions release` removes entries.\n";

/// One list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFile {
    path: PathBuf,
}

impl ListFile {
    /// The list at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ListFile { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates it empty when it does not exist (Exim's `lsearch` fails on
    /// a missing file).
    pub fn ensure(&self) -> io::Result<()> {
        if self.path.exists() {
            return Ok(());
        }
        self.write(&[], HEADER)
    }

    /// The entries, lower-cased, comments aside.
    pub fn entries(&self) -> io::Result<Vec<String>> {
        Ok(self.read()?.0)
    }

    /// Adds `entry`; whether it was not there yet.
    pub fn add(&self, entry: &str) -> io::Result<bool> {
        let entry = valid(entry)?;
        let (mut entries, comments) = self.read()?;
        if entries.contains(&entry) {
            return Ok(false);
        }
        entries.push(entry);
        self.write(&entries, &comments)?;
        Ok(true)
    }

    /// Removes `entry`; whether it was there.
    pub fn remove(&self, entry: &str) -> io::Result<bool> {
        let entry = valid(entry)?;
        let (mut entries, comments) = self.read()?;
        let before = entries.len();
        entries.retain(|e| *e != entry);
        if entries.len() == before {
            return Ok(false);
        }
        self.write(&entries, &comments)?;
        Ok(true)
    }

    fn read(&self) -> io::Result<(Vec<String>, String)> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => HEADER.to_owned(),
            Err(e) => return Err(self.context(e)),
        };
        let mut entries = Vec::new();
        let mut comments = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                comments.push_str(line);
                comments.push('\n');
            } else if !line.is_empty() {
                entries.push(line.to_ascii_lowercase());
            }
        }
        Ok((entries, comments))
    }

    fn write(&self, entries: &[String], comments: &str) -> io::Result<()> {
        let mut text = comments.to_owned();
        for e in entries {
            text.push_str(e);
            text.push('\n');
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = self.path.with_file_name(format!(".{name}.spamward-new"));
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &self.path))
            .map_err(|e| self.context(e))
    }

    fn context(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }
}

/// An entry Exim's `lsearch` reads as one key: no white space, no colon,
/// no quote, not a comment.
fn valid(entry: &str) -> io::Result<String> {
    let bad = entry.is_empty()
        || entry.starts_with('#')
        || entry
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '"'));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{entry:?} cannot be a list entry (white space, a colon or a quote)"),
        ));
    }
    Ok(entry.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_added_once_removed_and_the_comments_kept() {
        let dir = tempfile::tempdir().unwrap();
        let list = ListFile::new(dir.path().join("hold"));
        list.ensure().unwrap();
        assert!(list.entries().unwrap().is_empty());
        assert!(
            std::fs::read_to_string(list.path())
                .unwrap()
                .starts_with("# Managed by spamward")
        );
        assert!(list.add("Bob@Example.com").unwrap());
        assert!(!list.add("bob@example.com").unwrap(), "already there");
        assert!(list.add("carol").unwrap());
        assert_eq!(list.entries().unwrap(), ["bob@example.com", "carol"]);
        assert!(list.remove("BOB@example.com").unwrap());
        assert!(!list.remove("bob@example.com").unwrap());
        let text = std::fs::read_to_string(list.path()).unwrap();
        assert!(text.starts_with("# Managed by spamward"), "{text}");
        assert!(text.ends_with("\ncarol\n"), "{text}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
    }

    #[test]
    fn an_entry_exim_would_misread_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let list = ListFile::new(dir.path().join("hold"));
        for bad in ["", "a b", "a:b", "#x", "a\"b", "a\nb"] {
            assert_eq!(
                list.add(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        assert!(!list.path().exists());
    }

    #[test]
    fn a_list_in_a_missing_directory_names_the_file() {
        let list = ListFile::new("/nonexistent/spamward/hold");
        let e = list.add("bob").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/spamward/"), "{e}");
    }
}
