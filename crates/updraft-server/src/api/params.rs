//! Reading query parameters and body values the way Airflow's API does: paging with a
//! fallback and a maximum page size, `order_by` with `-` for descending, booleans, date-times.
//!
//! Query structs keep raw strings so every malformed value is reported naming its parameter.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};
use updraft_store::{Paging, TimeRange};

use crate::error::ApiError;

/// Page size when `limit` is not given (Airflow's `api.fallback_page_limit`).
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page; a larger `limit` is lowered to it (Airflow's `api.maximum_page_limit`).
pub const MAX_LIMIT: u32 = 100;

fn invalid(name: &str, expected: &str, got: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "query parameter `{name}`: expected {expected}, got `{got}`"
    ))
}

/// `limit` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and `offset` (default 0).
pub fn paging(limit: &Option<String>, offset: &Option<String>) -> Result<Paging, ApiError> {
    let limit = match limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => parse_unsigned(text)
            .ok_or_else(|| invalid("limit", "a non-negative integer", text))?
            .min(u64::from(MAX_LIMIT)) as u32,
    };
    let offset = match offset.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(text) => {
            parse_unsigned(text).ok_or_else(|| invalid("offset", "a non-negative integer", text))?
        }
    };
    Ok(Paging {
        limit: Some(limit),
        offset,
    })
}

/// A non-negative integer; values beyond `u64` saturate (they only ever mean "a lot").
fn parse_unsigned(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

pub fn parse_bool(name: &str, value: &Option<String>) -> Result<Option<bool>, ApiError> {
    let Some(text) = value.as_deref() else {
        return Ok(None);
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Ok(Some(true)),
        "false" | "0" | "no" | "off" | "f" | "n" => Ok(Some(false)),
        _ => Err(invalid(name, "a boolean", text)),
    }
}

/// RFC 3339 (`2024-01-01T06:00:00+02:00`), a date-time without offset (UTC) or a date
/// (midnight UTC). A `+` of an offset that arrived as a space (an unencoded query) is
/// accepted too.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Some((head, tail)) = text.rsplit_once(' ')
        && tail.len() == 5
        && tail.as_bytes()[2] == b':'
        && let Ok(t) = DateTime::parse_from_rfc3339(&format!("{head}+{tail}"))
    {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

pub fn parse_time(name: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .as_deref()
        .map(|text| parse_datetime(text).ok_or_else(|| invalid(name, "a date-time", text)))
        .transpose()
}

/// `<prefix>_gte`, `_gt`, `_lte`, `_lt` as a range.
pub fn time_range(
    prefix: &str,
    gte: &Option<String>,
    gt: &Option<String>,
    lte: &Option<String>,
    lt: &Option<String>,
) -> Result<TimeRange, ApiError> {
    Ok(TimeRange {
        gte: parse_time(&format!("{prefix}_gte"), gte)?,
        gt: parse_time(&format!("{prefix}_gt"), gt)?,
        lte: parse_time(&format!("{prefix}_lte"), lte)?,
        lt: parse_time(&format!("{prefix}_lt"), lt)?,
    })
}

/// Airflow's `order_by`: a field name, `-` in front for descending. One field is honoured.
pub fn order_by<T: Copy>(
    values: &[String],
    allowed: &[(&str, T)],
    default: T,
) -> Result<(T, bool), ApiError> {
    let values: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let Some(first) = values.first() else {
        return Ok((default, false));
    };
    if values.len() > 1 {
        return Err(ApiError::bad_request(
            "order by one field only: this server does not combine several `order_by` values",
        ));
    }
    let (descending, name) = match first.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, *first),
    };
    allowed
        .iter()
        .find(|(field, _)| *field == name)
        .map(|(_, order)| (*order, descending))
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            ApiError::bad_request(format!(
                "Ordering with '{name}' is disallowed or the attribute does not exist on the \
                 model; use one of: {}",
                names.join(", ")
            ))
        })
}

/// Parse each value of a list parameter with `parse`, naming the parameter on failure.
pub fn parse_list<T>(
    name: &str,
    values: &[String],
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| parse(v).ok_or_else(|| invalid(name, expected, v)))
        .collect()
}

/// Deserializes an optional date-time in any form [`parse_datetime`] accepts.
pub fn de_opt_datetime<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    text.map(|t| {
        parse_datetime(&t)
            .ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not a date-time")))
    })
    .transpose()
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or set (`Some(Some(v))`).
pub fn de_present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// An Airflow-style UUID for an entity updraft identifies otherwise: the first 16 bytes of
/// SHA-256 of `key`, as a version 8 (custom) UUID. The same key always gives the same UUID.
pub fn uuid_for(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Airflow's default `scheduler.allowed_run_id_pattern`, and its length limit.
pub fn check_run_id(run_id: &str) -> Result<(), ApiError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 250
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.~:+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "The run_id provided '{run_id}' does not match regex pattern \
             '^[A-Za-z0-9_.~:+-]+$' or is longer than 250 characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_fall_back_and_are_capped() {
        let p = paging(&None, &None).unwrap();
        assert_eq!((p.limit, p.offset), (Some(DEFAULT_LIMIT), 0));
        let p = paging(&Some("100000000000000000000000".into()), &Some("3".into())).unwrap();
        assert_eq!((p.limit, p.offset), (Some(MAX_LIMIT), 3));
        assert!(paging(&Some("-1".into()), &None).is_err());
        assert!(paging(&None, &Some("x".into())).is_err());
    }

    #[test]
    fn datetimes_in_several_forms() {
        let want = parse_datetime("2024-01-01T00:00:00Z").unwrap();
        for text in [
            "2024-01-01T02:00:00+02:00",
            "2024-01-01T02:00:00 02:00",
            "2024-01-01T00:00:00",
            "2024-01-01",
        ] {
            assert_eq!(parse_datetime(text), Some(want), "{text}");
        }
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn order_by_names_a_field_or_fails_with_400() {
        let allowed = [("a", 1), ("b", 2)];
        assert_eq!(order_by(&[], &allowed, 0).unwrap(), (0, false));
        assert_eq!(order_by(&["-b".into()], &allowed, 0).unwrap(), (2, true));
        let err = order_by(&["c".into()], &allowed, 0).unwrap_err();
        assert_eq!(err.status_code, 400);
    }

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let a = uuid_for("x");
        assert_eq!(a, uuid_for("x"));
        assert_ne!(a, uuid_for("y"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }
}
