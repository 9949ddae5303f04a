//! `/market-api/v1`: Golem's market API paths and JSON.

use super::{ApiError, AppState, Body};
use agora_market::api::{DemandOfferBase, DemandView, Event, OfferView, ProposalView};
use axum::Json;
use axum::extract::{Path, Query, State};
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
        .route("/demands/{subscription_id}/proposals/{proposal_id}", get(get_proposal_offer))
}

/// The longest a long poll may wait.
const MAX_POLL: Duration = Duration::from_secs(300);
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
        match self.timeout {
            None => Ok(Duration::from_secs(5)),
            Some(t) if t.is_finite() && t >= 0.0 => Ok(Duration::from_secs_f64(t).min(MAX_POLL)),
            Some(t) => Err(ApiError::BadRequest(format!("timeout must be a number of seconds ≥ 0, got {t}"))),
        }
    }

    fn max_events(&self) -> usize {
        self.max_events.unwrap_or(10).clamp(1, MAX_EVENTS)
    }
}

async fn subscribe_offer(
    State(state): State<AppState>,
    Body(body): Body<DemandOfferBase>,
) -> Result<(StatusCode, Json<String>), ApiError> {
    let id = state.market.subscribe_offer(&body).await?;
    // Tell the network now rather than at the next periodic announcement.
    let announcement = agora_market::Announcement::Offered { offer_ids: vec![id.clone()] };
    crate::market::announce(&state.net, &announcement).await;
    Ok((StatusCode::CREATED, Json(id)))
}

async fn list_offers(State(state): State<AppState>) -> Result<Json<Vec<OfferView>>, ApiError> {
    Ok(Json(state.market.offers().await?))
}

async fn unsubscribe_offer(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let announcement = state.market.unsubscribe_offer(&id).await?;
    crate::market::announce(&state.net, &announcement).await;
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
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.market.unsubscribe_demand(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn collect_offers(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(poll): Query<Poll>,
) -> Result<Json<Vec<Event>>, ApiError> {
    Ok(Json(state.market.collect_demand_events(&id, poll.timeout()?, poll.max_events()).await?))
}

async fn get_proposal_offer(
    State(state): State<AppState>,
    Path((id, proposal_id)): Path<(String, String)>,
) -> Result<Json<ProposalView>, ApiError> {
    Ok(Json(state.market.demand_proposal(&id, &proposal_id).await?))
}
