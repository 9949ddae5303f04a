//! `/payment-api/v1`: Golem's payment API paths and JSON.

use super::{ApiError, AppState, Body, Caller, Ids, Params, seconds, until_shutdown};
use agora_payment::model::{Acceptance, AllocationUpdate, Kind, NewAllocation, Rejection};
use agora_payment::{NewDebitNote, NewInvoice, Owned, Payments};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(allocations, create_allocation))
        .routes(routes!(allocation, amend_allocation, release_allocation))
        .routes(routes!(demand_decorations))
        .routes(routes!(debit_notes, issue_debit_note))
        .routes(routes!(debit_note))
        .routes(routes!(send_debit_note))
        .routes(routes!(cancel_debit_note))
        .routes(routes!(accept_debit_note))
        .routes(routes!(reject_debit_note))
        .routes(routes!(debit_note_events))
        .routes(routes!(invoices, issue_invoice))
        .routes(routes!(invoice))
        .routes(routes!(send_invoice))
        .routes(routes!(cancel_invoice))
        .routes(routes!(accept_invoice))
        .routes(routes!(reject_invoice))
        .routes(routes!(invoice_events))
        .routes(routes!(payments))
        .routes(routes!(driver_status))
        .routes(routes!(payment))
        .routes(routes!(requestor_accounts))
        .routes(routes!(provider_accounts))
}

fn service(state: &AppState) -> Result<&Payments, ApiError> {
    state.payments.as_ref().ok_or_else(|| ApiError::NotFound("this node does not serve payments".into()))
}

/// The payment service, once `what` is the caller's to see and act on: an app-key reaches only
/// its own money (what is not its own answers 404, as if it were not there), the admin all.
async fn owned<'a>(state: &'a AppState, caller: &Caller, what: Owned<'_>) -> Result<&'a Payments, ApiError> {
    let payments = service(state)?;
    let owner = caller.owner();
    payments.check_scope(caller.scope(&owner), what).await?;
    Ok(payments)
}

/// The longest an event poll waits.
const MAX_POLL: Duration = Duration::from_secs(300);
/// An event poll's wait when it names none.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// The most items one answer holds.
const MAX_ITEMS: i64 = 1000;

/// Golem's list and poll parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only what came after this time (RFC 3339).
    after_timestamp: Option<String>,
    /// Seconds an event poll waits (5 when absent, at most 300).
    #[param(minimum = 0)]
    timeout: Option<f64>,
    /// The most to return (1 to 1000).
    max_events: Option<i64>,
    /// The most to return (1 to 1000), as lists name it.
    max_items: Option<i64>,
    // Golem's SDKs send these; one node serves one session, and the driver is erc20.
    #[serde(rename = "appSessionId")]
    #[param(rename = "appSessionId")]
    _app_session_id: Option<String>,
    #[serde(rename = "network")]
    #[param(rename = "network")]
    _network: Option<String>,
    #[serde(rename = "driver")]
    #[param(rename = "driver")]
    _driver: Option<String>,
}

impl ListParams {
    fn after(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.after_timestamp
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| {
                DateTime::parse_from_rfc3339(t).map(|d| d.with_timezone(&Utc)).map_err(|e| {
                    ApiError::BadRequest(format!(
                        "afterTimestamp {t:?} is not an RFC 3339 date-time ({e}), e.g. 2026-01-01T00:00:00.000001Z"
                    ))
                })
            })
            .transpose()
    }

    fn max(&self) -> i64 {
        self.max_events.or(self.max_items).unwrap_or(MAX_ITEMS).clamp(1, MAX_ITEMS)
    }
}

#[utoipa::path(post, path = "/payment-api/v1/allocations", tag = "payment", request_body = NewAllocation,
    responses((status = 201, description = "the allocation", body = Object), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 409, description = "not enough funds", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn create_allocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<NewAllocation>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let allocation = service(&state)?.create_allocation(body, &caller.owner()).await?;
    Ok((StatusCode::CREATED, Json(allocation.view())))
}

#[utoipa::path(get, path = "/payment-api/v1/allocations", tag = "payment",
    responses((status = 200, description = "the allocations", body = Vec<Object>)), security(("bearer" = [])))]
async fn allocations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let owner = caller.owner();
    Ok(Json(service(&state)?.allocations(caller.scope(&owner)).await?.iter().map(|a| a.view()).collect()))
}

#[utoipa::path(get, path = "/payment-api/v1/allocations/{allocation_id}", tag = "payment", params(("allocation_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "the allocation", body = Object), (status = 404, description = "no such allocation", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn allocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(owned(&state, &caller, Owned::Allocation(&id)).await?.allocation(&id).await?.view()))
}

#[utoipa::path(put, path = "/payment-api/v1/allocations/{allocation_id}", tag = "payment", params(("allocation_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")), request_body = AllocationUpdate,
    responses((status = 200, description = "the allocation", body = Object), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such allocation", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn amend_allocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
    Body(update): Body<AllocationUpdate>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        owned(&state, &caller, Owned::Allocation(&id)).await?.amend_allocation(&id, update).await?.view(),
    ))
}

#[utoipa::path(delete, path = "/payment-api/v1/allocations/{allocation_id}", tag = "payment", params(("allocation_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "released"), (status = 404, description = "no such allocation", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn release_allocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, Owned::Allocation(&id)).await?.release_allocation(&id).await?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct DecorationParams {
    /// Allocation ids, separated by commas.
    allocation_ids: Option<String>,
}

#[utoipa::path(get, path = "/payment-api/v1/demandDecorations", tag = "payment", params(DecorationParams),
    responses((status = 200, description = "properties and constraints to add to a demand", body = Object),
              (status = 404, description = "no such allocation", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn demand_decorations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<DecorationParams>,
) -> Result<Json<Value>, ApiError> {
    let ids: Vec<String> = params
        .allocation_ids
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for id in &ids {
        owned(&state, &caller, Owned::Allocation(id)).await?;
    }
    Ok(Json(service(&state)?.demand_decorations(&ids).await?))
}

async fn list(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    params: &ListParams,
) -> Result<Json<Vec<Value>>, ApiError> {
    // A listing does not wait, but a `timeout` it is sent is held to the rule the document states.
    seconds("timeout", params.timeout, Duration::ZERO, MAX_POLL)?;
    let owner = caller.owner();
    let rows = service(state)?.documents(kind, params.after()?, params.max(), caller.scope(&owner)).await?;
    Ok(Json(rows.iter().map(|r| r.view()).collect()))
}

async fn events(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    params: &ListParams,
) -> Result<Json<Vec<Value>>, ApiError> {
    let timeout = seconds("timeout", params.timeout, DEFAULT_POLL, MAX_POLL)?;
    let payments = service(state)?;
    let owner = caller.owner();
    let found = until_shutdown(state, async {
        payments
            .events(kind, params.after()?, params.max(), timeout, caller.scope(&owner))
            .await
            .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(found))
}

/// Accepts a document the caller owns, from an allocation the caller owns (another's is, as one
/// that is not there, a field that is wrong).
async fn accept(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    id: &str,
    body: Acceptance,
) -> Result<StatusCode, ApiError> {
    let payments = owned(state, caller, Owned::Document(kind, id)).await?;
    owned(state, caller, Owned::Allocation(&body.allocation_id)).await.map_err(|e| match e {
        ApiError::NotFound(m) => ApiError::BadRequest(m),
        other => other,
    })?;
    payments.accept(kind, id, body).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(post, path = "/payment-api/v1/debitNotes", tag = "payment", request_body = NewDebitNote,
    responses((status = 201, description = "the debit note", body = Object), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such agreement", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn issue_debit_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<NewDebitNote>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let payments = owned(&state, &caller, Owned::Agreement(&body.agreement_id)).await?;
    Ok((StatusCode::CREATED, Json(payments.issue_debit_note(body).await?.view())))
}

#[utoipa::path(post, path = "/payment-api/v1/invoices", tag = "payment", request_body = NewInvoice,
    responses((status = 201, description = "the invoice", body = Object), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such agreement", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn issue_invoice(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<NewInvoice>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let payments = owned(&state, &caller, Owned::Agreement(&body.agreement_id)).await?;
    Ok((StatusCode::CREATED, Json(payments.issue_invoice(body).await?.view())))
}

#[utoipa::path(get, path = "/payment-api/v1/debitNotes", tag = "payment", params(ListParams),
    responses((status = 200, description = "debit notes issued and received", body = Vec<Object>), (status = 400, description = "a parameter is wrong", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn debit_notes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    list(&state, &caller, Kind::DebitNote, &p).await
}

#[utoipa::path(get, path = "/payment-api/v1/invoices", tag = "payment", params(ListParams),
    responses((status = 200, description = "invoices issued and received", body = Vec<Object>), (status = 400, description = "a parameter is wrong", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn invoices(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    list(&state, &caller, Kind::Invoice, &p).await
}

#[utoipa::path(get, path = "/payment-api/v1/debitNotes/{debit_note_id}", tag = "payment", params(("debit_note_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "the debit note", body = Object), (status = 404, description = "no such debit note", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn debit_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, ApiError> {
    let payments = owned(&state, &caller, Owned::Document(Kind::DebitNote, &id)).await?;
    Ok(Json(payments.document(Kind::DebitNote, &id).await?.view()))
}

#[utoipa::path(get, path = "/payment-api/v1/invoices/{invoice_id}", tag = "payment", params(("invoice_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "the invoice", body = Object), (status = 404, description = "no such invoice", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn invoice(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, ApiError> {
    let payments = owned(&state, &caller, Owned::Document(Kind::Invoice, &id)).await?;
    Ok(Json(payments.document(Kind::Invoice, &id).await?.view()))
}

#[utoipa::path(get, path = "/payment-api/v1/debitNoteEvents", tag = "payment", params(ListParams),
    responses((status = 200, description = "debit note events after `afterTimestamp`", body = Vec<Object>), (status = 400, description = "a parameter is wrong", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn debit_note_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    events(&state, &caller, Kind::DebitNote, &p).await
}

#[utoipa::path(get, path = "/payment-api/v1/invoiceEvents", tag = "payment", params(ListParams),
    responses((status = 200, description = "invoice events after `afterTimestamp`", body = Vec<Object>), (status = 400, description = "a parameter is wrong", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn invoice_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    events(&state, &caller, Kind::Invoice, &p).await
}

#[utoipa::path(post, path = "/payment-api/v1/debitNotes/{debit_note_id}/send", tag = "payment", params(("debit_note_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "sent to the requestor"), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such debit note", body = super::ErrorMessage), (status = 409, description = "not in a state for it", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn send_debit_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, Owned::Document(Kind::DebitNote, &id)).await?.send(Kind::DebitNote, &id).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(post, path = "/payment-api/v1/invoices/{invoice_id}/send", tag = "payment", params(("invoice_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "sent to the requestor"), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such invoice", body = super::ErrorMessage), (status = 409, description = "not in a state for it", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn send_invoice(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, Owned::Document(Kind::Invoice, &id)).await?.send(Kind::Invoice, &id).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(post, path = "/payment-api/v1/debitNotes/{debit_note_id}/cancel", tag = "payment", params(("debit_note_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "cancelled"), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such debit note", body = super::ErrorMessage), (status = 409, description = "not in a state for it", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn cancel_debit_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, Owned::Document(Kind::DebitNote, &id)).await?.cancel(Kind::DebitNote, &id).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(post, path = "/payment-api/v1/invoices/{invoice_id}/cancel", tag = "payment", params(("invoice_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "cancelled"), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such invoice", body = super::ErrorMessage), (status = 409, description = "not in a state for it", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn cancel_invoice(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, Owned::Document(Kind::Invoice, &id)).await?.cancel(Kind::Invoice, &id).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(post, path = "/payment-api/v1/debitNotes/{debit_note_id}/accept", tag = "payment", params(("debit_note_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")), request_body = Acceptance,
    responses((status = 200, description = "accepted"), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such debit note", body = super::ErrorMessage), (status = 409, description = "not in a state for it", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn accept_debit_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
    Body(body): Body<Acceptance>,
) -> Result<StatusCode, ApiError> {
    accept(&state, &caller, Kind::DebitNote, &id, body).await
}

#[utoipa::path(post, path = "/payment-api/v1/invoices/{invoice_id}/accept", tag = "payment", params(("invoice_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")), request_body = Acceptance,
    responses((status = 200, description = "accepted"), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such invoice", body = super::ErrorMessage), (status = 409, description = "not in a state for it", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn accept_invoice(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
    Body(body): Body<Acceptance>,
) -> Result<StatusCode, ApiError> {
    accept(&state, &caller, Kind::Invoice, &id, body).await
}

#[utoipa::path(post, path = "/payment-api/v1/debitNotes/{debit_note_id}/reject", tag = "payment", params(("debit_note_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")), request_body = Rejection,
    responses((status = 200, description = "rejected"), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such debit note", body = super::ErrorMessage), (status = 409, description = "not in a state for it", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn reject_debit_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
    Body(body): Body<Rejection>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, Owned::Document(Kind::DebitNote, &id))
        .await?
        .reject(Kind::DebitNote, &id, body)
        .await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(post, path = "/payment-api/v1/invoices/{invoice_id}/reject", tag = "payment", params(("invoice_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")), request_body = Rejection,
    responses((status = 200, description = "rejected"), (status = 400, description = "a field is wrong", body = super::ErrorMessage),
              (status = 404, description = "no such invoice", body = super::ErrorMessage), (status = 409, description = "not in a state for it", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn reject_invoice(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
    Body(body): Body<Rejection>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, Owned::Document(Kind::Invoice, &id))
        .await?
        .reject(Kind::Invoice, &id, body)
        .await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(get, path = "/payment-api/v1/payments", tag = "payment", params(ListParams),
    responses((status = 200, description = "payments made and received", body = Vec<Object>), (status = 400, description = "a parameter is wrong", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn payments(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let owner = caller.owner();
    let timeout = seconds("timeout", p.timeout, Duration::ZERO, MAX_POLL)?;
    let service = service(&state)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found = service.payments(p.after()?, p.max(), caller.scope(&owner)).await?;
        if !found.is_empty() || tokio::time::Instant::now() >= deadline || state.shutdown.is_cancelled() {
            return Ok(Json(serde_json::json!(found)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[utoipa::path(get, path = "/payment-api/v1/payments/{payment_id}", tag = "payment", params(("payment_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "the payment", body = Object), (status = 404, description = "no such payment", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn payment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, ApiError> {
    let owner = caller.owner();
    Ok(Json(serde_json::json!(service(&state)?.payment(&id, caller.scope(&owner)).await?)))
}

#[utoipa::path(get, path = "/payment-api/v1/payments/status", tag = "payment",
    responses((status = 200, description = "each platform's driver", body = Vec<Object>)), security(("bearer" = [])))]
async fn driver_status(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.driver_status()))
}

#[utoipa::path(get, path = "/payment-api/v1/requestorAccounts", tag = "payment",
    responses((status = 200, description = "accounts this node pays from", body = Vec<Object>)), security(("bearer" = [])))]
async fn requestor_accounts(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.accounts(true)))
}

#[utoipa::path(get, path = "/payment-api/v1/providerAccounts", tag = "payment",
    responses((status = 200, description = "accounts this node is paid to", body = Vec<Object>)), security(("bearer" = [])))]
async fn provider_accounts(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.accounts(false)))
}

/// agora's own payment endpoints, under `/admin/v1/payment`: the account's status, and the dev
/// faucet.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(account_status)).routes(routes!(fund))
}

#[utoipa::path(get, path = "/admin/v1/payment/status", tag = "admin",
    responses((status = 200, description = "the account on each platform", body = Vec<Object>),
              (status = 403, description = "not the admin token", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn account_status(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.status().await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Fund {
    /// The dev platform to fund; the node's dev platform when absent.
    platform: Option<String>,
}

#[utoipa::path(post, path = "/admin/v1/payment/fund", tag = "admin", request_body = Fund,
    responses((status = 200, description = "funded from the dev faucet", body = Object),
              (status = 400, description = "not a dev platform", body = super::ErrorMessage), (status = 403, description = "not the admin token", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn fund(State(state): State<AppState>, Body(body): Body<Fund>) -> Result<Json<Value>, ApiError> {
    Ok(Json(service(&state)?.fund(body.platform.as_deref()).await?))
}
