//! The REST API: `fn app(state) -> Router`, so tests can drive it without a socket.
//!
//! Public: `GET /version`, `GET /health`. Everything else needs `Authorization: Bearer <key>`,
//! where the key is an app-key or the node's admin token (from `node.json` in the data dir).
//! The management endpoints under `/admin/v1` take the admin token only.

mod activity;
mod admin;
mod auth;
mod error;
mod market;
mod metrics;

pub use auth::Caller;
pub use error::ApiError;
pub use metrics::Metrics;

use agora_identity::Identities;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::routing::get;
use axum::{Json, Router, middleware};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;

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
        }
    }

    /// Serves activities and blobs too.
    pub fn with_activities(mut self, activities: agora_activity::Activities, datasets: Vec<String>) -> Self {
        self.activities = Some(activities);
        self.datasets = datasets;
        self
    }
}

/// The node's router.
pub fn app(state: AppState) -> Router {
    let authenticated = Router::new()
        .route("/me", get(me))
        .route("/metrics", get(metrics::render))
        .route("/net-api/v1/status", get(net_status))
        .nest("/admin/v1", admin::routes())
        .nest("/market-api/v1", market::routes())
        .nest("/activity-api/v1", activity::routes())
        .merge(activity::blob_routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .route("/version", get(version))
        .route("/health", get(health))
        .merge(authenticated)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), metrics::record))
        .with_state(state)
}

async fn version() -> Json<Value> {
    Json(json!({"name": "agora", "version": env!("CARGO_PKG_VERSION")}))
}

async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    sqlx::query("SELECT 1")
        .execute(&state.pool)
        .await
        .map_err(|e| ApiError::Unavailable(format!("database: {e}")))?;
    Ok(Json(json!({"status": "ok"})))
}

/// Golem's `/me`: who the caller is acting as.
#[derive(Debug, Serialize)]
struct Me {
    identity: String,
    name: String,
    role: String,
}

async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Me>, ApiError> {
    Ok(Json(match caller {
        Caller::AppKey(key) => {
            Me { identity: key.identity.to_checksum(None), name: key.name, role: key.role }
        }
        Caller::Admin => Me {
            identity: state.identities.default_address().await?.to_checksum(None),
            name: "admin".into(),
            role: "admin".into(),
        },
    }))
}

async fn net_status(State(state): State<AppState>) -> Result<Json<agora_net::NetStatus>, ApiError> {
    state.net.status().await.map(Json).map_err(|e| ApiError::Unavailable(e.to_string()))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// A JSON body whose rejection is an [`ApiError`] with a message, like every other error.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}
