//! `/jobs`: jobs the node's runner takes from its requestor (or from a web service and its end
//! users), runs on several providers, verifies and pays.
//!
//! - A service's app-key creates end users (`/jobs/users`), each with a key, a spending cap and a
//!   rate limit; an end user sees only its own jobs, and another's answers 404.
//! - `POST /jobs` honours `Idempotency-Key`: a retry answers with the first job.
//! - `GET /jobs/{id}/events` streams the job's steps as server-sent events, resumable with
//!   `Last-Event-ID` (or answers a long poll as JSON, after `after`, waiting up to `timeout`).
//! - `GET /jobs/{id}/results` downloads the verified results as a tar stream.

use super::{ApiError, AppState, Body, Caller, Ids, Params, seconds};
use agora_agents::runner::{ResultContent, ResultFile};
use agora_agents::{
    CreatedEndUser, Delivery, EndUser, JobDetail, JobEvent, JobFilter, JobSpec, JobState, JobView, Jobs,
    NewEndUser,
};
use axum::Json;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, submit))
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, drop_user))
        .routes(routes!(webhook_secret))
        .routes(routes!(describe, cancel))
        .routes(routes!(events))
        .routes(routes!(results))
        .routes(routes!(webhooks))
}

fn jobs(state: &AppState) -> Result<&Jobs, ApiError> {
    state
        .jobs
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the job runner is not running on this node".into()))
}

/// The job a path names, among those the caller may see.
async fn job_of(state: &AppState, caller: &Caller, id: &str) -> Result<(Jobs, String), ApiError> {
    let jobs = jobs(state)?.clone();
    let id = jobs.resolve(&caller.principal(), id).await?;
    Ok((jobs, id))
}

/// What `POST /jobs` answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct JobCreated {
    job_id: String,
}

/// Queues a job. With an `Idempotency-Key`, a retry of the same request answers 200 with the
/// first job (and `Idempotent-Replayed: true`) instead of queueing a second one.
#[utoipa::path(post, path = "/jobs", tag = "jobs",
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries of this request safe")),
    request_body = JobSpec,
    responses(
        (status = 201, description = "queued", body = JobCreated),
        (status = 200, description = "a retry: the first request's job", body = JobCreated),
        (status = 400, description = "the spec is wrong: the message says where", body = super::ErrorMessage),
        (status = 402, description = "the budget would pass the end user's spending cap", body = super::ErrorMessage),
        (status = 409, description = "the key was used for a different request", body = super::ErrorMessage),
        (status = 429, description = "the end user's rate limit; see Retry-After", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Body(spec): Body<JobSpec>,
) -> Result<Response, ApiError> {
    let key =
        match headers.get("idempotency-key") {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::BadRequest("Idempotency-Key: printable ASCII characters only".into())
            })?),
        };
    let submitted = jobs(&state)?.submit(&caller.principal(), spec, key).await?;
    let status = if submitted.replayed { StatusCode::OK } else { StatusCode::CREATED };
    let mut response = (status, Json(JobCreated { job_id: submitted.id })).into_response();
    if submitted.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /jobs` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only jobs in these states, by label or code, separated by commas (`running,3`).
    state: Option<String>,
    /// Only this end user's jobs.
    user: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// At most this many, 1 to 500 (50 when absent).
    limit: Option<usize>,
    /// `nextCursor` of the page before.
    cursor: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct JobList {
    jobs: Vec<JobView>,
    /// Present when there are more: give it as `cursor`.
    next_cursor: Option<String>,
}

fn states(text: &str) -> Result<Vec<JobState>, ApiError> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let s = s.trim();
            JobState::ALL.into_iter().find(|st| st.label() == s || st.code().to_string() == s).ok_or_else(
                || {
                    let known: Vec<&str> = JobState::ALL.iter().map(|st| st.label()).collect();
                    ApiError::BadRequest(format!(
                        "state {s:?}: one of {}, or its code 0 to 8",
                        known.join(", ")
                    ))
                },
            )
        })
        .collect()
}

/// The jobs the caller may see: a service sees its own and its end users', an end user its own.
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "a page of jobs", body = JobList),
        (status = 400, description = "a filter is wrong", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(query): Params<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let filter = JobFilter {
        states: query.state.as_deref().map(states).transpose()?.unwrap_or_default(),
        user: query.user,
        created_after: query.created_after,
        created_before: query.created_before,
        limit: query.limit.unwrap_or(50),
        cursor: query.cursor,
    };
    let page = jobs(&state)?.list(&caller.principal(), &filter).await?;
    Ok(Json(JobList { jobs: page.jobs, next_cursor: page.next_cursor }))
}

/// A job with its replicas and steps.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the job's id, or a unique start of it")),
    responses(
        (status = 200, description = "the job", body = JobDetail),
        (status = 404, description = "no such job that the caller may see", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn describe(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let (jobs, id) = job_of(&state, &caller, &id).await?;
    Ok(Json(jobs.get(&id).await?))
}

/// Cancels a job that has no verdict yet; a job another node runs stops within a second.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the job's id, or a unique start of it")),
    responses(
        (status = 204, description = "cancelled"),
        (status = 404, description = "no such job that the caller may see", body = super::ErrorMessage),
        (status = 409, description = "it has ended, or has its verdict and is paying", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    let (jobs, id) = job_of(&state, &caller, &id).await?;
    jobs.cancel(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Only steps after this event id (`Last-Event-ID` wins when both are given).
    after: Option<i64>,
    /// Seconds a JSON long poll waits for a step (0 when absent, at most 60).
    timeout: Option<f64>,
}

/// The job's steps: with `Accept: text/event-stream`, one server-sent event per step (`id` is
/// the step's id, so a reconnect with `Last-Event-ID` resumes without gaps or repeats) until the
/// job ends; otherwise a JSON long poll.
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "jobs",
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the job's id, or a unique start of it"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this step"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "steps, oldest first: a JSON list, or with `Accept: text/event-stream` one server-sent event per step",
            content((Vec<JobEvent> = "application/json"), (JobEvent = "text/event-stream"))),
        (status = 400, description = "a parameter is wrong", body = super::ErrorMessage),
        (status = 404, description = "no such job that the caller may see", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
    Params(query): Params<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (jobs, id) = job_of(&state, &caller, &id).await?;
    let last_seen = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).ok_or_else(|| {
            ApiError::BadRequest("Last-Event-ID: the id of a step this stream sent".into())
        })?),
    };
    let after = last_seen.or(query.after).unwrap_or(0);
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
    let stopping = state.shutdown.clone();
    let batches = futures_util::stream::unfold((jobs, id, after, false), move |(jobs, id, after, done)| {
        let stopping = stopping.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let found = tokio::select! {
                    found = jobs.wait_events(&id, after, Duration::from_secs(30)) => found,
                    () = stopping.cancelled() => return None,
                };
                match found {
                    Ok(found) if found.is_empty() => {
                        // Nothing new: a finished job's stream ends.
                        match jobs.get(&id).await {
                            Ok(job) if job.job.state().is_final() => return None,
                            Ok(_) => {}
                            Err(e) => {
                                let event = Event::default().event("error").data(e.to_string());
                                return Some((
                                    futures_util::stream::iter(vec![Ok(event)]),
                                    (jobs, id, after, true),
                                ));
                            }
                        }
                    }
                    Ok(found) => {
                        let last = found.last().map_or(after, |e| e.id);
                        let events: Vec<Result<Event, std::convert::Infallible>> = found
                            .iter()
                            .map(|e| {
                                Ok(Event::default()
                                    .event("job")
                                    .id(e.id.to_string())
                                    .json_data(e)
                                    .expect("a step is JSON"))
                            })
                            .collect();
                        return Some((futures_util::stream::iter(events), (jobs, id, last, false)));
                    }
                    Err(e) => {
                        let event = Event::default().event("error").data(e.to_string());
                        return Some((futures_util::stream::iter(vec![Ok(event)]), (jobs, id, after, true)));
                    }
                }
            }
        }
    });
    Ok(Sse::new(batches.flatten()).keep_alive(KeepAlive::default()).into_response())
}

/// The results (verified, unless the job has no verifier) as a tar stream: `stdout`, and
/// `outputs/<path>` for each output the job named. The outputs are read from this node's blobs: ask the node that ran the job.
#[utoipa::path(get, path = "/jobs/{id}/results", tag = "jobs",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the job's id, or a unique start of it")),
    responses(
        (status = 200, description = "a tar archive", content_type = "application/x-tar"),
        (status = 404, description = "no such job, or its outputs are on another node", body = super::ErrorMessage),
        (status = 409, description = "it has no results", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn results(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<Response, ApiError> {
    let (jobs, id) = job_of(&state, &caller, &id).await?;
    let files = jobs.results(&id).await?;
    let mut parts = Vec::new();
    for file in files {
        parts.push(tar_entry(file).await?);
    }
    // Two zero blocks end a tar archive.
    let end = futures_util::stream::once(async { Ok(Bytes::from_static(&[0u8; 1024])) }).boxed();
    parts.push(end);
    let body = HttpBody::from_stream(futures_util::stream::iter(parts).flatten());
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{id}.tar\""))
                    .expect("hex is a header"),
            ),
        ],
        body,
    )
        .into_response())
}

type Chunks = futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// One file of a tar archive: its header, its bytes as they are read, and the padding to a
/// whole 512-byte block.
async fn tar_entry(file: ResultFile) -> Result<Chunks, ApiError> {
    let (size, content): (u64, Chunks) = match file.content {
        ResultContent::Text(text) => {
            let bytes = Bytes::from(text.into_bytes());
            (bytes.len() as u64, futures_util::stream::once(async move { Ok(bytes) }).boxed())
        }
        ResultContent::File(path) => {
            let opened = tokio::fs::File::open(&path)
                .await
                .map_err(|e| ApiError::Internal(format!("opening {}: {e}", path.display())))?;
            let size = opened
                .metadata()
                .await
                .map_err(|e| ApiError::Internal(format!("reading {}: {e}", path.display())))?
                .len();
            (size, tokio_util::io::ReaderStream::new(opened).boxed())
        }
    };
    let mut head = tar::Header::new_ustar();
    head.set_path(&file.path).map_err(|e| {
        ApiError::Conflict(format!(
            "{} does not fit a tar header ({e}); fetch it from GET /jobs/{{id}}",
            file.path
        ))
    })?;
    head.set_size(size);
    head.set_mode(0o644);
    head.set_mtime(0);
    head.set_entry_type(tar::EntryType::Regular);
    head.set_cksum();
    let head = Bytes::copy_from_slice(head.as_bytes());
    let pad = Bytes::from(vec![0u8; ((512 - size % 512) % 512) as usize]);
    let head = futures_util::stream::once(async move { Ok(head) });
    let pad = futures_util::stream::once(async move { Ok(pad) });
    Ok(head.chain(content).chain(pad).boxed())
}

/// The job's webhook deliveries: one per step, with its tries. They are the service's concern:
/// an end user's key cannot read them (they would tell what answers at the job's URL).
#[utoipa::path(get, path = "/jobs/{id}/webhooks", tag = "jobs",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the job's id, or a unique start of it")),
    responses(
        (status = 200, description = "deliveries, oldest step first", body = Vec<Delivery>),
        (status = 403, description = "an end user's key", body = super::ErrorMessage),
        (status = 404, description = "no such job that the caller may see", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn webhooks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let (jobs, id) = job_of(&state, &caller, &id).await?;
    if matches!(caller, Caller::EndUser(_)) {
        return Err(ApiError::Forbidden("a job's webhook deliveries are for its service to read".into()));
    }
    Ok(Json(jobs.deliveries(&id).await?))
}

/// Creates an end user of the calling service, with its key (shown once), spending caps and
/// rate limit.
#[utoipa::path(post, path = "/jobs/users", tag = "jobs", request_body = NewEndUser,
    responses(
        (status = 201, description = "created; `key` is shown only now", body = CreatedEndUser),
        (status = 400, description = "a field is wrong", body = super::ErrorMessage),
        (status = 403, description = "an end user cannot create users", body = super::ErrorMessage),
        (status = 409, description = "the service has a user of that name", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn create_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(new): Body<NewEndUser>,
) -> Result<(StatusCode, Json<CreatedEndUser>), ApiError> {
    let created = jobs(&state)?.create_user(&caller.principal(), new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The calling service's end users (every one, for the admin), with what each has spent.
#[utoipa::path(get, path = "/jobs/users", tag = "jobs",
    responses((status = 200, description = "end users, oldest first", body = Vec<EndUser>)),
    security(("bearer" = [])))]
async fn list_users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<EndUser>>, ApiError> {
    Ok(Json(jobs(&state)?.users(&caller.principal()).await?))
}

/// One end user: for its service, or for itself.
#[utoipa::path(get, path = "/jobs/users/{user_id}", tag = "jobs",
    params(("user_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the user's id")),
    responses(
        (status = 200, description = "the user", body = EndUser),
        (status = 404, description = "no such user that the caller may see", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn get_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(user_id): Ids<String>,
) -> Result<Json<EndUser>, ApiError> {
    Ok(Json(jobs(&state)?.user(&caller.principal(), &user_id).await?))
}

/// Revokes an end user's key; its jobs go on.
#[utoipa::path(delete, path = "/jobs/users/{user_id}", tag = "jobs",
    params(("user_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the user's id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 403, description = "an end user cannot remove users", body = super::ErrorMessage),
        (status = 404, description = "no such user of the caller's", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn drop_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(user_id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    jobs(&state)?.drop_user(&caller.principal(), &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The secret that signs webhooks.
#[derive(Debug, Serialize, ToSchema)]
struct WebhookSecret {
    /// A delivery's `Agora-Signature` is `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
    /// keyed with this text as it is (its bytes, not what the hex decodes to).
    secret: String,
}

/// The secret the webhooks of the caller's jobs (and its end users') are signed with.
#[utoipa::path(get, path = "/jobs/webhook-secret", tag = "jobs",
    responses(
        (status = 200, description = "the secret", body = WebhookSecret),
        (status = 403, description = "an end user's key cannot read it", body = super::ErrorMessage),
    ),
    security(("bearer" = [])))]
async fn webhook_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<WebhookSecret>, ApiError> {
    Ok(Json(WebhookSecret { secret: jobs(&state)?.webhook_secret(&caller.principal()).await? }))
}
