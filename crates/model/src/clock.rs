//! From the wall-clock times a log writes to instants.
//!
//! Exim writes local time without an offset (unless `log_timezone` is set),
//! so the same written time can mean two instants in the hour a daylight
//! saving change repeats, and an hour's worth of written times never happen
//! in spring. Windows must count real elapsed time, or a fall-back hour
//! doubles every hourly count and a spring-forward hour halves it. A
//! [`LocalClock`] turns each written time into the instant it names, in the
//! log's [`LocalZone`], placing a repeated hour by the lines around it.
//!
//! Events keep what was written for display: a [`Timestamp`] prints as the
//! log wrote it, while its `seconds` count real (UTC) time.

use std::fmt;

use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::event::Timestamp;

/// The time zone a source writes its times in.
#[derive(Clone)]
pub struct LocalZone {
    tz: TimeZone,
    name: String,
}

impl fmt::Debug for LocalZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Display for LocalZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Default for LocalZone {
    fn default() -> Self {
        LocalZone::utc()
    }
}

impl LocalZone {
    /// UTC: written times are instants.
    pub fn utc() -> Self {
        LocalZone {
            tz: TimeZone::UTC,
            name: "UTC".into(),
        }
    }

    /// This machine's zone (`TZ`, else `/etc/localtime`), the one a local
    /// Exim writes in; UTC when it cannot be told.
    pub fn system() -> Self {
        match TimeZone::try_system() {
            Ok(tz) => LocalZone {
                name: tz.iana_name().unwrap_or("system").to_owned(),
                tz,
            },
            Err(e) => {
                tracing::warn!("cannot tell this machine's time zone ({e}); reading logs as UTC");
                LocalZone::utc()
            }
        }
    }

    /// A zone by name: `system`, `UTC`, or an IANA name such as
    /// `America/New_York`.
    pub fn named(name: &str) -> Result<Self, String> {
        match name {
            "system" | "local" => Ok(LocalZone::system()),
            "UTC" | "utc" | "Etc/UTC" => Ok(LocalZone::utc()),
            _ => TimeZone::get(name)
                .map(|tz| LocalZone {
                    tz,
                    name: name.to_owned(),
                })
                .map_err(|e| format!("unknown time zone {name:?}: {e}")),
        }
    }

    /// The zone's name, as configured or as the system calls it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A system time (now, a file's modification), shown in this zone: the
    /// time of snapshots the host takes itself.
    pub fn at_system_time(&self, t: std::time::SystemTime) -> Timestamp {
        self.at(Timestamp::from_system_time(t).seconds)
    }

    /// The instant `seconds` (Unix time), shown in this zone.
    pub fn at(&self, seconds: i64) -> Timestamp {
        let offset = jiff::Timestamp::from_second(seconds)
            .map(|ts| self.tz.to_offset(ts).seconds())
            .unwrap_or(0);
        Timestamp::local(seconds, offset_minutes(offset), false)
    }
}

fn offset_minutes(seconds: i32) -> i16 {
    i16::try_from(seconds / 60).unwrap_or(0)
}

/// A time as a log wrote it: the civil date and time counted as seconds
/// from 1970-01-01T00:00:00 of that same clock, and the UTC offset when the
/// log wrote one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenTime {
    /// Seconds of the written wall clock (no zone applied).
    pub civil: i64,
    /// The offset written beside it, in minutes.
    pub offset_minutes: Option<i16>,
}

/// Resolves one source's written times to instants, line after line.
#[derive(Debug, Clone, Default)]
pub struct LocalClock {
    zone: LocalZone,
    /// The last written hour resolved without ambiguity, and its offset in
    /// seconds: nearly every line falls in the hour before it.
    cached: Option<(i64, i32)>,
    /// The instant of the previous line, to place a repeated hour.
    last: Option<i64>,
}

impl LocalClock {
    /// What the clock remembers of the lines before (to resolve the next
    /// ones as it would have), for a checkpoint.
    pub fn memory(&self) -> (Option<(i64, i32)>, Option<i64>) {
        (self.cached, self.last)
    }

    /// A clock in `zone` that remembers what [`LocalClock::memory`] gave.
    pub fn remembering(zone: LocalZone, memory: (Option<(i64, i32)>, Option<i64>)) -> Self {
        LocalClock {
            zone,
            cached: memory.0,
            last: memory.1,
        }
    }

    /// A clock reading times written in `zone`.
    pub fn new(zone: LocalZone) -> Self {
        LocalClock {
            zone,
            cached: None,
            last: None,
        }
    }

    /// The event time of a written time.
    pub fn resolve(&mut self, written: WrittenTime) -> Timestamp {
        if let Some(minutes) = written.offset_minutes {
            let instant = written.civil - i64::from(minutes) * 60;
            self.last = Some(instant);
            return Timestamp::local(instant, minutes, true);
        }
        let offset = self.offset_of(written.civil);
        let instant = written.civil - i64::from(offset);
        self.last = Some(instant);
        Timestamp::local(instant, offset_minutes(offset), false)
    }

    /// The offset (seconds east of UTC) of the written time `civil`.
    fn offset_of(&mut self, civil: i64) -> i32 {
        let hour = civil.div_euclid(3600);
        if let Some((cached_hour, offset)) = self.cached
            && cached_hour == hour
        {
            return offset;
        }
        let start = hour * 3600;
        match (self.ambiguous(start), self.ambiguous(start + 3599)) {
            (
                Some(AmbiguousOffset::Unambiguous { offset: a }),
                Some(AmbiguousOffset::Unambiguous { offset: b }),
            ) if a == b => {
                self.cached = Some((hour, a.seconds()));
                return a.seconds();
            }
            _ => {}
        }
        // A transition falls in this hour: decide line by line.
        match self.ambiguous(civil) {
            Some(AmbiguousOffset::Unambiguous { offset }) => offset.seconds(),
            // Never written by a clock that kept time; read as the clock
            // before the jump would have.
            Some(AmbiguousOffset::Gap { before, .. }) => before.seconds(),
            Some(AmbiguousOffset::Fold { before, after }) => {
                // The same written time names two instants an hour apart:
                // take the one nearer the line before (log lines come in
                // order, give or take seconds), the later on a tie (time
                // goes forward). Without a line before, the first pass.
                let (first, second) = (before.seconds(), after.seconds());
                let (a, b) = (civil - i64::from(first), civil - i64::from(second));
                match self.last {
                    Some(last) if (b - last).abs() <= (a - last).abs() => second,
                    _ => first,
                }
            }
            None => 0,
        }
    }

    fn ambiguous(&self, civil: i64) -> Option<AmbiguousOffset> {
        let dt = jiff::Timestamp::from_second(civil)
            .ok()?
            .to_zoned(TimeZone::UTC)
            .datetime();
        Some(self.zone.tz.to_ambiguous_timestamp(dt).offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil(text: &str) -> WrittenTime {
        let b = text.as_bytes();
        let n = |from: usize, len: usize| text[from..from + len].parse::<u32>().unwrap();
        assert_eq!(b.len(), 19);
        let t = Timestamp::from_civil(
            n(0, 4) as i32,
            n(5, 2),
            n(8, 2),
            n(11, 2),
            n(14, 2),
            n(17, 2),
        )
        .unwrap();
        WrittenTime {
            civil: t.seconds,
            offset_minutes: None,
        }
    }

    fn new_york() -> LocalClock {
        LocalClock::new(LocalZone::named("America/New_York").unwrap())
    }

    #[test]
    fn utc_is_the_written_time() {
        let mut clock = LocalClock::new(LocalZone::utc());
        let t = clock.resolve(civil("2024-05-01 10:00:00"));
        assert_eq!(t.seconds, civil("2024-05-01 10:00:00").civil);
        assert_eq!(t.to_string(), "2024-05-01T10:00:00");
    }

    #[test]
    fn a_written_offset_wins_and_is_printed_back() {
        let mut clock = new_york();
        let t = clock.resolve(WrittenTime {
            offset_minutes: Some(60),
            ..civil("2024-05-01 10:00:00")
        });
        assert_eq!(t.seconds, civil("2024-05-01 09:00:00").civil);
        assert_eq!(t.to_string(), "2024-05-01T10:00:00+01:00");
    }

    #[test]
    fn local_times_become_instants_and_print_as_written() {
        let mut clock = new_york();
        let t = clock.resolve(civil("2024-07-01 12:00:00"));
        assert_eq!(
            t.seconds,
            civil("2024-07-01 16:00:00").civil,
            "EDT is UTC-4"
        );
        assert_eq!(t.to_string(), "2024-07-01T12:00:00");
        let t = clock.resolve(civil("2024-12-01 12:00:00"));
        assert_eq!(
            t.seconds,
            civil("2024-12-01 17:00:00").civil,
            "EST is UTC-5"
        );
    }

    #[test]
    fn the_repeated_hour_of_a_fall_back_is_placed_by_the_lines_before_it() {
        // 2024-11-03: 01:59:59 EDT is followed by 01:00:00 EST.
        let mut clock = new_york();
        let utc = |s| civil(s).civil;
        let mut at = |s| clock.resolve(civil(s)).seconds;
        assert_eq!(at("2024-11-03 00:59:00"), utc("2024-11-03 04:59:00"));
        assert_eq!(at("2024-11-03 01:30:00"), utc("2024-11-03 05:30:00"));
        // A line a few seconds out of order stays in the first pass.
        assert_eq!(at("2024-11-03 01:29:58"), utc("2024-11-03 05:29:58"));
        assert_eq!(at("2024-11-03 01:59:59"), utc("2024-11-03 05:59:59"));
        // The clock goes back: the second pass is an hour later in truth.
        assert_eq!(at("2024-11-03 01:00:00"), utc("2024-11-03 06:00:00"));
        assert_eq!(at("2024-11-03 01:30:00"), utc("2024-11-03 06:30:00"));
        assert_eq!(at("2024-11-03 01:29:58"), utc("2024-11-03 06:29:58"));
        assert_eq!(at("2024-11-03 02:00:00"), utc("2024-11-03 07:00:00"));
    }

    #[test]
    fn spring_forward_keeps_elapsed_time() {
        // 2024-03-10: 01:59:59 EST is followed by 03:00:00 EDT, one second.
        let mut clock = new_york();
        let a = clock.resolve(civil("2024-03-10 01:59:59")).seconds;
        let b = clock.resolve(civil("2024-03-10 03:00:00")).seconds;
        assert_eq!(b - a, 1);
    }

    #[test]
    fn snapshots_print_in_the_zone() {
        let zone = LocalZone::named("America/New_York").unwrap();
        let t = zone.at(civil("2024-07-01 16:00:00").civil);
        assert_eq!(t.to_string(), "2024-07-01T12:00:00");
        assert!(LocalZone::named("Mars/Olympus_Mons").is_err());
    }
}
