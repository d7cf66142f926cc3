//! Live updates: Server-Sent Events at `/ui/events[?dag_id=A&dag_id=B]`.
//!
//! Each connection follows [`AppState::changes`] (the scheduler's broadcast of recorded state
//! changes, or the store watcher's in `updraft server`, see [`crate::live`]), turns each
//! changed `run_pk` into its DAG (remembered per connection, one lookup per new run), keeps the
//! DAGs the caller may read and asked for, and sends at most one `change` event per
//! [`COALESCE`] window: `{"dag_ids": [...], "run_ids": [...], "all": false}`. `all` is true
//! when the connection fell behind the broadcast and changes were missed. The page then
//! refreshes its live part once, however many changes the event stands for. Streams end when
//! the server begins shutting down ([`AppState::stopping`]) and after the guard's idle timeout
//! without anything to send (the page reconnects); the guard caps how many are open
//! ([`crate::guard::Guard::open_stream`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::format::{query_all, query_pairs};
use super::render::UiError;
use crate::auth::{Action, Caller, Resource, authorize};
use crate::state::AppState;

/// Changes arriving within this window after a first one go out as one event.
pub const COALESCE: Duration = Duration::from_millis(250);
/// Runs remembered per connection before the memory is reset.
const MAX_REMEMBERED_RUNS: usize = 10_000;

pub async fn events(
    State(state): State<AppState>,
    Caller(identity): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    authorize(&identity, Action::Read, Resource::Dags)
        .map_err(|e| UiError::from(e).into_response())?;
    let guard = state.guard().clone();
    let permit = guard
        .open_stream(&identity.username)
        .map_err(IntoResponse::into_response)?;
    let idle_timeout = guard.settings().streams.idle_timeout;
    let wanted: HashSet<String> = query_all(&query_pairs(raw.as_deref()), "dag_id")
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut changes = state.changes.subscribe();
    let mut stopping = state.stopping();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        // Counts this stream until it ends.
        let _permit = permit;
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        // Tells the page it is connected: it refreshes once, covering changes recorded between
        // rendering the page and subscribing.
        if tx
            .send(Event::default().event("ready").data("{}"))
            .await
            .is_err()
        {
            return;
        }
        // run_pk → (dag_id, run_id) if visible and wanted, None otherwise.
        let mut owners: HashMap<i64, Option<(String, String)>> = HashMap::new();
        loop {
            let first = tokio::select! {
                _ = tx.closed() => return,
                _ = stopping.wait_for(|s| *s) => return,
                _ = &mut idle => return,
                got = changes.recv() => got,
            };
            let mut runs: BTreeSet<i64> = BTreeSet::new();
            let mut all = false;
            match first {
                Ok(change) => {
                    runs.insert(change.run_pk);
                }
                Err(RecvError::Lagged(_)) => all = true,
                Err(RecvError::Closed) => return,
            }
            let deadline = tokio::time::sleep(COALESCE);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    got = changes.recv() => match got {
                        Ok(change) => { runs.insert(change.run_pk); }
                        Err(RecvError::Lagged(_)) => all = true,
                        Err(RecvError::Closed) => break,
                    },
                }
            }
            if owners.len() > MAX_REMEMBERED_RUNS {
                owners.clear();
            }
            let mut dag_ids = BTreeSet::new();
            let mut run_ids = BTreeSet::new();
            for run_pk in runs {
                if let Entry::Vacant(slot) = owners.entry(run_pk) {
                    let owner = match state.store.run_by_pk(run_pk).await {
                        Ok(Some(run)) => {
                            let visible = authorize(
                                &identity,
                                Action::Read,
                                Resource::Dag {
                                    tenant: &run.tenant,
                                    dag_id: &run.dag_id,
                                },
                            )
                            .is_ok();
                            let asked = wanted.is_empty() || wanted.contains(&run.dag_id);
                            (visible && asked).then_some((run.dag_id, run.run_id))
                        }
                        // Deleted before we looked: nothing to show for it.
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!("live updates: looking up run {run_pk}: {e}");
                            all = true;
                            continue;
                        }
                    };
                    slot.insert(owner);
                }
                if let Some(Some((dag_id, run_id))) = owners.get(&run_pk) {
                    dag_ids.insert(dag_id.clone());
                    run_ids.insert(run_id.clone());
                }
            }
            if dag_ids.is_empty() && !all {
                continue;
            }
            let data = serde_json::json!({
                "dag_ids": dag_ids,
                "run_ids": run_ids,
                "all": all,
            });
            let event = Event::default().event("change").data(data.to_string());
            // A client that stopped reading leaves the channel full: the idle timeout ends it.
            tokio::select! {
                sent = tx.send(event) => if sent.is_err() { return },
                _ = &mut idle => return,
            }
            idle.as_mut()
                .reset(tokio::time::Instant::now() + idle_timeout);
        }
    });
    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
