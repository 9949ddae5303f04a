//! The REST API: `fn app(state) -> Router`, so tests can drive it without a socket.
//!
//! Public: `GET /version`, `GET /health`. Everything else needs `Authorization: Bearer <key>`,
//! where the key is an app-key or the node's admin token (from `node.json` in the data dir).
//! The management endpoints under `/admin/v1` take the admin token only.

mod activity;
mod admin;
mod auth;
mod error;
mod jobs;
mod market;
mod metrics;
mod payment;

pub use auth::Caller;
pub use error::ApiError;
pub use metrics::Metrics;

use agora_identity::Identities;
use axum::extract::{Extension, FromRequest, FromRequestParts, Path, Query, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router, middleware};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub identities: Identities,
    pub pool: PgPool,
    pub net: agora_net::NetHandle,
    pub market: agora_market::Market,
    admin_token: Arc<str>,
    pub metrics: Arc<Metrics>,
    /// Absent in tests that drive the market alone.
    pub activities: Option<agora_activity::Activities>,
    /// `sha256:<hex>` of the datasets this node offers; added to its offers.
    pub datasets: Vec<String>,
    /// Absent in tests that drive the market alone.
    pub payments: Option<agora_payment::Payments>,
    /// The job runner; absent in tests that drive the market alone.
    pub jobs: Option<agora_agents::Jobs>,
    /// Cancelled when the node begins to stop: long polls answer then rather than hold it up.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl AppState {
    pub fn new(
        identities: Identities,
        pool: PgPool,
        net: agora_net::NetHandle,
        market: agora_market::Market,
        admin_token: String,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        Self {
            identities,
            pool,
            net,
            market,
            admin_token: admin_token.into(),
            metrics,
            activities: None,
            datasets: Vec::new(),
            payments: None,
            jobs: None,
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Long polls end when `shutdown` is cancelled.
    pub fn with_shutdown(mut self, shutdown: tokio_util::sync::CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Serves activities and blobs too (blobs up to the activities' store's maximum).
    pub fn with_activities(mut self, activities: agora_activity::Activities, datasets: Vec<String>) -> Self {
        self.metrics.watch_blobs(activities.blobs().traffic().clone());
        self.activities = Some(activities);
        self.datasets = datasets;
        self
    }
}

impl AppState {
    /// Serves `/jobs` too.
    pub fn with_jobs(mut self, jobs: agora_agents::Jobs) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// Serves `/payment-api/v1` too.
    pub fn with_payments(mut self, payments: agora_payment::Payments) -> Self {
        self.payments = Some(payments);
        self
    }
}

/// Every documented route: those that need a bearer token, and the public ones. Blobs are
/// apart, as their bodies have no size limit but the store's.
fn documented() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let authenticated = OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(metrics::render))
        .routes(routes!(net_status))
        .merge(admin::routes())
        .merge(payment::admin_routes())
        .merge(market::routes())
        .merge(activity::routes())
        .merge(payment::routes())
        .merge(jobs::routes());
    let public = OpenApiRouter::new().routes(routes!(version)).routes(routes!(health));
    (authenticated, activity::blob_routes(), public)
}

/// The node's router.
pub fn app(state: AppState) -> Router {
    let (authenticated, blobs, public) = documented();
    let (authenticated, _) = authenticated.split_for_parts();
    let (blobs, _) = blobs.split_for_parts();
    let (public, _) = public.split_for_parts();
    let authenticated = authenticated
        .merge(blobs.layer(axum::extract::DefaultBodyLimit::disable()))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    public
        .route("/openapi.json", get(openapi_json))
        .merge(authenticated)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::record))
        .with_state(state)
}

/// The body of every error: what went wrong, and what to do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorMessage {
    pub message: String,
}

/// The app-key (or admin token) every authenticated endpoint takes.
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "agora", description = "The REST API of an agora node.", license(name = "Apache-2.0")),
    modifiers(&BearerAuth),
    tags(
        (name = "node", description = "The node itself"),
        (name = "admin", description = "The operator's identities, app-keys and account (admin token only)"),
        (name = "market", description = "Golem's market API: offers, demands, proposals, agreements"),
        (name = "activity", description = "Golem's activity API: runs on a provider's exe-units"),
        (name = "blobs", description = "The node's content-addressed store for inputs and outputs"),
        (name = "payment", description = "Golem's payment API: allocations, debit notes, invoices, payments"),
        (name = "jobs", description = "Verified jobs, end users, webhooks"),
    )
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of the node's REST API, made from the handlers' annotations and
/// types (`GET /openapi.json`, `agora openapi`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    let (authenticated, blobs, public) = documented();
    for part in [public, authenticated, blobs] {
        doc.merge(part.split_for_parts().1);
    }
    utoipa::Modify::modify(&Answers, &mut doc);
    doc
}

/// The answers an operation can give whatever its handler does, written into every operation
/// they apply to, so the document lists every status the node can answer:
/// - 401 where a bearer token is needed, and 503 there too, as the token is looked up in the
///   database (and payments reach the chain, the market the network);
/// - 403 where a key of the wrong kind is refused: an end user's key outside `/jobs`, an app-key
///   under `/admin`;
/// - 400 where a path id, a query parameter or a body can be wrong;
/// - 413 where a JSON body can be over [`MAX_JSON_BODY`].
#[derive(Debug)]
struct Answers;

impl utoipa::Modify for Answers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let answer = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorMessage"))).build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let mut add = |status: &str, description: &str| {
                    operation.responses.responses.entry(status.into()).or_insert_with(|| answer(description));
                };
                let parameters = operation.parameters.iter().flatten().any(|p| {
                    matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query))
                });
                let body = operation.request_body.is_some();
                let secured = operation.security.is_some();
                if parameters || body {
                    add("400", "a path id, a query parameter or the body is wrong: the message says which");
                }
                if body && path != "/blobs" {
                    add(
                        "413",
                        &format!("the JSON body is over the node's limit ({} MiB)", MAX_JSON_BODY >> 20),
                    );
                }
                if secured {
                    add("401", "no bearer token, or one this node does not know");
                    if !path.starts_with("/jobs") {
                        add(
                            "403",
                            "a key of the wrong kind: an end user's key (it reaches /jobs only), or an app-key under /admin",
                        );
                    }
                    add(
                        "503",
                        "the node's database, the chain or the network cannot be reached now: retry later",
                    );
                }
            }
        }
    }
}

/// [`openapi`] as the committed `openapi.json` holds it.
pub fn openapi_text() -> String {
    openapi().to_pretty_json().expect("the document is JSON")
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// The node's name and version.
#[utoipa::path(get, path = "/version", tag = "node",
    responses((status = 200, description = "name and version", body = Object)))]
async fn version() -> Json<Value> {
    Json(json!({"name": "agora", "version": env!("CARGO_PKG_VERSION")}))
}

/// Whether the node can reach its database.
#[utoipa::path(get, path = "/health", tag = "node",
    responses((status = 200, description = "healthy", body = Object),
              (status = 503, description = "the database cannot be reached", body = ErrorMessage)))]
async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    crate::store::ping(&state.pool).await.map_err(|e| ApiError::Unavailable(format!("database: {e}")))?;
    Ok(Json(json!({"status": "ok"})))
}

/// Golem's `/me`: who the caller is acting as. The address is in lower case, as market and
/// payment documents give it: Golem's SDKs compare the two as strings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Me {
    identity: String,
    name: String,
    role: String,
}

/// Who the caller acts as: the identity, the key's name and its role.
#[utoipa::path(get, path = "/me", tag = "node",
    responses((status = 200, description = "the caller", body = Me)), security(("bearer" = [])))]
async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Me>, ApiError> {
    Ok(Json(match caller {
        Caller::AppKey(key) => {
            Me { identity: format!("{:#x}", key.identity), name: key.name, role: key.role }
        }
        Caller::Admin => Me {
            identity: format!("{:#x}", state.identities.default_address().await?),
            name: "admin".into(),
            role: "admin".into(),
        },
        Caller::EndUser(user) => Me {
            identity: format!("{:#x}", state.identities.default_address().await?),
            name: user.name,
            role: "end-user".into(),
        },
    }))
}

/// The node's peer id, listen addresses and connected peers.
#[utoipa::path(get, path = "/net-api/v1/status", tag = "node",
    responses((status = 200, description = "the network", body = agora_net::NetStatus),
              (status = 503, description = "the network is stopping", body = ErrorMessage)), security(("bearer" = [])))]
async fn net_status(State(state): State<AppState>) -> Result<Json<agora_net::NetStatus>, ApiError> {
    state.net.status().await.map(Json).map_err(|e| ApiError::Unavailable(e.to_string()))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// Path parameters, each checked to be an id ([`agora_agreement::is_valid_id`]) before a handler,
/// or the database, sees it.
#[derive(Debug)]
pub struct Ids<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Ids<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        for (name, value) in &raw {
            check_id(name, value)?;
        }
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok(Ids(value))
    }
}

/// Refuses what cannot be an id, naming the parameter and what an id is.
pub fn check_id(name: &str, value: &str) -> Result<(), ApiError> {
    if agora_agreement::is_valid_id(value) {
        return Ok(());
    }
    let shown: String = value.chars().take(80).collect();
    Err(ApiError::BadRequest(format!(
        "{name} {shown:?} is not an id: ids are 1 to {} ASCII letters, digits, '-' or '_'",
        agora_agreement::MAX_ID_LEN
    )))
}

/// Query parameters whose rejection is an [`ApiError`] with a message.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// A wait in seconds, as Golem's SDKs send `timeout`: `default` when absent, at most `max`
/// (clamped, so a huge number waits `max`), and a 400 for a negative or non-finite one.
pub fn seconds(
    name: &str,
    value: Option<f64>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ApiError> {
    match value {
        None => Ok(default.min(max)),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Duration::from_secs_f64(t.min(max.as_secs_f64()))),
        Some(t) => Err(ApiError::BadRequest(format!("{name} must be a number of seconds ≥ 0, got {t}"))),
    }
}

/// Runs a long poll until it answers, or until the node begins to stop: then it answers 503
/// (with `Retry-After`), so a stopping node is not held up by its clients' polls.
pub async fn until_shutdown<T>(
    state: &AppState,
    poll: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::select! {
        answered = poll => answered,
        () = state.shutdown.cancelled() => Err(ApiError::Unavailable("the node is stopping".into())),
    }
}

/// The largest JSON body a request may carry (axum's default body limit); blobs, which are
/// streamed, have their own (`max_blob_bytes`).
pub const MAX_JSON_BODY: usize = 2 * 1024 * 1024;

/// A JSON body whose rejection is an [`ApiError`] with a message, like every other error. No body
/// the API takes is a list, as the document says: a list is refused, even one that serde would
/// read element by element into a struct's fields.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        // Read as axum reads a body (its limit is in the request's extensions), so that only a
        // body over the limit is a 413, and one that breaks off is a 400 saying so.
        let mut whole = Request::new(body);
        *whole.extensions_mut() = parts.extensions.clone();
        let bytes = match axum::body::Bytes::from_request(whole, state).await {
            Ok(bytes) => bytes,
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge(format!(
                    "a JSON body is at most {MAX_JSON_BODY} bytes on this node"
                )));
            }
            Err(rejection) => return Err(ApiError::BadRequest(rejection.body_text())),
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::BadRequest("the body is a JSON list; send an object ({...})".into()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge(format!(
                    "a JSON body is at most {MAX_JSON_BODY} bytes on this node"
                )))
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The document the handlers describe is the one committed, so a change to a handler's
    /// types shows in review, and clients generated from the file match the node.
    #[test]
    fn the_committed_openapi_document_is_the_one_the_handlers_describe() {
        let committed =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap_or_default();
        assert!(
            committed.trim_end() == super::openapi_text(),
            "openapi.json differs from what the handlers describe: run `cargo run -q -- openapi > openapi.json`"
        );
    }
}
