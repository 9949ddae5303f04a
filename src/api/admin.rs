//! Management endpoints for the local operator: identities and app-keys.

use super::{ApiError, AppState, Body};
use agora_identity::{AppKey, IdentityInfo};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/identities", get(list_identities).post(create_identity))
        .route("/identities/{id}", get(get_identity))
        .route("/identities/{id}/lock", post(lock))
        .route("/identities/{id}/unlock", post(unlock))
        .route("/app-keys", get(list_app_keys).post(create_app_key))
        .route("/app-keys/{name}", delete(drop_app_key))
}

/// `default` names the default identity; anything else is an address or an alias.
fn selector(id: &str) -> Option<&str> {
    (id != "default").then_some(id)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIdentity {
    alias: Option<String>,
    password: Option<String>,
    #[serde(default)]
    default: bool,
}

async fn list_identities(State(state): State<AppState>) -> Result<Json<Vec<IdentityInfo>>, ApiError> {
    Ok(Json(state.identities.list().await?))
}

async fn create_identity(
    State(state): State<AppState>,
    Body(body): Body<NewIdentity>,
) -> Result<(StatusCode, Json<IdentityInfo>), ApiError> {
    let info = state.identities.create(body.alias.as_deref(), body.password, body.default).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn get_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IdentityInfo>, ApiError> {
    Ok(Json(state.identities.get(selector(&id)).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

async fn lock(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<Password>,
) -> Result<Json<IdentityInfo>, ApiError> {
    Ok(Json(state.identities.lock(selector(&id), body.password).await?))
}

async fn unlock(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<Password>,
) -> Result<Json<IdentityInfo>, ApiError> {
    Ok(Json(state.identities.unlock(selector(&id), body.password).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAppKeyBody {
    name: String,
    /// Address or alias; the default identity when absent.
    identity: Option<String>,
    /// Defaults to `manager`, the role Golem gives app-keys.
    role: Option<String>,
}

#[derive(Debug, Serialize)]
struct CreatedAppKey {
    #[serde(flatten)]
    app_key: AppKey,
    key: String,
}

async fn list_app_keys(State(state): State<AppState>) -> Result<Json<Vec<AppKey>>, ApiError> {
    Ok(Json(state.identities.store().list_app_keys().await?))
}

async fn create_app_key(
    State(state): State<AppState>,
    Body(body): Body<NewAppKeyBody>,
) -> Result<(StatusCode, Json<CreatedAppKey>), ApiError> {
    let identity = state.identities.get(body.identity.as_deref()).await?;
    let address = agora_identity::parse_address(&identity.address)?;
    let role = body.role.as_deref().unwrap_or("manager");
    let created = state.identities.store().create_app_key(&body.name, address, role).await?;
    Ok((StatusCode::CREATED, Json(CreatedAppKey { app_key: created.app_key, key: created.key })))
}

async fn drop_app_key(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.identities.store().drop_app_key(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
