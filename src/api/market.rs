//! `/market-api/v1`: Golem's market API paths and JSON.

use super::{ApiError, AppState, Body, Ids, Params, check_id, seconds, until_shutdown};
use agora_market::api::{DemandOfferBase, DemandView, Event, OfferView, ProposalView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use std::time::Duration;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/offers", get(list_offers).post(subscribe_offer))
        .route("/offers/{subscription_id}", axum::routing::delete(unsubscribe_offer))
        .route("/demands", get(list_demands).post(subscribe_demand))
        .route("/demands/{subscription_id}", axum::routing::delete(unsubscribe_demand))
        .route("/demands/{subscription_id}/events", get(collect_offers))
        .route(
            "/demands/{subscription_id}/proposals/{proposal_id}",
            get(get_proposal_offer).post(counter_proposal_demand),
        )
        .merge(negotiation_routes())
}

/// The longest a long poll (events, `wait`) waits; a larger `timeout` waits this long. Golem's
/// SDKs poll with a few seconds.
pub const MAX_POLL: Duration = Duration::from_secs(300);
/// A long poll's wait when it names none (Golem's `pollTimeout` default).
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// The most events one poll returns.
const MAX_EVENTS: usize = 1000;

/// Golem's long-poll parameters: `timeout` in seconds, `maxEvents`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Poll {
    timeout: Option<f64>,
    max_events: Option<usize>,
}

impl Poll {
    fn timeout(&self) -> Result<Duration, ApiError> {
        seconds("timeout", self.timeout, DEFAULT_POLL, MAX_POLL)
    }

    fn max_events(&self) -> usize {
        self.max_events.unwrap_or(10).clamp(1, MAX_EVENTS)
    }
}

async fn subscribe_offer(
    State(state): State<AppState>,
    Body(mut body): Body<DemandOfferBase>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    let declared = agora_grammar::flatten(&body.properties).unwrap_or_default();
    if let Some(properties) = body.properties.as_object_mut() {
        // Compute-to-data: the offer advertises the digests of the datasets this node holds.
        if !state.datasets.is_empty() {
            properties.insert("agora.datasets".into(), serde_json::json!(state.datasets));
        }
        // What `/usage` counts, in its order, as Golem's SDKs read it from the offer.
        if !declared.contains_key("golem.com.usage.vector") {
            properties.insert(
                "golem.com.usage.vector".into(),
                serde_json::json!(agora_activity::wire::USAGE_VECTOR),
            );
        }
    }
    // The market announces it to the network.
    let id = state.market.subscribe_offer(&body).await?;
    Ok((StatusCode::CREATED, Json(id)))
}

async fn list_offers(State(state): State<AppState>) -> Result<Json<Vec<OfferView>>, ApiError> {
    Ok(Json(state.market.offers().await?))
}

async fn unsubscribe_offer(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    state.market.unsubscribe_offer(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn subscribe_demand(
    State(state): State<AppState>,
    Body(body): Body<DemandOfferBase>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.market.subscribe_demand(&body).await?)))
}

async fn list_demands(State(state): State<AppState>) -> Result<Json<Vec<DemandView>>, ApiError> {
    Ok(Json(state.market.demands().await?))
}

async fn unsubscribe_demand(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    state.market.unsubscribe_demand(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn collect_offers(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Params(poll): Params<Poll>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let events = state.market.collect_demand_events(&id, poll.timeout()?, poll.max_events());
    Ok(Json(until_shutdown(&state, async { Ok(events.await?) }).await?))
}

async fn get_proposal_offer(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
) -> Result<Json<ProposalView>, ApiError> {
    Ok(Json(state.market.demand_proposal(&id, &proposal_id).await?))
}

/// Routes of negotiation and agreements.
pub fn negotiation_routes() -> axum::Router<AppState> {
    use axum::routing::post;
    axum::Router::new()
        .route("/offers/{subscription_id}/events", get(collect_demands))
        .route(
            "/offers/{subscription_id}/proposals/{proposal_id}",
            get(get_proposal_demand).post(counter_proposal_offer),
        )
        .route("/offers/{subscription_id}/proposals/{proposal_id}/reject", post(reject_proposal))
        .route("/demands/{subscription_id}/proposals/{proposal_id}/reject", post(reject_proposal))
        .route("/agreements", get(list_agreements).post(create_agreement))
        .route("/agreements/{agreement_id}", get(get_agreement).delete(cancel_agreement))
        .route("/agreements/{agreement_id}/confirm", post(confirm_agreement))
        .route("/agreements/{agreement_id}/wait", post(wait_for_approval))
        .route("/agreements/{agreement_id}/approve", post(approve_agreement))
        .route("/agreements/{agreement_id}/reject", post(reject_agreement))
        .route("/agreements/{agreement_id}/terminate", post(terminate_agreement))
        .route("/agreements/events", get(agreement_events))
        .route("/agreementEvents", get(agreement_events))
}

/// An optional `{"message": …}` body.
async fn reason(body: axum::body::Bytes) -> Result<Option<serde_json::Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body).map(Some).map_err(|e| ApiError::BadRequest(format!("reason: {e}")))
}

async fn collect_demands(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Params(poll): Params<Poll>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let events = state.market.collect_offer_events(&id, poll.timeout()?, poll.max_events());
    Ok(Json(until_shutdown(&state, async { Ok(events.await?) }).await?))
}

async fn get_proposal_demand(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
) -> Result<Json<ProposalView>, ApiError> {
    Ok(Json(state.market.offer_proposal(&id, &proposal_id).await?))
}

async fn counter_proposal_offer(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
    Body(body): Body<DemandOfferBase>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    let new_id = state.market.counter_proposal(&id, &proposal_id, &body, true).await?;
    Ok((StatusCode::CREATED, Json(new_id)))
}

pub(super) async fn counter_proposal_demand(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
    Body(body): Body<DemandOfferBase>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    let new_id = state.market.counter_proposal(&id, &proposal_id, &body, false).await?;
    Ok((StatusCode::CREATED, Json(new_id)))
}

/// Rejects the other side's proposal: the same on an offer (provider) and a demand (requestor).
async fn reject_proposal(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    state.market.reject_proposal(&id, &proposal_id, reason(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_agreement(
    State(state): State<AppState>,
    Body(body): Body<agora_market::api::AgreementProposal>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    check_id("proposalId", &body.proposal_id)?;
    let id = state.market.create_agreement(&body.proposal_id, body.valid_to).await?;
    Ok((StatusCode::CREATED, Json(id)))
}

async fn list_agreements(
    State(state): State<AppState>,
) -> Result<Json<Vec<agora_market::api::AgreementView>>, ApiError> {
    Ok(Json(state.market.agreements().await?.iter().map(agora_market::Agreement::view).collect()))
}

async fn get_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<Json<agora_market::api::AgreementView>, ApiError> {
    Ok(Json(state.market.agreement(&id).await?.view()))
}

async fn confirm_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    state.market.confirm_agreement(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn approve_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<Json<String>, ApiError> {
    Ok(Json(state.market.approve_agreement(&id).await?.to_string()))
}

async fn reject_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    state.market.reject_agreement(&id, reason(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    state.market.cancel_agreement(&id, reason(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn terminate_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    state.market.terminate_agreement(&id, reason(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Golem's `timeout` (seconds) for `wait`; answers 408 when it runs out.
#[derive(Debug, Deserialize)]
struct Wait {
    timeout: Option<f64>,
}

async fn wait_for_approval(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Params(wait): Params<Wait>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let timeout = Poll { timeout: wait.timeout, max_events: None }.timeout()?;
    let waited =
        until_shutdown(&state, async { Ok(state.market.wait_for_approval(&id, timeout).await?) }).await?;
    Ok(match waited {
        Some(outcome) => Json(outcome).into_response(),
        None => (
            StatusCode::REQUEST_TIMEOUT,
            Json(serde_json::json!({"message": format!("agreement {id} is still pending")})),
        )
            .into_response(),
    })
}

/// `/agreementEvents` parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgreementPoll {
    timeout: Option<f64>,
    max_events: Option<usize>,
    after_timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

async fn agreement_events(
    State(state): State<AppState>,
    Params(poll): Params<AgreementPoll>,
) -> Result<Json<Vec<agora_market::api::AgreementEvent>>, ApiError> {
    let p = Poll { timeout: poll.timeout, max_events: poll.max_events };
    let events = state.market.agreement_events(poll.after_timestamp, p.timeout()?, p.max_events() as i64);
    let events = until_shutdown(&state, async { Ok(events.await?) }).await?;
    Ok(Json(events))
}
