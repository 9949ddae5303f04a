//! `/payment-api/v1`: Golem's payment API paths and JSON.

use super::{ApiError, AppState, Body, Ids, Params, seconds, until_shutdown};
use agora_payment::model::{Acceptance, AllocationUpdate, Kind, NewAllocation, Rejection};
use agora_payment::{NewDebitNote, NewInvoice, Payments};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/allocations", get(allocations).post(create_allocation))
        .route(
            "/allocations/{allocation_id}",
            get(allocation).put(amend_allocation).delete(release_allocation),
        )
        .route("/demandDecorations", get(demand_decorations))
        .route("/debitNotes", get(debit_notes).post(issue_debit_note))
        .route("/debitNotes/{debit_note_id}", get(debit_note))
        .route("/debitNotes/{debit_note_id}/send", post(send_debit_note))
        .route("/debitNotes/{debit_note_id}/cancel", post(cancel_debit_note))
        .route("/debitNotes/{debit_note_id}/accept", post(accept_debit_note))
        .route("/debitNotes/{debit_note_id}/reject", post(reject_debit_note))
        .route("/debitNoteEvents", get(debit_note_events))
        .route("/invoices", get(invoices).post(issue_invoice))
        .route("/invoices/{invoice_id}", get(invoice))
        .route("/invoices/{invoice_id}/send", post(send_invoice))
        .route("/invoices/{invoice_id}/cancel", post(cancel_invoice))
        .route("/invoices/{invoice_id}/accept", post(accept_invoice))
        .route("/invoices/{invoice_id}/reject", post(reject_invoice))
        .route("/invoiceEvents", get(invoice_events))
        .route("/payments", get(payments))
        .route("/payments/status", get(driver_status))
        .route("/payments/{payment_id}", get(payment))
        .route("/requestorAccounts", get(requestor_accounts))
        .route("/providerAccounts", get(provider_accounts))
}

fn service(state: &AppState) -> Result<&Payments, ApiError> {
    state.payments.as_ref().ok_or_else(|| ApiError::NotFound("this node does not serve payments".into()))
}

/// The longest an event poll waits.
const MAX_POLL: Duration = Duration::from_secs(300);
/// An event poll's wait when it names none.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// The most items one answer holds.
const MAX_ITEMS: i64 = 1000;

/// Golem's list and poll parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    after_timestamp: Option<String>,
    timeout: Option<f64>,
    max_events: Option<i64>,
    max_items: Option<i64>,
    // Golem's SDKs send these; one node serves one session, and the driver is erc20.
    #[serde(rename = "appSessionId")]
    _app_session_id: Option<String>,
    #[serde(rename = "network")]
    _network: Option<String>,
    #[serde(rename = "driver")]
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

async fn create_allocation(
    State(state): State<AppState>,
    Body(body): Body<NewAllocation>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let allocation = service(&state)?.create_allocation(body).await?;
    Ok((StatusCode::CREATED, Json(allocation.view())))
}

async fn allocations(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.allocations().await?.iter().map(|a| a.view()).collect()))
}

async fn allocation(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(service(&state)?.allocation(&id).await?.view()))
}

async fn amend_allocation(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Body(update): Body<AllocationUpdate>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(service(&state)?.amend_allocation(&id, update).await?.view()))
}

async fn release_allocation(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.release_allocation(&id).await?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecorationParams {
    allocation_ids: Option<String>,
}

async fn demand_decorations(
    State(state): State<AppState>,
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
    Ok(Json(service(&state)?.demand_decorations(&ids).await?))
}

async fn list(state: &AppState, kind: Kind, params: &ListParams) -> Result<Json<Vec<Value>>, ApiError> {
    let rows = service(state)?.documents(kind, params.after()?, params.max()).await?;
    Ok(Json(rows.iter().map(|r| r.view()).collect()))
}

async fn events(state: &AppState, kind: Kind, params: &ListParams) -> Result<Json<Vec<Value>>, ApiError> {
    let timeout = seconds("timeout", params.timeout, DEFAULT_POLL, MAX_POLL)?;
    let payments = service(state)?;
    let found = until_shutdown(state, async {
        payments.events(kind, params.after()?, params.max(), timeout).await.map_err(ApiError::from)
    })
    .await?;
    Ok(Json(found))
}

async fn issue_debit_note(
    State(state): State<AppState>,
    Body(body): Body<NewDebitNote>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(service(&state)?.issue_debit_note(body).await?.view())))
}

async fn issue_invoice(
    State(state): State<AppState>,
    Body(body): Body<NewInvoice>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(service(&state)?.issue_invoice(body).await?.view())))
}

async fn debit_notes(
    State(state): State<AppState>,
    Params(p): Params<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    list(&state, Kind::DebitNote, &p).await
}

async fn invoices(
    State(state): State<AppState>,
    Params(p): Params<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    list(&state, Kind::Invoice, &p).await
}

async fn debit_note(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(service(&state)?.document(Kind::DebitNote, &id).await?.view()))
}

async fn invoice(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(service(&state)?.document(Kind::Invoice, &id).await?.view()))
}

async fn debit_note_events(
    State(state): State<AppState>,
    Params(p): Params<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    events(&state, Kind::DebitNote, &p).await
}

async fn invoice_events(
    State(state): State<AppState>,
    Params(p): Params<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    events(&state, Kind::Invoice, &p).await
}

async fn send_debit_note(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.send(Kind::DebitNote, &id).await?;
    Ok(StatusCode::OK)
}

async fn send_invoice(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<StatusCode, ApiError> {
    service(&state)?.send(Kind::Invoice, &id).await?;
    Ok(StatusCode::OK)
}

async fn cancel_debit_note(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.cancel(Kind::DebitNote, &id).await?;
    Ok(StatusCode::OK)
}

async fn cancel_invoice(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<StatusCode, ApiError> {
    service(&state)?.cancel(Kind::Invoice, &id).await?;
    Ok(StatusCode::OK)
}

async fn accept_debit_note(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Body(body): Body<Acceptance>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.accept(Kind::DebitNote, &id, body).await?;
    Ok(StatusCode::OK)
}

async fn accept_invoice(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Body(body): Body<Acceptance>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.accept(Kind::Invoice, &id, body).await?;
    Ok(StatusCode::OK)
}

async fn reject_debit_note(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Body(body): Body<Rejection>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.reject(Kind::DebitNote, &id, body).await?;
    Ok(StatusCode::OK)
}

async fn reject_invoice(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Body(body): Body<Rejection>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.reject(Kind::Invoice, &id, body).await?;
    Ok(StatusCode::OK)
}

async fn payments(
    State(state): State<AppState>,
    Params(p): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let timeout = seconds("timeout", p.timeout, Duration::ZERO, MAX_POLL)?;
    let service = service(&state)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found = service.payments(p.after()?, p.max()).await?;
        if !found.is_empty() || tokio::time::Instant::now() >= deadline || state.shutdown.is_cancelled() {
            return Ok(Json(serde_json::json!(found)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn payment(State(state): State<AppState>, Ids(id): Ids<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::json!(service(&state)?.payment(&id).await?)))
}

async fn driver_status(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.driver_status()))
}

async fn requestor_accounts(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.accounts(true)))
}

async fn provider_accounts(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.accounts(false)))
}

/// agora's own payment endpoints, under `/admin/v1/payment`: the account's status, and the dev
/// faucet.
pub fn admin_routes() -> axum::Router<AppState> {
    axum::Router::new().route("/status", get(account_status)).route("/fund", post(fund))
}

async fn account_status(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(service(&state)?.status().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fund {
    platform: Option<String>,
}

async fn fund(State(state): State<AppState>, Body(body): Body<Fund>) -> Result<Json<Value>, ApiError> {
    Ok(Json(service(&state)?.fund(body.platform.as_deref()).await?))
}
