//! One poke of a `trigger_dag_run` task (Airflow's `TriggerDagRunOperator`).
//!
//! The try's first poke starts the run through the [`RunTrigger`] and pushes its id as the
//! `trigger_run_id` XCom, as Airflow does. Without `wait_for_completion` that poke is the
//! whole try. With it, the poke answers "not yet" and each later poke of the try finds the run
//! id in that XCom (`TriggerRequest::triggered`) and only reads the run's state: done in an
//! allowed state, failed in a failed state. Every poke pushes the id again, so the XCom stays
//! the try's whatever poke records last.

use chrono::{DateTime, Utc};

use super::{
    PokeAnswer, PokeFailure, PokeResult, PokeTools, RunTrigger, TriggerRefusal, TriggerRequest,
};
use crate::xcom::XComPush;

/// The XCom key holding the started run's id.
pub const TRIGGER_RUN_ID: &str = "trigger_run_id";

pub(super) async fn poke(
    request: &TriggerRequest,
    tools: &PokeTools,
    now: DateTime<Utc>,
) -> Result<PokeAnswer, PokeFailure> {
    let Some(trigger) = tools.trigger.as_deref() else {
        return Err(PokeFailure::Error(
            "trigger_dag_run: this executor cannot start DAG runs".to_owned(),
        ));
    };
    match &request.triggered {
        Some(run_id) => wait(trigger, request, run_id).await,
        None => start(trigger, request, now).await,
    }
}

async fn start(
    trigger: &dyn RunTrigger,
    request: &TriggerRequest,
    now: DateTime<Utc>,
) -> Result<PokeAnswer, PokeFailure> {
    let dag = &request.dag_id;
    let triggered = match trigger.trigger(request, now).await {
        Ok(triggered) => triggered,
        Err(TriggerRefusal::Exists(run_id)) if request.skip_when_already_exists => {
            return Err(PokeFailure::Skip(format!(
                "DAG {dag} already has run {run_id}: skipped (skip_when_already_exists)"
            )));
        }
        Err(TriggerRefusal::Exists(run_id)) => {
            return Err(PokeFailure::Error(format!(
                "DAG {dag} already has run {run_id}; set `reset_dag_run` to run it again or \
                 `skip_when_already_exists` to skip"
            )));
        }
        Err(TriggerRefusal::Failed(message)) => {
            return Err(PokeFailure::Error(format!(
                "triggering DAG {dag} failed: {message}"
            )));
        }
    };
    let run_id = triggered.run_id;
    let did = if triggered.reset {
        "cleared its existing run"
    } else {
        "started run"
    };
    let (result, then) = if request.wait_for_completion {
        (PokeResult::NotYet, "; waiting for it to end")
    } else {
        (PokeResult::Done, "")
    };
    Ok(PokeAnswer {
        result,
        found: format!("DAG {dag}: {did} {run_id}{then}"),
        pushes: vec![run_id_push(&run_id)],
    })
}

async fn wait(
    trigger: &dyn RunTrigger,
    request: &TriggerRequest,
    run_id: &str,
) -> Result<PokeAnswer, PokeFailure> {
    let dag = &request.dag_id;
    let state = trigger
        .run_state(request, run_id)
        .await
        .map_err(|e| PokeFailure::Error(format!("reading run {run_id} of DAG {dag} failed: {e}")))?
        .ok_or_else(|| PokeFailure::Error(format!("run {run_id} of DAG {dag} no longer exists")))?;
    if request.failed_states.contains(&state) {
        return Err(PokeFailure::Error(format!(
            "run {run_id} of DAG {dag} is {state}, one of the failed_states"
        )));
    }
    let result = if request.allowed_states.contains(&state) {
        PokeResult::Done
    } else {
        PokeResult::NotYet
    };
    Ok(PokeAnswer {
        result,
        found: format!("run {run_id} of DAG {dag} is {state}"),
        pushes: vec![run_id_push(run_id)],
    })
}

fn run_id_push(run_id: &str) -> XComPush {
    XComPush {
        key: TRIGGER_RUN_ID.to_owned(),
        value: serde_json::Value::String(run_id.to_owned()).to_string(),
    }
}
