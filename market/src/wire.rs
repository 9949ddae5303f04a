//! What market nodes say to each other: gossip announcements, and directed requests.

use crate::Offer;
use agora_agreement::AgreementBody;
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

/// Directed requests over `/agora/market/2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MarketRequest {
    GetOffer {
        offer_id: String,
    },
    /// An announcement sent straight to one peer: to a node that just joined the offers topic.
    Announce {
        announcement: Announcement,
    },
    /// A counter-proposal, in either direction.
    Proposal {
        proposal: WireProposal,
    },
    RejectProposal {
        proposal_id: String,
        reason: Option<serde_json::Value>,
    },
    /// The requestor's signed agreement, for the provider to approve or reject.
    ProposeAgreement {
        agreement: AgreementBody,
        signature: String,
    },
    ApproveAgreement {
        agreement_id: String,
        signature: String,
    },
    RejectAgreement {
        agreement_id: String,
        reason: Option<serde_json::Value>,
    },
    CancelAgreement {
        agreement_id: String,
        reason: Option<serde_json::Value>,
    },
    TerminateAgreement {
        agreement_id: String,
        reason: Option<serde_json::Value>,
    },
}

impl MarketRequest {
    /// The ids a request names, to be checked before anything looks them up.
    pub fn ids(&self) -> Vec<&str> {
        match self {
            Self::GetOffer { offer_id } => vec![offer_id],
            Self::Announce { announcement } => match announcement {
                Announcement::Offered { offer_ids } | Announcement::Unsubscribed { offer_ids } => {
                    offer_ids.iter().map(String::as_str).collect()
                }
            },
            Self::Proposal { proposal } => {
                vec![
                    &proposal.proposal_id,
                    &proposal.prev_proposal_id,
                    &proposal.demand_id,
                    &proposal.offer_id,
                ]
            }
            Self::RejectProposal { proposal_id, .. } => vec![proposal_id],
            Self::ProposeAgreement { agreement, .. } => vec![
                &agreement.agreement_id,
                &agreement.demand.demand_id,
                &agreement.demand.proposal_id,
                &agreement.offer.offer_id,
                &agreement.offer.proposal_id,
            ],
            Self::ApproveAgreement { agreement_id, .. }
            | Self::RejectAgreement { agreement_id, .. }
            | Self::CancelAgreement { agreement_id, .. }
            | Self::TerminateAgreement { agreement_id, .. } => vec![agreement_id],
        }
    }
}

/// Answers to [`MarketRequest`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MarketResponse {
    Offer {
        offer: Option<OfferBody>,
    },
    Ack,
    /// Refused. `retry`: the refusal is the answering node's own failure (its database, say),
    /// and the same request may succeed later; otherwise it never will.
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retry: bool,
    },
}

/// A proposal as it travels between the two sides of a negotiation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireProposal {
    pub proposal_id: String,
    pub prev_proposal_id: String,
    pub demand_id: String,
    pub offer_id: String,
    pub issuer_id: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub timestamp: DateTime<Utc>,
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
