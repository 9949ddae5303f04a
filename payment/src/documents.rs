//! Debit notes and invoices on the provider's side: it issues, sends and withdraws them, and hears
//! they were accepted or rejected. Both sides record each step as an event; the requestor's side is
//! in `acceptance.rs`, settling in `settle.rs`.

use crate::model::{Document, DocumentRow, Kind, Rejection, Status, check_id, parse_amount};
use crate::service::{new_id, timestamp, verify};
use crate::store;
use crate::wire::{Message, PaymentResponse};
use crate::{Error, Payments, Result};
use agora_agreement::{AgreementState, Role};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

/// `POST /debitNotes`: what the provider says is due so far.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewDebitNote {
    pub agreement_id: String,
    pub activity_id: String,
    /// Optional when `usageCounterVector` is given and the agreement is priced: then it is the
    /// usage's cost.
    pub total_amount_due: Option<String>,
    pub usage_counter_vector: Option<Value>,
    pub payment_due_date: Option<DateTime<Utc>>,
}

/// `POST /invoices`: the agreement's total.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewInvoice {
    pub agreement_id: String,
    #[serde(default)]
    pub activity_ids: Vec<String>,
    pub amount: String,
    pub payment_due_date: Option<DateTime<Utc>>,
}

impl Payments {
    /// Issues a debit note on an agreement this node provides. It is cumulative: its total is
    /// never below the previous note's for the same activity.
    pub async fn issue_debit_note(&self, new: NewDebitNote) -> Result<DocumentRow> {
        check_id("activityId", &new.activity_id)?;
        check_id("agreementId", &new.agreement_id)?;
        self.agreement(&new.agreement_id).await?;
        self.check_activity(&new.agreement_id, &new.activity_id).await?;
        let cost = match &new.usage_counter_vector {
            Some(usage) => usage_cost(&self.agreement(&new.agreement_id).await?, usage)?,
            None => None,
        };
        let amount = match (&new.total_amount_due, cost) {
            (Some(text), cost) => {
                let amount = parse_amount("totalAmountDue", text).map_err(Error::BadInput)?;
                if let Some(cost) = cost.filter(|c| *c != amount) {
                    return Err(Error::BadInput(format!(
                        "totalAmountDue {amount} is not what the agreement's pricing makes of this usage, {cost}"
                    )));
                }
                amount
            }
            (None, Some(cost)) => cost,
            (None, None) => {
                return Err(Error::BadInput(
                    "totalAmountDue is missing; it may be left out only with a usageCounterVector on a priced agreement"
                        .into(),
                ));
            }
        };
        let mut document = self.draft(Kind::DebitNote, &new.agreement_id, amount).await?;
        document.activity_id = Some(new.activity_id);
        document.usage_counter_vector = new.usage_counter_vector;
        document.payment_due_date = new.payment_due_date.map(micros);
        self.issue(document).await
    }

    /// Issues the invoice of an agreement this node provides: at least what its debit notes
    /// already asked, and one an agreement.
    pub async fn issue_invoice(&self, new: NewInvoice) -> Result<DocumentRow> {
        let amount = parse_amount("amount", &new.amount).map_err(Error::BadInput)?;
        for id in &new.activity_ids {
            check_id("activityIds", id)?;
        }
        let mut document = self.draft(Kind::Invoice, &new.agreement_id, amount).await?;
        document.activity_ids = Some(new.activity_ids);
        document.payment_due_date = Some(new.payment_due_date.map(micros).unwrap_or(document.timestamp));
        self.issue(document).await
    }

    /// A new document of an agreement this node provides, with the agreement's parties.
    async fn draft(&self, kind: Kind, agreement_id: &str, amount: Decimal) -> Result<Document> {
        check_id("agreementId", agreement_id)?;
        let agreement = self.agreement(agreement_id).await?;
        if agreement.role != Role::Provider {
            return Err(Error::BadInput(format!(
                "agreement {agreement_id} is one this node is the requestor of: only its provider issues {}s",
                kind.label()
            )));
        }
        if !matches!(agreement.state, AgreementState::Approved | AgreementState::Terminated) {
            return Err(Error::BadInput(format!(
                "agreement {agreement_id} is {:?}: {}s are issued on approved or terminated agreements",
                agreement.state,
                kind.label()
            )));
        }
        let platform = agreement.payment_platform().map_err(|e| Error::BadInput(e.to_string()))?;
        if self.config().network(&platform.name).is_none() {
            return Err(Error::BadInput(format!(
                "agreement {agreement_id} pays on {}, which this node has no network settings for",
                platform.name
            )));
        }
        Ok(Document {
            id: new_id(),
            kind,
            agreement_id: agreement_id.to_string(),
            activity_id: None,
            activity_ids: None,
            issuer_id: self.me(),
            recipient_id: format!("{:#x}", agreement.requestor),
            payee_addr: format!("{:#x}", platform.payee),
            payer_addr: format!("{:#x}", platform.payer),
            payment_platform: platform.name,
            previous_id: None,
            amount,
            usage_counter_vector: None,
            payment_due_date: None,
            timestamp: timestamp(),
        })
    }

    /// Writes a new document, after the checks that depend on the agreement's other documents,
    /// made under a lock of the agreement so that two issued at once cannot both pass them.
    async fn issue(&self, mut document: Document) -> Result<DocumentRow> {
        let principal = self.principal(&document.agreement_id).await?;
        let mut tx = self.pool().begin().await?;
        store::lock(&mut tx, &format!("issue {}", document.agreement_id)).await?;
        let amount = document.amount;
        match document.kind {
            Kind::DebitNote => {
                let activity = document.activity_id.clone().unwrap_or_default();
                let previous =
                    store::documents::last_issued_debit_note(&mut *tx, &document.agreement_id, &activity)
                        .await?;
                if let Some((id, before)) = previous {
                    if amount < before {
                        return Err(Error::BadInput(format!(
                            "totalAmountDue {amount} is below the {before} the previous debit note of activity \
                             {activity} asked: debit notes are cumulative"
                        )));
                    }
                    document.previous_id = Some(id);
                }
            }
            Kind::Invoice => {
                let asked =
                    store::documents::debit_notes_total(&mut *tx, &document.agreement_id, true).await?;
                if amount < asked {
                    return Err(Error::BadInput(format!(
                        "amount {amount} is below the {asked} the agreement's debit notes already asked"
                    )));
                }
            }
        }
        let signed = self.sign(Message::Document { document: document.clone() })?;
        let inserted = store::documents::insert(
            &mut *tx,
            &document,
            true,
            Status::Issued,
            &signed.signature,
            &principal,
        )
        .await;
        match inserted {
            Err(Error::Db(sqlx::Error::Database(e)))
                if e.constraint() == Some("payment_documents_one_invoice") =>
            {
                return Err(Error::Conflict(format!(
                    "agreement {} already has an invoice; cancel it to issue another",
                    document.agreement_id
                )));
            }
            other => other?,
        };
        tx.commit().await?;
        self.document(document.kind, &document.id).await
    }

    /// Sends an issued document to the requestor, through the outbox; `Ok` once the requestor
    /// acknowledged it, [`Error::NotAcknowledged`] if it has not yet (it stays queued).
    pub async fn send(&self, kind: Kind, id: &str) -> Result<()> {
        let row = self.document(kind, id).await?;
        if !row.issued_here {
            return Err(Error::BadInput(format!(
                "{} {id} was received here, not issued: only its issuer sends it",
                kind.label()
            )));
        }
        if row.status != Status::Issued {
            // Sent before: the requestor has it.
            return Ok(());
        }
        let agreement = self.agreement(&row.document.agreement_id).await?;
        let request = crate::wire::PaymentRequest {
            message: Message::Document { document: row.document.clone() },
            signature: row.signature.clone(),
        };
        self.enqueue(&agreement.peer_id, &request).await?;
        self.flush_outbox().await;
        match self.document(kind, id).await?.status {
            Status::Issued => Err(Error::NotAcknowledged(format!(
                "the requestor has not acknowledged {} {id} yet; it stays queued and is sent again until it does",
                kind.label()
            ))),
            _ => Ok(()),
        }
    }

    /// Withdraws a document this node issued. The requestor refuses once it accepted it.
    pub async fn cancel(&self, kind: Kind, id: &str) -> Result<()> {
        let row = self.document(kind, id).await?;
        if !row.issued_here {
            return Err(Error::BadInput(format!(
                "{} {id} was received here: only its issuer cancels it",
                kind.label()
            )));
        }
        match row.status {
            Status::Cancelled => return Ok(()),
            Status::Accepted | Status::Settled => {
                return Err(Error::Conflict(format!("{} {id} is already accepted", kind.label())));
            }
            _ => {}
        }
        if row.status == Status::Issued {
            // Not delivered: with no delivery running, a document still Issued never reached the
            // requestor (an acknowledged one is Received), and its queued message goes with it.
            let agreement = self.agreement(&row.document.agreement_id).await?;
            let _no_delivery = self.delivery_lock(&agreement.peer_id).lock_owned().await;
            let mut tx = self.pool().begin().await?;
            if store::documents::move_status(&mut *tx, id, &[Status::Issued], Status::Cancelled).await? {
                store::outbox::drop_document(&mut *tx, id).await?;
                Self::record_event(&mut tx, kind, id, Status::Cancelled, None).await?;
                tx.commit().await?;
                self.events_changed();
                return Ok(());
            }
        }
        // The requestor may have it: it must agree.
        let agreement = self.agreement(&row.document.agreement_id).await?;
        let courier = self.inner.courier.clone().ok_or_else(|| Error::Unreachable("no network".into()))?;
        let message = Message::Cancelled { kind, document_id: id.to_string() };
        match courier.send(agreement.peer_id.clone(), self.sign(message)?).await {
            Ok(PaymentResponse::Ack) => {}
            Ok(PaymentResponse::Error { message, .. }) => {
                return Err(Error::Conflict(format!("the requestor refused the cancellation: {message}")));
            }
            Err(e) => return Err(Error::Unreachable(format!("the requestor cannot be reached: {e}"))),
        }
        let from = [Status::Issued, Status::Received, Status::Rejected];
        self.set_status(kind, id, &from, Status::Cancelled, None).await?;
        Ok(())
    }

    /// Moves a document from one of `from` to `to`, with its event; whether it moved.
    pub(crate) async fn set_status(
        &self,
        kind: Kind,
        id: &str,
        from: &[Status],
        to: Status,
        detail: Option<Value>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let moved = store::documents::move_status(&mut *tx, id, from, to).await?;
        if moved {
            Self::record_event(&mut tx, kind, id, to, detail).await?;
        }
        tx.commit().await?;
        if moved {
            self.events_changed();
        }
        Ok(moved)
    }

    /// The provider hears its document was accepted.
    pub(crate) async fn on_accepted(
        &self,
        kind: Kind,
        id: &str,
        amount: &str,
        message: &Message,
        signature: &str,
    ) -> Result<()> {
        let row = self.issued(kind, id, message, signature).await?;
        let amount = parse_amount("totalAmountAccepted", amount).map_err(Error::BadInput)?;
        if amount != row.document.amount {
            return Err(Error::BadInput(format!(
                "accepted {amount}, but the {} asks {}",
                kind.label(),
                row.document.amount
            )));
        }
        let from = [Status::Issued, Status::Received, Status::Rejected];
        if !self.set_status(kind, id, &from, Status::Accepted, None).await? {
            let now = self.document(kind, id).await?.status;
            if !matches!(now, Status::Accepted | Status::Settled) {
                return Err(Error::Conflict(format!(
                    "{} {id} is {}: it cannot be accepted",
                    kind.label(),
                    now.as_str()
                )));
            }
        }
        self.settle_covered(&row.document.agreement_id, true).await
    }

    /// The provider hears its document was rejected.
    pub(crate) async fn on_rejected(
        &self,
        kind: Kind,
        id: &str,
        rejection: Rejection,
        message: &Message,
        signature: &str,
    ) -> Result<()> {
        self.issued(kind, id, message, signature).await?;
        store::documents::note_rejection(self.pool(), id, &serde_json::json!(rejection)).await?;
        let detail = serde_json::json!({ "rejection": rejection });
        self.set_status(
            kind,
            id,
            &[Status::Issued, Status::Received, Status::Rejected],
            Status::Rejected,
            Some(detail),
        )
        .await?;
        Ok(())
    }

    /// A document this node issued, named in a message its payer signed.
    async fn issued(&self, kind: Kind, id: &str, message: &Message, signature: &str) -> Result<DocumentRow> {
        let row = self.document(kind, id).await?;
        if !row.issued_here {
            return Err(Error::BadInput(format!("{} {id} was not issued by this node", kind.label())));
        }
        let agreement = self.agreement(&row.document.agreement_id).await?;
        verify(message, signature, agreement.requestor)?;
        Ok(row)
    }
}

/// What `usage` costs under the agreement's linear pricing (Σ coeffᵢ·usageᵢ + fixed, rounded to
/// the token's decimals); `None` if the agreement states no pricing.
pub fn usage_cost(agreement: &agora_agreement::Agreement, usage: &Value) -> Result<Option<Decimal>> {
    let Ok(pricing) = agreement.pricing() else { return Ok(None) };
    let bad = || Error::BadInput(format!("usageCounterVector {usage} is not a list of numbers ≥ 0"));
    let counters = usage
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| agora_agreement::json_decimal(v).filter(|d| !d.is_sign_negative()))
        .collect::<Option<Vec<Decimal>>>()
        .ok_or_else(bad)?;
    let cost =
        pricing.cost(&counters).map_err(|e| Error::BadInput(format!("agreement {}: {e}", agreement.id)))?;
    Ok(Some(cost.round_dp(crate::model::TOKEN_DECIMALS).normalize()))
}

/// A time at the microsecond precision PostgreSQL keeps, so a signed document reads back the same.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound;
    t.duration_trunc(chrono::Duration::microseconds(1)).unwrap_or(t)
}
