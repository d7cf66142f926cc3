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
