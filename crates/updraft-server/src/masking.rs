//! What the server shows is masked: values under sensitive keys (Airflow's list:
//! `password`, `token`, `api_key`, ...) and every secret value the process has learned
//! (`updraft_secrets::mask::global`) become `***` in run conf, audit details and rendered
//! text, in the API and in the UI alike.

use serde_json::Value;

/// `value` as shown: sensitive keys' values and known secret values masked.
pub fn shown_json(value: &Value) -> Value {
    match updraft_secrets::mask::global().read() {
        Ok(known) => known.mask_json(value),
        Err(_) => updraft_secrets::Masker::new().mask_json(value),
    }
}

/// Text as shown: known secret values masked.
pub fn shown_text(text: &str) -> String {
    match updraft_secrets::mask::global().read() {
        Ok(known) => known.mask(text),
        Err(_) => text.to_string(),
    }
}

/// An XCom's value as shown: all of it masked when its key looks sensitive, else as
/// [`shown_json`] shows any JSON.
pub fn shown_xcom(key: &str, value: &Value) -> Value {
    let mut wrapped = serde_json::Map::new();
    wrapped.insert(key.to_owned(), value.clone());
    match shown_json(&Value::Object(wrapped)) {
        Value::Object(mut shown) => shown.remove(key).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}
