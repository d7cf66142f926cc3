//! Airflow's own timetable tests (`tests/unit/timetables/test_interval_timetable.py`), case by
//! case, against updraft's timetable: each test names the Airflow test it follows. Airflow's
//! `next_dagrun_info(last, TimeRestriction(earliest=start_date, latest=end_date, catchup))` is
//! [`next_interval`] here, its `infer_manual_data_interval` is [`manual_interval`], and the
//! frozen clock (`time_machine.travel`) is the `now` argument.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use common::{cron_dag, dag, task, utc};
use updraft_core::timetable::{DataInterval, manual_interval, next_interval};
use updraft_dag::{Dag, Schedule};

fn iv(start: DateTime<Utc>, end: DateTime<Utc>) -> DataInterval {
    DataInterval { start, end }
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap()
}

/// `START_DATE`, `PREV_DATA_INTERVAL` and `CURRENT_TIME` of Airflow's test module.
fn start_date() -> DateTime<Utc> {
    utc(2021, 9, 4, 0, 0)
}
fn prev_data_interval() -> DataInterval {
    iv(utc(2021, 9, 4, 0, 0), utc(2021, 9, 5, 0, 0))
}
fn current_time() -> DateTime<Utc> {
    utc(2021, 9, 7, 0, 0)
}

fn hourly_timedelta(start: Option<DateTime<Utc>>, catchup: bool) -> Dag {
    let mut d = dag(
        Schedule::Every(Duration::from_secs(3600)),
        vec![task("t", &[])],
    );
    d.start_date = start;
    d.catchup = catchup;
    d
}

/// The hourly timetables Airflow parametrises over (cron `@hourly` and `timedelta(hours=1)`).
fn hourly(start: Option<DateTime<Utc>>, catchup: bool) -> [Dag; 2] {
    [
        cron_dag("0 * * * *", Tz::UTC, start, catchup),
        hourly_timedelta(start, catchup),
    ]
}

/// Successive intervals with catchup (the clock plays no part), as Airflow's DST classes walk.
fn walk(d: &Dag, steps: usize) -> Vec<DataInterval> {
    let far_future = utc(2100, 1, 1, 0, 0);
    let mut out: Vec<DataInterval> = Vec::new();
    for _ in 0..steps {
        let next = next_interval(d, out.last(), far_future).expect("an interval");
        out.push(next);
    }
    out
}

#[test]
fn no_catchup_first_starts_at_current_time() {
    // test_no_catchup_first_starts_at_current_time: start_date a day before, 16:30 daily.
    let yesterday = utc(2021, 9, 6, 0, 0);
    let d = cron_dag("30 16 * * *", Tz::UTC, Some(yesterday), false);
    for last in [None, Some(prev_data_interval())] {
        assert_eq!(
            next_interval(&d, last.as_ref(), current_time()),
            Some(iv(utc(2021, 9, 6, 16, 30), utc(2021, 9, 7, 16, 30))),
            "last = {last:?}"
        );
    }
}

#[test]
fn zero_length_last_interval_does_not_re_emit_logical_date() {
    // test_zero_length_last_interval_does_not_re_emit_logical_date: a `[d, d]` interval left
    // by another schedule is followed by the next tick, not by `d` again.
    let last = iv(utc(2021, 9, 5, 17, 0), utc(2021, 9, 5, 17, 0));
    for catchup in [true, false] {
        let d = cron_dag("0 17 * * *", Tz::UTC, None, catchup);
        assert_eq!(
            next_interval(&d, Some(&last), utc(2021, 9, 7, 15, 0)),
            Some(iv(utc(2021, 9, 6, 17, 0), utc(2021, 9, 7, 17, 0))),
            "catchup = {catchup}"
        );
    }
}

#[test]
fn new_schedule_next_info_starts_at_new_time() {
    // test_new_schedule_next_info_starts_at_new_time: the last interval was made by a daily
    // midnight schedule; the new 16:30 schedule aligns back to the 16:30 before its end.
    let old_interval = iv(utc(2021, 9, 6, 0, 0), current_time());
    for start in [None, Some(start_date())] {
        for catchup in [true, false] {
            let d = cron_dag("30 16 * * *", Tz::UTC, start, catchup);
            assert_eq!(
                next_interval(&d, Some(&old_interval), current_time()),
                Some(iv(utc(2021, 9, 6, 16, 30), utc(2021, 9, 7, 16, 30))),
                "start_date = {start:?}, catchup = {catchup}"
            );
        }
    }
}

#[test]
fn no_catchup_next_info_starts_at_current_time() {
    // test_no_catchup_next_info_starts_at_current_time (cron and timedelta).
    for d in hourly(Some(start_date()), false) {
        for last in [None, Some(prev_data_interval())] {
            assert_eq!(
                next_interval(&d, last.as_ref(), current_time()),
                Some(iv(utc(2021, 9, 6, 23, 0), current_time())),
                "{:?}, last = {last:?}",
                d.schedule
            );
        }
    }
}

#[test]
fn catchup_next_info_starts_at_previous_interval_end() {
    // test_catchup_next_info_starts_at_previous_interval_end (cron and timedelta).
    for d in hourly(Some(start_date()), true) {
        assert_eq!(
            next_interval(&d, Some(&prev_data_interval()), current_time()),
            Some(iv(utc(2021, 9, 5, 0, 0), utc(2021, 9, 5, 1, 0))),
            "{:?}",
            d.schedule
        );
    }
}

#[test]
fn cron_infer_manual_data_interval_alignment() {
    // test_cron_infer_manual_data_interval_alignment: "adhoc" and "exact".
    let d = cron_dag("0 0 * * *", Tz::UTC, None, true);
    let expected = iv(utc(2022, 8, 7, 0, 0), utc(2022, 8, 8, 0, 0));
    assert_eq!(manual_interval(&d, utc(2022, 8, 8, 1, 0)), expected);
    assert_eq!(manual_interval(&d, utc(2022, 8, 8, 0, 0)), expected);
}

#[test]
fn cron_next_dagrun_info_alignment() {
    // test_cron_next_dagrun_info_alignment: "exact", and "changed" (the previous interval does
    // not align with the current schedule: the next starts at the last tick before its end).
    let d = cron_dag("0 0 * * *", Tz::UTC, None, true);
    let expected = Some(iv(utc(2022, 8, 8, 0, 0), utc(2022, 8, 9, 0, 0)));
    let now = utc(2022, 8, 10, 0, 0);
    let exact = iv(utc(2022, 8, 7, 0, 0), utc(2022, 8, 8, 0, 0));
    let changed = iv(utc(2022, 8, 7, 1, 0), utc(2022, 8, 8, 1, 0));
    assert_eq!(next_interval(&d, Some(&exact), now), expected);
    assert_eq!(next_interval(&d, Some(&changed), now), expected);
}

/// The DST cases shared by Airflow's `test_cron_infer_manual_data_interval_dst` and
/// `test_cron_next_dagrun_info_no_catchup_dst`: (id, expression, zone, moment, interval).
fn dst_cases() -> Vec<(&'static str, &'static str, Tz, DateTime<Utc>, DataInterval)> {
    let new_york = zone("America/New_York");
    let zurich = zone("Europe/Zurich");
    let lord_howe = zone("Australia/Lord_Howe");
    let before_gap = iv(utc(2024, 3, 9, 7, 0), utc(2024, 3, 10, 7, 0));
    vec![
        (
            "new-york-dst-gap",
            "0 2 * * *",
            new_york,
            utc(2024, 3, 10, 7, 30),
            before_gap,
        ),
        (
            "new-york-dst-gap-exact",
            "0 2 * * *",
            new_york,
            utc(2024, 3, 10, 7, 0),
            before_gap,
        ),
        (
            "zurich-dst-gap",
            "0 2 * * *",
            zurich,
            utc(2023, 3, 26, 1, 30),
            iv(utc(2023, 3, 25, 1, 0), utc(2023, 3, 26, 1, 0)),
        ),
        (
            // Clocks go from 02:00 to 02:30: the 02:00 tick is moved to 02:30 (+11 = 15:30Z).
            "lord-howe-half-hour-dst-gap",
            "0 2 * * *",
            lord_howe,
            utc(2024, 10, 5, 15, 30),
            iv(utc(2024, 10, 4, 15, 30), utc(2024, 10, 5, 15, 30)),
        ),
        (
            // 01:00 on the fold day is its second occurrence (06:00Z), still ahead at 05:30Z.
            "new-york-fold",
            "0 1 * * *",
            new_york,
            utc(2024, 11, 3, 5, 30),
            iv(utc(2024, 11, 1, 5, 0), utc(2024, 11, 2, 5, 0)),
        ),
    ]
}

#[test]
fn cron_infer_manual_data_interval_dst() {
    // test_cron_infer_manual_data_interval_dst: never empty, never ending after the run.
    for (id, expr, tz, run_after, expected) in dst_cases() {
        let d = cron_dag(expr, tz, None, true);
        let got = manual_interval(&d, run_after);
        assert_eq!(got, expected, "{id}");
        assert!(got.start < got.end && got.end <= run_after, "{id}");
    }
}

#[test]
fn cron_next_dagrun_info_no_catchup_dst() {
    // test_cron_next_dagrun_info_no_catchup_dst: no proposed run whose period has not elapsed.
    for (id, expr, tz, now, expected) in dst_cases() {
        let d = cron_dag(expr, tz, None, false);
        let got = next_interval(&d, None, now);
        assert_eq!(got, Some(expected), "{id}");
        assert!(expected.end <= now, "{id}");
    }
}

#[test]
fn cron_next_dagrun_info_after_dst_manual_run() {
    // test_cron_next_dagrun_info_after_dst_manual_run: a manual interval on the gap day is
    // followed by the next full period, none skipped.
    let cases = [
        (
            zone("America/New_York"),
            utc(2024, 3, 10, 7, 30),
            iv(utc(2024, 3, 10, 7, 0), utc(2024, 3, 11, 6, 0)),
        ),
        (
            zone("Europe/Zurich"),
            utc(2023, 3, 26, 1, 30),
            iv(utc(2023, 3, 26, 1, 0), utc(2023, 3, 27, 0, 0)),
        ),
    ];
    for (tz, run_after, expected) in cases {
        let d = cron_dag("0 2 * * *", tz, None, true);
        let manual = manual_interval(&d, run_after);
        assert_eq!(
            next_interval(&d, Some(&manual), run_after),
            Some(expected),
            "{tz}"
        );
    }
}

// TestCronIntervalDst: Zurich, 2023. DST began on 26 March (02:00 CET → 03:00 CEST, 01:00Z)
// and ended on 29 October (03:00 CEST → 02:00 CET, 01:00Z; the 02:xx hour happens twice).

#[test]
fn zurich_entering_dst_exact() {
    let d = cron_dag(
        "0 3 * * *",
        zone("Europe/Zurich"),
        Some(utc(2023, 3, 24, 0, 0)),
        true,
    );
    assert_eq!(
        walk(&d, 3),
        vec![
            iv(utc(2023, 3, 24, 2, 0), utc(2023, 3, 25, 2, 0)),
            iv(utc(2023, 3, 25, 2, 0), utc(2023, 3, 26, 1, 0)),
            iv(utc(2023, 3, 26, 1, 0), utc(2023, 3, 27, 1, 0)),
        ]
    );
}

#[test]
fn zurich_entering_dst_skip() {
    // 02:00 does not exist on 26 March: that day's tick is 03:00 CEST (01:00Z).
    let d = cron_dag(
        "0 2 * * *",
        zone("Europe/Zurich"),
        Some(utc(2023, 3, 24, 0, 0)),
        true,
    );
    assert_eq!(
        walk(&d, 3),
        vec![
            iv(utc(2023, 3, 24, 1, 0), utc(2023, 3, 25, 1, 0)),
            iv(utc(2023, 3, 25, 1, 0), utc(2023, 3, 26, 1, 0)),
            iv(utc(2023, 3, 26, 1, 0), utc(2023, 3, 27, 0, 0)),
        ]
    );
}

#[test]
fn zurich_exiting_dst_exact() {
    let d = cron_dag(
        "0 3 * * *",
        zone("Europe/Zurich"),
        Some(utc(2023, 10, 27, 0, 0)),
        true,
    );
    assert_eq!(
        walk(&d, 3),
        vec![
            iv(utc(2023, 10, 27, 1, 0), utc(2023, 10, 28, 1, 0)),
            iv(utc(2023, 10, 28, 1, 0), utc(2023, 10, 29, 2, 0)),
            iv(utc(2023, 10, 29, 2, 0), utc(2023, 10, 30, 2, 0)),
        ]
    );
}

#[test]
fn zurich_exiting_dst_fold_ends_on_the_second_occurrence() {
    // test_exiting_fold: 02:00 happens twice on 29 October; the tick is the second (01:00Z).
    let d = cron_dag(
        "0 2 * * *",
        zone("Europe/Zurich"),
        Some(utc(2023, 10, 27, 0, 0)),
        true,
    );
    assert_eq!(
        walk(&d, 3),
        vec![
            iv(utc(2023, 10, 27, 0, 0), utc(2023, 10, 28, 0, 0)),
            iv(utc(2023, 10, 28, 0, 0), utc(2023, 10, 29, 1, 0)),
            iv(utc(2023, 10, 29, 1, 0), utc(2023, 10, 30, 1, 0)),
        ]
    );
}

// TestCronIntervalDstNonTrivial: Los Angeles, 8 March 2020, 02:00 PST → 03:00 PDT (10:00Z).

#[test]
fn los_angeles_7_to_8_entering_dst() {
    let d = cron_dag(
        "0 7-8 * * *",
        zone("America/Los_Angeles"),
        Some(utc(2020, 3, 7, 0, 0)),
        true,
    );
    assert_eq!(
        walk(&d, 3),
        vec![
            iv(utc(2020, 3, 7, 7 + 8, 0), utc(2020, 3, 7, 8 + 8, 0)),
            // Ends an hour early: it contains the switch.
            iv(utc(2020, 3, 7, 8 + 8, 0), utc(2020, 3, 8, 7 + 7, 0)),
            iv(utc(2020, 3, 8, 7 + 7, 0), utc(2020, 3, 8, 8 + 7, 0)),
        ]
    );
}

#[test]
fn los_angeles_7_and_9_entering_dst() {
    let d = cron_dag(
        "0 7,9 * * *",
        zone("America/Los_Angeles"),
        Some(utc(2020, 3, 7, 0, 0)),
        true,
    );
    assert_eq!(
        walk(&d, 3),
        vec![
            iv(utc(2020, 3, 7, 7 + 8, 0), utc(2020, 3, 7, 9 + 8, 0)),
            iv(utc(2020, 3, 7, 9 + 8, 0), utc(2020, 3, 8, 7 + 7, 0)),
            iv(utc(2020, 3, 8, 7 + 7, 0), utc(2020, 3, 8, 9 + 7, 0)),
        ]
    );
}

#[test]
fn fold_scheduling_every_half_hour() {
    // test_fold_scheduling: `*/30 * * * *` runs both halves of the repeated hour.
    let d = cron_dag(
        "*/30 * * * *",
        zone("Europe/Zurich"),
        Some(utc(2023, 10, 28, 23, 30)),
        true,
    );
    assert_eq!(
        walk(&d, 5),
        vec![
            iv(utc(2023, 10, 28, 23, 30), utc(2023, 10, 29, 0, 0)), // 01:30 .. 02:00 CEST
            iv(utc(2023, 10, 29, 0, 0), utc(2023, 10, 29, 0, 30)),  // .. 02:30 CEST
            iv(utc(2023, 10, 29, 0, 30), utc(2023, 10, 29, 1, 0)),  // .. 02:00 CET
            iv(utc(2023, 10, 29, 1, 0), utc(2023, 10, 29, 1, 30)),  // .. 02:30 CET
            iv(utc(2023, 10, 29, 1, 30), utc(2023, 10, 29, 2, 0)),  // .. 03:00 CET
        ]
    );
}

#[test]
fn several_fixed_hours_take_the_second_of_a_repeated_time() {
    // Not in Airflow's tests, but what its `make_aware(fold=1)` gives any hour field other than
    // `*`: `0 1,2 * * *` in New York on 2024-11-03 runs at 01:00 EST (06:00Z), not 01:00 EDT.
    let d = cron_dag(
        "0 1,2 * * *",
        zone("America/New_York"),
        Some(utc(2024, 11, 2, 6, 0)),
        true,
    );
    assert_eq!(
        walk(&d, 3),
        vec![
            iv(utc(2024, 11, 2, 6, 0), utc(2024, 11, 3, 6, 0)), // 02:00 EDT .. 01:00 EST
            iv(utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 7, 0)), // .. 02:00 EST
            iv(utc(2024, 11, 3, 7, 0), utc(2024, 11, 4, 6, 0)), // .. 01:00 EST
        ]
    );
}

#[test]
fn duration_schedule_after_a_change_starts_at_the_last_end() {
    // Airflow's DeltaDataIntervalTimetable aligns nothing: after a run made by another
    // schedule, the next interval starts where that one ended.
    let d = hourly_timedelta(Some(start_date()), true);
    let odd = iv(utc(2021, 9, 5, 0, 0), utc(2021, 9, 5, 0, 45));
    assert_eq!(
        next_interval(&d, Some(&odd), current_time()),
        Some(iv(utc(2021, 9, 5, 0, 45), utc(2021, 9, 5, 1, 45)))
    );
}

#[test]
fn once_runs_a_single_time_unless_end_date_precedes_it() {
    // test_once_timetable.py, with `start_date` at the frozen clock (updraft requires a
    // `start_date` for every scheduled DAG; Airflow's `@once` without one runs at once).
    let now = utc(2025, 3, 4, 5, 6);
    let day = chrono::TimeDelta::days(1);
    let previous = DataInterval::new(now - day, now - day);
    for catchup in [true, false] {
        for (last, end_date, expected) in [
            (None, None, Some(DataInterval::new(now, now))),
            (None, Some(now + day), Some(DataInterval::new(now, now))),
            (None, Some(now - day), None),
            (Some(previous), None, None),
            (Some(previous), Some(now + day), None),
            (Some(previous), Some(now - day), None),
        ] {
            let mut d = dag(Schedule::Once, vec![task("t", &[])]);
            d.start_date = Some(now);
            d.end_date = end_date;
            d.catchup = catchup;
            assert_eq!(
                next_interval(&d, last.as_ref(), now),
                expected,
                "last = {last:?}, end_date = {end_date:?}, catchup = {catchup}"
            );
        }
    }
}
