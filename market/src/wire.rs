//! What market nodes say to each other: gossip announcements, and directed requests.

use crate::Offer;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The gossip topic of offer announcements.
pub const OFFERS_TOPIC: &str = "agora/offers/1";

/// Announced on [`OFFERS_TOPIC`]: ids only; bodies are fetched from the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Announcement {
    Offered { offer_ids: Vec<String> },
    Unsubscribed { offer_ids: Vec<String> },
}

/// Directed requests over `/agora/market/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MarketRequest {
    GetOffer { offer_id: String },
}

/// Answers to [`MarketRequest`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MarketResponse {
    Offer { offer: Option<OfferBody> },
    Error { message: String },
}

/// An offer as it travels: everything its id commits to, and the id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferBody {
    pub offer_id: String,
    pub provider_id: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub timestamp: DateTime<Utc>,
    pub expiration: DateTime<Utc>,
}

impl OfferBody {
    pub fn of(offer: &Offer) -> Self {
        Self {
            offer_id: offer.id(),
            provider_id: format!("{:#x}", offer.provider_id),
            properties: serde_json::to_value(&offer.properties).unwrap_or_default(),
            constraints: offer.constraints.clone(),
            timestamp: offer.timestamp,
            expiration: offer.expiration,
        }
    }
}
