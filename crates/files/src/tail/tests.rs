use super::*;

use std::fs::OpenOptions;
use std::io::Write;

/// A log directory of its own.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn log(&self) -> PathBuf {
        self.path("mainlog")
    }

    fn append(&self, name: &str, text: &str) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(name))
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
}

/// Every line a poll hands over, as text.
fn poll(f: &mut Follower) -> Vec<String> {
    let mut lines = Vec::new();
    f.poll(&mut |l: &[u8]| lines.push(String::from_utf8_lossy(l).into_owned()))
        .unwrap();
    lines
}

fn open(d: &Dir, start: Start) -> (Follower, Resumed) {
    Follower::open(&d.log(), start).unwrap()
}

#[test]
fn a_partial_line_waits_for_its_newline_and_the_position_stays_before_it() {
    let d = Dir::new();
    d.append("mainlog", "one\ntw");
    let (mut f, resumed) = open(&d, Start::Beginning);
    assert_eq!(resumed, Resumed::Fresh);
    assert_eq!(poll(&mut f), ["one"]);
    assert_eq!(f.position().unwrap().offset, 4, "the start of `tw`");
    d.append("mainlog", "o\nthree\n");
    assert_eq!(poll(&mut f), ["two", "three"]);
    assert_eq!(f.position().unwrap().offset, 14);
    assert!(poll(&mut f).is_empty());
}

#[test]
fn rename_and_create_reads_the_old_file_to_its_end_first_late_lines_too() {
    let d = Dir::new();
    d.append("mainlog", "1\n2\n");
    let (mut f, _) = open(&d, Start::Beginning);
    assert_eq!(poll(&mut f), ["1", "2"]);
    d.append("mainlog", "3\n");
    fs::rename(d.log(), d.path("mainlog.1")).unwrap();
    d.append("mainlog", "5\n");
    // The writer had not reopened yet: a late line in the renamed file.
    d.append("mainlog.1", "4\n");
    assert_eq!(poll(&mut f), ["3", "4", "5"]);
    d.append("mainlog.1", "4b\n");
    d.append("mainlog", "6\n");
    assert_eq!(poll(&mut f), ["4b", "6"]);
}

#[test]
fn copytruncate_finds_the_lines_written_since_the_last_poll_in_the_copy() {
    let d = Dir::new();
    d.append("mainlog", "2024-05-01 10:00:00 a\n");
    let (mut f, _) = open(&d, Start::Beginning);
    assert_eq!(poll(&mut f), ["2024-05-01 10:00:00 a"]);
    d.append("mainlog", "2024-05-01 10:00:01 b\n");
    // logrotate's copytruncate: copy, then truncate in place.
    fs::copy(d.log(), d.path("mainlog.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(d.log())
        .unwrap()
        .set_len(0)
        .unwrap();
    d.append("mainlog", "2024-05-01 10:00:02 c\n");
    assert_eq!(
        poll(&mut f),
        ["2024-05-01 10:00:01 b", "2024-05-01 10:00:02 c"]
    );
    assert_eq!(f.position().unwrap().offset, 22);
}

#[test]
fn delete_and_recreate_and_a_rotated_file_compressed_later_lose_nothing() {
    let d = Dir::new();
    d.append("mainlog", "1\n");
    let (mut f, _) = open(&d, Start::Beginning);
    assert_eq!(poll(&mut f), ["1"]);
    d.append("mainlog", "2\n");
    fs::remove_file(d.log()).unwrap();
    assert_eq!(poll(&mut f), ["2"], "the deleted file's last line");
    assert!(f.position().is_none(), "nothing at the path yet");
    d.append("mainlog", "3\n");
    assert_eq!(poll(&mut f), ["3"]);

    d.append("mainlog", "4\n");
    fs::rename(d.log(), d.path("mainlog.1")).unwrap();
    // Compressed (here: copied to .gz) and removed before the next poll.
    fs::copy(d.path("mainlog.1"), d.path("mainlog.1.gz")).unwrap();
    fs::remove_file(d.path("mainlog.1")).unwrap();
    d.append("mainlog", "5\n");
    assert_eq!(poll(&mut f), ["4", "5"]);
}

#[test]
fn a_log_that_does_not_exist_yet_is_read_whole_once_it_appears() {
    let d = Dir::new();
    let (mut f, _) = open(&d, Start::End);
    assert!(poll(&mut f).is_empty());
    assert!(f.position().is_none());
    d.append("mainlog", "first\nsecond\n");
    assert_eq!(poll(&mut f), ["first", "second"]);
}

#[test]
fn start_at_end_reads_only_what_comes_next() {
    let d = Dir::new();
    d.append("mainlog", "old\n");
    let (mut f, _) = open(&d, Start::End);
    assert!(poll(&mut f).is_empty());
    d.append("mainlog", "new\n");
    assert_eq!(poll(&mut f), ["new"]);
}

#[test]
fn a_saved_position_resumes_in_place_in_the_renamed_file_or_from_the_start() {
    let d = Dir::new();
    d.append("mainlog", "2024 a\n2024 b\n");
    let (mut f, _) = open(&d, Start::Beginning);
    assert_eq!(poll(&mut f).len(), 2);
    let saved = f.position().unwrap();
    drop(f);

    d.append("mainlog", "2024 c\n");
    let (mut f, resumed) = open(&d, Start::At(saved.clone()));
    assert_eq!(resumed, Resumed::Continued);
    assert_eq!(poll(&mut f), ["2024 c"]);

    // Rotated while stopped: the rest of the old file first.
    fs::rename(d.log(), d.path("mainlog.1")).unwrap();
    d.append("mainlog", "2025 d\n");
    let (mut f, resumed) = open(&d, Start::At(saved.clone()));
    assert_eq!(resumed, Resumed::FromRotated(d.path("mainlog.1")));
    assert_eq!(poll(&mut f), ["2024 c", "2025 d"]);

    // Gone altogether: the new file from its start.
    fs::remove_file(d.path("mainlog.1")).unwrap();
    let (mut f, resumed) = open(&d, Start::At(saved));
    assert_eq!(resumed, Resumed::Restarted);
    assert_eq!(poll(&mut f), ["2025 d"]);
}

#[test]
fn an_endless_line_is_cut_and_memory_stays_bounded() {
    let d = Dir::new();
    let (mut f, _) = open(&d, Start::Beginning);
    let mut cut = 0;
    let mut lines = Vec::new();
    for _ in 0..40 {
        d.append("mainlog", &"\0".repeat(MAX_LINE / 4));
        let stats = f.poll(&mut |l: &[u8]| lines.push(l.len())).unwrap();
        cut += stats.truncated;
        let held = f.current.as_ref().unwrap().partial.len();
        assert!(held <= MAX_LINE, "{held} bytes held");
    }
    d.append("mainlog", "\nnext\n");
    f.poll(&mut |l: &[u8]| lines.push(l.len())).unwrap();
    assert_eq!(lines, [MAX_LINE, 4], "the cut line once, then the next");
    assert_eq!(cut, 1);
}

#[test]
fn a_fifo_at_the_path_is_an_error_not_a_hang() {
    let d = Dir::new();
    let c = std::ffi::CString::new(d.log().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo does not keep it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = Follower::open(&d.log(), Start::Beginning)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("named pipe"), "{e}");
}

#[test]
fn every_line_arrives_once_in_order_through_every_kind_of_rotation() {
    const LINES: usize = 20_000;
    let d = std::sync::Arc::new(Dir::new());
    let (mut f, _) = open(&d, Start::Beginning);
    let (pause_tx, pause_rx) = std::sync::mpsc::channel::<std::sync::mpsc::Sender<()>>();
    let writer = {
        let d = d.clone();
        std::thread::spawn(move || {
            for i in 0..LINES {
                d.append("mainlog", &format!("2024-05-01 line {i:06}\n"));
                if i % 500 == 499 {
                    // Between bursts the test may rotate.
                    if let Ok(resume) = pause_rx.try_recv() {
                        let _ = resume.send(());
                        // Wait for the test to say it is done.
                        let _ = pause_rx.recv().map(|done| done.send(()));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        })
    };
    let mut seen = Vec::new();
    let mut rotations = 0;
    while !writer.is_finished() || seen.len() < LINES {
        let before = seen.len();
        f.poll(&mut |l: &[u8]| seen.push(String::from_utf8_lossy(l).into_owned()))
            .unwrap();
        if seen.len() > before && seen.len() > (rotations + 1) * 4000 && rotations < 3 {
            // Pause the writer between bursts, rotate, let it go on.
            let (ack_tx, ack_rx) = std::sync::mpsc::channel();
            pause_tx.send(ack_tx).unwrap();
            ack_rx.recv().unwrap();
            match rotations {
                0 => fs::rename(d.log(), d.path(&format!("mainlog.{rotations}"))).unwrap(),
                1 => {
                    fs::copy(d.log(), d.path("mainlog.copy")).unwrap();
                    OpenOptions::new()
                        .write(true)
                        .open(d.log())
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
                _ => fs::remove_file(d.log()).unwrap(),
            }
            rotations += 1;
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            pause_tx.send(done_tx).unwrap();
            done_rx.recv().unwrap();
        }
        if writer.is_finished() && seen.len() == before {
            break;
        }
    }
    writer.join().unwrap();
    // What arrived after the writer stopped.
    for _ in 0..(RETIRED_IDLE_POLLS + 2) {
        f.poll(&mut |l: &[u8]| seen.push(String::from_utf8_lossy(l).into_owned()))
            .unwrap();
    }
    assert_eq!(rotations, 3);
    let expected: Vec<String> = (0..LINES)
        .map(|i| format!("2024-05-01 line {i:06}"))
        .collect();
    assert_eq!(seen.len(), expected.len());
    assert!(seen == expected, "every line once, in order");
}

#[test]
fn a_backlog_is_read_in_pieces_of_about_the_budget() {
    let d = Dir::new();
    let text: String = (0..10_000).map(|i| format!("line {i:05}\n")).collect();
    d.append("mainlog", &text);
    let (mut f, _) = open(&d, Start::Beginning);
    let mut seen = Vec::new();
    let mut polls = 0;
    loop {
        let before = seen.len();
        let stats = f
            .poll_some(CHUNK as u64, &mut |l: &[u8]| {
                seen.push(String::from_utf8_lossy(l).into_owned())
            })
            .unwrap();
        polls += 1;
        assert!(
            seen.len() - before <= CHUNK / 11 + 1,
            "one budget's worth per poll"
        );
        if !stats.more {
            break;
        }
    }
    assert!(polls > 1, "read in {polls} pieces");
    let expected: Vec<String> = (0..10_000).map(|i| format!("line {i:05}")).collect();
    assert_eq!(seen, expected);
}
