//! The requestor's side of debit notes and invoices: it receives them, accepts them (which orders
//! their payment from an allocation) or rejects them, and agrees to a withdrawal only before it
//! accepted.

use crate::documents::usage_cost;
use crate::model::check_id;
use crate::model::{Acceptance, Document, Kind, Rejection, Status, parse_amount};
use crate::service::verify;
use crate::store;
use crate::wire::Message;
use crate::{Error, Payments, Result};
use agora_agreement::Role;
use rust_decimal::Decimal;

/// Debit notes one agreement may bring to the requestor, at the most.
const MAX_DOCUMENTS_PER_AGREEMENT: i64 = 2000;

impl Payments {
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
                let activity = document.activity_id.as_deref().unwrap_or_default();
                check_id("activityId", activity)?;
                self.check_activity(&agreement.id, activity).await?;
                if let Some(usage) = &document.usage_counter_vector
                    && let Some(cost) = usage_cost(&agreement, usage)?
                    && cost != document.amount
                {
                    return Err(Error::BadInput(format!(
                        "debit note {} asks {}, but the agreement's pricing makes its usage cost {cost}",
                        document.id, document.amount
                    )));
                }
                let before = store::documents::most_received_for_activity(
                    self.pool(),
                    &document.agreement_id,
                    activity,
                    &document.id,
                )
                .await?;
                if before.is_some_and(|b| document.amount < b) {
                    return Err(Error::BadInput(format!(
                        "debit note {} asks {}, below an earlier note of activity {activity}",
                        document.id, document.amount
                    )));
                }
            }
            Kind::Invoice => {
                let asked =
                    store::documents::debit_notes_total(self.pool(), &document.agreement_id, false).await?;
                if document.amount < asked {
                    return Err(Error::BadInput(format!(
                        "invoice {} asks {}, below the {asked} its debit notes asked",
                        document.id, document.amount
                    )));
                }
            }
        }
        let principal = self.principal(&agreement.id).await?;
        let mut tx = self.pool().begin().await?;
        // A provider's documents of one agreement are bounded, counted under a lock of the
        // agreement so that a flood at once cannot pass the bound: its rows here stay bounded.
        // A debit note every two minutes for a day is 720.
        store::lock(&mut tx, &format!("receive {}", document.agreement_id)).await?;
        // Invoices are one an agreement already (a table index), so the bound is on debit notes.
        let held = store::documents::received_debit_notes(&mut *tx, &document.agreement_id).await?;
        if document.kind == Kind::DebitNote && held >= MAX_DOCUMENTS_PER_AGREEMENT {
            return Err(Error::BadInput(format!(
                "agreement {} has {held} debit notes already, the most one may have",
                document.agreement_id
            )));
        }
        let inserted = match store::documents::insert(
            &mut *tx,
            &document,
            false,
            Status::Received,
            signature,
            &principal,
        )
        .await
        {
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
        let platform = agreement.payment_platform().map_err(|e| Error::BadInput(e.to_string()))?;
        if let Some(problem) =
            self.config().network(&platform.name).and_then(|n| n.payee_problem(platform.payee))
        {
            return Err(Error::BadInput(format!(
                "{} {id} cannot be paid: {problem}; reject it instead",
                kind.label()
            )));
        }
        let binding = kind == Kind::Invoice || d.payment_due_date.is_some();
        let mut tx = self.pool().begin().await?;
        let status = store::documents::status_for_update(&mut *tx, id).await?;
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
        store::lock(&mut tx, &d.agreement_id).await?;
        // A debit note is cumulative for its activity: it adds to what that activity's notes
        // ordered. An invoice is the agreement's total: it adds to everything ordered for it.
        let activity = if kind == Kind::DebitNote { d.activity_id.clone() } else { None };
        let ordered = store::orders::ordered(&mut *tx, &d.agreement_id, activity).await?;
        let to_pay = if binding { (d.amount - ordered).max(Decimal::ZERO) } else { Decimal::ZERO };
        if to_pay > Decimal::ZERO {
            if !store::allocations::draw(&mut *tx, &allocation.id, to_pay).await? {
                return Err(Error::BadInput(format!(
                    "allocation {} has {} left, and accepting this {} needs {to_pay}",
                    allocation.id,
                    allocation.remaining(),
                    kind.label()
                )));
            }
            let order = store::orders::NewOrder {
                platform: &d.payment_platform,
                payer_addr: format!("{:#x}", platform.payer),
                payee_addr: format!("{:#x}", platform.payee),
                payee_id: format!("{:#x}", agreement.provider),
                payee_peer: &agreement.peer_id,
                amount: to_pay,
                agreement_id: &d.agreement_id,
                activity_id: d.activity_id.as_deref(),
                document_kind: kind.as_str(),
                document_id: id,
                allocation_id: &allocation.id,
            };
            store::orders::insert(&mut *tx, order).await?;
        }
        store::documents::accept(&mut *tx, id, accepted, &allocation.id).await?;
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
        if !store::documents::reject_received(&mut *tx, id, &serde_json::json!(rejection)).await? {
            // Withdrawn by its provider meanwhile: nothing will be paid for it, which is what the
            // rejection wanted, so it counts as done.
            let now = self.document(kind, id).await?.status;
            if now == Status::Cancelled {
                return Ok(());
            }
            return Err(Error::Conflict(format!(
                "{} {id} is {}: only a received one can be rejected",
                kind.label(),
                now.as_str()
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
}
