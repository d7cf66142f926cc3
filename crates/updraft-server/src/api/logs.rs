//! A try's log, whole or tailed.
//!
//! The continuation token is the byte offset up to which the log was returned. A request with
//! a token returns only what follows it. While the try is live only complete lines are
//! returned (a half-written line waits for its end); once it is over, everything is, and
//! `end_of_log` is true.
//!
//! With remote task logs, a log whose local file is gone (uploaded and removed, or written on
//! another node) is read from the object store: the same bytes at the same offsets.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use updraft_logs::{LogSlice, read_local};
use updraft_store::TiKey;
use utoipa::IntoParams;

use super::doc::{E400, E403, E404, E406, E422};
use super::models::{StructuredLogMessage, TaskInstancesLogResponse};
use super::params::parse_bool;
use super::{Accept, ApiPath, ApiQuery, load_run};
use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::ApiError;

/// Most bytes returned by one request; the token then points at the rest.
const MAX_CHUNK: u64 = 8 * 1024 * 1024;

/// Header carrying the continuation token of a `text/plain` answer.
pub const TOKEN_HEADER: &str = "x-continuation-token";

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Whole log from the start, whatever `token` says.
    #[param(value_type = Option<bool>)]
    full_content: Option<String>,
    /// The instance's map index (default -1: an unmapped instance).
    #[param(value_type = Option<i64>)]
    map_index: Option<String>,
    /// A `continuation_token` from an earlier answer: only what was written since.
    token: Option<String>,
}

struct Chunk {
    text: String,
    /// Offset after the returned text.
    next: u64,
    end_of_log: bool,
}

fn parse_token(token: &str) -> Option<u64> {
    let token = token.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// The log from `offset` on: complete lines only while `live`.
fn read_chunk(path: &Path, offset: u64, live: bool) -> std::io::Result<Chunk> {
    Ok(chunk_of(read_local(path, offset, MAX_CHUNK)?, offset, live))
}

/// The text to return of `slice` (read from `offset`, `None` when there is no log).
fn chunk_of(slice: Option<LogSlice>, offset: u64, live: bool) -> Chunk {
    let Some(LogSlice { mut bytes, len, .. }) = slice else {
        return Chunk {
            text: if live {
                String::new()
            } else {
                "*** No log was written for this try\n".to_string()
            },
            next: offset,
            end_of_log: !live,
        };
    };
    let start = offset.min(len);
    let read_all = start + bytes.len() as u64 >= len;
    if (live || !read_all) && !bytes.ends_with(b"\n") {
        // Hold back a partial last line until it is complete (unless it is all there is
        // in a full chunk, which then goes out as it is).
        if let Some(newline) = bytes.iter().rposition(|&b| b == b'\n') {
            bytes.truncate(newline + 1);
        } else if live || bytes.len() < MAX_CHUNK as usize {
            bytes.clear();
        }
    }
    let next = start + bytes.len() as u64;
    Chunk {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        next,
        end_of_log: !live && next >= len,
    }
}

/// The try's log from `offset`: the local file, or (with remote logs) the object store once
/// the local file is gone; the same bytes either way.
async fn read_log(
    state: &AppState,
    path: PathBuf,
    rel: String,
    offset: u64,
    live: bool,
) -> Result<Chunk, ApiError> {
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!("reading a log failed: {e}");
        ApiError::internal("reading the log failed; see the server log")
    };
    match state.remote_logs() {
        Some(remote) => {
            let slice = remote
                .read(&rel, live, offset, MAX_CHUNK)
                .await
                .map_err(|e| failed(&e))?;
            Ok(chunk_of(slice, offset, live))
        }
        None => tokio::task::spawn_blocking(move || read_chunk(&path, offset, live))
            .await
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e)),
    }
}

/// A try's log as lines (`application/json`) or as text (`text/plain`, with the token in the
/// `x-continuation-token` header).
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("try_number" = u32, Path, minimum = 0), LogQuery
    ),
    responses(
        (status = 200, description = "Successful response", content(
            (TaskInstancesLogResponse = "application/json"),
            (String = "text/plain")
        )),
        E400, E403, E404, E406, E422
    )
)]
pub async fn get_log(
    State(state): State<AppState>,
    Caller(identity): Caller,
    accept: Accept,
    ApiPath((dag_id, run_id, task_id, try_number)): ApiPath<(String, String, String, u32)>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let map_index = super::task_instances::map_index_param(&query.map_index)?;
    let run = load_run(&state, &identity, &dag_id, &run_id, Action::Read).await?;
    let ti = state
        .store
        .task_instance(&TiKey {
            run_pk: run.id,
            task_id: task_id.clone(),
            map_index,
        })
        .await?
        .ok_or_else(|| ApiError::not_found("TaskInstance not found"))?;
    if try_number == 0 || try_number > ti.try_number {
        return Err(ApiError::not_found(format!(
            "Task {task_id} of run {run_id} has no try {try_number} (it has had {})",
            ti.try_number
        )));
    }
    let full = parse_bool("full_content", &query.full_content)?.unwrap_or(false);
    let offset = match (&query.token, full) {
        (Some(token), false) => parse_token(token)
            .ok_or_else(|| ApiError::bad_request("token: not a continuation token"))?,
        _ => 0,
    };
    let live = try_number == ti.try_number && ti.state.is_active();
    let path = updraft_dag::mapped_log_path(
        &state.config.logs_folder,
        &run.tenant,
        &dag_id,
        &run.run_id,
        &task_id,
        map_index,
        try_number,
    );
    let rel = updraft_logs::mapped_rel_path(
        &run.tenant,
        &dag_id,
        &run.run_id,
        &task_id,
        map_index,
        try_number,
    );
    let chunk = read_log(&state, path, rel, offset, live).await?;
    let token = chunk.next.to_string();
    // Logs are masked as they are written; secrets the server has learned since are masked
    // here too.
    let chunk = Chunk {
        text: crate::masking::shown_text(&chunk.text),
        ..chunk
    };
    Ok(match accept {
        Accept::Text => (
            [
                (
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
                (header::HeaderName::from_static(TOKEN_HEADER), token),
            ],
            chunk.text,
        )
            .into_response(),
        Accept::Json => Json(TaskInstancesLogResponse {
            content: chunk
                .text
                .lines()
                .map(|line| StructuredLogMessage {
                    event: line.to_string(),
                    timestamp: None,
                })
                .collect(),
            continuation_token: Some(token),
            end_of_log: chunk.end_of_log,
        })
        .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_logs_hold_back_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempt=1.log");
        std::fs::write(&path, "one\ntw").unwrap();
        let first = read_chunk(&path, 0, true).unwrap();
        assert_eq!((first.text.as_str(), first.next), ("one\n", 4));
        assert!(!first.end_of_log);
        std::fs::write(&path, "one\ntwo\n").unwrap();
        let second = read_chunk(&path, first.next, true).unwrap();
        assert_eq!((second.text.as_str(), second.next), ("two\n", 8));
        let done = read_chunk(&path, second.next, false).unwrap();
        assert_eq!(done.text, "");
        assert!(done.end_of_log);
    }

    #[test]
    fn finished_logs_return_everything_and_clamp_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempt=1.log");
        std::fs::write(&path, "a\nno newline").unwrap();
        let all = read_chunk(&path, 0, false).unwrap();
        assert_eq!(all.text, "a\nno newline");
        assert!(all.end_of_log);
        let beyond = read_chunk(&path, 1_000_000, false).unwrap();
        assert_eq!((beyond.text.as_str(), beyond.next), ("", 12));
        assert_eq!(parse_token("12"), Some(12));
        assert_eq!(parse_token("-1"), None);
        assert_eq!(parse_token("abc"), None);
    }
}
