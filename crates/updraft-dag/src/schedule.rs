//! Reading the time-related DAG keys: `schedule` (cron, presets, durations), `timezone`, and the
//! `start_date` / `end_date` datetimes.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

use crate::diag::{self, Diagnostics, describe, quoted};
use crate::model::Schedule;
use crate::yaml::{Node, Value};

/// The `@` presets and the 5-field cron expressions they stand for (Airflow's table).
pub const CRON_PRESETS: [(&str, &str); 6] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@quarterly", "0 0 1 */3 *"),
    ("@yearly", "0 0 1 1 *"),
];

/// The refusal of a zero (or negative) duration schedule, worded as for the other durations.
const SCHEDULE_NOT_POSITIVE: &str = "`schedule` must be longer than zero";

/// Preset spellings accepted on input besides those of [`CRON_PRESETS`].
const PRESET_ALIASES: [(&str, &str); 1] = [("@annually", "0 0 1 1 *")];

/// The preset (`@daily`, ...) whose expansion is exactly `expr`, if any.
pub fn cron_preset_name(expr: &str) -> Option<&'static str> {
    CRON_PRESETS
        .iter()
        .find(|(_, e)| *e == expr)
        .map(|(name, _)| *name)
}

/// Parses the text of a `schedule:` value: `@once`, a preset such as `@daily`, a 5-field cron
/// expression, or a duration (`30m`, `1h`, `1d`, `90s`). The error is a complete sentence.
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let text = text.trim();
    if text.starts_with('@') {
        return parse_preset(text);
    }
    if text.contains(char::is_whitespace) {
        return parse_cron(text).map(Schedule::Cron);
    }
    match diag::parse_duration_text(text) {
        Ok(d) if d.is_zero() => Err(SCHEDULE_NOT_POSITIVE.to_owned()),
        Ok(d) => Ok(Schedule::Every(d)),
        Err(reason) => Err(format!(
            "{} is neither a cron expression, a preset (@once, @hourly, @daily, @weekly, \
             @monthly, @quarterly, @yearly) nor a duration ({reason})",
            quoted(text)
        )),
    }
}

fn parse_preset(text: &str) -> Result<Schedule, String> {
    if text == "@once" {
        return Ok(Schedule::Once);
    }
    let known = CRON_PRESETS.iter().chain(PRESET_ALIASES.iter());
    if let Some((_, expr)) = known.clone().find(|(name, _)| *name == text) {
        return Ok(Schedule::Cron((*expr).to_owned()));
    }
    let names = std::iter::once("@once").chain(known.map(|(name, _)| *name));
    let hint = match text {
        "@continuous" => "; continuous DAGs are not supported".to_owned(),
        _ => diag::did_you_mean(text, names),
    };
    Err(format!("unknown schedule preset {}{hint}", quoted(text)))
}

/// Validates a 5-field cron expression and returns it with its whitespace normalised.
pub fn parse_cron(text: &str) -> Result<String, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "cron expression {} has {} fields; expected 5 (minute hour day-of-month month \
             day-of-week)",
            quoted(text),
            fields.len()
        ));
    }
    let normalised = fields.join(" ");
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    match parser.parse(&normalised) {
        Ok(_) => Ok(normalised),
        Err(e) => {
            // Name the field the parser refuses, when one field alone is enough to refuse it.
            const NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
            let culprit = (0..5).find(|&i| {
                let mut alone = ["*"; 5];
                alone[i] = fields[i];
                parser.parse(&alone.join(" ")).is_err()
            });
            Err(match culprit {
                Some(i) => format!(
                    "invalid cron expression {}: {} field `{}`: {e}",
                    quoted(text),
                    NAMES[i],
                    fields[i]
                ),
                None => format!("invalid cron expression {}: {e}", quoted(text)),
            })
        }
    }
}

/// Reads `schedule:`. `null` means manual runs only; an integer is a number of seconds.
pub(crate) fn schedule(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Schedule> {
    let parsed = match &node.value {
        Value::Null => Ok(Schedule::None),
        Value::Str(s) if crate::assets::is_asset_expression(s) => {
            return crate::assets::asset_schedule(diags, node);
        }
        Value::Seq(_) | Value::Map(_) => return crate::assets::asset_schedule(diags, node),
        Value::Str(s) => parse_schedule(s),
        Value::Int(i) => match u64::try_from(*i) {
            Ok(seconds) if seconds > 0 => Ok(Schedule::Every(Duration::from_secs(seconds))),
            _ => Err(SCHEDULE_NOT_POSITIVE.to_owned()),
        },
        _ => Err(format!(
            "`schedule` must be a cron expression, a preset such as \"@daily\", a duration such \
             as \"1h\", assets, or null, found {}",
            describe(node)
        )),
    };
    parsed.map_err(|message| diags.at(node.pos, message)).ok()
}

/// Reads `timezone:`, an IANA name such as `Europe/Paris`.
pub(crate) fn timezone(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Tz> {
    let name = diag::string(diags, node, "timezone")?;
    match Tz::from_str(name.trim()) {
        Ok(tz) => Some(tz),
        Err(_) => {
            let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
            let hint = diag::did_you_mean(name.trim(), names);
            diags.at(
                node.pos,
                format!(
                    "unknown time zone {}{hint} (expected an IANA name such as \"Europe/Paris\")",
                    quoted(&name)
                ),
            );
            None
        }
    }
}

/// Reads a `start_date` / `end_date`: a date or a datetime. Without an offset it is read in
/// the DAG's time zone; `Z` or an offset is honoured.
pub(crate) fn datetime(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    name: &str,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let Value::Str(text) = &node.value else {
        diag::wrong_type(
            diags,
            node,
            name,
            "a date (2024-01-01) or a datetime (2024-01-01T03:00:00)",
        );
        return None;
    };
    parse_datetime(text, tz)
        .map_err(|reason| diags.at(node.pos, format!("{}: {reason}", quoted(name))))
        .ok()
}

/// Parses a date or datetime; naive values are local to `tz`. A local time that happens twice
/// is its second occurrence (as in Airflow); one that does not exist is an error.
pub fn parse_datetime(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Ok(dt.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(text, format) {
            return Ok(dt.with_timezone(&Utc));
        }
    }
    let naive = parse_naive(text).ok_or_else(|| {
        format!(
            "{text:?} is not a date or datetime (expected e.g. 2024-01-01, \
             2024-01-01T03:00:00 or 2024-01-01T03:00:00+09:00)"
        )
    })?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Ok(dt.with_timezone(&Utc)),
        // The second occurrence, as pendulum (fold=1) and Airflow's make_aware take it.
        LocalResult::Ambiguous(_, latest) => Ok(latest.with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "{naive} does not exist in {} (it falls in a daylight-saving gap)",
            tz.name()
        )),
    }
}

fn parse_naive(text: &str) -> Option<NaiveDateTime> {
    const FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_expand() {
        assert_eq!(
            parse_schedule("@daily"),
            Ok(Schedule::Cron("0 0 * * *".into()))
        );
        assert_eq!(
            parse_schedule("@annually"),
            Ok(Schedule::Cron("0 0 1 1 *".into()))
        );
        assert_eq!(parse_schedule("@once"), Ok(Schedule::Once));
        let err = parse_schedule("@dialy").unwrap_err();
        assert!(err.contains("did you mean `@daily`?"), "{err}");
        assert!(
            parse_schedule("@continuous")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn cron_is_validated_and_normalised() {
        assert_eq!(
            parse_schedule(" 0  3 * * * "),
            Ok(Schedule::Cron("0 3 * * *".into()))
        );
        assert_eq!(
            parse_schedule("*/15 9-17 * * MON-FRI"),
            Ok(Schedule::Cron("*/15 9-17 * * MON-FRI".into()))
        );
        assert!(
            parse_schedule("0 3 * * * *")
                .unwrap_err()
                .contains("has 6 fields")
        );
        assert!(
            parse_schedule("61 3 * * *")
                .unwrap_err()
                .contains("invalid cron expression")
        );
        assert!(
            parse_schedule("0 3 * x *")
                .unwrap_err()
                .contains("invalid cron expression")
        );
        assert!(
            parse_schedule("61 3 * * *")
                .unwrap_err()
                .contains("minute field `61`")
        );
        assert!(
            parse_schedule("0 3 * x *")
                .unwrap_err()
                .contains("month field `x`")
        );
    }

    #[test]
    fn durations_are_schedules() {
        assert_eq!(
            parse_schedule("30m"),
            Ok(Schedule::Every(Duration::from_secs(1800)))
        );
        assert_eq!(
            parse_schedule("1d"),
            Ok(Schedule::Every(Duration::from_secs(86400)))
        );
        assert!(parse_schedule("0s").is_err());
        assert!(
            parse_schedule("daily")
                .unwrap_err()
                .contains("neither a cron expression")
        );
    }

    #[test]
    fn datetimes() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse_datetime("2024-01-01", tokyo),
            Ok(utc("2023-12-31T15:00:00Z"))
        );
        assert_eq!(
            parse_datetime("2024-01-01T09:30:00", tokyo),
            Ok(utc("2024-01-01T00:30:00Z"))
        );
        assert_eq!(
            parse_datetime("2024-01-01 09:30", tokyo),
            Ok(utc("2024-01-01T00:30:00Z"))
        );
        assert_eq!(
            parse_datetime("2024-01-01T00:00:00Z", tokyo),
            Ok(utc("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_datetime("2024-01-01T00:00:00+02:00", tokyo),
            Ok(utc("2023-12-31T22:00:00Z"))
        );
        assert!(parse_datetime("2024-13-01", tokyo).is_err());
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let gap = parse_datetime("2024-03-31T02:30:00", paris).unwrap_err();
        assert!(gap.contains("daylight-saving gap"), "{gap}");
        // Ambiguous local times take the second instant (02:30 CET), as Airflow does.
        assert_eq!(
            parse_datetime("2024-10-27T02:30:00", paris),
            Ok(utc("2024-10-27T01:30:00Z"))
        );
    }
}
