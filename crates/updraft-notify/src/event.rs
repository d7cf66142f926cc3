//! What happened: the event a notification tells of, and the texts used when a notifier sets
//! none.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which callback an event fires (Airflow's `on_*_callback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A try failed with no retry left; a run failed.
    OnFailure,
    /// A try succeeded; a run succeeded.
    OnSuccess,
    /// A try failed and its instance is up for retry.
    OnRetry,
    /// A try was recorded running.
    OnExecute,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OnFailure => "on_failure",
            EventKind::OnSuccess => "on_success",
            EventKind::OnRetry => "on_retry",
            EventKind::OnExecute => "on_execute",
        }
    }
}

/// One event, as a webhook receives it (a JSON object with these members). Task events carry
/// `task_id` and `try_number`; run events have them `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub event: EventKind,
    pub tenant: String,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: Option<String>,
    /// The instance's map index when its task is mapped (`null` otherwise, and for runs).
    pub map_index: Option<i32>,
    pub try_number: Option<u32>,
    /// The state recorded: `failed`, `up_for_retry`, `success`, `running` for a try; `failed`
    /// or `success` for a run.
    pub state: String,
    pub logical_date: Option<DateTime<Utc>>,
    /// Why, when known: `timed_out` for a run past its `dagrun_timeout`, the executor's
    /// account of a failed try.
    pub reason: Option<String>,
    /// When the event was recorded.
    pub at: DateTime<Utc>,
}

impl Event {
    fn subject(&self) -> String {
        let task = self.task_id.as_ref().map(|task| match self.map_index {
            Some(i) => format!("{task}[{i}]"),
            None => task.clone(),
        });
        let what = match (task, self.try_number) {
            (Some(task), Some(n)) => format!("task {task} of {} (try {n})", self.dag_id),
            (Some(task), None) => format!("task {task} of {}", self.dag_id),
            _ => format!("run {} of {}", self.run_id, self.dag_id),
        };
        let verb = match self.event {
            EventKind::OnFailure => "failed",
            EventKind::OnSuccess => "succeeded",
            EventKind::OnRetry => "failed and will be retried",
            EventKind::OnExecute => "started",
        };
        match &self.reason {
            Some(reason) => format!("updraft: {what} {verb}: {reason}"),
            None => format!("updraft: {what} {verb}"),
        }
    }
}

/// The Slack text when a notifier sets none: one line.
pub fn default_text(event: &Event) -> String {
    event.subject()
}

/// The email subject when a notifier sets none.
pub fn default_subject(event: &Event) -> String {
    event.subject()
}

/// The email body when a notifier sets none: the event's members, one a line.
pub fn plain_body(event: &Event) -> String {
    let mut lines = vec![event.subject(), String::new()];
    let json = serde_json::to_value(event).unwrap_or_default();
    if let Some(map) = json.as_object() {
        for (key, value) in map {
            let shown = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            lines.push(format!("{key}: {shown}"));
        }
    }
    lines.join("\n") + "\n"
}
