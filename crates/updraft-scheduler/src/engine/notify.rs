//! Telling the DAG's notifiers what the scheduler recorded: a try failing for good, going up
//! for retry, succeeding or starting (the task's `on_failure`, `on_retry`, `on_success`,
//! `on_execute`) and a run ending (the DAG's `on_success` / `on_failure`).
//!
//! An event fires only once its state is recorded, and only for tasks and DAGs that have
//! notifiers: a try of a task without any costs one check of an empty list and nothing else.
//! Each notification is prepared on a tokio task of its own (its connection looked up for the
//! run's tenant, its texts rendered on the rendering pool) and sent by `updraft_notify` with
//! retries; the loop never waits for one and a failure is only logged, masked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;
use updraft_core::{RunState, TaskState};
use updraft_dag::{Notifier, SlackTarget};
use updraft_executor::render::{RenderBudget, TemplateContext, render_str_within};
use updraft_executor::{ExecOutcome, RenderError, render_off_loop};
use updraft_notify::{
    Delivery, Event, EventKind, SmtpSettings, default_subject, default_text, plain_body,
    slack_webhook_url,
};
use updraft_secrets::Secrets;
use updraft_store::{RunRow, TiKey};

use super::Scheduler;
use super::launch::context_for;
use crate::dagcache::CachedDag;

/// How long looking up a notifier's connection may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a try's notifications need until its end is recorded: kept only for tasks with
/// notifiers.
pub(super) struct TryNotifiers {
    pub(super) dag: Arc<CachedDag>,
    /// Why the try failed, as its executor told.
    pub(super) reason: Option<String>,
}

/// The task event a recorded try state fires, if any.
pub(super) fn task_event(state: TaskState) -> Option<EventKind> {
    match state {
        TaskState::Failed => Some(EventKind::OnFailure),
        TaskState::UpForRetry => Some(EventKind::OnRetry),
        TaskState::Success => Some(EventKind::OnSuccess),
        TaskState::Running => Some(EventKind::OnExecute),
        _ => None,
    }
}

/// The reason a failed try gives its notifications.
pub(super) fn failure_reason(outcome: &ExecOutcome) -> Option<String> {
    match outcome {
        ExecOutcome::Failed {
            exit_code,
            signal,
            message,
        } => Some(if !message.is_empty() {
            message.clone()
        } else if let Some(code) = exit_code {
            format!("exit code {code}")
        } else if let Some(signal) = signal {
            format!("killed by signal {signal}")
        } else {
            "failed".to_owned()
        }),
        ExecOutcome::TimedOut => Some("execution_timeout".to_owned()),
        ExecOutcome::Killed => Some("killed".to_owned()),
        ExecOutcome::Success | ExecOutcome::Skipped | ExecOutcome::Poked(_) => None,
    }
}

/// One notification's inputs, sent to a task of its own.
struct Job {
    notifiers: Vec<Notifier>,
    event: Event,
    run_pk: i64,
    run: Option<RunRow>,
    dag: Arc<CachedDag>,
}

impl Scheduler {
    /// Tells the task's notifiers of try `try_number` of the instance `key` reaching `state`.
    pub(super) fn notify_task(
        &self,
        key: &TiKey,
        try_number: u32,
        state: TaskState,
        notifiers: &TryNotifiers,
        at: DateTime<Utc>,
    ) {
        let Some(kind) = task_event(state) else {
            return;
        };
        let (run_pk, task_id) = (key.run_pk, key.task_id.as_str());
        let Some(task) = notifiers.dag.task(task_id) else {
            return;
        };
        let list = match kind {
            EventKind::OnFailure => &task.callbacks.on_failure,
            EventKind::OnRetry => &task.callbacks.on_retry,
            EventKind::OnSuccess => &task.callbacks.on_success,
            EventKind::OnExecute => &task.callbacks.on_execute,
        };
        if list.is_empty() {
            return;
        }
        let run = self.tracked.known.get(&run_pk).cloned();
        let dag = &notifiers.dag.dag;
        let event = Event {
            event: kind,
            tenant: dag.tenant.clone(),
            dag_id: dag.dag_id.clone(),
            run_id: run.as_ref().map(|r| r.run_id.clone()).unwrap_or_default(),
            task_id: Some(task_id.to_owned()),
            map_index: (key.map_index >= 0).then_some(key.map_index),
            try_number: Some(try_number),
            state: state.as_str().to_owned(),
            logical_date: run.as_ref().map(|r| r.logical_date),
            reason: notifiers
                .reason
                .clone()
                .filter(|_| matches!(kind, EventKind::OnFailure | EventKind::OnRetry)),
            at,
        };
        self.dispatch(Job {
            notifiers: list.clone(),
            event,
            run_pk,
            run,
            dag: notifiers.dag.clone(),
        });
    }

    /// Tells the DAG's notifiers of `run` ending in `state`.
    pub(super) fn notify_run(
        &self,
        run: &RunRow,
        dag: &Arc<CachedDag>,
        state: RunState,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) {
        let list = match state {
            RunState::Success => &dag.dag.run_callbacks.on_success,
            RunState::Failed => &dag.dag.run_callbacks.on_failure,
            _ => return,
        };
        if list.is_empty() {
            return;
        }
        let event = Event {
            event: match state {
                RunState::Success => EventKind::OnSuccess,
                _ => EventKind::OnFailure,
            },
            tenant: run.tenant.clone(),
            dag_id: run.dag_id.clone(),
            run_id: run.run_id.clone(),
            task_id: None,
            map_index: None,
            try_number: None,
            state: state.as_str().to_owned(),
            logical_date: Some(run.logical_date),
            reason: reason.map(str::to_owned),
            at,
        };
        self.dispatch(Job {
            notifiers: list.clone(),
            event,
            run_pk: run.id,
            run: Some(run.clone()),
            dag: dag.clone(),
        });
    }

    fn dispatch(&self, job: Job) {
        let Some(sender) = self.notifications.clone() else {
            return;
        };
        let store = self.store.clone();
        let secrets = self.config.secrets.clone();
        tokio::spawn(async move {
            let context_line = describe(&job.event);
            let run = match job.run {
                Some(run) => run,
                None => match store.run_by_pk(job.run_pk).await {
                    Ok(Some(run)) => run,
                    Ok(None) => return,
                    Err(e) => {
                        warn!(event = %context_line, "notification not sent: reading its run failed: {e}");
                        return;
                    }
                },
            };
            let mut event = job.event;
            event.run_id = run.run_id.clone();
            event.logical_date = Some(run.logical_date);
            let ctx = match context_for(
                &run,
                &job.dag.dag,
                event.task_id.as_deref().unwrap_or(""),
                event.try_number.unwrap_or(0),
            ) {
                Ok(mut ctx) => {
                    ctx.map_index = event.map_index.unwrap_or(-1);
                    ctx
                }
                Err(e) => {
                    warn!(event = %context_line, "notification not sent: {e}");
                    return;
                }
            };
            for notifier in job.notifiers {
                match prepare(&notifier, &event, &ctx, secrets.as_deref()).await {
                    Ok(delivery) => {
                        // The handle is dropped: the delivery logs its own outcome.
                        drop(sender.send(delivery, context_line.clone()));
                    }
                    Err(e) => {
                        let error = updraft_secrets::mask::mask_global(&e);
                        warn!(event = %context_line, notifier = notifier.kind(), %error, "notification not sent");
                    }
                }
            }
        });
    }
}

fn describe(event: &Event) -> String {
    match &event.task_id {
        Some(task) => format!(
            "{} of {}.{} in {}",
            event.event.as_str(),
            event.dag_id,
            task,
            event.run_id
        ),
        None => format!(
            "{} of run {} of {}",
            event.event.as_str(),
            event.run_id,
            event.dag_id
        ),
    }
}

/// A notifier made ready to send: its connection resolved, its texts rendered.
async fn prepare(
    notifier: &Notifier,
    event: &Event,
    ctx: &TemplateContext,
    secrets: Option<&Secrets>,
) -> Result<Delivery, String> {
    let tenant = event.tenant.as_str();
    match notifier {
        Notifier::Webhook { url, headers } => {
            let mut texts: Vec<String> = vec![url.clone()];
            texts.extend(headers.values().cloned());
            let mut rendered = render_all(tenant, ctx, texts).await?.into_iter();
            let url = rendered.next().unwrap_or_default();
            let headers: BTreeMap<String, String> = headers.keys().cloned().zip(rendered).collect();
            check_url(&url)?;
            let body = serde_json::to_value(event).map_err(|e| e.to_string())?;
            Ok(Delivery::Webhook { url, headers, body })
        }
        Notifier::Slack { target, text } => {
            let url = match target {
                SlackTarget::Url(url) => url.clone(),
                SlackTarget::Connection(id) => {
                    let conn = connection(secrets, tenant, id).await?;
                    slack_webhook_url(
                        conn.schema.as_deref(),
                        conn.host.as_deref(),
                        conn.password.as_deref(),
                    )
                    .map_err(|e| format!("connection `{id}`: {e}"))?
                }
            };
            let text = text.clone().unwrap_or_else(|| default_text(event));
            let templated_url = matches!(target, SlackTarget::Url(_));
            let mut texts = vec![text];
            if templated_url {
                texts.push(url.clone());
            }
            let mut rendered = render_all(tenant, ctx, texts).await?.into_iter();
            let text = rendered.next().unwrap_or_default();
            let url = rendered.next().unwrap_or(url);
            check_url(&url)?;
            Ok(Delivery::Slack { url, text })
        }
        Notifier::Email {
            to,
            connection: id,
            subject,
            body,
        } => {
            let conn = connection(secrets, tenant, id).await?;
            let extra = serde_json::Value::Object(conn.extra_dejson());
            let smtp = SmtpSettings::from_connection(
                conn.host.as_deref(),
                conn.port,
                conn.login.as_deref(),
                conn.password.as_deref(),
                &extra,
            )
            .map_err(|e| format!("connection `{id}`: {e}"))?;
            let subject = subject.clone().unwrap_or_else(|| default_subject(event));
            let body = body.clone().unwrap_or_else(|| plain_body(event));
            let mut texts = vec![subject, body];
            texts.extend(to.iter().cloned());
            let mut rendered = render_all(tenant, ctx, texts).await?.into_iter();
            let subject = rendered.next().unwrap_or_default();
            let body = rendered.next().unwrap_or_default();
            Ok(Delivery::Email {
                smtp,
                to: rendered.collect(),
                subject,
                body,
            })
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err("the URL does not start with `https://` or `http://`".to_owned())
    }
}

async fn connection(
    secrets: Option<&Secrets>,
    tenant: &str,
    id: &str,
) -> Result<updraft_secrets::Connection, String> {
    let secrets =
        secrets.ok_or_else(|| format!("connection `{id}`: no secrets backend is configured"))?;
    match tokio::time::timeout(LOOKUP_TIMEOUT, secrets.connection(tenant, id)).await {
        Ok(Ok(Some(conn))) => Ok(conn),
        Ok(Ok(None)) => Err(format!("connection `{id}` does not exist")),
        Ok(Err(e)) => Err(format!("connection `{id}`: {e}")),
        Err(_) => Err(format!(
            "looking up connection `{id}` took longer than {} s",
            LOOKUP_TIMEOUT.as_secs()
        )),
    }
}

/// Renders `texts` with the event's context on the rendering pool, within one budget.
async fn render_all(
    tenant: &str,
    ctx: &TemplateContext,
    texts: Vec<String>,
) -> Result<Vec<String>, String> {
    let ctx = ctx.clone();
    let render = move |budget: &RenderBudget| {
        texts
            .iter()
            .map(|text| render_str_within(text, &ctx, budget))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| RenderError {
                task_id: ctx.task_id.clone(),
                field: "notifier".to_owned(),
                message,
            })
    };
    render_off_loop(tenant, "notifier", RenderBudget::default(), render)
        .await
        .map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_states_fire_their_events() {
        assert_eq!(task_event(TaskState::Failed), Some(EventKind::OnFailure));
        assert_eq!(task_event(TaskState::UpForRetry), Some(EventKind::OnRetry));
        assert_eq!(task_event(TaskState::Success), Some(EventKind::OnSuccess));
        assert_eq!(task_event(TaskState::Running), Some(EventKind::OnExecute));
        assert_eq!(task_event(TaskState::Skipped), None);
        assert_eq!(task_event(TaskState::UpstreamFailed), None);
    }

    #[test]
    fn failures_give_their_reason() {
        let failed = ExecOutcome::Failed {
            exit_code: Some(3),
            signal: None,
            message: String::new(),
        };
        assert_eq!(failure_reason(&failed).as_deref(), Some("exit code 3"));
        assert_eq!(
            failure_reason(&ExecOutcome::TimedOut).as_deref(),
            Some("execution_timeout")
        );
        assert_eq!(failure_reason(&ExecOutcome::Success), None);
    }
}
