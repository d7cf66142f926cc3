//! Timetable unit tests. Expected instants are worked out by hand (time zone offsets noted).

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use common::{cron_dag, dag, task, utc};
use updraft_core::timetable::{
    DataInterval, due_intervals, intervals_between, manual_interval, next_interval,
};
use updraft_dag::Schedule;

fn iv(start: DateTime<Utc>, end: DateTime<Utc>) -> DataInterval {
    DataInterval { start, end }
}

fn day(d: u32) -> DateTime<Utc> {
    utc(2024, 1, d, 0, 0)
}

const DAILY: &str = "0 0 * * *";

#[test]
fn catchup_creates_every_missed_interval_oldest_first() {
    let d = cron_dag(DAILY, Tz::UTC, Some(day(1)), true);
    let now = utc(2024, 1, 4, 12, 0);
    assert_eq!(
        due_intervals(&d, None, now, 10),
        vec![iv(day(1), day(2)), iv(day(2), day(3)), iv(day(3), day(4))]
    );
    assert_eq!(
        due_intervals(&d, None, now, 2),
        vec![iv(day(1), day(2)), iv(day(2), day(3))]
    );
    assert_eq!(due_intervals(&d, None, now, 0), vec![]);
    let last = iv(day(2), day(3));
    assert_eq!(
        due_intervals(&d, Some(&last), now, 10),
        vec![iv(day(3), day(4))]
    );
    let last = iv(day(3), day(4));
    assert_eq!(due_intervals(&d, Some(&last), now, 10), vec![]);
    assert_eq!(
        next_interval(&d, Some(&last), now),
        Some(iv(day(4), day(5)))
    );
}

#[test]
fn interval_is_due_exactly_when_it_ends() {
    let d = cron_dag(DAILY, Tz::UTC, Some(day(1)), true);
    let just_before = day(2) - chrono::TimeDelta::seconds(1);
    assert_eq!(due_intervals(&d, None, just_before, 10), vec![]);
    assert_eq!(
        next_interval(&d, None, just_before),
        Some(iv(day(1), day(2)))
    );
    assert_eq!(
        due_intervals(&d, None, day(2), 10),
        vec![iv(day(1), day(2))]
    );
}

#[test]
fn start_date_off_the_grid_aligns_to_the_next_tick() {
    let d = cron_dag(DAILY, Tz::UTC, Some(utc(2024, 1, 1, 6, 0)), true);
    assert_eq!(
        due_intervals(&d, None, utc(2024, 1, 4, 1, 0), 10),
        vec![iv(day(2), day(3)), iv(day(3), day(4))]
    );
}

#[test]
fn no_catchup_gives_only_the_latest_complete_interval() {
    let d = cron_dag(DAILY, Tz::UTC, Some(day(1)), false);
    let now = utc(2024, 1, 4, 12, 0);
    assert_eq!(due_intervals(&d, None, now, 10), vec![iv(day(3), day(4))]);
    // Far behind: jumps to the latest, skipping the missed ones.
    let old = iv(day(1), day(2));
    assert_eq!(
        due_intervals(&d, Some(&old), now, 10),
        vec![iv(day(3), day(4))]
    );
    // Already created: nothing, and never the one before it again.
    let latest = iv(day(3), day(4));
    assert_eq!(due_intervals(&d, Some(&latest), now, 10), vec![]);
    assert_eq!(
        next_interval(&d, Some(&latest), now),
        Some(iv(day(4), day(5)))
    );
    // Exactly on a boundary, the interval ending now is the latest complete one.
    assert_eq!(
        due_intervals(&d, None, day(4), 10),
        vec![iv(day(3), day(4))]
    );
}

#[test]
fn no_catchup_with_future_start_date_waits_for_it() {
    let d = cron_dag(DAILY, Tz::UTC, Some(day(10)), false);
    let now = day(4);
    assert_eq!(due_intervals(&d, None, now, 10), vec![]);
    assert_eq!(next_interval(&d, None, now), Some(iv(day(10), day(11))));
    assert_eq!(
        due_intervals(&d, None, day(11), 10),
        vec![iv(day(10), day(11))]
    );
}

#[test]
fn end_date_stops_intervals_starting_after_it() {
    let mut d = cron_dag(DAILY, Tz::UTC, Some(day(1)), true);
    let now = day(10);
    d.end_date = Some(day(2));
    assert_eq!(
        due_intervals(&d, None, now, 10),
        vec![iv(day(1), day(2)), iv(day(2), day(3))]
    );
    d.end_date = Some(utc(2024, 1, 2, 6, 0));
    assert_eq!(due_intervals(&d, None, now, 10).len(), 2);
    d.end_date = Some(utc(2024, 1, 1, 23, 0));
    assert_eq!(due_intervals(&d, None, now, 10), vec![iv(day(1), day(2))]);
    let last = iv(day(1), day(2));
    assert_eq!(next_interval(&d, Some(&last), now), None);
    d.catchup = false;
    assert_eq!(due_intervals(&d, None, now, 10), vec![]);
}

#[test]
fn once_runs_a_single_time_at_start_date() {
    let s = utc(2024, 1, 1, 10, 30);
    let mut d = dag(Schedule::Once, vec![task("t", &[])]);
    d.start_date = Some(s);
    for catchup in [true, false] {
        d.catchup = catchup;
        assert_eq!(
            due_intervals(&d, None, s - chrono::TimeDelta::minutes(1), 5),
            vec![]
        );
        assert_eq!(due_intervals(&d, None, s, 5), vec![iv(s, s)]);
        assert_eq!(due_intervals(&d, None, day(20), 5), vec![iv(s, s)]);
        assert_eq!(due_intervals(&d, Some(&iv(s, s)), day(20), 5), vec![]);
        assert_eq!(next_interval(&d, Some(&iv(s, s)), day(20)), None);
        assert_eq!(next_interval(&d, None, day(1)), Some(iv(s, s)));
    }
    d.end_date = Some(day(1));
    assert_eq!(due_intervals(&d, None, day(20), 5), vec![]);
    d.end_date = None;
    d.start_date = None;
    assert_eq!(due_intervals(&d, None, day(20), 5), vec![]);
    assert_eq!(manual_interval(&d, day(7)), iv(day(7), day(7)));
}

#[test]
fn none_schedule_creates_nothing() {
    let mut d = dag(Schedule::None, vec![task("t", &[])]);
    d.start_date = Some(day(1));
    assert_eq!(due_intervals(&d, None, day(20), 5), vec![]);
    assert_eq!(next_interval(&d, None, day(20)), None);
    assert_eq!(intervals_between(&d, day(1), day(20)), vec![]);
    let t = utc(2024, 1, 5, 13, 17);
    assert_eq!(manual_interval(&d, t), iv(t, t));
}

#[test]
fn duration_schedule_is_anchored_at_start_date() {
    let mut d = dag(
        Schedule::Every(Duration::from_secs(6 * 3600)),
        vec![task("t", &[])],
    );
    d.start_date = Some(utc(2024, 1, 1, 1, 0));
    let now = utc(2024, 1, 2, 2, 0);
    assert_eq!(
        due_intervals(&d, None, now, 10),
        vec![
            iv(utc(2024, 1, 1, 1, 0), utc(2024, 1, 1, 7, 0)),
            iv(utc(2024, 1, 1, 7, 0), utc(2024, 1, 1, 13, 0)),
            iv(utc(2024, 1, 1, 13, 0), utc(2024, 1, 1, 19, 0)),
            iv(utc(2024, 1, 1, 19, 0), utc(2024, 1, 2, 1, 0)),
        ]
    );
    assert_eq!(
        next_interval(
            &d,
            Some(&iv(utc(2024, 1, 1, 19, 0), utc(2024, 1, 2, 1, 0))),
            now
        ),
        Some(iv(utc(2024, 1, 2, 1, 0), utc(2024, 1, 2, 7, 0)))
    );
    d.catchup = false;
    assert_eq!(
        due_intervals(&d, None, now, 10),
        vec![iv(utc(2024, 1, 1, 19, 0), utc(2024, 1, 2, 1, 0))]
    );
    assert_eq!(
        manual_interval(&d, utc(2024, 1, 2, 3, 0)),
        iv(utc(2024, 1, 1, 19, 0), utc(2024, 1, 2, 1, 0))
    );
    // On a grid point, the interval ending there.
    assert_eq!(
        manual_interval(&d, utc(2024, 1, 2, 7, 0)),
        iv(utc(2024, 1, 2, 1, 0), utc(2024, 1, 2, 7, 0))
    );
    assert_eq!(
        intervals_between(&d, utc(2023, 12, 1, 0, 0), utc(2024, 1, 1, 13, 0)),
        vec![
            iv(utc(2024, 1, 1, 1, 0), utc(2024, 1, 1, 7, 0)),
            iv(utc(2024, 1, 1, 7, 0), utc(2024, 1, 1, 13, 0)),
            iv(utc(2024, 1, 1, 13, 0), utc(2024, 1, 1, 19, 0)),
        ]
    );
}

#[test]
fn zero_duration_schedules_nothing() {
    let mut d = dag(Schedule::Every(Duration::ZERO), vec![task("t", &[])]);
    d.start_date = Some(day(1));
    assert_eq!(due_intervals(&d, None, day(20), 5), vec![]);
    assert_eq!(manual_interval(&d, day(3)), iv(day(3), day(3)));
}

#[test]
fn manual_interval_is_latest_complete_cron_interval() {
    let d = cron_dag(DAILY, Tz::UTC, Some(day(1)), true);
    assert_eq!(
        manual_interval(&d, utc(2024, 1, 5, 13, 0)),
        iv(day(4), day(5))
    );
    assert_eq!(manual_interval(&d, day(5)), iv(day(4), day(5)));
    // Before start_date too: manual runs are not bound by it.
    assert_eq!(
        manual_interval(&d, utc(2023, 6, 1, 8, 0)),
        iv(utc(2023, 5, 31, 0, 0), utc(2023, 6, 1, 0, 0))
    );
    // Hourly at minute 15.
    let h = cron_dag("15 * * * *", Tz::UTC, Some(day(1)), true);
    assert_eq!(
        manual_interval(&h, utc(2024, 1, 5, 13, 14)),
        iv(utc(2024, 1, 5, 11, 15), utc(2024, 1, 5, 12, 15))
    );
}

#[test]
fn intervals_between_honours_bounds_and_dates() {
    let mut d = cron_dag(DAILY, Tz::UTC, Some(day(2)), false);
    assert_eq!(
        intervals_between(&d, utc(2024, 1, 3, 12, 0), day(6)),
        vec![iv(day(4), day(5)), iv(day(5), day(6)), iv(day(6), day(7))]
    );
    assert_eq!(
        intervals_between(&d, utc(2023, 12, 1, 0, 0), day(3)),
        vec![iv(day(2), day(3)), iv(day(3), day(4))]
    );
    d.end_date = Some(utc(2024, 1, 4, 12, 0));
    assert_eq!(
        intervals_between(&d, day(1), day(20)),
        vec![iv(day(2), day(3)), iv(day(3), day(4)), iv(day(4), day(5))]
    );
    assert_eq!(intervals_between(&d, day(10), day(20)), vec![]);
    assert_eq!(intervals_between(&d, day(5), day(3)), vec![]);
}

#[test]
fn weekday_cron() {
    // 2024-01-05 is a Friday; Mon-Fri at 09:30.
    let d = cron_dag("30 9 * * 1-5", Tz::UTC, Some(utc(2024, 1, 5, 0, 0)), true);
    assert_eq!(
        due_intervals(&d, None, utc(2024, 1, 9, 12, 0), 10),
        vec![
            iv(utc(2024, 1, 5, 9, 30), utc(2024, 1, 8, 9, 30)),
            iv(utc(2024, 1, 8, 9, 30), utc(2024, 1, 9, 9, 30)),
        ]
    );
}

#[test]
fn tokyo_daily_starts_at_local_midnight() {
    let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
    let start = tokyo
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .unwrap()
        .to_utc();
    assert_eq!(start, utc(2023, 12, 31, 15, 0));
    let d = cron_dag(DAILY, tokyo, Some(start), true);
    let got = due_intervals(&d, None, utc(2024, 1, 3, 0, 0), 10);
    assert_eq!(
        got,
        vec![
            iv(utc(2023, 12, 31, 15, 0), utc(2024, 1, 1, 15, 0)),
            iv(utc(2024, 1, 1, 15, 0), utc(2024, 1, 2, 15, 0)),
        ]
    );
    for i in &got {
        let local = i.start.with_timezone(&tokyo);
        assert_eq!((local.hour(), local.minute()), (0, 0));
    }
    // A start_date at UTC midnight (09:00 in Tokyo) aligns to the next Tokyo midnight.
    let d = cron_dag(DAILY, tokyo, Some(day(1)), true);
    assert_eq!(
        due_intervals(&d, None, utc(2024, 1, 3, 0, 0), 10),
        vec![iv(utc(2024, 1, 1, 15, 0), utc(2024, 1, 2, 15, 0))]
    );
    assert_eq!(
        manual_interval(&d, utc(2024, 1, 2, 16, 0)),
        iv(utc(2024, 1, 1, 15, 0), utc(2024, 1, 2, 15, 0))
    );
}

fn berlin() -> Tz {
    "Europe/Berlin".parse().unwrap()
}

fn new_york() -> Tz {
    "America/New_York".parse().unwrap()
}

fn hours(i: &DataInterval) -> f64 {
    (i.end - i.start).num_minutes() as f64 / 60.0
}

#[test]
fn berlin_daily_is_23h_on_spring_forward_and_25h_on_fall_back() {
    // CET = UTC+1, CEST = UTC+2; switch 2024-03-31 02:00 CET -> 03:00 CEST and
    // 2024-10-27 03:00 CEST -> 02:00 CET.
    let d = cron_dag(DAILY, berlin(), Some(utc(2024, 3, 29, 23, 0)), true);
    let got = due_intervals(&d, None, utc(2024, 4, 2, 0, 0), 10);
    assert_eq!(
        got,
        vec![
            iv(utc(2024, 3, 29, 23, 0), utc(2024, 3, 30, 23, 0)),
            iv(utc(2024, 3, 30, 23, 0), utc(2024, 3, 31, 22, 0)),
            iv(utc(2024, 3, 31, 22, 0), utc(2024, 4, 1, 22, 0)),
        ]
    );
    assert_eq!(
        got.iter().map(hours).collect::<Vec<_>>(),
        vec![24.0, 23.0, 24.0]
    );

    let d = cron_dag(DAILY, berlin(), Some(utc(2024, 10, 25, 22, 0)), true);
    let got = due_intervals(&d, None, utc(2024, 10, 29, 0, 0), 10);
    assert_eq!(
        got,
        vec![
            iv(utc(2024, 10, 25, 22, 0), utc(2024, 10, 26, 22, 0)),
            iv(utc(2024, 10, 26, 22, 0), utc(2024, 10, 27, 23, 0)),
            iv(utc(2024, 10, 27, 23, 0), utc(2024, 10, 28, 23, 0)),
        ]
    );
    assert_eq!(
        got.iter().map(hours).collect::<Vec<_>>(),
        vec![24.0, 25.0, 24.0]
    );
    // The manual interval agrees across the long day.
    assert_eq!(
        manual_interval(&d, utc(2024, 10, 28, 1, 0)),
        iv(utc(2024, 10, 26, 22, 0), utc(2024, 10, 27, 23, 0))
    );
}

#[test]
fn berlin_fixed_time_in_the_gap_moves_forward_by_the_gap() {
    // 02:30 does not exist on 2024-03-31 in Berlin: as in Airflow (pendulum, fold=1), that day's
    // tick is moved forward by the hour the clocks skip, to 03:30 CEST = 01:30Z.
    let d = cron_dag("30 2 * * *", berlin(), Some(utc(2024, 3, 29, 12, 0)), true);
    let got = due_intervals(&d, None, utc(2024, 4, 2, 0, 0), 10);
    assert_eq!(
        got,
        vec![
            // 2024-03-30 02:30 CET .. 2024-03-31 03:30 CEST
            iv(utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 30)),
            // .. 2024-04-01 02:30 CEST
            iv(utc(2024, 3, 31, 1, 30), utc(2024, 4, 1, 0, 30)),
        ]
    );
    assert_eq!(got.iter().map(hours).collect::<Vec<_>>(), vec![24.0, 23.0]);
    assert_eq!(
        manual_interval(&d, utc(2024, 4, 1, 0, 0)),
        iv(utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 30))
    );
    assert_eq!(
        manual_interval(&d, utc(2024, 4, 1, 0, 30)),
        iv(utc(2024, 3, 31, 1, 30), utc(2024, 4, 1, 0, 30))
    );
}

#[test]
fn berlin_fixed_time_in_the_overlap_runs_once_at_the_second_instant() {
    // 02:30 happens twice on 2024-10-27 (00:30Z CEST, 01:30Z CET): one tick, at the second,
    // 01:30Z (Airflow's fold=1).
    let d = cron_dag("30 2 * * *", berlin(), Some(utc(2024, 10, 25, 12, 0)), true);
    let got = due_intervals(&d, None, utc(2024, 10, 29, 0, 0), 10);
    assert_eq!(
        got,
        vec![
            // 2024-10-26 02:30 CEST .. 2024-10-27 02:30 CET
            iv(utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 1, 30)),
            // .. 2024-10-28 02:30 CET
            iv(utc(2024, 10, 27, 1, 30), utc(2024, 10, 28, 1, 30)),
        ]
    );
    assert_eq!(got.iter().map(hours).collect::<Vec<_>>(), vec![25.0, 24.0]);
    assert_eq!(
        manual_interval(&d, utc(2024, 10, 27, 1, 45)),
        iv(utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 1, 30))
    );
    // Between the two 02:30s the day's tick is still ahead: the interval ends a day earlier.
    assert_eq!(
        manual_interval(&d, utc(2024, 10, 27, 1, 0)),
        iv(utc(2024, 10, 25, 0, 30), utc(2024, 10, 26, 0, 30))
    );
}

#[test]
fn new_york_hourly_across_both_transitions_stays_one_real_hour() {
    // EST = UTC-5, EDT = UTC-4. 2024-03-10: 02:00 EST -> 03:00 EDT; 2024-11-03: 02:00 EDT -> 01:00 EST.
    let spring = cron_dag("0 * * * *", new_york(), Some(utc(2024, 3, 10, 5, 0)), true);
    let got = due_intervals(&spring, None, utc(2024, 3, 10, 8, 0), 10);
    assert_eq!(
        got,
        vec![
            iv(utc(2024, 3, 10, 5, 0), utc(2024, 3, 10, 6, 0)), // 00:00 EST .. 01:00 EST
            iv(utc(2024, 3, 10, 6, 0), utc(2024, 3, 10, 7, 0)), // 01:00 EST .. 03:00 EDT
            iv(utc(2024, 3, 10, 7, 0), utc(2024, 3, 10, 8, 0)), // 03:00 EDT .. 04:00 EDT
        ]
    );
    let fall = cron_dag("0 * * * *", new_york(), Some(utc(2024, 11, 3, 4, 0)), true);
    let got = due_intervals(&fall, None, utc(2024, 11, 3, 8, 0), 10);
    assert_eq!(
        got,
        vec![
            iv(utc(2024, 11, 3, 4, 0), utc(2024, 11, 3, 5, 0)), // 00:00 EDT .. 01:00 EDT
            iv(utc(2024, 11, 3, 5, 0), utc(2024, 11, 3, 6, 0)), // 01:00 EDT .. 01:00 EST
            iv(utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 7, 0)), // 01:00 EST .. 02:00 EST
            iv(utc(2024, 11, 3, 7, 0), utc(2024, 11, 3, 8, 0)),
        ]
    );
    // Latest complete interval, computed backwards from inside the repeated hour.
    let mut fall_nc = fall.clone();
    fall_nc.catchup = false;
    assert_eq!(
        due_intervals(&fall_nc, None, utc(2024, 11, 3, 6, 30), 10),
        vec![iv(utc(2024, 11, 3, 5, 0), utc(2024, 11, 3, 6, 0))]
    );
}

#[test]
fn new_york_fixed_time_on_transition_days() {
    // 02:30 is skipped on 2024-03-10: the tick moves forward by the gap, to 03:30 EDT = 07:30Z.
    let d = cron_dag("30 2 * * *", new_york(), Some(utc(2024, 3, 9, 0, 0)), true);
    let got = due_intervals(&d, None, utc(2024, 3, 12, 0, 0), 10);
    assert_eq!(
        got,
        vec![
            iv(utc(2024, 3, 9, 7, 30), utc(2024, 3, 10, 7, 30)),
            iv(utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 6, 30)),
        ]
    );
    // 01:30 happens twice on 2024-11-03: one tick, at the second, 01:30 EST = 06:30Z.
    let d = cron_dag("30 1 * * *", new_york(), Some(utc(2024, 11, 2, 0, 0)), true);
    let got = due_intervals(&d, None, utc(2024, 11, 5, 0, 0), 10);
    assert_eq!(
        got,
        vec![
            iv(utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 6, 30)),
            iv(utc(2024, 11, 3, 6, 30), utc(2024, 11, 4, 6, 30)),
        ]
    );
}

#[test]
fn impossible_cron_creates_nothing() {
    let d = cron_dag("0 0 30 2 *", Tz::UTC, Some(day(1)), true);
    assert_eq!(due_intervals(&d, None, utc(2030, 1, 1, 0, 0), 5), vec![]);
    assert_eq!(manual_interval(&d, day(3)), iv(day(3), day(3)));
}

#[test]
fn ticks_of_a_whole_hour_in_the_gap_land_in_order_after_it() {
    // `*/15 2 * * *` on 2024-03-31 in Berlin: 02:00-02:45 do not exist; each is moved forward
    // by the hour (03:00-03:45 CEST, 01:00Z-01:45Z) and they still follow each other in order.
    let d = cron_dag(
        "*/15 2 * * *",
        berlin(),
        Some(utc(2024, 3, 31, 0, 30)),
        true,
    );
    let starts: Vec<_> = due_intervals(&d, None, utc(2024, 4, 2, 0, 0), 10)
        .iter()
        .map(|i| i.start)
        .collect();
    assert_eq!(
        starts,
        vec![
            utc(2024, 3, 31, 1, 0), // 03:00 CEST, for 02:00
            utc(2024, 3, 31, 1, 15),
            utc(2024, 3, 31, 1, 30),
            utc(2024, 3, 31, 1, 45),
            utc(2024, 4, 1, 0, 0), // 02:00 CEST
            utc(2024, 4, 1, 0, 15),
            utc(2024, 4, 1, 0, 30),
            utc(2024, 4, 1, 0, 45),
        ]
    );
    // A manual run at 03:20 CEST covers the quarter hour before; one at 03:00 CEST the day
    // since the day before's last tick (02:45 CET = 01:45Z).
    assert_eq!(
        manual_interval(&d, utc(2024, 3, 31, 1, 20)),
        iv(utc(2024, 3, 31, 1, 0), utc(2024, 3, 31, 1, 15))
    );
    assert_eq!(
        manual_interval(&d, utc(2024, 3, 31, 1, 0)),
        iv(utc(2024, 3, 30, 1, 45), utc(2024, 3, 31, 1, 0))
    );
}

#[test]
fn hourly_on_lord_howe_runs_at_local_whole_hours() {
    // Lord Howe moves its clocks by 30 minutes. An hourly schedule runs at the instants whose
    // local time is on the hour: on 2024-04-07 (02:00 LHDT -> 01:30 LHST at 15:00Z) the
    // repeated half hour holds no whole hour, so 01:00 LHDT (14:00Z) is followed by 02:00 LHST
    // (15:30Z); on 2024-10-06 (02:00 LHST -> 02:30 LHDT at 15:30Z), 01:00 LHST (14:30Z) by
    // 03:00 LHDT (16:00Z).
    let lord_howe: Tz = "Australia/Lord_Howe".parse().unwrap();
    let fall = cron_dag("0 * * * *", lord_howe, Some(utc(2024, 4, 6, 14, 0)), true);
    assert_eq!(
        due_intervals(&fall, None, utc(2024, 4, 6, 17, 0), 10),
        vec![
            iv(utc(2024, 4, 6, 14, 0), utc(2024, 4, 6, 15, 30)),
            iv(utc(2024, 4, 6, 15, 30), utc(2024, 4, 6, 16, 30)),
        ]
    );
    let spring = cron_dag("0 * * * *", lord_howe, Some(utc(2024, 10, 5, 14, 30)), true);
    assert_eq!(
        due_intervals(&spring, None, utc(2024, 10, 5, 17, 0), 10),
        vec![
            iv(utc(2024, 10, 5, 14, 30), utc(2024, 10, 5, 16, 0)),
            iv(utc(2024, 10, 5, 16, 0), utc(2024, 10, 5, 17, 0)),
        ]
    );
}
