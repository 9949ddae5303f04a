//! What both parties of an agreement sign: the requestor's and the provider's final proposals.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// Fixed values for tests, here and in the crates that read agreements.
#[cfg(any(test, feature = "test-utils"))]
pub mod fixtures {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    /// A fixed agreement body, as both sides sign it.
    pub fn fixed_body() -> AgreementBody {
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

    /// An approved agreement, seen by its requestor, whose demand and offer carry these
    /// properties; fixed addresses, ids and times.
    pub fn agreement(demand: serde_json::Value, offer: serde_json::Value) -> crate::Agreement {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let requestor: agora_identity::Address =
            "0x1111111111111111111111111111111111111111".parse().unwrap();
        let provider: agora_identity::Address = "0x2222222222222222222222222222222222222222".parse().unwrap();
        crate::Agreement {
            id: "ag".into(),
            role: crate::Role::Requestor,
            state: crate::AgreementState::Approved,
            requestor,
            provider,
            peer_id: "peer".into(),
            demand: DemandTerms {
                demand_id: "d".into(),
                proposal_id: "dp".into(),
                requestor_id: format!("{requestor:#x}"),
                properties: demand,
                constraints: "()".into(),
                timestamp: at,
            },
            offer: OfferTerms {
                offer_id: "o".into(),
                proposal_id: "op".into(),
                provider_id: format!("{provider:#x}"),
                properties: offer,
                constraints: "()".into(),
                timestamp: at,
            },
            valid_to: at,
            timestamp: at,
            proposed_signature: None,
            approved_signature: None,
            approved_date: None,
            reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::fixed_body;
    use sha2::{Digest, Sha256};

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
