//! The audit log (Airflow's event log): every write through the API records who did what,
//! when, to which object, with the request's parameters (secrets masked).
//!
//! Recording is fail-safe: the write has happened by the time it is audited, so a failed audit
//! record (an error, even a panic in the store) is logged and the caller still gets the
//! write's answer.

use serde_json::Value;
use updraft_store::NewEvent;

use crate::auth::Identity;
use crate::state::AppState;

/// An audit entry being built: `Entry::new(identity, "trigger_dag_run").dag(...)...`.
#[derive(Debug, Clone)]
pub struct Entry(NewEvent);

impl Entry {
    pub fn new(identity: &Identity, event: &str) -> Entry {
        Entry(NewEvent {
            username: identity.username.clone(),
            event: event.to_string(),
            ..NewEvent::default()
        })
    }

    /// The DAG the write was about, and so the tenant.
    pub fn dag(mut self, tenant: &str, dag_id: &str) -> Entry {
        self.0.tenant = Some(tenant.to_string());
        self.0.dag_id = Some(dag_id.to_string());
        self
    }

    /// The tenant of an object of no DAG (a pool); `None`: shared by every tenant.
    pub fn tenant(mut self, tenant: Option<&str>) -> Entry {
        self.0.tenant = tenant.map(str::to_string);
        self
    }

    pub fn run(mut self, run_id: &str) -> Entry {
        self.0.run_id = Some(run_id.to_string());
        self
    }

    pub fn task(mut self, task_id: &str) -> Entry {
        self.0.task_id = Some(task_id.to_string());
        self.0.map_index = Some(-1);
        self
    }

    /// The request's parameters; values under sensitive keys, and secret values the process
    /// knows, are masked.
    pub fn extra(mut self, extra: Value) -> Entry {
        self.0.extra = Some(crate::masking::shown_json(&masked(extra)).to_string());
        self
    }

    /// Append the entry to the audit log. Never fails the write: a failure is logged.
    pub async fn record(self, state: &AppState) {
        let store = state.store.clone();
        let event = self.0;
        let what = format!("{} by {}", event.event, event.username);
        // Run apart so that even a panicking store cannot take the answer down with it.
        match tokio::spawn(async move { store.record_event(&event).await }).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::error!("the audit log did not record {what}: {error}");
            }
            Err(error) => {
                tracing::error!("the audit log did not record {what}: {error}");
            }
        }
    }
}

/// Keys whose values never reach the audit log: the names every masker treats as secret.
fn is_sensitive(key: &str) -> bool {
    updraft_secrets::is_sensitive_name(key)
}

/// `value` with every value under a sensitive key replaced by `***`, at any depth.
pub fn masked(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = if is_sensitive(&key) {
                        Value::String("***".to_string())
                    } else {
                        masked(value)
                    };
                    (key, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(masked).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_at_any_depth() {
        let extra = json!({
            "conf": {"who": "x", "db_password": "hunter2", "nested": [{"API_KEY": "k"}]},
            "token": "t",
            "note": "fine",
        });
        assert_eq!(
            masked(extra),
            json!({
                "conf": {"who": "x", "db_password": "***", "nested": [{"API_KEY": "***"}]},
                "token": "***",
                "note": "fine",
            })
        );
    }
}
