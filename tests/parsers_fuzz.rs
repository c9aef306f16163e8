//! Property tests of the three parsers that read what strangers write: the
//! mainlog parser, the spool `-H` reader and the `exim -bp` reader. Inputs
//! are real lines and files (the repository's sample log, the corpus) cut,
//! spliced and mutated byte by byte, and arbitrary text: no input may make a
//! parser panic, and every line is accounted for. Bounded in cases so the
//! suite stays quick; `PROPTEST_CASES` runs more.

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use spamward_exim::queue::{ListingParser, parse_header_bytes, parse_queue_listing};
use spamward_exim::{EximLogParser, LineOutcome};
use spamward_model::{Origin, Timestamp};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn real_lines() -> Vec<String> {
    let mut lines: Vec<String> =
        std::fs::read_to_string(workspace().join("examples/logs/mainlog-sample"))
            .unwrap()
            .lines()
            .take(600)
            .map(str::to_owned)
            .collect();
    for file in [
        "tests/corpus/peer/fail2ban/exim",
        "tests/corpus/peer/fail2ban/exim-spam",
    ] {
        let text = std::fs::read_to_string(workspace().join(file)).unwrap();
        lines.extend(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    lines
}

fn spool_files() -> Vec<Vec<u8>> {
    let dir = workspace().join("tests/corpus/peer/csm-php-relay");
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "H"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    files.sort();
    files
}

const LISTING: &str = "25m  2.9K 0t5C6f-0000c8-00 <alice@wonderland.fict.example>\n          red.king@looking-glass.fict.example\n        D white.rabbit@wonderland.fict.example\n\n 5m   367 1xWjHO-0003vo-0m <> *** frozen ***\n          a@b.example\n\n45s 512 1wHpIU-0000000G8Fo-1FA1 <x@y.example> (webuser)\n          *** spool format error ***\n";

/// One edit of a byte string: overwrite, insert, delete or cut.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Cut(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 0usize..32).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::Cut),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Set(i, b) => {
                if let Some(x) = bytes.get_mut(i % len) {
                    *x = *b;
                }
            }
            Edit::Insert(i, b) => {
                let at = (i % len).min(bytes.len());
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Delete(i, n) => {
                let at = (i % len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Edit::Cut(i) => bytes.truncate(i % len),
        }
    }
}

fn origin() -> Origin {
    Origin {
        file: Arc::from("fuzz"),
        line: 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Real log lines, mutated and shuffled together: the parser reads each
    /// as understood, ignored or unparsed, never panics, and releases every
    /// event it held by `finish`.
    #[test]
    fn mainlog_parser_takes_any_line(
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..40),
        edits in prop::collection::vec(prop::collection::vec(edit(), 0..4), 40),
        junk in prop::collection::vec(".{0,300}", 0..5),
    ) {
        let lines = real_lines();
        let mut parser = EximLogParser::new();
        let mut out = Vec::new();
        let mut counted = 0;
        for (i, pick) in picks.iter().enumerate() {
            let mut bytes = pick.get(&lines).clone().into_bytes();
            apply(&mut bytes, &edits[i]);
            let line = String::from_utf8_lossy(&bytes);
            let outcome = parser.push_line(&line, &origin(), &mut out);
            prop_assert!(matches!(
                outcome,
                LineOutcome::Understood | LineOutcome::Ignored | LineOutcome::Unparsed
            ));
            counted += 1;
        }
        for line in &junk {
            parser.push_line(line, &origin(), &mut out);
            counted += 1;
        }
        parser.finish(&mut out);
        prop_assert!(counted > 0);
        // Events come from lines, a few per line at most.
        prop_assert!(out.len() <= 4 * counted);
    }

    /// Real spool header files, mutated: a parse error or an event, never a
    /// panic.
    #[test]
    fn spool_header_reader_takes_any_file(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 0..12),
        arbitrary in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let files = spool_files();
        let mut bytes = pick.get(&files).clone();
        apply(&mut bytes, &edits);
        let _ = parse_header_bytes(&bytes, "fuzz-H", Timestamp::naive(1_700_000_000), None);
        let _ = parse_header_bytes(&arbitrary, "fuzz-H", Timestamp::naive(0), Some(1));
    }

    /// A real listing, mutated: read whole or line by line it gives the same
    /// messages and the same errors, and never panics.
    #[test]
    fn queue_listing_reader_takes_any_text(
        edits in prop::collection::vec(edit(), 0..12),
    ) {
        let mut bytes = LISTING.as_bytes().to_vec();
        apply(&mut bytes, &edits);
        let text = String::from_utf8_lossy(&bytes);
        let now = Timestamp::naive(1_700_000_000);
        let mut whole = Vec::new();
        let errors = parse_queue_listing(&text, "fuzz", now, &mut whole);
        let mut streamed = Vec::new();
        let mut parser = ListingParser::new("fuzz", now);
        for (i, line) in text.lines().enumerate() {
            parser.push_line(i as u64 + 1, line, &mut streamed);
        }
        let streamed_errors = parser.finish(&mut streamed);
        prop_assert_eq!(errors, streamed_errors);
        prop_assert_eq!(whole.len(), streamed.len());
    }
}
