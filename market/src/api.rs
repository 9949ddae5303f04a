//! Golem's market API shapes (ya-client `market-api.yaml`), as agora serves them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The body of a subscription or counter-proposal: flat (or nested) properties and constraints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemandOfferBase {
    pub properties: serde_json::Value,
    pub constraints: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferView {
    pub offer_id: String,
    pub provider_id: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemandView {
    pub demand_id: String,
    pub requestor_id: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProposalView {
    pub proposal_id: String,
    pub issuer_id: String,
    pub state: String,
    pub timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_proposal_id: Option<String>,
    pub properties: serde_json::Value,
    pub constraints: String,
}

/// One market event, tagged by `eventType` as Golem's clients expect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "eventType")]
pub enum Event {
    #[serde(rename = "ProposalEvent")]
    Proposal {
        #[serde(rename = "eventDate")]
        event_date: DateTime<Utc>,
        proposal: ProposalView,
    },
    #[serde(rename = "AgreementEvent")]
    Agreement {
        #[serde(rename = "eventDate")]
        event_date: DateTime<Utc>,
        agreement: AgreementView,
    },
    #[serde(rename = "ProposalRejectedEvent")]
    ProposalRejected {
        #[serde(rename = "eventDate")]
        event_date: DateTime<Utc>,
        #[serde(rename = "proposalId")]
        proposal_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<serde_json::Value>,
    },
}

/// `POST /agreements` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementProposal {
    pub proposal_id: String,
    pub valid_to: DateTime<Utc>,
}

/// An agreement as Golem's API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementView {
    pub agreement_id: String,
    pub demand: serde_json::Value,
    pub offer: serde_json::Value,
    pub valid_to: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_date: Option<DateTime<Utc>>,
    pub state: String,
    pub timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_signature: Option<String>,
    /// Which side of the agreement this node is (agora's addition).
    pub role: String,
}

/// `{"message": …}` with optional extra fields, as Golem's `Reason`.
pub type Reason = serde_json::Value;

/// An agreement-related event (`/agreementEvents`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementEvent {
    pub event_type: String,
    pub event_date: DateTime<Utc>,
    pub agreement_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}
