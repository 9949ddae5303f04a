//! `/market-api/v1`: Golem's market API paths and JSON.

use super::{ApiError, AppState, Body, Caller, Ids, Params, check_id, seconds, until_shutdown};
use agora_market::api::{
    AgreementEvent, AgreementProposal, AgreementView, DemandOfferBase, DemandView, Event, OfferView,
    ProposalView,
};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::time::Duration;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_offers, subscribe_offer))
        .routes(routes!(unsubscribe_offer))
        .routes(routes!(list_demands, subscribe_demand))
        .routes(routes!(unsubscribe_demand))
        .routes(routes!(collect_offers))
        .routes(routes!(get_proposal_offer, counter_proposal_demand))
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct Poll {
    /// Seconds to wait for an event (5 when absent, at most 300).
    #[param(minimum = 0)]
    timeout: Option<f64>,
    /// The most events to return (10 when absent, 1 to 1000).
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

#[utoipa::path(post, path = "/market-api/v1/offers", tag = "market", request_body = DemandOfferBase,
    responses((status = 201, description = "the offer's subscription id", body = String),
              (status = 400, description = "bad properties or constraints", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn subscribe_offer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
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
    let id = state.market.subscribe_offer(&body, &caller.owner()).await?;
    Ok((StatusCode::CREATED, Json(id)))
}

#[utoipa::path(get, path = "/market-api/v1/offers", tag = "market",
    responses((status = 200, description = "this node's offers", body = Vec<OfferView>)), security(("bearer" = [])))]
async fn list_offers(State(state): State<AppState>) -> Result<Json<Vec<OfferView>>, ApiError> {
    Ok(Json(state.market.offers().await?))
}

#[utoipa::path(delete, path = "/market-api/v1/offers/{subscription_id}", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription")),
    responses((status = 204, description = "unsubscribed"), (status = 404, description = "no such offer", body = super::ErrorMessage),
              (status = 410, description = "already unsubscribed", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn unsubscribe_offer(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    state.market.unsubscribe_offer(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/market-api/v1/demands", tag = "market", request_body = DemandOfferBase,
    responses((status = 201, description = "the demand's subscription id", body = String),
              (status = 400, description = "bad properties or constraints", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn subscribe_demand(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<DemandOfferBase>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.market.subscribe_demand(&body, &caller.owner()).await?)))
}

#[utoipa::path(get, path = "/market-api/v1/demands", tag = "market",
    responses((status = 200, description = "this node's demands", body = Vec<DemandView>)), security(("bearer" = [])))]
async fn list_demands(State(state): State<AppState>) -> Result<Json<Vec<DemandView>>, ApiError> {
    Ok(Json(state.market.demands().await?))
}

#[utoipa::path(delete, path = "/market-api/v1/demands/{subscription_id}", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription")),
    responses((status = 204, description = "unsubscribed"), (status = 404, description = "no such demand", body = super::ErrorMessage),
              (status = 410, description = "already unsubscribed", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn unsubscribe_demand(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    state.market.unsubscribe_demand(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/market-api/v1/demands/{subscription_id}/events", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription"), Poll),
    responses((status = 200, description = "proposals and other events for the demand", body = Vec<Event>),
              (status = 404, description = "no such demand", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn collect_offers(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Params(poll): Params<Poll>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let events = state.market.collect_demand_events(&id, poll.timeout()?, poll.max_events());
    // An unsubscribed demand is not found, as in Golem: its SDKs subscribe again on 404 only.
    let events = async {
        events.await.map_err(|e| match e {
            agora_market::Error::Gone(message) => ApiError::NotFound(message),
            other => other.into(),
        })
    };
    Ok(Json(until_shutdown(&state, events).await?))
}

#[utoipa::path(get, path = "/market-api/v1/demands/{subscription_id}/proposals/{proposal_id}", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription"), ("proposal_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "a proposal", body = ProposalView),
              (status = 404, description = "no such proposal", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn get_proposal_offer(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
) -> Result<Json<ProposalView>, ApiError> {
    Ok(Json(state.market.demand_proposal(&id, &proposal_id).await?))
}

/// Routes of negotiation and agreements.
pub fn negotiation_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(collect_demands))
        .routes(routes!(get_proposal_demand, counter_proposal_offer))
        .routes(routes!(reject_proposal))
        .routes(routes!(reject_demand_proposal))
        .routes(routes!(list_agreements, create_agreement))
        .routes(routes!(get_agreement, cancel_agreement))
        .routes(routes!(confirm_agreement))
        .routes(routes!(wait_for_approval))
        .routes(routes!(approve_agreement))
        .routes(routes!(reject_agreement))
        .routes(routes!(terminate_agreement))
        .routes(routes!(agreement_events))
        .routes(routes!(agreement_events_nested))
}

/// An optional `{"message": …}` body: none, `null` or an object, as the document says.
async fn reason(body: axum::body::Bytes) -> Result<Option<serde_json::Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(reason @ serde_json::Value::Object(_)) => Ok(Some(reason)),
        Ok(other) => Err(ApiError::BadRequest(format!(
            "reason: an object such as {{\"message\": \"…\"}}, or nothing; got {}",
            other.to_string().chars().take(80).collect::<String>()
        ))),
        Err(e) => Err(ApiError::BadRequest(format!("reason: {e}"))),
    }
}

#[utoipa::path(get, path = "/market-api/v1/offers/{subscription_id}/events", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription"), Poll),
    responses((status = 200, description = "proposals and other events for the offer", body = Vec<Event>),
              (status = 404, description = "no such offer", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn collect_demands(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Params(poll): Params<Poll>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let events = state.market.collect_offer_events(&id, poll.timeout()?, poll.max_events());
    Ok(Json(until_shutdown(&state, async { Ok(events.await?) }).await?))
}

#[utoipa::path(get, path = "/market-api/v1/offers/{subscription_id}/proposals/{proposal_id}", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription"), ("proposal_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "a proposal", body = ProposalView),
              (status = 404, description = "no such proposal", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn get_proposal_demand(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
) -> Result<Json<ProposalView>, ApiError> {
    Ok(Json(state.market.offer_proposal(&id, &proposal_id).await?))
}

#[utoipa::path(post, path = "/market-api/v1/offers/{subscription_id}/proposals/{proposal_id}", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription"), ("proposal_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    request_body = DemandOfferBase,
    responses((status = 201, description = "the counter-proposal's id", body = String),
              (status = 404, description = "no such proposal", body = super::ErrorMessage),
              (status = 410, description = "the proposal is no longer open", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn counter_proposal_offer(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
    Body(body): Body<DemandOfferBase>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    let new_id = state.market.counter_proposal(&id, &proposal_id, &body, true).await?;
    Ok((StatusCode::CREATED, Json(new_id)))
}

#[utoipa::path(post, path = "/market-api/v1/demands/{subscription_id}/proposals/{proposal_id}", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription"), ("proposal_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    request_body = DemandOfferBase,
    responses((status = 201, description = "the counter-proposal's id", body = String),
              (status = 404, description = "no such proposal", body = super::ErrorMessage),
              (status = 410, description = "the proposal is no longer open", body = super::ErrorMessage)), security(("bearer" = [])))]
pub(super) async fn counter_proposal_demand(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
    Body(body): Body<DemandOfferBase>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    let new_id = state.market.counter_proposal(&id, &proposal_id, &body, false).await?;
    Ok((StatusCode::CREATED, Json(new_id)))
}

/// Rejects the other side's proposal: the same on an offer (provider) and a demand (requestor).
#[utoipa::path(post, path = "/market-api/v1/offers/{subscription_id}/proposals/{proposal_id}/reject", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the offer or demand subscription"), ("proposal_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    request_body(content = Option<Object>, description = "an optional reason, `{\"message\": …}`"),
    responses((status = 204, description = "rejected"), (status = 404, description = "no such proposal", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn reject_proposal(
    State(state): State<AppState>,
    Ids((id, proposal_id)): Ids<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    state.market.reject_proposal(&id, &proposal_id, reason(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// [`reject_proposal`], on the requestor's side.
#[utoipa::path(post, path = "/market-api/v1/demands/{subscription_id}/proposals/{proposal_id}/reject", tag = "market", params(("subscription_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$"), ("proposal_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    request_body(content = Option<Object>, description = "an optional reason"),
    responses((status = 204, description = "rejected"), (status = 404, description = "no such proposal", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn reject_demand_proposal(
    state: State<AppState>,
    ids: Ids<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    reject_proposal(state, ids, body).await
}

#[utoipa::path(post, path = "/market-api/v1/agreements", tag = "market", request_body = AgreementProposal,
    responses((status = 201, description = "the agreement's id", body = String),
              (status = 404, description = "no such proposal", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn create_agreement(
    State(state): State<AppState>,
    Body(body): Body<agora_market::api::AgreementProposal>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    check_id("proposalId", &body.proposal_id)?;
    let id = state.market.create_agreement(&body.proposal_id, body.valid_to).await?;
    Ok((StatusCode::CREATED, Json(id)))
}

#[utoipa::path(get, path = "/market-api/v1/agreements", tag = "market",
    responses((status = 200, description = "this node's agreements", body = Vec<AgreementView>)), security(("bearer" = [])))]
async fn list_agreements(
    State(state): State<AppState>,
) -> Result<Json<Vec<agora_market::api::AgreementView>>, ApiError> {
    Ok(Json(state.market.agreements().await?.iter().map(AgreementView::from).collect()))
}

#[utoipa::path(get, path = "/market-api/v1/agreements/{agreement_id}", tag = "market", params(("agreement_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "the agreement", body = AgreementView),
              (status = 404, description = "no such agreement", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn get_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<Json<agora_market::api::AgreementView>, ApiError> {
    Ok(Json(AgreementView::from(&state.market.agreement(&id).await?)))
}

#[utoipa::path(post, path = "/market-api/v1/agreements/{agreement_id}/confirm", tag = "market", params(("agreement_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 204, description = "sent to the provider"), (status = 404, description = "no such agreement", body = super::ErrorMessage),
              (status = 409, description = "not in a state to confirm", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn confirm_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<StatusCode, ApiError> {
    state.market.confirm_agreement(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/market-api/v1/agreements/{agreement_id}/approve", tag = "market", params(("agreement_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "approved", body = String), (status = 404, description = "no such agreement", body = super::ErrorMessage),
              (status = 409, description = "not in a state to approve", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn approve_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
) -> Result<Json<String>, ApiError> {
    Ok(Json(state.market.approve_agreement(&id).await?.to_string()))
}

#[utoipa::path(post, path = "/market-api/v1/agreements/{agreement_id}/reject", tag = "market", params(("agreement_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    request_body(content = Option<Object>, description = "an optional reason"),
    responses((status = 204, description = "rejected"), (status = 404, description = "no such agreement", body = super::ErrorMessage),
              (status = 409, description = "not in a state to reject", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn reject_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    state.market.reject_agreement(&id, reason(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/market-api/v1/agreements/{agreement_id}", tag = "market", params(("agreement_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    request_body(content = Option<Object>, description = "an optional reason"),
    responses((status = 204, description = "cancelled"), (status = 404, description = "no such agreement", body = super::ErrorMessage),
              (status = 409, description = "not in a state to cancel", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn cancel_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    state.market.cancel_agreement(&id, reason(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/market-api/v1/agreements/{agreement_id}/terminate", tag = "market", params(("agreement_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$")),
    request_body(content = Option<Object>, description = "an optional reason"),
    responses((status = 204, description = "terminated"), (status = 404, description = "no such agreement", body = super::ErrorMessage),
              (status = 409, description = "not in a state to terminate", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn terminate_agreement(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    state.market.terminate_agreement(&id, reason(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Golem's `timeout` (seconds) for `wait`; answers 408 when it runs out.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Wait {
    /// Seconds to wait (5 when absent, at most 300).
    #[param(minimum = 0)]
    timeout: Option<f64>,
}

#[utoipa::path(post, path = "/market-api/v1/agreements/{agreement_id}/wait", tag = "market", params(("agreement_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$"), Wait),
    responses((status = 204, description = "approved by the provider"),
              (status = 404, description = "no such agreement", body = super::ErrorMessage),
              (status = 410, description = "rejected, cancelled or expired: it will not be approved", body = super::ErrorMessage),
              (status = 408, description = "still pending when the wait ran out", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn wait_for_approval(
    State(state): State<AppState>,
    Ids(id): Ids<String>,
    Params(wait): Params<Wait>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let timeout = Poll { timeout: wait.timeout, max_events: None }.timeout()?;
    let waited =
        until_shutdown(&state, async { Ok(state.market.wait_for_approval(&id, timeout).await?) }).await?;
    // Golem's answers: 204 once approved, 410 for an end that is final (Golem's SDKs read the
    // status alone), 408 while it is still pending.
    Ok(match waited {
        Some(agora_agreement::AgreementState::Approved) => StatusCode::NO_CONTENT.into_response(),
        Some(outcome) => {
            ApiError::Gone(format!("agreement {id} is {outcome}: it will not be approved")).into_response()
        }
        None => (
            StatusCode::REQUEST_TIMEOUT,
            Json(serde_json::json!({"message": format!("agreement {id} is still pending")})),
        )
            .into_response(),
    })
}

/// `/agreementEvents` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct AgreementPoll {
    /// Seconds to wait for an event (5 when absent, at most 300).
    #[param(minimum = 0)]
    timeout: Option<f64>,
    /// The most events to return (10 when absent, 1 to 1000).
    max_events: Option<usize>,
    /// Only events after this time.
    after_timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

#[utoipa::path(get, path = "/market-api/v1/agreementEvents", tag = "market", params(AgreementPoll),
    responses((status = 200, description = "agreement events after `afterTimestamp`", body = Vec<AgreementEvent>),
              (status = 400, description = "a parameter is wrong", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn agreement_events(
    State(state): State<AppState>,
    Params(poll): Params<AgreementPoll>,
) -> Result<Json<Vec<agora_market::api::AgreementEvent>>, ApiError> {
    let p = Poll { timeout: poll.timeout, max_events: poll.max_events };
    let events = state.market.agreement_events(poll.after_timestamp, p.timeout()?, p.max_events() as i64);
    let events = until_shutdown(&state, async { Ok(events.await?) }).await?;
    Ok(Json(events))
}

/// [`agreement_events`] at the path older clients use.
#[utoipa::path(get, path = "/market-api/v1/agreements/events", tag = "market", params(AgreementPoll),
    responses((status = 200, description = "agreement events after `afterTimestamp`", body = Vec<AgreementEvent>),
              (status = 400, description = "a parameter is wrong", body = super::ErrorMessage)), security(("bearer" = [])))]
async fn agreement_events_nested(
    state: State<AppState>,
    poll: Params<AgreementPoll>,
) -> Result<Json<Vec<AgreementEvent>>, ApiError> {
    agreement_events(state, poll).await
}
