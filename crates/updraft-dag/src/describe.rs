//! A schedule in words, as Airflow's `timetable_description` gives it: "At 00:00", "Every
//! hour", "At 16:30, only on Monday".
//!
//! Airflow describes a cron expression with the Python package cron_descriptor (sentence case,
//! 24-hour clock), and when both day-of-month and day-of-week are restricted it describes each
//! alone and joins them with " (or) ", since cron runs on either. This module follows
//! cron_descriptor's rules for 5-field expressions: the time of day first, then the day of the
//! month, the day of the week and the month, with the filler phrases (", every day", ", every
//! hour", ", every minute") dropped. Expressions using `L`, `W` or `#` are described by croner
//! instead (readable, but not cron_descriptor's words).
//!
//! `None` and `@once` read as Airflow's `NullTimetable` and `OnceTimetable` do. A duration
//! reads "Every 30 minutes", "Every day"; Airflow's `DeltaDataIntervalTimetable` has no
//! description (an empty string), which tells a reader nothing.

use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};

use crate::model::{Schedule, format_duration};

const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Phrases cron_descriptor leaves out when not asked to be verbose.
const FILLERS: [&str; 3] = [", every minute", ", every hour", ", every day"];

impl Schedule {
    /// The schedule in words, as Airflow's `timetable_description` (see the
    /// [module documentation](self)).
    pub fn description(&self) -> String {
        match self {
            Schedule::None => "Never, external triggers only".to_owned(),
            Schedule::Once => "Once, as soon as possible".to_owned(),
            Schedule::Cron(expr) => describe_cron(expr),
            Schedule::Every(d) => describe_duration(*d),
            Schedule::Assets(_) => "Triggered by assets".to_owned(),
        }
    }
}

/// A 5-field cron expression in words, as Airflow's `CronMixin.description`.
pub fn describe_cron(expr: &str) -> String {
    let Some(fields) = normalise(expr) else {
        return describe_with_croner(expr);
    };
    let [_, _, dom, _, dow] = &fields;
    if dom != "*" && dow != "*" {
        let mut dom_only = fields.clone();
        dom_only[4] = "*".to_owned();
        let mut dow_only = fields.clone();
        dow_only[2] = "*".to_owned();
        return format!(
            "{} (or) {}",
            full_description(&dom_only),
            full_description(&dow_only)
        );
    }
    full_description(&fields)
}

/// A duration schedule in words: "Every hour", "Every 30 minutes", "Every 1 day and 12 hours".
pub fn describe_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 || d.is_zero() {
        return format!("Every {}", format_duration(d));
    }
    const UNITS: [(u64, &str); 4] = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let mut left = d.as_secs();
    let mut parts = Vec::new();
    for (size, name) in UNITS {
        let count = left / size;
        left %= size;
        if count > 0 {
            parts.push((count, name));
        }
    }
    match parts.as_slice() {
        [(1, name)] => format!("Every {name}"),
        _ => {
            let words: Vec<String> = parts
                .iter()
                .map(|(n, name)| format!("{n} {name}{}", if *n == 1 { "" } else { "s" }))
                .collect();
            format!("Every {}", join_list(&words))
        }
    }
}

/// croner's own English, for the expressions this module does not cover.
fn describe_with_croner(expr: &str) -> String {
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    match parser.parse(expr) {
        Ok(cron) => cron.describe(),
        Err(_) => String::new(),
    }
}

/// The five fields with names turned into numbers, `?` into `*`, `0/n` (`1/n` for days and
/// months) into `*/n` and `*/1` into `*`, as cron_descriptor's parser does; None for what this
/// module does not describe.
fn normalise(expr: &str) -> Option<[String; 5]> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let fields: [&str; 5] = fields.try_into().ok()?;
    let mut out: [String; 5] = Default::default();
    for (i, field) in fields.iter().enumerate() {
        let mut f = field.to_ascii_uppercase().replace('?', "*");
        if f.contains(['L', 'W', '#']) && !is_named(&f, i) {
            return None;
        }
        if i == 4 {
            f = replace_names(&f, &DAY_NAMES, 0);
            if f == "7" {
                f = "0".to_owned();
            }
        }
        if i == 3 {
            f = replace_names(&f, &MONTH_NAMES, 1);
        }
        let first = if i < 2 { "0/" } else { "1/" };
        if let Some(step) = f.strip_prefix(first) {
            f = format!("*/{step}");
        }
        if f == "*/1" {
            f = "*".to_owned();
        }
        if !f
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '/' | '-' | ','))
        {
            return None;
        }
        out[i] = f;
    }
    Some(out)
}

/// Whether the `L`/`W` in a field are only letters of day or month names (`WED`, `JUL`).
fn is_named(field: &str, index: usize) -> bool {
    let names: &[&str] = match index {
        3 => &MONTH_NAMES,
        4 => &DAY_NAMES,
        _ => return false,
    };
    let stripped = replace_names(field, names, 0);
    !stripped.contains(['L', 'W', '#'])
}

/// Replaces three-letter names (`MON`, `JAN`) by their numbers, the first name being `first`.
fn replace_names(field: &str, names: &[&str], first: usize) -> String {
    let mut out = field.to_owned();
    for (i, name) in names.iter().enumerate() {
        let short = name[..3].to_ascii_uppercase();
        out = out.replace(&short, &(i + first).to_string());
    }
    out
}

fn full_description(fields: &[String; 5]) -> String {
    let [minute, hour, dom, month, dow] = fields;
    let mut text = time_of_day(minute, hour);
    text.push_str(&day_of_month(dom));
    text.push_str(&day_of_week(dow, dom));
    text.push_str(&month_part(month));
    for filler in FILLERS {
        text = text.replace(filler, "");
    }
    sentence_case(&text)
}

fn sentence_case(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn has_special(field: &str) -> bool {
    field.contains(['*', '/', '-', ','])
}

/// `HH:MM`, the 24-hour clock Airflow asks cron_descriptor for.
fn clock(hour: &str, minute: &str) -> String {
    let h: u32 = hour.parse().unwrap_or(0);
    let m: u32 = minute.parse().unwrap_or(0);
    format!("{h:02}:{m:02}")
}

fn time_of_day(minute: &str, hour: &str) -> String {
    if !has_special(minute) && !has_special(hour) {
        return format!("At {}", clock(hour, minute));
    }
    if minute.contains('-') && !minute.contains([',', '/']) && !has_special(hour) {
        let (from, to) = minute.split_once('-').unwrap_or((minute, minute));
        return format!(
            "Every minute between {} and {}",
            clock(hour, from),
            clock(hour, to)
        );
    }
    if hour.contains(',') && !hour.contains(['-', '/']) && !has_special(minute) {
        let times: Vec<String> = hour.split(',').map(|h| clock(h, minute)).collect();
        return format!("At {}", join_times(&times));
    }
    let minutes = if minute == "0" && hour != "*" {
        // "Between 09:00 and 17:59" alone would read as every minute of those hours.
        "at 0 minutes past the hour".to_owned()
    } else {
        minutes_part(minute)
    };
    let hours = if !has_special(hour) && (minute == "*" || minute.contains('/')) {
        format!("between {} and {}", clock(hour, "0"), clock(hour, "59"))
    } else {
        hours_part(hour)
    };
    [minutes, hours]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// cron_descriptor's list of times: "06:30, 14:30 and 16:30" (no comma before "and").
fn join_times(times: &[String]) -> String {
    match times {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// cron_descriptor's list of items: "1 and 15", "1, 2, and 3".
fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// How one part of an expression reads: what `*` reads as, how a single item is named, and
/// the wording for a step, a range, and one item or a list.
struct Segment<'a> {
    all: &'a str,
    item: &'a dyn Fn(&str) -> String,
    every: &'a dyn Fn(&str) -> String,
    between: &'a dyn Fn(&str, &str) -> String,
    single: &'a dyn Fn(&str, &str) -> String,
}

impl Segment<'_> {
    fn describe(&self, field: &str) -> String {
        if field == "*" {
            return self.all.to_owned();
        }
        if let Some((range, step)) = field.split_once('/') {
            let mut text = (self.every)(step);
            if range.contains('-') {
                let between = self.range(range);
                if !between.starts_with(", ") {
                    text.push_str(", ");
                }
                text.push_str(&between);
            } else if !range.contains(['*', ',']) {
                let start = (self.single)(range, &(self.item)(range)).replace(", ", "");
                text.push_str(&format!(", starting {start}"));
            }
            return text;
        }
        if field.contains(',') {
            let items: Vec<String> = field
                .split(',')
                .map(|part| match part.split_once('-') {
                    Some((a, b)) => {
                        format!("{} through {}", (self.item)(a), (self.item)(b))
                    }
                    None => (self.item)(part),
                })
                .collect();
            return (self.single)(field, &join_list(&items));
        }
        if field.contains('-') {
            return self.range(field);
        }
        (self.single)(field, &(self.item)(field))
    }

    fn range(&self, range: &str) -> String {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        (self.between)(&(self.item)(a), &(self.item)(b).replace(":00", ":59"))
    }
}

fn minutes_part(field: &str) -> String {
    Segment {
        all: "every minute",
        item: &|s| s.to_owned(),
        every: &|n| format!("every {n} minutes"),
        between: &|a, b| format!("minutes {a} through {b} past the hour"),
        single: &|raw, s| {
            if raw == "0" {
                String::new()
            } else {
                format!("at {s} minutes past the hour")
            }
        },
    }
    .describe(field)
}

fn hours_part(field: &str) -> String {
    Segment {
        all: "every hour",
        item: &|s| clock(s, "0"),
        every: &|n| format!("every {n} hours"),
        between: &|a, b| format!("between {a} and {b}"),
        single: &|_, s| format!("at {s}"),
    }
    .describe(field)
}

fn day_of_month(field: &str) -> String {
    Segment {
        all: ", every day",
        item: &|s| s.to_owned(),
        every: &|n| {
            if n == "1" {
                ", every day".to_owned()
            } else {
                format!(", every {n} days")
            }
        },
        between: &|a, b| format!(", between day {a} and {b} of the month"),
        single: &|_, s| format!(", on day {s} of the month"),
    }
    .describe(field)
}

fn day_of_week(field: &str, dom: &str) -> String {
    if field == "*" && dom != "*" {
        return String::new();
    }
    Segment {
        all: ", every day",
        item: &day_name,
        every: &|n| format!(", every {n} days of the week"),
        between: &|a, b| format!(", {a} through {b}"),
        single: &|_, s| format!(", only on {s}"),
    }
    .describe(field)
}

fn month_part(field: &str) -> String {
    Segment {
        all: "",
        item: &month_name,
        every: &|n| format!(", every {n} months"),
        between: &|a, b| format!(", {a} through {b}"),
        single: &|_, s| format!(", only in {s}"),
    }
    .describe(field)
}

/// The name of day number `s` (0 and 7 are Sunday), or `s` itself when out of range.
fn day_name(s: &str) -> String {
    match s.parse::<usize>() {
        Ok(n) if n <= 7 => DAY_NAMES[n % 7].to_owned(),
        _ => s.to_owned(),
    }
}

/// The name of month number `s` (1 is January), or `s` itself when out of range.
fn month_name(s: &str) -> String {
    match s.parse::<usize>() {
        Ok(n) if (1..=12).contains(&n) => MONTH_NAMES[n - 1].to_owned(),
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cron_descriptor's own cases (its `test_formats.py`) in Airflow's 24-hour form, then a few
    /// common shapes.
    #[test]
    fn cron_descriptor_cases() {
        for (expr, expected) in [
            ("* * * * *", "Every minute"),
            ("*/1 * * * *", "Every minute"),
            ("0 * * * *", "Every hour"),
            ("0 0/1 * * *", "Every hour"),
            ("0 23 ? * MON-FRI", "At 23:00, Monday through Friday"),
            ("*/5 * * * *", "Every 5 minutes"),
            ("0/10 * * * *", "Every 10 minutes"),
            ("30 11 * * 1-5", "At 11:30, Monday through Friday"),
            ("30 11 * * *", "At 11:30"),
            ("0-10 11 * * *", "Every minute between 11:00 and 11:10"),
            ("* * * 3 *", "Every minute, only in March"),
            ("* * * 3,6 *", "Every minute, only in March and June"),
            ("30 14,16 * * *", "At 14:30 and 16:30"),
            ("30 6,14,16 * * *", "At 06:30, 14:30 and 16:30"),
            ("46 9 * * 1", "At 09:46, only on Monday"),
            ("23 12 15 * *", "At 12:23, on day 15 of the month"),
            ("23 12 * JAN *", "At 12:23, only in January"),
            ("23 12 * jan *", "At 12:23, only in January"),
            ("23 12 * JAN-FEB *", "At 12:23, January through February"),
            ("23 12 * * SUN", "At 12:23, only on Sunday"),
            (
                "*/5 15 * * MON-FRI",
                "Every 5 minutes, between 15:00 and 15:59, Monday through Friday",
            ),
            (
                "0-20/3 9 * * *",
                "Every 3 minutes, minutes 0 through 20 past the hour, between 09:00 and 09:59",
            ),
            (
                "5/30 * * * *",
                "Every 30 minutes, starting at 5 minutes past the hour",
            ),
            ("0 7 * * * ", "At 07:00"),
            ("5 * * * *", "At 5 minutes past the hour"),
            (
                "0 9-17 * * 1-5",
                "At 0 minutes past the hour, between 09:00 and 17:59, Monday through Friday",
            ),
            ("0 */2 * * *", "At 0 minutes past the hour, every 2 hours"),
            ("0 0 1,15 * *", "At 00:00, on day 1 and 15 of the month"),
        ] {
            assert_eq!(describe_cron(expr), expected, "{expr}");
        }
    }

    /// The presets, as Airflow's DAG details show them.
    #[test]
    fn presets_read_as_in_airflow() {
        for (preset, expected) in [
            ("@hourly", "Every hour"),
            ("@daily", "At 00:00"),
            ("@weekly", "At 00:00, only on Sunday"),
            ("@monthly", "At 00:00, on day 1 of the month"),
            (
                "@quarterly",
                "At 00:00, on day 1 of the month, every 3 months",
            ),
            (
                "@yearly",
                "At 00:00, on day 1 of the month, only in January",
            ),
        ] {
            let schedule = crate::parse_schedule(preset).unwrap();
            assert_eq!(schedule.description(), expected, "{preset}");
        }
    }

    /// Airflow's `_describe_with_dom_dow_fix`: cron runs when either day field matches.
    #[test]
    fn day_of_month_and_day_of_week_read_as_either() {
        assert_eq!(
            describe_cron("0 0 1 * 1"),
            "At 00:00, on day 1 of the month (or) At 00:00, only on Monday"
        );
    }

    #[test]
    fn other_schedules() {
        assert_eq!(
            Schedule::None.description(),
            "Never, external triggers only"
        );
        assert_eq!(Schedule::Once.description(), "Once, as soon as possible");
        for (secs, expected) in [
            (3_600, "Every hour"),
            (86_400, "Every day"),
            (1_800, "Every 30 minutes"),
            (90, "Every 1 minute and 30 seconds"),
            (
                2 * 86_400 + 3 * 3_600 + 60,
                "Every 2 days, 3 hours, and 1 minute",
            ),
        ] {
            assert_eq!(
                Schedule::Every(Duration::from_secs(secs)).description(),
                expected
            );
        }
        assert_eq!(
            Schedule::Every(Duration::from_millis(1_500)).description(),
            "Every 1500ms"
        );
    }

    /// What cron_descriptor's rules do not cover still reads as something, never as nothing.
    #[test]
    fn last_day_and_nth_weekday_fall_back_to_croner() {
        for expr in ["0 0 L * *", "0 0 * * 5#3", "0 0 15W * *"] {
            let text = describe_cron(expr);
            assert!(
                !text.is_empty() && !text.contains(" (or) "),
                "{expr}: {text}"
            );
        }
    }
}
