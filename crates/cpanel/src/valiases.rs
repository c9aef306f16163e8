//! `/etc/valiases/<domain>`: a domain's forwarders and its default address.
//!
//! Each file is an Exim `lsearch` table named after its domain, one
//! `local-part: target` per line. The line that matters most against spam is
//! the catch-all `*:`. `:fail:` accepts mail for unknown users and then bounces
//! it to forged senders (backscatter); `:blackhole:` or a real mailbox does
//! not. Targets are kept exactly as written (trimmed) because their meaning
//! lies in details such as `:fail:`, a quoted pipe or a comma-separated list,
//! and deciding what they mean is a rule's job.

use spamward_model::{EventBody, MailAlias, Text};

use super::Scan;

/// Reads every alias file.
pub(super) fn read(scan: &mut Scan) {
    let dir = scan.path("etc/valiases");
    for entry in scan.files_in(&dir) {
        let domain = entry.name.to_ascii_lowercase();
        scan.each_line(&entry.path, |sink, origin, line| {
            // The first colon ends the key: targets such as `:fail: No Such
            // User Here` hold colons of their own.
            let Some((key, target)) = line.split_once(':') else {
                return Err(format!("expected `local-part: target`, found {line:?}"));
            };
            let key = key.trim();
            // `ventas@principal-ci.com` and plain `ventas` both mean the
            // local part `ventas` in this domain's file.
            let local_part = key.rsplit_once('@').map_or(key, |(local, _)| local);
            if local_part.is_empty() {
                return Err(format!("no local part before the colon in {line:?}"));
            }
            sink.emit(
                origin,
                EventBody::MailAlias(MailAlias {
                    domain: domain.clone().into(),
                    local_part: Text::owned(local_part),
                    target: Text::owned(target.trim()),
                }),
            );
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{Tree, aliases};

    fn a(domain: &str, local: &str, target: &str, line: u64) -> crate::tests::A {
        (domain.into(), local.into(), target.into(), line)
    }

    #[test]
    fn catch_alls_forwarders_and_pipes_as_written() {
        let tree = Tree::new();
        tree.write(
            "etc/valiases/principal-ci.com",
            "ventas@principal-ci.com: juan@principal-ci.com,externo-ci@example.org\n\
             pipe@principal-ci.com: \"|/home/cpclient/script.php\"\n\
             *: :fail: No Such User Here\n",
        );
        tree.write(
            "etc/valiases/other.example",
            "*: :blackhole:\r\nbob: cpclient\n",
        );
        tree.write("etc/valiases/third.example", "*: cpclient\n");
        let (events, report) = tree.read();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(
            aliases(&events),
            vec![
                a("other.example", "*", ":blackhole:", 1),
                a("other.example", "bob", "cpclient", 2),
                a(
                    "principal-ci.com",
                    "ventas",
                    "juan@principal-ci.com,externo-ci@example.org",
                    1
                ),
                a(
                    "principal-ci.com",
                    "pipe",
                    "\"|/home/cpclient/script.php\"",
                    2
                ),
                a("principal-ci.com", "*", ":fail: No Such User Here", 3),
                a("third.example", "*", "cpclient", 1),
            ]
        );
        let file = tree.root().join("etc/valiases/principal-ci.com");
        assert!(
            events
                .iter()
                .any(|e| *e.file == *file.display().to_string())
        );
    }

    #[test]
    fn malformed_lines_are_problems() {
        let tree = Tree::new();
        tree.write(
            "etc/valiases/x.example",
            "no colon\n@x.example: nobody\ngood: target\n",
        );
        let (events, report) = tree.read();
        assert_eq!(aliases(&events), vec![a("x.example", "good", "target", 3)]);
        let lines: Vec<_> = report.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(1), Some(2)]);
    }
}
