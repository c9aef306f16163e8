//! The part of an Exim log line before the message: the timestamp (with
//! optional microseconds and UTC offset), a syslog/journal tag
//! (`host exim[pid]: `) and Exim's own `[pid]`.

use super::fields::split_word;
use spamward_model::clock::WrittenTime;
use spamward_model::event::Timestamp;

/// A line split into when, which process, and what was said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Prefix<'a> {
    pub time: WrittenTime,
    pub pid: Option<u32>,
    pub body: &'a str,
}

/// The last `YYYY-MM-DD HH:MM:SS` read and the civil seconds it names.
///
/// A busy log writes many lines in a second, and comparing 19 bytes is
/// cheaper than reading six numbers and counting days (5 % of parsing).
#[derive(Debug, Default)]
pub(super) struct StampCache {
    last: Option<([u8; 19], i64)>,
}

impl StampCache {
    /// The civil seconds of the time `stamp` spells, read or remembered.
    fn civil(&mut self, stamp: &[u8; 19]) -> Option<i64> {
        if let Some((text, civil)) = self.last
            && text == *stamp
        {
            return Some(civil);
        }
        let b = stamp;
        if b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let year = digits(b, 0, 4)?;
        let month = digits(b, 5, 2)?;
        let day = digits(b, 8, 2)?;
        let hour = digits(b, 11, 2)?;
        let minute = digits(b, 14, 2)?;
        let second = digits(b, 17, 2)?;
        let civil = Timestamp::from_civil(year as i32, month, day, hour, minute, second)?.seconds;
        self.last = Some((*stamp, civil));
        Some(civil)
    }
}

/// Splits a line into its prefix and body; `None` when no timestamp is found.
pub(super) fn split<'a>(line: &'a str, stamps: &mut StampCache) -> Option<Prefix<'a>> {
    let (time, mut rest, mut pid) = match parse_time(line, stamps) {
        Some((time, rest)) => {
            let mut pid = None;
            let mut rest = rest;
            if let Some((p, r)) = skip_syslog_tag(rest) {
                pid = Some(p);
                rest = r;
            }
            (time, rest, pid)
        }
        None => {
            // journal / syslog forwarders put the tag first and Exim's own
            // timestamp after it: `host exim[123]: 2021-07-17 23:20:49 ...`.
            let (p, after) = find_syslog_tag(line)?;
            let (time, rest) = parse_time(after, stamps)?;
            (time, rest, Some(p))
        }
    };
    if let Some((p, r)) = bracket_pid(rest) {
        pid = Some(p);
        rest = r;
    }
    Some(Prefix {
        time,
        pid,
        body: rest,
    })
}

fn digits(b: &[u8], from: usize, n: usize) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b.get(from..from + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ +HHMM]` at the start of `s`, then one space.
pub(super) fn parse_time<'a>(
    s: &'a str,
    stamps: &mut StampCache,
) -> Option<(WrittenTime, &'a str)> {
    let b = s.as_bytes();
    let mut time = WrittenTime {
        civil: stamps.civil(b.first_chunk::<19>()?)?,
        offset_minutes: None,
    };
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if b.get(i) == Some(&b' ')
        && matches!(b.get(i + 1), Some(b'+' | b'-'))
        && matches!(b.get(i + 6), None | Some(b' '))
        && let (Some(hh), Some(mm)) = (digits(b, i + 2, 2), digits(b, i + 4, 2))
        && hh <= 23
        && mm <= 59
    {
        let minutes = (hh * 60 + mm) as i16;
        time.offset_minutes = Some(if b[i + 1] == b'-' { -minutes } else { minutes });
        i += 6;
    }
    match b.get(i) {
        None => Some((time, "")),
        Some(b' ') => Some((time, s.get(i + 1..)?)),
        _ => None,
    }
}

/// `exim[123]:` or `exim4[123]:` → the pid.
fn exim_tag(tok: &str) -> Option<u32> {
    let inner = tok.strip_suffix("]:")?;
    let (name, pid) = inner.split_once('[')?;
    if !name.starts_with("exim") || name.len() > 8 {
        return None;
    }
    pid.parse().ok()
}

/// After a timestamp: `exim[pid]: ` or `host exim[pid]: ` (one word before).
fn skip_syslog_tag(rest: &str) -> Option<(u32, &str)> {
    let (t1, after1) = split_word(rest)?;
    if let Some(pid) = exim_tag(t1) {
        return Some((pid, after1));
    }
    if !after1.as_bytes().starts_with(b"exim") {
        return None;
    }
    let (t2, after2) = split_word(after1)?;
    exim_tag(t2).map(|pid| (pid, after2))
}

/// Anywhere in the first words of a line without a leading timestamp.
fn find_syslog_tag(line: &str) -> Option<(u32, &str)> {
    let end = line.find("]: ")?;
    if end > 200 {
        return None;
    }
    let tok_start = line[..end].rfind(' ').map_or(0, |p| p + 1);
    let pid = exim_tag(line.get(tok_start..end + 2)?)?;
    Some((pid, line.get(end + 3..)?))
}

/// Exim's `[pid] ` (log_selector `+pid`).
fn bracket_pid(rest: &str) -> Option<(u32, &str)> {
    let inner = rest.strip_prefix('[')?;
    let (pid, after) = inner
        .split_once("] ")
        .or_else(|| inner.strip_suffix(']').map(|p| (p, "")))?;
    if pid.is_empty() || pid.len() > 10 {
        return None;
    }
    Some((pid.parse().ok()?, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    use spamward_model::{LocalClock, LocalZone};

    /// A line split on its own.
    fn split(line: &str) -> Option<Prefix<'_>> {
        super::split(line, &mut StampCache::default())
    }

    /// The time as an event shows it (a log read as UTC).
    fn t(s: &str) -> String {
        let time = split(s).unwrap().time;
        LocalClock::new(LocalZone::utc()).resolve(time).to_string()
    }

    fn civil(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Timestamp::from_civil(y, mo, d, h, mi, s).unwrap().seconds
    }

    #[test]
    fn plain_micro_offset_and_pid() {
        let line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb Completed";
        let p = split(line).unwrap();
        assert_eq!(t(line), "2019-04-21T04:33:14");
        assert_eq!(p.time.civil, civil(2019, 4, 21, 4, 33, 14));
        assert_eq!(p.time.offset_minutes, None);
        assert_eq!(p.pid, None);
        assert_eq!(p.body, "1hIAif-00H7J4-Lb Completed");

        let line = "2019-04-21 04:33:14.123456 +0100 [77] x";
        let p = split(line).unwrap();
        assert_eq!(t(line), "2019-04-21T04:33:14+01:00");
        assert_eq!(p.time.civil, civil(2019, 4, 21, 4, 33, 14));
        assert_eq!(p.time.offset_minutes, Some(60));
        assert_eq!(p.pid, Some(77));
        assert_eq!(p.body, "x");

        assert_eq!(
            t("2019-04-21 04:33:14 -0530 x"),
            "2019-04-21T04:33:14-05:30"
        );
        assert!(split("2019-13-21 04:33:14 x").is_none());
        assert!(split("2019-04-21 04:33:14x").is_none());
        assert!(split("2019-04-21 04:33").is_none());
    }

    #[test]
    fn a_remembered_stamp_is_only_reused_for_the_same_text() {
        let mut stamps = StampCache::default();
        let mut civil_of = |line| super::split(line, &mut stamps).map(|p| p.time.civil);
        let first = civil(2019, 4, 21, 4, 33, 14);
        assert_eq!(civil_of("2019-04-21 04:33:14 a"), Some(first));
        assert_eq!(civil_of("2019-04-21 04:33:14.5 +0100 b"), Some(first));
        assert_eq!(civil_of("2019-04-21 04:33:15 c"), Some(first + 1));
        assert_eq!(civil_of("2019-04-22 04:33:15 d"), Some(first + 86_401));
        assert_eq!(civil_of("2019-13-22 04:33:15 e"), None);
        assert_eq!(civil_of("2019-04-22 04:33:15 f"), Some(first + 86_401));
    }

    #[test]
    fn syslog_and_journal_tags() {
        let p = split("2019-10-22 03:39:17 mx1.fqdn.local exim[29786]: dovecot_login x").unwrap();
        assert_eq!(p.pid, Some(29786));
        assert_eq!(p.body, "dovecot_login x");

        let p = split("2016-04-01 11:08:00 info exim[8003]: [8004] SMTP x").unwrap();
        assert_eq!(p.pid, Some(8004));
        assert_eq!(p.body, "SMTP x");

        let line = "mail.example.com exim[3751842]: 2021-07-17 23:20:49 plain x";
        let p = split(line).unwrap();
        assert_eq!(t(line), "2021-07-17T23:20:49");
        assert_eq!(p.pid, Some(3751842));
        assert_eq!(p.body, "plain x");

        assert!(split("Feb 21 09:21:54 xxx postfix/smtpd[14398]: NOQUEUE: reject").is_none());
    }
}
