//! Golem's market API shapes (ya-client `market-api.yaml`), as agora serves them.

use crate::state::ProposalState;
use agora_agreement::{Agreement, AgreementState, DemandTerms, OfferTerms, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The body of a subscription or counter-proposal: flat (or nested) properties and constraints.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DemandOfferBase {
    pub properties: serde_json::Value,
    pub constraints: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferView {
    pub offer_id: String,
    pub provider_id: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DemandView {
    pub demand_id: String,
    pub requestor_id: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalView {
    pub proposal_id: String,
    pub issuer_id: String,
    pub state: ProposalState,
    pub timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_proposal_id: Option<String>,
    pub properties: serde_json::Value,
    pub constraints: String,
}

/// One market event, tagged by `eventType` as Golem's clients expect.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
        agreement: Box<AgreementView>,
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgreementProposal {
    pub proposal_id: String,
    pub valid_to: DateTime<Utc>,
}

/// An agreement as Golem's API shows it (`AgreementView::from(&agreement)`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgreementView {
    pub agreement_id: String,
    pub demand: DemandTerms,
    pub offer: OfferTerms,
    pub valid_to: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_date: Option<DateTime<Utc>>,
    pub state: AgreementState,
    pub timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_signature: Option<String>,
    /// Which side of the agreement this node is (agora's addition).
    pub role: Role,
}

impl From<&Agreement> for AgreementView {
    /// Golem's `Agreement`, as `GET /market-api/v1/agreements/{id}` shows it.
    fn from(a: &Agreement) -> Self {
        Self {
            agreement_id: a.id.clone(),
            demand: a.demand.clone(),
            offer: a.offer.clone(),
            valid_to: a.valid_to,
            approved_date: a.approved_date,
            state: a.state,
            timestamp: a.timestamp,
            proposed_signature: a.proposed_signature.clone(),
            approved_signature: a.approved_signature.clone(),
            role: a.role,
        }
    }
}

/// `{"message": …}` with optional extra fields, as Golem's `Reason`.
pub type Reason = serde_json::Value;

/// A reason as kept: none for an absent or `null` one.
pub(crate) fn reason_of(message: Option<Reason>) -> Option<Reason> {
    message.filter(|r| !r.is_null())
}

/// A reason as Golem's clients read it: an object with a `message` string, which their models
/// require. Another shape keeps what it said: a bare string becomes the message, and an object
/// without one gets its own JSON text as the message beside its fields.
pub(crate) fn golem_reason(reason: Reason) -> Reason {
    match reason {
        serde_json::Value::Object(mut fields) => {
            if !fields.get("message").is_some_and(serde_json::Value::is_string) {
                let said = serde_json::Value::Object(fields.clone()).to_string();
                fields.insert("message".into(), serde_json::Value::String(said));
            }
            serde_json::Value::Object(fields)
        }
        serde_json::Value::String(message) => serde_json::json!({ "message": message }),
        other => serde_json::json!({ "message": other.to_string() }),
    }
}

/// An agreement-related event (`/agreementEvents`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgreementEvent {
    pub event_type: String,
    pub event_date: DateTime<Utc>,
    pub agreement_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, s).unwrap()
    }

    /// ya-aioclient's `Reason` requires a `message` string; a reason without one made it raise.
    #[test]
    fn reasons_always_carry_a_message() {
        assert_eq!(golem_reason(json!({"message": "no"})), json!({"message": "no"}));
        assert_eq!(golem_reason(json!("too slow")), json!({"message": "too slow"}));
        assert_eq!(golem_reason(json!({"code": 7})), json!({"code": 7, "message": "{\"code\":7}"}));
        assert_eq!(golem_reason(json!({"message": 3})), json!({"message": "{\"message\":3}"}));
        assert_eq!(golem_reason(json!(12)), json!({"message": "12"}));
    }

    /// Golem's SDKs read these shapes: they must not change by accident.
    #[test]
    fn the_rest_json_of_a_proposal_is_pinned() {
        let proposal = ProposalView {
            proposal_id: "a0".repeat(32),
            issuer_id: "0x2222222222222222222222222222222222222222".into(),
            state: ProposalState::Draft,
            timestamp: at(6),
            prev_proposal_id: Some("b0".repeat(32)),
            properties: json!({"golem.runtime.name": "wasmtime"}),
            constraints: "()".into(),
        };
        assert_eq!(
            serde_json::to_string(&proposal).unwrap(),
            r#"{"proposalId":"a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0","issuerId":"0x2222222222222222222222222222222222222222","state":"Draft","timestamp":"2026-01-02T03:04:06Z","prevProposalId":"b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0","properties":{"golem.runtime.name":"wasmtime"},"constraints":"()"}"#
        );
    }

    #[test]
    fn the_rest_json_of_an_agreement_is_pinned() {
        let body = agora_agreement::fixtures::fixed_body();
        let agreement = AgreementView {
            agreement_id: body.agreement_id,
            demand: body.demand,
            offer: body.offer,
            valid_to: body.valid_to,
            approved_date: Some(at(9)),
            state: AgreementState::Approved,
            timestamp: body.timestamp,
            proposed_signature: Some("0xaa".into()),
            approved_signature: Some("0xbb".into()),
            role: Role::Requestor,
        };
        assert_eq!(
            serde_json::to_string(&agreement).unwrap(),
            r#"{"agreementId":"9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f","demand":{"constraints":"(golem.runtime.name=wasmtime)","demandId":"d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1","properties":{"golem.srv.comp.expiration":1900000000000,"golem.srv.comp.task_package":"blob:sha256:00"},"proposalId":"b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0","requestorId":"0x1111111111111111111111111111111111111111","timestamp":"2026-01-02T03:04:05Z"},"offer":{"constraints":"()","offerId":"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f","properties":{"golem.inf.mem.gib":0.5,"golem.runtime.name":"wasmtime"},"proposalId":"a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0","providerId":"0x2222222222222222222222222222222222222222","timestamp":"2026-01-02T03:04:06Z"},"validTo":"2026-01-02T03:04:50Z","approvedDate":"2026-01-02T03:04:09Z","state":"Approved","timestamp":"2026-01-02T03:04:07Z","proposedSignature":"0xaa","approvedSignature":"0xbb","role":"requestor"}"#
        );
    }
}
