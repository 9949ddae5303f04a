//! Management endpoints for the local operator: identities and app-keys.

use super::{ApiError, AppState, Body};
use agora_identity::{AppKey, IdentityInfo};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_identities, create_identity))
        .routes(routes!(get_identity))
        .routes(routes!(lock))
        .routes(routes!(unlock))
        .routes(routes!(list_app_keys, create_app_key))
        .routes(routes!(drop_app_key))
}

/// `default` names the default identity; anything else is an address or an alias.
fn selector(id: &str) -> Option<&str> {
    (id != "default").then_some(id)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewIdentity {
    alias: Option<String>,
    password: Option<String>,
    #[serde(default)]
    default: bool,
}

#[utoipa::path(get, path = "/admin/v1/identities", tag = "admin",
    responses((status = 200, description = "the node's identities", body = Vec<IdentityInfo>), (status = 403, description = "not the admin token", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn list_identities(State(state): State<AppState>) -> Result<Json<Vec<IdentityInfo>>, ApiError> {
    Ok(Json(state.identities.list().await?))
}

#[utoipa::path(post, path = "/admin/v1/identities", tag = "admin", request_body = NewIdentity,
    responses((status = 201, description = "created", body = IdentityInfo), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 403, description = "not the admin token", body = super::ErrorMessage), (status = 409, description = "the alias is taken", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn create_identity(
    State(state): State<AppState>,
    Body(body): Body<NewIdentity>,
) -> Result<(StatusCode, Json<IdentityInfo>), ApiError> {
    let info = state.identities.create(body.alias.as_deref(), body.password, body.default).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(get, path = "/admin/v1/identities/{id}", tag = "admin", params(("id" = String, Path, description = "an address, an alias, or `default`")),
    responses((status = 200, description = "the identity", body = IdentityInfo), (status = 403, description = "not the admin token", body = super::ErrorMessage),
              (status = 404, description = "no such identity", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn get_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IdentityInfo>, ApiError> {
    Ok(Json(state.identities.get(selector(&id)).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

#[utoipa::path(post, path = "/admin/v1/identities/{id}/lock", tag = "admin", params(("id" = String, Path, description = "an address, an alias, or `default`")), request_body = Password,
    responses((status = 200, description = "locked with the password", body = IdentityInfo), (status = 400, description = "a bad password", body = super::ErrorMessage),
              (status = 403, description = "not the admin token", body = super::ErrorMessage), (status = 404, description = "no such identity", body = super::ErrorMessage), (status = 409, description = "already locked", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn lock(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<Password>,
) -> Result<Json<IdentityInfo>, ApiError> {
    Ok(Json(state.identities.lock(selector(&id), body.password).await?))
}

#[utoipa::path(post, path = "/admin/v1/identities/{id}/unlock", tag = "admin", params(("id" = String, Path, description = "an address, an alias, or `default`")), request_body = Password,
    responses((status = 200, description = "unlocked", body = IdentityInfo), (status = 400, description = "a bad password", body = super::ErrorMessage),
              (status = 403, description = "not the admin token", body = super::ErrorMessage), (status = 404, description = "no such identity", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn unlock(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<Password>,
) -> Result<Json<IdentityInfo>, ApiError> {
    Ok(Json(state.identities.unlock(selector(&id), body.password).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAppKeyBody {
    name: String,
    /// Address or alias; the default identity when absent.
    identity: Option<String>,
    /// Defaults to `manager`, the role Golem gives app-keys.
    role: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CreatedAppKey {
    #[serde(flatten)]
    app_key: AppKey,
    key: String,
}

#[utoipa::path(get, path = "/admin/v1/app-keys", tag = "admin",
    responses((status = 200, description = "the app-keys (never the keys themselves)", body = Vec<AppKey>), (status = 403, description = "not the admin token", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn list_app_keys(State(state): State<AppState>) -> Result<Json<Vec<AppKey>>, ApiError> {
    Ok(Json(state.identities.store().list_app_keys().await?))
}

#[utoipa::path(post, path = "/admin/v1/app-keys", tag = "admin", request_body = NewAppKeyBody,
    responses((status = 201, description = "created; `key` is shown only now", body = CreatedAppKey), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 403, description = "not the admin token", body = super::ErrorMessage), (status = 404, description = "no such identity", body = super::ErrorMessage), (status = 409, description = "the name is taken", body = super::ErrorMessage)), security(("bearer" = [])))]
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

#[utoipa::path(delete, path = "/admin/v1/app-keys/{name}", tag = "admin", params(("name" = String, Path)),
    responses((status = 204, description = "dropped"), (status = 403, description = "not the admin token", body = super::ErrorMessage), (status = 404, description = "no such app-key", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn drop_app_key(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.identities.store().drop_app_key(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
