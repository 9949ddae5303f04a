//! `/jobs`: jobs the node's runner takes from its requestor, runs on several providers, verifies
//! and pays. `GET /jobs/{id}/events` streams the job's steps as server-sent events (or answers a
//! long poll as JSON, after `after`, waiting up to `timeout` seconds).

use super::{AppState, Body, Ids, Params, seconds};
use crate::api::ApiError;
use agora_agents::{JobSpec, Jobs};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list).post(submit))
        .route("/jobs/{id}", get(describe).delete(cancel))
        .route("/jobs/{id}/events", get(events))
}

fn jobs(state: &AppState) -> Result<&Jobs, ApiError> {
    state
        .jobs
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the job runner is not running on this node".into()))
}

async fn submit(
    State(state): State<AppState>,
    Body(spec): Body<JobSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = jobs(&state)?.submit(spec).await?;
    Ok((StatusCode::CREATED, Json(json!({"jobId": id}))))
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(jobs(&state)?.list().await?))
}

async fn describe(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<Json<Value>, ApiError> {
    let jobs = jobs(&state)?;
    Ok(Json(jobs.get(&jobs.resolve(&id).await?).await?))
}

async fn cancel(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<StatusCode, ApiError> {
    let jobs = jobs(&state)?;
    jobs.cancel(&jobs.resolve(&id).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<i64>,
    timeout: Option<f64>,
}

async fn events(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Params(query): Params<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let jobs = jobs(&state)?.clone();
    let id = jobs.resolve(&id).await?;
    let after = query.after.unwrap_or(0);
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !streaming {
        let wait = seconds("timeout", query.timeout, Duration::ZERO, Duration::from_secs(60))?;
        let found =
            super::until_shutdown(&state, async { Ok(jobs.wait_events(&id, after, wait).await?) }).await?;
        return Ok(Json(found).into_response());
    }
    // An unknown job is an error before the stream starts.
    jobs.get(&id).await?;
    let stopping = state.shutdown.clone();
    let stream = futures_util::stream::unfold((jobs, id, after, false), move |(jobs, id, after, done)| {
        let stopping = stopping.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let next = jobs.wait_events(&id, after, Duration::from_secs(30));
                let found = tokio::select! {
                    found = next => found,
                    () = stopping.cancelled() => return None,
                };
                match found {
                    Ok(found) if found.is_empty() => {
                        // Nothing new: a finished job's stream ends.
                        let finished = jobs
                            .get(&id)
                            .await
                            .ok()
                            .is_none_or(|job| job["stateCode"].as_i64().is_some_and(|c| c >= 6));
                        if finished {
                            return None;
                        }
                    }
                    Ok(found) => {
                        let last = found.last().and_then(|e| e["id"].as_i64()).unwrap_or(after);
                        let data = Value::Array(found).to_string();
                        let event = Event::default().event("job").data(data);
                        return Some((Ok::<_, std::convert::Infallible>(event), (jobs, id, last, false)));
                    }
                    Err(e) => {
                        let event = Event::default().event("error").data(e.to_string());
                        return Some((Ok(event), (jobs, id, after, true)));
                    }
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
