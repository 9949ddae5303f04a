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

/// What both parties sign: the agreement's terms, as canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementBody {
    pub agreement_id: String,
    pub demand: DemandTerms,
    pub offer: OfferTerms,
    pub valid_to: DateTime<Utc>,
    pub timestamp: DateTime<Utc>,
}

/// The requestor's final proposal: Golem's `Demand` in an agreement. Fields in alphabetical
/// order, so the REST JSON lists them as the canonical JSON does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DemandTerms {
    pub constraints: String,
    /// The demand subscription the negotiation started from.
    pub demand_id: String,
    pub properties: serde_json::Value,
    /// The requestor's proposal the provider's Draft answered.
    pub proposal_id: String,
    pub requestor_id: String,
    pub timestamp: DateTime<Utc>,
}

/// The provider's final proposal: Golem's `Offer` in an agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferTerms {
    pub constraints: String,
    /// The offer subscription the negotiation started from.
    pub offer_id: String,
    pub properties: serde_json::Value,
    /// The provider's Draft the agreement was made from.
    pub proposal_id: String,
    pub provider_id: String,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    /// A fixed agreement body, as both sides sign it.
    pub(crate) fn fixed_body() -> AgreementBody {
        let at = |s| Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, s).unwrap();
        AgreementBody {
            agreement_id: "9f".repeat(32),
            demand: DemandTerms {
                constraints: "(golem.runtime.name=wasmtime)".into(),
                demand_id: "d1".repeat(32),
                properties: json!({"golem.srv.comp.expiration": 1_900_000_000_000_u64,
                                   "golem.srv.comp.task_package": "blob:sha256:00"}),
                proposal_id: "b0".repeat(32),
                requestor_id: "0x1111111111111111111111111111111111111111".into(),
                timestamp: at(5),
            },
            offer: OfferTerms {
                constraints: "()".into(),
                offer_id: "0f".repeat(32),
                properties: json!({"golem.runtime.name": "wasmtime", "golem.inf.mem.gib": 0.5}),
                proposal_id: "a0".repeat(32),
                provider_id: "0x2222222222222222222222222222222222222222".into(),
                timestamp: at(6),
            },
            valid_to: at(50),
            timestamp: at(7),
        }
    }

    /// What both parties sign must not change by accident. (Changed on purpose once: the demand
    /// side became the requestor's final proposal, with its `proposalId`, and the offer side got
    /// its `timestamp`, as Golem's Agreement schema has it.): a change here breaks every signature
    /// between nodes of different versions.
    #[test]
    fn the_signed_agreement_body_is_pinned() {
        let bytes = agora_identity::canonical_json(&fixed_body()).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            r#"{"agreementId":"9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f","demand":{"constraints":"(golem.runtime.name=wasmtime)","demandId":"d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1","properties":{"golem.srv.comp.expiration":1900000000000,"golem.srv.comp.task_package":"blob:sha256:00"},"proposalId":"b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0","requestorId":"0x1111111111111111111111111111111111111111","timestamp":"2026-01-02T03:04:05Z"},"offer":{"constraints":"()","offerId":"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f","properties":{"golem.inf.mem.gib":0.5,"golem.runtime.name":"wasmtime"},"proposalId":"a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0","providerId":"0x2222222222222222222222222222222222222222","timestamp":"2026-01-02T03:04:06Z"},"timestamp":"2026-01-02T03:04:07Z","validTo":"2026-01-02T03:04:50Z"}"#
        );
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            "707198bfe68638aa9f34db48f2090ad85dedf6c8a24c1de39dfc8595573eb1d6"
        );
    }
}
