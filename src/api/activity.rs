//! `/activity-api/v1`, with the paths and JSON of Golem's activity API, and `/blobs`, the
//! node's content-addressed store for inputs and outputs.

use super::{AppState, Body, Ids, Params, check_id, seconds, until_shutdown};
use crate::api::ApiError;
use agora_activity::Activities;
use agora_activity::wire::{ActivityState, ActivityUsage, CommandResult};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(destroy))
        .routes(routes!(exec))
        .routes(routes!(results))
        .routes(routes!(state))
        .routes(routes!(usage))
}

pub fn blob_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_blob)).routes(routes!(get_blob)).routes(routes!(open_destination))
}

fn activities(state: &AppState) -> Result<&Activities, ApiError> {
    state
        .activities
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("activities are not running on this node".into()))
}

/// Golem accepts the agreement id as a bare JSON string or as `{"agreementId": …}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum CreateRequest {
    Id(String),
    #[serde(rename_all = "camelCase")]
    Object {
        agreement_id: String,
    },
}

#[utoipa::path(post, path = "/activity-api/v1/activity", tag = "activity", request_body = CreateRequest,
    responses((status = 201, description = "the activity, in the request's shape", body = CreatedActivity),
              (status = 404, description = "no such agreement", body = super::ErrorMessage),
              (status = 409, description = "the agreement is not approved", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    Body(body): Body<CreateRequest>,
) -> Result<(StatusCode, Json<CreatedActivity>), ApiError> {
    let (agreement_id, bare) = match body {
        CreateRequest::Id(id) => (id, true),
        CreateRequest::Object { agreement_id } => (agreement_id, false),
    };
    check_id("agreementId", &agreement_id)?;
    let id = activities(&state)?.create(&agreement_id).await?;
    // Answered in the request's shape, as Golem does: Golem's SDKs send the bare id and read a
    // bare id back.
    let created = if bare {
        CreatedActivity::Id(id)
    } else {
        CreatedActivity::Object(ActivityCreated { activity_id: id })
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// A new activity: its bare id for a bare-id request, `{"activityId"}` for an object.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum CreatedActivity {
    Id(String),
    Object(ActivityCreated),
}

/// A new activity.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ActivityCreated {
    activity_id: String,
}

/// A stored blob: its digest, and its name in job specs and transfers.
#[derive(Debug, Serialize, ToSchema)]
struct BlobStored {
    sha256: String,
    url: String,
}

#[utoipa::path(delete, path = "/activity-api/v1/activity/{id}", tag = "activity", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the activity")),
    responses((status = 200, description = "destroyed", body = Option<Object>), (status = 404, description = "no such activity", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn destroy(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<Json<Value>, ApiError> {
    activities(&state)?.destroy(&id).await?;
    Ok(Json(Value::Null))
}

#[derive(Debug, Deserialize, ToSchema)]
struct ExeScriptRequest {
    /// The batch: a JSON array of commands (`deploy`, `start`, `run`, `transfer`, …).
    text: String,
}

#[utoipa::path(post, path = "/activity-api/v1/activity/{id}/exec", tag = "activity", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the activity")), request_body = ExeScriptRequest,
    responses((status = 200, description = "the batch id", body = String), (status = 400, description = "a bad script", body = super::ErrorMessage),
              (status = 404, description = "no such activity", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn exec(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Body(body): Body<ExeScriptRequest>,
) -> Result<Json<String>, ApiError> {
    Ok(Json(activities(&state)?.exec(&id, &body.text).await?))
}

/// `timeout` (seconds) and `commandIndex`, as Golem's SDKs send them.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ResultsQuery {
    /// Seconds to wait for results (0 when absent).
    #[param(minimum = 0)]
    timeout: Option<f64>,
    /// Wait for this command's result.
    command_index: Option<usize>,
}

impl ResultsQuery {
    fn timeout(&self) -> Result<Duration, ApiError> {
        seconds("timeout", self.timeout, Duration::ZERO, agora_activity::MAX_WAIT)
    }
}

#[utoipa::path(get, path = "/activity-api/v1/activity/{id}/exec/{batch}", tag = "activity", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the activity"), ("batch" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$"), ResultsQuery),
    responses((status = 200, description = "the batch's results so far: a JSON list, or with `Accept: text/event-stream` server-sent `runtime` events",
                  content((Vec<CommandResult> = "application/json"), (String = "text/event-stream"))),
              (status = 404, description = "no such activity or batch", body = super::ErrorMessage),
              (status = 504, description = "the provider's node did not answer now; poll again", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn results(
    State(state): State<AppState>,
    Ids((id, batch)): Ids<(String, String)>,
    Params(query): Params<ResultsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let activities = activities(&state)?.clone();
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !streaming {
        let found = activities.results(&id, &batch, query.timeout()?, query.command_index);
        let found = until_shutdown(&state, async { found.await.map_err(poll_again) }).await?;
        return Ok(Json(found).into_response());
    }
    // Server-sent events: one `runtime` event per finished command, as it finishes; the stream
    // ends after the batch's last. An unknown activity or batch is an error before it starts.
    activities.results(&id, &batch, Duration::ZERO, None).await?;
    // It also ends when the node begins to stop.
    let stopping = state.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (activities, id, batch, 0usize, false),
        move |(a, id, batch, sent, done)| {
            let stopping = stopping.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let next = a.results(&id, &batch, Duration::from_secs(30), Some(sent));
                    let found = tokio::select! {
                        found = next => found,
                        () = stopping.cancelled() => return None,
                    };
                    let found: Vec<CommandResult> = match found {
                        Ok(found) => found,
                        Err(e) => {
                            let event = Event::default().event("error").data(e.to_string());
                            return Some((
                                Ok::<_, std::convert::Infallible>(event),
                                (a, id, batch, sent, true),
                            ));
                        }
                    };
                    if let Some(result) = found.into_iter().find(|r| r.index == sent) {
                        let finished = result.is_batch_finished;
                        let event = Event::default()
                            .event("runtime")
                            .data(runtime_event(&batch, &result).to_string());
                        return Some((Ok(event), (a, id, batch, sent + 1, finished)));
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// A poll the provider's node cannot answer now (unreachable, busy) is 504, as a poll that timed
/// out is in Golem: its SDKs poll again on 504 and give the batch up on anything else.
fn poll_again(e: agora_activity::Error) -> ApiError {
    match e {
        agora_activity::Error::Unreachable(m) | agora_activity::Error::Busy(m) => ApiError::AckTimeout(m),
        other => other.into(),
    }
}

/// Golem's `RuntimeEvent` for a finished command, with agora's result fields beside it. The
/// exit code is `return_code`, as yagna sends it and Golem's SDKs read it, and `returnCode` too,
/// as ya-client's spec names it.
fn runtime_event(batch: &str, result: &CommandResult) -> Value {
    let code = result.exit_code.unwrap_or(if result.result == "Ok" { 0 } else { 1 });
    json!({
        "batchId": batch,
        "index": result.index,
        "timestamp": result.event_date,
        "kind": {"finished": {"return_code": code, "returnCode": code, "message": result.message}},
        "result": result,
    })
}

#[utoipa::path(get, path = "/activity-api/v1/activity/{id}/state", tag = "activity", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the activity")),
    responses((status = 200, description = "its state", body = ActivityState), (status = 404, description = "no such activity", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn state(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<Json<ActivityState>, ApiError> {
    Ok(Json(activities(&state)?.state(&id).await?))
}

#[utoipa::path(get, path = "/activity-api/v1/activity/{id}/usage", tag = "activity", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the activity")),
    responses((status = 200, description = "its usage", body = ActivityUsage), (status = 404, description = "no such activity", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn usage(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<Json<ActivityUsage>, ApiError> {
    Ok(Json(activities(&state)?.usage(&id).await?))
}

#[utoipa::path(post, path = "/blobs", tag = "blobs", request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, description = "stored", body = BlobStored),
              (status = 400, description = "the body is empty", body = super::ErrorMessage),
              (status = 413, description = "larger than the node's blob limit", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn put_blob(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<BlobStored>), ApiError> {
    let blobs = activities(&state)?.blobs().clone();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // A blob is its bytes: a request with none is a mistake (a file not attached), not a store.
    // Whatever the framing (a length, chunks, HTTP/2 frames), the first bytes are waited for.
    let empty = || {
        ApiError::BadRequest(
            "the body is empty: send the blob's bytes (Content-Type: application/octet-stream)".into(),
        )
    };
    if declared == Some(0) {
        return Err(empty());
    }
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let first = loop {
        match stream.next().await {
            None => return Err(empty()),
            Some(Ok(piece)) if piece.is_empty() => continue,
            Some(piece) => break piece,
        }
    };
    // Streamed to a temporary file while it is hashed; never held whole in memory.
    let hex = blobs.receive(futures_util::stream::iter([first]).chain(stream), declared).await?;
    Ok((StatusCode::CREATED, Json(BlobStored { url: format!("blob:sha256:{hex}"), sha256: hex })))
}

/// A destination: the URL a batch transfers an output to (`container:/output/… → url`), and the
/// file in the node's outputs folder it lands in.
#[derive(Debug, Serialize, ToSchema)]
struct Destination {
    url: String,
    file: String,
}

#[utoipa::path(post, path = "/blobs/destinations", tag = "blobs",
    responses((status = 201, description = "the destination", body = Destination),
              (status = 503, description = "too many destinations open and unused", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn open_destination(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<Destination>), ApiError> {
    let node = format!("{:#x}", state.identities.default_address().await?);
    let (url, file) = activities(&state)?.open_destination(&node)?;
    Ok((StatusCode::CREATED, Json(Destination { url, file: file.display().to_string() })))
}

#[utoipa::path(get, path = "/blobs/{sha256}", tag = "blobs", params(("sha256" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the blob's SHA-256, hex")),
    responses((status = 200, description = "the bytes", content_type = "application/octet-stream"),
              (status = 404, description = "no such blob", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn get_blob(State(state): State<AppState>, Ids(sha256): Ids<String>) -> Result<Response, ApiError> {
    let path = activities(&state)?
        .blobs()
        .path(&sha256)
        .ok_or_else(|| ApiError::NotFound(format!("no blob {sha256} on this node")))?;
    let file =
        tokio::fs::File::open(&path).await.map_err(|e| ApiError::Internal(format!("reading a blob: {e}")))?;
    let size = file.metadata().await.map_err(|e| ApiError::Internal(format!("reading a blob: {e}")))?.len();
    // Streamed from the file as the client reads it.
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        body,
    )
        .into_response())
}
