//! Debit notes and invoices: the provider issues and sends them, the requestor accepts or
//! rejects them, and both sides record each step as an event.

use crate::model::{Acceptance, Document, DocumentRow, Kind, Rejection, Status, parse_amount};
use crate::service::{insert_document, new_id, timestamp, verify};
use crate::wire::{Message, PaymentResponse};
use crate::{Error, Payments, Result};
use agora_market::{AgreementState, Role};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

/// `POST /debitNotes`: what the provider says is due so far.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

    /// The sum, over an agreement's activities, of each one's latest debit note.
    async fn debit_notes_total<'e>(
        db: impl sqlx::PgExecutor<'e>,
        agreement_id: &str,
        issued_here: bool,
    ) -> Result<Decimal> {
        let total: Option<Decimal> = sqlx::query_scalar(
            "SELECT sum(latest) FROM (
                 SELECT max(amount) AS latest FROM payment_documents
                 WHERE kind = 'debit_note' AND agreement_id = $1 AND side = $2 AND status <> 'CANCELLED'
                 GROUP BY activity_id) notes",
        )
        .bind(agreement_id)
        .bind(if issued_here { "issuer" } else { "recipient" })
        .fetch_one(db)
        .await?;
        Ok(total.unwrap_or_default())
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
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("issue {}", document.agreement_id))
            .execute(&mut *tx)
            .await?;
        let amount = document.amount;
        match document.kind {
            Kind::DebitNote => {
                let activity = document.activity_id.clone().unwrap_or_default();
                let previous: Option<(String, Decimal)> = sqlx::query_as(
                    "SELECT id, amount FROM payment_documents
                     WHERE kind = 'debit_note' AND side = 'issuer' AND agreement_id = $1 AND activity_id = $2
                       AND status <> 'CANCELLED'
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                )
                .bind(&document.agreement_id)
                .bind(&activity)
                .fetch_optional(&mut *tx)
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
                let asked = Self::debit_notes_total(&mut *tx, &document.agreement_id, true).await?;
                if amount < asked {
                    return Err(Error::BadInput(format!(
                        "amount {amount} is below the {asked} the agreement's debit notes already asked"
                    )));
                }
            }
        }
        let signed = self.sign(Message::Document { document: document.clone() })?;
        let inserted = insert_document(&mut tx, &document, true, Status::Issued, &signed.signature).await;
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

    /// The requestor's copy of a document arrives.
    pub(crate) async fn on_document(
        &self,
        document: Document,
        message: &Message,
        signature: &str,
    ) -> Result<()> {
        let agreement = self.agreement(&document.agreement_id).await?;
        if agreement.role != Role::Requestor {
            return Err(Error::BadInput(format!(
                "agreement {} is not one this node requested",
                agreement.id
            )));
        }
        verify(message, signature, agreement.provider)?;
        let platform = agreement.payment_platform().map_err(|e| Error::BadInput(e.to_string()))?;
        let expected = (
            format!("{:#x}", agreement.provider),
            self.me(),
            format!("{:#x}", platform.payee),
            format!("{:#x}", platform.payer),
            platform.name.clone(),
        );
        let got = (
            document.issuer_id.to_ascii_lowercase(),
            document.recipient_id.to_ascii_lowercase(),
            document.payee_addr.to_ascii_lowercase(),
            document.payer_addr.to_ascii_lowercase(),
            document.payment_platform.clone(),
        );
        if expected != got {
            return Err(Error::BadInput(format!(
                "{} {} does not match agreement {}: parties, addresses or platform differ",
                document.kind.label(),
                document.id,
                agreement.id
            )));
        }
        check_id("document id", &document.id)?;
        match document.kind {
            Kind::DebitNote => {
                if let Some(usage) = &document.usage_counter_vector
                    && let Some(cost) = usage_cost(&agreement, usage)?
                    && cost != document.amount
                {
                    return Err(Error::BadInput(format!(
                        "debit note {} asks {}, but the agreement's pricing makes its usage cost {cost}",
                        document.id, document.amount
                    )));
                }
                let activity = document.activity_id.clone().unwrap_or_default();
                let before: Option<Decimal> = sqlx::query_scalar(
                    "SELECT max(amount) FROM payment_documents
                     WHERE kind = 'debit_note' AND side = 'recipient' AND agreement_id = $1 AND activity_id = $2
                       AND id <> $3",
                )
                .bind(&document.agreement_id)
                .bind(&activity)
                .bind(&document.id)
                .fetch_one(self.pool())
                .await?;
                if before.is_some_and(|b| document.amount < b) {
                    return Err(Error::BadInput(format!(
                        "debit note {} asks {}, below an earlier note of activity {activity}",
                        document.id, document.amount
                    )));
                }
            }
            Kind::Invoice => {
                let asked = Self::debit_notes_total(self.pool(), &document.agreement_id, false).await?;
                if document.amount < asked {
                    return Err(Error::BadInput(format!(
                        "invoice {} asks {}, below the {asked} its debit notes asked",
                        document.id, document.amount
                    )));
                }
            }
        }
        let mut tx = self.pool().begin().await?;
        let inserted = match insert_document(&mut tx, &document, false, Status::Received, signature).await {
            Err(Error::Db(sqlx::Error::Database(e)))
                if e.constraint() == Some("payment_documents_one_invoice") =>
            {
                return Err(Error::Conflict(format!(
                    "agreement {} already has an invoice",
                    document.agreement_id
                )));
            }
            other => other?,
        };
        if inserted {
            Self::record_event(&mut tx, document.kind, &document.id, Status::Received, None).await?;
        }
        tx.commit().await?;
        self.events_changed();
        Ok(())
    }

    /// Accepts a received document, paying from an allocation what it adds to what was already
    /// ordered for its agreement: an invoice always, a debit note when it has a payment due date.
    /// The allocation is charged, the order written, and the provider's message queued in one
    /// transaction, before anything is signed.
    pub async fn accept(&self, kind: Kind, id: &str, acceptance: Acceptance) -> Result<()> {
        let accepted = parse_amount("totalAmountAccepted", &acceptance.total_amount_accepted)
            .map_err(Error::BadInput)?;
        check_id("allocationId", &acceptance.allocation_id)?;
        let row = self.document(kind, id).await?;
        if row.issued_here {
            return Err(Error::BadInput(format!(
                "{} {id} was issued here: its recipient accepts it",
                kind.label()
            )));
        }
        let d = &row.document;
        if accepted != d.amount {
            return Err(Error::BadInput(format!(
                "totalAmountAccepted {accepted} differs from the {} the {} asks",
                d.amount,
                kind.label()
            )));
        }
        let agreement = self.agreement(&d.agreement_id).await?;
        let binding = kind == Kind::Invoice || d.payment_due_date.is_some();
        let mut tx = self.pool().begin().await?;
        let status: String =
            sqlx::query_scalar("SELECT status FROM payment_documents WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        match Status::parse(&status) {
            Some(Status::Received | Status::Rejected) => {}
            Some(Status::Accepted | Status::Settled) => {
                return Err(Error::Conflict(format!("{} {id} is already accepted", kind.label())));
            }
            Some(other) => {
                return Err(Error::Conflict(format!(
                    "{} {id} is {}: it cannot be accepted",
                    kind.label(),
                    other.as_str()
                )));
            }
            None => return Err(Error::Corrupt(format!("document status {status}"))),
        }
        let allocation = self.allocation_in(&mut tx, &acceptance.allocation_id).await?;
        if allocation.platform != d.payment_platform || allocation.address != d.payer_addr {
            return Err(Error::BadInput(format!(
                "allocation {} is for {} on {}, but the {} is payable by {} on {}",
                allocation.id,
                allocation.address,
                allocation.platform,
                kind.label(),
                d.payer_addr,
                d.payment_platform
            )));
        }
        // Serialises acceptances of one agreement, so two cannot both order the same difference.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&d.agreement_id)
            .execute(&mut *tx)
            .await?;
        // A debit note is cumulative for its activity: it adds to what that activity's notes
        // ordered. An invoice is the agreement's total: it adds to everything ordered for it.
        let ordered: Option<Decimal> = sqlx::query_scalar(
            "SELECT sum(amount) FROM payment_orders
             WHERE agreement_id = $1 AND ($2::text IS NULL OR activity_id = $2)",
        )
        .bind(&d.agreement_id)
        .bind(if kind == Kind::DebitNote { d.activity_id.clone() } else { None })
        .fetch_one(&mut *tx)
        .await?;
        let to_pay =
            if binding { (d.amount - ordered.unwrap_or_default()).max(Decimal::ZERO) } else { Decimal::ZERO };
        if to_pay > Decimal::ZERO {
            let charged = sqlx::query(
                "UPDATE allocations SET spent = spent + $2
                 WHERE id = $1 AND released_at IS NULL AND total - spent >= $2
                   AND (timeout IS NULL OR timeout > now())",
            )
            .bind(&allocation.id)
            .bind(to_pay)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if charged == 0 {
                return Err(Error::BadInput(format!(
                    "allocation {} has {} left, and accepting this {} needs {to_pay}",
                    allocation.id,
                    allocation.remaining(),
                    kind.label()
                )));
            }
            let platform = agreement.payment_platform().map_err(|e| Error::BadInput(e.to_string()))?;
            sqlx::query(
                "INSERT INTO payment_orders (platform, payer_addr, payee_addr, payee_id, payee_peer, amount,
                     agreement_id, activity_id, document_kind, document_id, allocation_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&d.payment_platform)
            .bind(format!("{:#x}", platform.payer))
            .bind(format!("{:#x}", platform.payee))
            .bind(format!("{:#x}", agreement.provider))
            .bind(&agreement.peer_id)
            .bind(to_pay)
            .bind(&d.agreement_id)
            .bind(&d.activity_id)
            .bind(kind.as_str())
            .bind(id)
            .bind(&allocation.id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE payment_documents SET status = 'ACCEPTED', accepted_amount = $2, allocation_id = $3, rejection = NULL
             WHERE id = $1",
        )
        .bind(id)
        .bind(accepted)
        .bind(&allocation.id)
        .execute(&mut *tx)
        .await?;
        Self::record_event(&mut tx, kind, id, Status::Accepted, None).await?;
        let message = Message::Accepted {
            kind,
            document_id: id.to_string(),
            total_amount_accepted: crate::model::amount_text(accepted),
        };
        self.enqueue_in(&mut tx, &agreement.peer_id, &self.sign(message)?).await?;
        tx.commit().await?;
        crate::driver::kill_point("ordered");
        self.events_changed();
        self.inner.orders.notify_waiters();
        // Everything this acceptance needs may already be paid (an invoice after paid notes).
        self.settle_covered(&d.agreement_id, false).await?;
        self.flush_outbox().await;
        Ok(())
    }

    /// Rejects a received document, with a reason the provider sees.
    pub async fn reject(&self, kind: Kind, id: &str, rejection: Rejection) -> Result<()> {
        parse_amount("totalAmountAccepted", &rejection.total_amount_accepted).map_err(Error::BadInput)?;
        let row = self.document(kind, id).await?;
        if row.issued_here {
            return Err(Error::BadInput(format!(
                "{} {id} was issued here: its recipient rejects it",
                kind.label()
            )));
        }
        let agreement = self.agreement(&row.document.agreement_id).await?;
        let mut tx = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE payment_documents SET status = 'REJECTED', rejection = $2
             WHERE id = $1 AND status IN ('RECEIVED', 'REJECTED')",
        )
        .bind(id)
        .bind(serde_json::json!(rejection))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Conflict(format!(
                "{} {id} is {}: only a received one can be rejected",
                kind.label(),
                row.status.as_str()
            )));
        }
        Self::record_event(
            &mut tx,
            kind,
            id,
            Status::Rejected,
            Some(serde_json::json!({ "rejection": rejection })),
        )
        .await?;
        let message = Message::Rejected { kind, document_id: id.to_string(), rejection };
        self.enqueue_in(&mut tx, &agreement.peer_id, &self.sign(message)?).await?;
        tx.commit().await?;
        self.events_changed();
        self.flush_outbox().await;
        Ok(())
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
            let _no_delivery = self.inner.flushing.lock().await;
            let mut tx = self.pool().begin().await?;
            let cancelled = sqlx::query(
                "UPDATE payment_documents SET status = 'CANCELLED' WHERE id = $1 AND status = 'ISSUED'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if cancelled == 1 {
                sqlx::query(
                    "DELETE FROM payment_outbox
                     WHERE message->'message'->>'type' = 'document' AND message->'message'->'document'->>'id' = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
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
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let mut tx = self.pool().begin().await?;
        let moved =
            sqlx::query("UPDATE payment_documents SET status = $3 WHERE id = $1 AND status = ANY($2)")
                .bind(id)
                .bind(&from)
                .bind(to.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
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
        sqlx::query(
            "UPDATE payment_documents SET rejection = $2 WHERE id = $1 AND status IN ('ISSUED', 'RECEIVED', 'REJECTED')",
        )
            .bind(id)
            .bind(serde_json::json!(rejection))
            .execute(self.pool())
            .await?;
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

    /// The requestor hears the provider withdraws a document: refused once accepted.
    pub(crate) async fn on_cancelled(
        &self,
        kind: Kind,
        id: &str,
        message: &Message,
        signature: &str,
    ) -> Result<()> {
        let row = self.document(kind, id).await?;
        let agreement = self.agreement(&row.document.agreement_id).await?;
        verify(message, signature, agreement.provider)?;
        if row.issued_here {
            return Err(Error::BadInput(format!("{} {id} was issued by this node", kind.label())));
        }
        if row.status == Status::Cancelled {
            return Ok(());
        }
        let moved =
            self.set_status(kind, id, &[Status::Received, Status::Rejected], Status::Cancelled, None).await?;
        if !moved {
            return Err(Error::Conflict(format!("{} {id} is already accepted", kind.label())));
        }
        Ok(())
    }

    /// Settles the accepted documents of an agreement that what was paid for it covers, in `tx`:
    /// an invoice when the agreement's payments reach its amount; a debit note when its
    /// activity's payments reach its total, or its agreement's invoice is covered. Payments count
    /// on the payer's side once its orders are mined, on the payee's once it found them on chain.
    pub(crate) async fn settle_covered_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        agreement_id: &str,
        payee_side: bool,
    ) -> Result<Vec<(Kind, String)>> {
        let paid: Vec<(Option<String>, Decimal)> = if payee_side {
            sqlx::query_as(
                "SELECT share->>'activityId', (share->>'amount')::numeric FROM payments p,
                     jsonb_array_elements((p.details->'agreementPayments') || (p.details->'activityPayments')) share
                 WHERE p.side = 'payee' AND p.verified AND share->>'agreementId' = $1",
            )
        } else {
            sqlx::query_as("SELECT activity_id, amount FROM payment_orders WHERE agreement_id = $1 AND paid")
        }
        .bind(agreement_id)
        .fetch_all(&mut **tx)
        .await?;
        let total: Decimal = paid.iter().map(|(_, a)| *a).sum();
        let for_activity = |activity: &Option<String>| -> Decimal {
            paid.iter().filter(|(a, _)| a.is_some() && a == activity).map(|(_, amount)| *amount).sum()
        };
        let side = if payee_side { "issuer" } else { "recipient" };
        let documents: Vec<(String, String, Option<String>, Decimal, String)> = sqlx::query_as(
            "SELECT id, kind, activity_id, amount, status FROM payment_documents
             WHERE agreement_id = $1 AND side = $2 AND status IN ('ACCEPTED', 'SETTLED')",
        )
        .bind(agreement_id)
        .bind(side)
        .fetch_all(&mut **tx)
        .await?;
        let invoice_covered = documents
            .iter()
            .any(|(_, kind, _, amount, _)| kind == Kind::Invoice.as_str() && *amount <= total);
        let mut settled = Vec::new();
        for (id, kind, activity, amount, status) in documents {
            let kind = Kind::parse(&kind).ok_or_else(|| Error::Corrupt(format!("document kind {kind}")))?;
            let covered = match kind {
                Kind::Invoice => amount <= total,
                Kind::DebitNote => invoice_covered || amount <= for_activity(&activity),
            };
            if covered && status == Status::Accepted.as_str() {
                sqlx::query(
                    "UPDATE payment_documents SET status = 'SETTLED' WHERE id = $1 AND status = 'ACCEPTED'",
                )
                .bind(&id)
                .execute(&mut **tx)
                .await?;
                Self::record_event(tx, kind, &id, Status::Settled, None).await?;
                settled.push((kind, id));
            }
        }
        Ok(settled)
    }

    /// [`Self::settle_covered_in`] in a transaction of its own.
    pub(crate) async fn settle_covered(&self, agreement_id: &str, payee_side: bool) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let settled = Self::settle_covered_in(&mut tx, agreement_id, payee_side).await?;
        tx.commit().await?;
        if !settled.is_empty() {
            self.events_changed();
        }
        Ok(())
    }
}

/// What `usage` costs under the agreement's linear pricing (Σ coeffᵢ·usageᵢ + fixed, rounded to
/// the token's decimals); `None` if the agreement states no pricing.
pub fn usage_cost(agreement: &agora_market::Agreement, usage: &Value) -> Result<Option<Decimal>> {
    let Ok(pricing) = agreement.pricing() else { return Ok(None) };
    let bad = || Error::BadInput(format!("usageCounterVector {usage} is not a list of numbers ≥ 0"));
    let counters = usage
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| match v {
            // Through the JSON text, so 0.1 is 0.1 and not the nearest binary float.
            Value::Number(n) => {
                let text = n.to_string();
                text.parse::<Decimal>()
                    .or_else(|_| Decimal::from_scientific(&text))
                    .ok()
                    .filter(|d| !d.is_sign_negative())
            }
            _ => None,
        })
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

pub(crate) fn check_id(field: &str, id: &str) -> Result<()> {
    if agora_market::is_valid_id(id) {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "{field} {:?} is not an id: 1 to {} ASCII letters, digits, '-' or '_'",
            id.chars().take(80).collect::<String>(),
            agora_market::MAX_ID_LEN
        )))
    }
}
