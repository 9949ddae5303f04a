//! The `/agora/payment/1` protocol: what nodes tell each other about payments, each message signed
//! by the party it speaks for (the provider for its documents, the payer for the rest).

use crate::model::{Document, Kind, Payment, Rejection};
use serde::{Deserialize, Serialize};

/// What one node tells another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Message {
    /// A provider's debit note or invoice.
    #[serde(rename_all = "camelCase")]
    Document { document: Document },
    /// The payer accepted a document, for this amount.
    #[serde(rename_all = "camelCase")]
    Accepted { kind: Kind, document_id: String, total_amount_accepted: String },
    /// The payer rejected a document.
    #[serde(rename_all = "camelCase")]
    Rejected { kind: Kind, document_id: String, rejection: Rejection },
    /// The provider withdraws a document it issued.
    #[serde(rename_all = "camelCase")]
    Cancelled { kind: Kind, document_id: String },
    /// The payer paid: the payee checks the transfer on chain before it counts.
    #[serde(rename_all = "camelCase")]
    Paid { payment: Payment },
}

/// A message with its signer's signature over the message's canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRequest {
    pub message: Message,
    pub signature: String,
}

/// The answer to a [`PaymentRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PaymentResponse {
    Ack,
    /// Refused. `retry` says whether sending it again later could succeed (the receiver's
    /// database was down) or never will (a bad signature).
    Error {
        message: String,
        retry: bool,
    },
}
