//! Data intervals: which scheduled runs exist and when they become due (Airflow 2 timetables).
//!
//! A scheduled run covers a *data interval* `[start, end)`; its logical date is `start`, and it is
//! created once `end <= now` (the interval is complete). This is Airflow 2's
//! `CronDataIntervalTimetable` / `DeltaDataIntervalTimetable` / `OnceTimetable` behaviour:
//!
//! * **`Schedule::None`**: no scheduled runs at all; manual runs get `[d, d]`.
//! * **`Schedule::Once`**: a single interval `[start_date, start_date]`, due once
//!   `start_date <= now`, regardless of `catchup`, never again after one was created, and never if
//!   `start_date` is unset or after `end_date`.
//! * **`Schedule::Every(d)`**: a grid anchored at `start_date` (at the Unix epoch when there is no
//!   `start_date`): intervals `[start + k*d, start + (k+1)*d)`. Airflow anchors `catchup=false`
//!   runs on an epoch-based grid instead; updraft keeps every interval on the `start_date` grid. A
//!   zero duration schedules nothing.
//! * **`Schedule::Cron(expr)`**: intervals between consecutive cron ticks, the ticks being computed
//!   on the wall clock of the DAG's time zone (see *Daylight saving time* below).
//!
//! ## Which intervals are created
//!
//! As in Airflow's `next_dagrun_info`, each new interval follows the latest scheduled interval
//! already created (`last`): it starts at `last.end` (moved forward to the next tick when
//! `last.end` is not on the schedule's grid, e.g. after the schedule changed, so a new interval
//! never starts before the last created one ends). Without a `last`, it starts at the first tick at or after `start_date`.
//!
//! * `catchup = true`: every interval since `start_date` is created, oldest first, as long as it
//!   is complete ([`due_intervals`] returns at most `limit` per call). If `start_date` moved past
//!   `last`, creation resumes at the new `start_date`.
//! * `catchup = false`: the earliest allowed start is the start of the *latest complete interval*
//!   at `now` (and not before the first tick at or after `start_date`), so at most one interval is
//!   due at a time; an interval before or equal to the last created one is never returned again.
//! * `end_date`: no interval *starting* after `end_date` is created (an interval starting at or
//!   before it is created even if it ends after it, as in Airflow).
//! * A cron DAG without `start_date` behaves as Airflow's timetable does: with `catchup = false`
//!   it gets the latest complete interval; with `catchup = true` and no `last` it gets nothing.
//!
//! An expression croner cannot evaluate (or that never matches, such as `0 0 30 2 *`) yields no
//! intervals; [`manual_interval`] then falls back to `[d, d]`.
//!
//! ## Daylight saving time
//!
//! Cron ticks are found with croner on the wall clock of `Dag::timezone` and converted to UTC;
//! intervals are always contiguous in UTC (`end` of one is `start` of the next). croner treats an
//! expression whose second, minute and hour fields are each a single fixed value (such as
//! `0 0 * * *` or `30 2 * * *`) as a *fixed-time* job, and anything else (`0 * * * *`,
//! `*/15 * * * *`, `0 1,2 * * *`) as an *interval* job. With that:
//!
//! * **A wall-clock time that does not exist** (spring forward, e.g. 02:30 on 2024-03-10 in
//!   America/New_York or on 2024-03-31 in Europe/Berlin): a fixed-time job fires at the first real
//!   instant after the gap (03:00 local, daylight time), so the day still gets exactly one tick;
//!   an interval job simply has no tick inside the gap (an hourly job goes 01:00 → 03:00 local,
//!   which is one hour of real time).
//! * **A wall-clock time that occurs twice** (fall back, e.g. 01:30 on 2024-11-03 in New York or
//!   02:30 on 2024-10-27 in Berlin): a fixed-time job fires once, at the *earlier* instant (still
//!   on daylight time); an interval job fires at both instants (an hourly job gets 01:00 EDT and
//!   01:00 EST, each interval one real hour long).
//! * **Daily intervals across a transition** therefore span the real elapsed time between local
//!   midnights (or the given local time): `0 0 * * *` in Europe/Berlin gives
//!   `[2024-03-30T23:00Z, 2024-03-31T22:00Z)` (23 h) on the spring-forward day and
//!   `[2024-10-26T22:00Z, 2024-10-27T23:00Z)` (25 h) on the fall-back day. A fixed time inside
//!   the gap shifts that day's tick (`30 2 * * *` in Berlin: 2024-03-31 ticks at 03:00 CEST =
//!   01:00Z, so the intervals around it are 23.5 h and 23.5 h).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use updraft_dag::{Dag, Schedule};

/// A run's data interval `[start, end)` (`start == end` for `@once` and manual runs of
/// unscheduled DAGs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl DataInterval {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        DataInterval { start, end }
    }

    /// `[d, d]`.
    pub fn instant(d: DateTime<Utc>) -> Self {
        DataInterval { start: d, end: d }
    }
}

/// Scheduled runs due at `now`, given the latest scheduled interval already created (None if none).
///
/// A run covering `[t0, t1)` is due once `t1 <= now`. `catchup = true`: every missed interval since
/// `start_date` (at most `limit`, oldest first); `catchup = false`: only the latest complete interval
/// (never one at or before the last created). `end_date` stops creation (no interval starting after
/// `end_date`). See the [module documentation](self) for every schedule kind.
pub fn due_intervals(
    dag: &Dag,
    last: Option<&DataInterval>,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<DataInterval> {
    let Some(tt) = Timetable::from_dag(dag) else {
        return Vec::new();
    };
    let earliest = tt.earliest(dag, now);
    let mut out = Vec::new();
    let mut last = last.copied();
    while out.len() < limit {
        let Some(next) = tt.next_info_from(dag, last.as_ref(), earliest) else {
            break;
        };
        if next.end > now {
            break;
        }
        out.push(next);
        last = Some(next);
    }
    out
}

/// The next interval that will be (or already is) due, i.e. the one the scheduler would create
/// next after `last` (for "next run" display), or None when no more runs will be created.
///
/// When an interval is already due at `now`, that interval is returned (the first one
/// [`due_intervals`] would give).
pub fn next_interval(
    dag: &Dag,
    last: Option<&DataInterval>,
    now: DateTime<Utc>,
) -> Option<DataInterval> {
    Timetable::from_dag(dag)?.next_info(dag, last, now)
}

/// Intervals whose start lies in `[from, to]`, oldest first, for backfill. Ignores `catchup`;
/// honours `start_date` (no interval starting before it) and `end_date` (none starting after it).
/// The result is not bounded: callers pick a sensible range.
pub fn intervals_between(dag: &Dag, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DataInterval> {
    let Some(tt) = Timetable::from_dag(dag) else {
        return Vec::new();
    };
    let lo = dag.start_date.map_or(from, |s| s.max(from));
    let hi = dag.end_date.map_or(to, |e| e.min(to));
    if lo > hi {
        return Vec::new();
    }
    if let Timetable::Once = tt {
        return match dag.start_date {
            Some(s) if (from..=hi).contains(&s) => vec![DataInterval::instant(s)],
            _ => Vec::new(),
        };
    }
    let mut out = Vec::new();
    let mut start = tt.align_next(lo);
    while let Some(s) = start.filter(|s| *s <= hi) {
        let Some(end) = tt.next(s).filter(|e| *e > s) else {
            break;
        };
        out.push(DataInterval::new(s, end));
        start = Some(end);
    }
    out
}

/// Data interval for a manual run at `logical_date` (Airflow's `infer_manual_data_interval`): the
/// latest complete interval ending at or before `logical_date` for cron and duration schedules,
/// `[d, d]` for none/once (and for a cron expression that never matches).
///
/// For a duration schedule the interval is on the `start_date` grid (Airflow uses
/// `[d - delta, d]`).
pub fn manual_interval(dag: &Dag, logical_date: DateTime<Utc>) -> DataInterval {
    let periodic = Timetable::from_dag(dag).filter(|tt| !matches!(tt, Timetable::Once));
    periodic
        .and_then(|tt| {
            let end = tt.align_prev(logical_date)?;
            let start = tt.prev(end)?;
            Some(DataInterval::new(start, end))
        })
        .unwrap_or(DataInterval::instant(logical_date))
}

/// A schedule prepared for evaluation (the cron expression parsed once).
#[derive(Debug, Clone)]
pub enum Timetable {
    Once,
    /// Ticks of a cron expression on the wall clock of a time zone.
    Cron(Box<Cron>, Tz),
    /// A fixed step in nanoseconds on a grid through `anchor`.
    Every {
        anchor: DateTime<Utc>,
        step_ns: i128,
    },
}

impl Timetable {
    /// The DAG's timetable, or None for `Schedule::None`, a zero duration or an unparseable
    /// cron expression (none of which creates scheduled runs).
    pub fn from_dag(dag: &Dag) -> Option<Timetable> {
        match &dag.schedule {
            Schedule::None => None,
            Schedule::Once => Some(Timetable::Once),
            Schedule::Cron(expr) => {
                let parser = CronParser::builder()
                    .seconds(Seconds::Disallowed)
                    .year(Year::Disallowed)
                    .build();
                let cron = parser.parse(expr).ok()?;
                Some(Timetable::Cron(Box::new(cron), dag.timezone))
            }
            Schedule::Every(d) => {
                let step_ns = i128::try_from(d.as_nanos()).ok().filter(|n| *n > 0)?;
                let anchor = dag.start_date.unwrap_or(DateTime::UNIX_EPOCH);
                Some(Timetable::Every { anchor, step_ns })
            }
        }
    }

    /// Airflow's `next_dagrun_info`: the interval to create after `last`.
    fn next_info(
        &self,
        dag: &Dag,
        last: Option<&DataInterval>,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        self.next_info_from(dag, last, self.earliest(dag, now))
    }

    /// The earliest start a new scheduled interval may have at `now` (`restriction.earliest`
    /// after Airflow's catchup handling).
    fn earliest(&self, dag: &Dag, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Timetable::Once = self {
            return dag.start_date;
        }
        let aligned_start_date = dag.start_date.and_then(|s| self.align_next(s));
        if dag.catchup {
            return aligned_start_date;
        }
        match (self.latest_complete_start(now), aligned_start_date) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// [`Timetable::next_info`] with [`Timetable::earliest`] already computed.
    fn next_info_from(
        &self,
        dag: &Dag,
        last: Option<&DataInterval>,
        earliest: Option<DateTime<Utc>>,
    ) -> Option<DataInterval> {
        if let Timetable::Once = self {
            let start = earliest.filter(|_| last.is_none())?;
            return (dag.end_date.is_none_or(|e| start <= e)).then(|| DataInterval::instant(start));
        }
        let start = match last {
            None => earliest?,
            Some(l) => {
                let after_last = self.align_next(l.end).unwrap_or(l.end);
                earliest.map_or(after_last, |e| e.max(after_last))
            }
        };
        if dag.end_date.is_some_and(|e| start > e) {
            return None;
        }
        let end = self.next(start).filter(|e| *e > start)?;
        Some(DataInterval::new(start, end))
    }

    /// Start of the latest interval complete at `now` (Airflow's `_skip_to_latest`).
    fn latest_complete_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let end = self.align_prev(now)?;
        self.prev(end)
    }

    /// First tick at or after `t`.
    pub fn align_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Once => Some(t),
            Timetable::Cron(cron, tz) => {
                // A tick moved out of a DST gap (02:30 → 03:00) does not match the expression on
                // its own wall clock, so an inclusive forward search from it would skip it; the
                // backward search recognises it.
                if cron_find(cron, tz, t, true, false) == Some(t) {
                    return Some(t);
                }
                cron_find(cron, tz, t, true, true)
            }
            Timetable::Every { anchor, step_ns } => {
                let k = (ns_between(*anchor, t) + step_ns - 1).div_euclid(*step_ns);
                add_ns(*anchor, k * step_ns)
            }
        }
    }

    /// Last tick at or before `t`.
    pub fn align_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Once => Some(t),
            Timetable::Cron(cron, tz) => cron_find(cron, tz, t, true, false),
            Timetable::Every { anchor, step_ns } => {
                let k = ns_between(*anchor, t).div_euclid(*step_ns);
                add_ns(*anchor, k * step_ns)
            }
        }
    }

    /// The tick after tick `t`.
    pub fn next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Once => Some(t),
            Timetable::Cron(cron, tz) => cron_find(cron, tz, t, false, true),
            Timetable::Every { step_ns, .. } => add_ns(t, *step_ns),
        }
    }

    /// The tick before tick `t`.
    pub fn prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Once => Some(t),
            Timetable::Cron(cron, tz) => cron_find(cron, tz, t, false, false),
            Timetable::Every { step_ns, .. } => add_ns(t, -step_ns),
        }
    }
}

fn cron_find(
    cron: &Cron,
    tz: &Tz,
    t: DateTime<Utc>,
    inclusive: bool,
    forward: bool,
) -> Option<DateTime<Utc>> {
    let local = t.with_timezone(tz);
    let found = if forward {
        cron.find_next_occurrence(&local, inclusive)
    } else {
        cron.find_previous_occurrence(&local, inclusive)
    };
    found.ok().map(|d| d.with_timezone(&Utc))
}

fn ns_between(a: DateTime<Utc>, b: DateTime<Utc>) -> i128 {
    to_ns(b) - to_ns(a)
}

fn to_ns(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

fn add_ns(t: DateTime<Utc>, ns: i128) -> Option<DateTime<Utc>> {
    let total = to_ns(t).checked_add(ns)?;
    let secs = i64::try_from(total.div_euclid(1_000_000_000)).ok()?;
    let nanos = u32::try_from(total.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(secs, nanos)
}
