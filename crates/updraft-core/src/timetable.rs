//! Data intervals: which scheduled runs exist and when they become due (Airflow's data-interval
//! timetables, `CronDataIntervalTimetable` and `DeltaDataIntervalTimetable`).
//!
//! A scheduled run covers a *data interval* `[start, end)`; its logical date is `start`, and it is
//! created once `end <= now` (the interval is complete). This is the behaviour of Airflow's
//! `CronDataIntervalTimetable` / `DeltaDataIntervalTimetable` / `OnceTimetable` (Airflow 3 uses
//! them for cron strings with `create_cron_data_intervals = True`, Airflow 2 always):
//!
//! * **`Schedule::None`**: no scheduled runs at all; manual runs get `[d, d]`.
//! * **`Schedule::Once`**: a single interval `[start_date, start_date]`, due once
//!   `start_date <= now`, regardless of `catchup`, never again after one was created, and never if
//!   `start_date` is unset or after `end_date`.
//! * **`Schedule::Every(d)`**: a grid anchored at `start_date` (at the Unix epoch when there is no
//!   `start_date`): intervals `[start + k*d, start + (k+1)*d)`. Airflow anchors `catchup=false`
//!   runs on an epoch-based grid instead; updraft keeps them on the `start_date` grid, so that
//!   turning catchup off does not move a DAG's runs. A zero duration schedules nothing (and is
//!   refused when a DAG file is read).
//! * **`Schedule::Cron(expr)`**: intervals between consecutive cron ticks, the ticks being computed
//!   on the wall clock of the DAG's time zone (see *Daylight saving time* below).
//!
//! ## Which intervals are created
//!
//! As in Airflow's `next_dagrun_info`, each new interval follows the latest scheduled interval
//! already created (`last`): it starts at `last.end` when that is a tick, else at the last tick
//! *before* `last.end` (Airflow's `_align_to_prev`: after a schedule change from `0 1 * * *` to
//! `0 0 * * *`, the run after `[01:00, 01:00 next day)` covers `[00:00 next day, 00:00 the day
//! after)`, overlapping the last one by an hour). It never starts at or before `last.start`
//! (a zero-length `last`, left by a DAG that was `@once`, is followed by the next tick, not
//! given its logical date again). A duration schedule starts at `last.end` as it is, as
//! Airflow's `DeltaDataIntervalTimetable` does. Without a `last`, an interval starts at the
//! first tick at or after `start_date`.
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
//! Cron ticks are found on the wall clock of `Dag::timezone` as Airflow's `CronMixin` does (one
//! exception below), and converted to UTC; intervals are always contiguous in UTC (`end` of one
//! is `start` of the next). What matters is whether the hour field matches every hour (`*`, `0-23`,
//! `*/1`; Airflow's `_covers_every_hour`):
//!
//! * **Hour field `*`** (`0 * * * *`, `*/15 * * * *`): the ticks are the instants whose local
//!   time matches. A repeated hour is run twice (an hourly job gets 01:00 EDT and 01:00 EST on
//!   2024-11-03 in New York), a skipped hour not at all (01:00 EST → 03:00 EDT on 2024-03-10).
//!   Airflow steps by the real time between wall-clock ticks instead, which gives the same
//!   ticks wherever clocks move by a whole hour; on Lord Howe (30-minute shifts) its steps land
//!   off the hour (01:30 LHST) and its catch-up and latest-interval paths disagree, so updraft
//!   keeps whole local hours there.
//! * **Any other hour field** (`0 0 * * *`, `30 2 * * *`, `0 1,2 * * *`): each wall-clock tick
//!   is placed on its own, as pendulum places a time with `fold=1`. A time that occurs twice
//!   (fall back, 01:30 on 2024-11-03 in New York, 02:30 on 2024-10-27 in Berlin) is its
//!   **second** occurrence (01:30 EST = 06:30Z; 02:30 CET = 01:30Z). A time that does not exist
//!   (spring forward, 02:30 on 2024-03-10 in New York or 2024-03-31 in Berlin) is moved forward
//!   by the gap's length: 03:30 daylight time (07:30Z in New York, 01:30Z in Berlin).
//!   Ticks are taken in the order of the instants they land on, so `*/15 2 * * *` on that day
//!   in Berlin runs at 03:00, 03:15, 03:30 and 03:45 CEST.
//! * **Daily intervals across a transition** therefore span the real elapsed time between the
//!   local ticks: `0 0 * * *` in Europe/Berlin gives `[2024-03-30T23:00Z, 2024-03-31T22:00Z)`
//!   (23 h) on the spring-forward day and `[2024-10-26T22:00Z, 2024-10-27T23:00Z)` (25 h) on the
//!   fall-back day; `30 2 * * *` in Berlin gives 24 h then 23 h around 2024-03-31 (its tick that
//!   day is 03:30 CEST), and 25 h then 24 h around 2024-10-27 (its tick is 02:30 CET).
//! * A manual run's interval and the latest complete interval (`catchup = false`) never end
//!   after the moment they are computed for, even when the previous wall-clock tick is the later
//!   of two repeated times and so still ahead (Airflow's tests `new-york-fold`).

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
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
    Cron(Box<CronClock>),
    /// A fixed step in nanoseconds on a grid through `anchor`.
    Every {
        anchor: DateTime<Utc>,
        step_ns: i128,
    },
}

/// A cron expression read on the wall clock of a time zone, as Airflow's `CronMixin` reads it.
#[derive(Debug, Clone)]
pub struct CronClock {
    cron: Cron,
    tz: Tz,
    /// The hour field matches every hour (Airflow's `_covers_every_hour`): the ticks are then
    /// the instants whose local time matches, so a repeated hour is run twice and a skipped one
    /// not at all. Otherwise each wall-clock tick is placed on its own (see [`make_aware`]).
    every_hour: bool,
}

impl Timetable {
    /// The DAG's timetable, or None for `Schedule::None`, asset schedules, a zero duration or an unparseable
    /// cron expression (none of which creates scheduled runs).
    pub fn from_dag(dag: &Dag) -> Option<Timetable> {
        match &dag.schedule {
            Schedule::None | Schedule::Assets(_) => None,
            Schedule::Once => Some(Timetable::Once),
            Schedule::Cron(expr) => {
                let parser = CronParser::builder()
                    .seconds(Seconds::Disallowed)
                    .year(Year::Disallowed)
                    .build();
                let cron = parser.parse(expr).ok()?;
                let every_hour = (0..24).all(|h| cron.pattern.hour_match(h).unwrap_or(false));
                Some(Timetable::Cron(Box::new(CronClock {
                    cron,
                    tz: dag.timezone,
                    every_hour,
                })))
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
                let after_last = self.start_after(l)?;
                earliest.map_or(after_last, |e| e.max(after_last))
            }
        };
        if dag.end_date.is_some_and(|e| start > e) {
            return None;
        }
        let end = self.next(start).filter(|e| *e > start)?;
        Some(DataInterval::new(start, end))
    }

    /// Where the interval after `last` starts: Airflow's `_align_to_prev(last.end)`, i.e.
    /// `last.end` itself when it is a tick, else the last tick before it (after a schedule
    /// change the new interval may then overlap the last one). A duration schedule starts at
    /// `last.end` as it is. Never at or before `last.start`, so a zero-length `last` (a DAG that
    /// was `@once`) or a tick before it does not give its logical date again.
    fn start_after(&self, last: &DataInterval) -> Option<DateTime<Utc>> {
        let aligned = match self {
            Timetable::Every { .. } => last.end,
            _ => self.align_prev(last.end)?,
        };
        if aligned > last.start {
            return Some(aligned);
        }
        let mut tick = self.align_next(last.start)?;
        if tick <= last.start {
            tick = self.next(tick)?;
        }
        Some(tick)
    }

    /// Start of the latest interval complete at `now` (Airflow's `_skip_to_latest`).
    fn latest_complete_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let end = self.align_prev(now)?;
        self.prev(end)
    }

    /// First tick at or after `t` (Airflow's `_align_to_next`).
    pub fn align_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Once => Some(t),
            Timetable::Cron(clock) => clock.align_next(t),
            Timetable::Every { anchor, step_ns } => {
                let k = (ns_between(*anchor, t) + step_ns - 1).div_euclid(*step_ns);
                add_ns(*anchor, k * step_ns)
            }
        }
    }

    /// Last tick at or before `t` (Airflow's `_align_to_prev`).
    pub fn align_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Once => Some(t),
            Timetable::Cron(clock) => clock.align_prev(t),
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
            Timetable::Cron(clock) => clock.get_next(t),
            Timetable::Every { step_ns, .. } => add_ns(t, *step_ns),
        }
    }

    /// The tick before tick `t`.
    pub fn prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Once => Some(t),
            Timetable::Cron(clock) => clock.get_prev(t),
            Timetable::Every { step_ns, .. } => add_ns(t, -step_ns),
        }
    }
}

/// How many wall-clock ticks a search looks at, at most, before giving up (a whole gap of
/// minutely ticks is 60 to 120; an expression that never matches ends much sooner).
const MAX_STEPS: usize = 10_000;

/// How far around a daylight-saving transition a placed tick can land from its wall-clock time
/// (a gap or fold lasts an hour, 30 minutes on Lord Howe, two hours at most).
const DST_REACH: TimeDelta = TimeDelta::hours(6);

impl CronClock {
    /// Airflow's `_get_next`: the first tick after `t`. Away from daylight-saving transitions
    /// that is the next wall-clock tick; near one, where a tick moved out of a gap or placed on
    /// the later of two repeated times can land before a tick of an earlier wall-clock time,
    /// the ticks around are compared by the instants they land on.
    fn get_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.every_hour {
            let local = t.with_timezone(&self.tz);
            let tick = self.cron.find_next_occurrence(&local, false).ok()?;
            return Some(tick.with_timezone(&Utc));
        }
        let wall = self.wall(t);
        let (first_wall, first) = self.walk(wall, |tick| tick > t, true)?;
        if !self.near_transition(t) && !self.near_transition(first) {
            return Some(first);
        }
        let from = wall.checked_sub_signed(DST_REACH)?;
        let to = first_wall.checked_add_signed(DST_REACH)?;
        self.ticks_between(from, to)
            .into_iter()
            .filter(|tick| *tick > t)
            .min()
    }

    /// Airflow's `_get_prev`: the last tick before `t` (see [`CronClock::get_next`]). A tick
    /// moved out of a gap (02:30 → 03:30) is not its own predecessor, so an interval is never
    /// empty, as Airflow's `lord-howe-half-hour-dst-gap` test asks.
    fn get_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.every_hour {
            let local = t.with_timezone(&self.tz);
            let tick = self.cron.find_previous_occurrence(&local, false).ok()?;
            return Some(tick.with_timezone(&Utc));
        }
        let wall = self.wall(t);
        let (first_wall, first) = self.walk(wall, |tick| tick < t, false)?;
        if !self.near_transition(t) && !self.near_transition(first) {
            return Some(first);
        }
        let from = first_wall.checked_sub_signed(DST_REACH)?;
        let to = wall.checked_add_signed(DST_REACH)?;
        self.ticks_between(from, to)
            .into_iter()
            .filter(|tick| *tick < t)
            .max()
    }

    /// `t` on the wall clock of the time zone.
    fn wall(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.tz).naive_local()
    }

    /// The first wall-clock tick from `wall` on (forward or backward, `wall` excluded) whose
    /// instant satisfies `wanted`, with that instant.
    fn walk(
        &self,
        mut wall: NaiveDateTime,
        wanted: impl Fn(DateTime<Utc>) -> bool,
        forward: bool,
    ) -> Option<(NaiveDateTime, DateTime<Utc>)> {
        for _ in 0..MAX_STEPS {
            wall = if forward {
                self.cron.find_next_occurrence(&wall, false).ok()?
            } else {
                self.cron.find_previous_occurrence(&wall, false).ok()?
            };
            let tick = make_aware(wall, self.tz)?;
            if wanted(tick) {
                return Some((wall, tick));
            }
        }
        None
    }

    /// The instants of the wall-clock ticks in `[from, to]`.
    fn ticks_between(&self, from: NaiveDateTime, to: NaiveDateTime) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut wall = from;
        let mut inclusive = true;
        while ticks.len() < MAX_STEPS {
            let Ok(next) = self.cron.find_next_occurrence(&wall, inclusive) else {
                break;
            };
            if next > to {
                break;
            }
            ticks.extend(make_aware(next, self.tz));
            wall = next;
            inclusive = false;
        }
        ticks
    }

    /// Whether a daylight-saving transition lies within [`DST_REACH`] of `t`.
    fn near_transition(&self, t: DateTime<Utc>) -> bool {
        let offset = |t: DateTime<Utc>| t.with_timezone(&self.tz).offset().fix();
        match (
            t.checked_sub_signed(DST_REACH),
            t.checked_add_signed(DST_REACH),
        ) {
            (Some(before), Some(after)) => offset(before) != offset(after),
            _ => false,
        }
    }

    /// Airflow's `_align_to_next`: `t` when it is a tick, else the next tick.
    fn align_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = self.get_next(t)?;
        if self.get_prev(next) == Some(t) {
            return Some(t);
        }
        Some(next)
    }

    /// Airflow's `_align_to_prev`: `t` when it is a tick, else the previous tick; never a tick
    /// after `t` (the later of two repeated wall-clock times can be, as on 2024-11-03 in New
    /// York at 01:30 EDT, where the wall-clock tick of `0 1 * * *` is 01:00 EST, half an hour
    /// ahead: [`CronClock::get_prev`] steps over it).
    fn align_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let prev = self.get_prev(t)?;
        if self.get_next(prev) == Some(t) {
            return Some(t);
        }
        Some(prev)
    }
}

/// Airflow's `make_aware` (pendulum with `fold=1`): a wall-clock time read in `tz`. A time that
/// occurs twice is its *second* occurrence; a time that does not exist is moved forward by the
/// length of the gap (02:30 in a 02:00→03:00 gap is 03:30), i.e. read with the offset in force
/// before the gap.
fn make_aware(wall: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(_, later) => Some(later.with_timezone(&Utc)),
        LocalResult::None => {
            let before_gap = wall.checked_sub_signed(TimeDelta::days(1))?;
            let offset = match tz.from_local_datetime(&before_gap) {
                LocalResult::Single(t) | LocalResult::Ambiguous(_, t) => t.offset().fix(),
                LocalResult::None => return None,
            };
            let utc =
                wall.checked_sub_signed(TimeDelta::seconds(i64::from(offset.local_minus_utc())))?;
            Some(Utc.from_utc_datetime(&utc))
        }
    }
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
