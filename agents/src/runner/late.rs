//! The background work of a requestor node: debit notes of replicas at work accepted, and late
//! invoices of ended jobs accepted, noted and charged while their allocations hold.

use super::settle::overcharge;
use super::store;
use super::{DEBIT_NOTE_TICK, Jobs};
use crate::Result;
use crate::job::ExecState;
use agora_payment::model::{Acceptance, Kind, Rejection, RejectionReason, Status};
use rust_decimal::Decimal;
use std::time::Duration;

/// How long after its end a job is watched for its verified providers' late invoices and their
/// payments.
const LATE_WATCH: Duration = Duration::from_secs(3600);

impl Jobs {
    /// Accepts, until the node stops, the debit notes of replicas still at work: they say the
    /// provider is working, and bind nothing (no `paymentDueDate`), so accepting them pays
    /// nothing before the verdict. A provider whose notes go unaccepted stops working.
    ///
    /// It also takes jobs from the queue and sends webhooks.
    pub fn serve(&self) {
        self.serve_queue();
        self.serve_webhooks();
        let jobs = self.clone();
        self.inner.tasks.spawn(async move {
            let mut tick = tokio::time::interval(DEBIT_NOTE_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = jobs.inner.shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = jobs.accept_debit_notes().await {
                            tracing::warn!(error = %e, "accepting debit notes");
                        }
                        if let Err(e) = jobs.settle_late().await {
                            tracing::warn!(error = %e, "settling late invoices");
                        }
                    }
                }
            }
        });
    }

    pub(super) async fn accept_debit_notes(&self) -> Result<()> {
        // With how long ago, by the database's clock, the runner sent the replica's run: the
        // usage its notes report is held to what that span allows.
        for row in store::executions::working(&self.inner.pool, &self.inner.node).await? {
            let store::executions::Working {
                job_id: id,
                agreement_id: agreement,
                allocation_id: allocation,
                seen_secs,
            } = row;
            let seen = seen_secs.map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9)));
            let notes = self.inner.payments.agreement_documents(Kind::DebitNote, &agreement).await?;
            for note in notes {
                let d = &note.document;
                if note.issued_here || note.status != Status::Received || d.payment_due_date.is_some() {
                    continue;
                }
                let problem = match (&d.usage_counter_vector, seen) {
                    (Some(usage), Some(seen)) => {
                        let terms = self.inner.market.agreement(&agreement).await?;
                        crate::runner::bounds::usage_problem(&terms, usage, seen)
                    }
                    // No run sent yet (or a job from before runs were timed): nothing to hold it to.
                    _ => None,
                };
                if let Some(why) = problem {
                    let rejection = Rejection {
                        rejection_reason: RejectionReason::IncorrectAmount,
                        total_amount_accepted: "0".into(),
                        message: Some(why.clone()),
                    };
                    if let Err(e) = self.inner.payments.reject(Kind::DebitNote, &d.id, rejection).await {
                        tracing::warn!(debit_note = %d.id, error = %e, "rejecting a debit note");
                    }
                    // Logged, not a step: a step writes the job's state, which the job's own task
                    // owns. The provider sees the reason in the rejection.
                    tracing::info!(job = %id, debit_note = %d.id, "rejected a debit note: {why}");
                    continue;
                }
                let acceptance = Acceptance {
                    total_amount_accepted: d.amount.to_string(),
                    allocation_id: allocation.clone(),
                };
                if let Err(e) = self.inner.payments.accept(Kind::DebitNote, &d.id, acceptance).await {
                    tracing::warn!(debit_note = %d.id, error = %e, "accepting a debit note");
                }
            }
        }
        Ok(())
    }

    /// The verified providers of ended jobs whose invoice came after the job's wait: while the
    /// job's allocation holds, each invoice is accepted up to what its run justifies (and charged
    /// to the job's owner), and marked paid once settled. The allocation is released once every
    /// verified provider's invoice is accepted, or when its timeout has passed.
    pub(super) async fn settle_late(&self) -> Result<()> {
        let held =
            store::jobs::held_allocations(&self.inner.pool, &self.inner.node, LATE_WATCH.as_secs_f64())
                .await?;
        for (id, allocation, given_up) in held {
            if let Err(e) = self.settle_late_job(&id, &allocation, given_up).await {
                tracing::warn!(job = %id, error = %e, "settling a late invoice");
            }
        }
        Ok(())
    }

    /// [`Jobs::settle_late`] for one job.
    async fn settle_late_job(&self, id: &str, allocation: &str, given_up: bool) -> Result<()> {
        let (id, allocation) = (id.to_string(), allocation.to_string());
        let payments = &self.inner.payments;
        let rows =
            store::executions::with_agreement_in(&self.inner.pool, &id, ExecState::Verified.code()).await?;
        // Verified providers not marked paid yet, and those of them still without an
        // accepted invoice.
        let (mut unpaid, mut waiting) = (rows.len(), 0);
        for (provider, agreement, max, invoice) in rows {
            if let Some(invoice) = invoice {
                if payments.document(Kind::Invoice, &invoice).await?.status == Status::Settled {
                    unpaid -= 1;
                    let tx = self.tx_of(&invoice).await?;
                    let paid = ExecState::Paid.code();
                    store::executions::paid(&self.inner.pool, &id, &provider, paid, tx.as_deref()).await?;
                }
                continue;
            }
            waiting += 1;
            let invoices = payments.agreement_documents(Kind::Invoice, &agreement).await?;
            // Accepted by a sweep that stopped (the node did) before it noted so on the job:
            // noted, and charged to the owner, now.
            if let Some(done) = invoices
                .iter()
                .find(|d| !d.issued_here && matches!(d.status, Status::Accepted | Status::Settled))
            {
                waiting -= 1;
                let amount = done.accepted_amount.unwrap_or(done.document.amount);
                self.note_late_invoice(&id, &provider, &done.document.id, amount).await?;
                continue;
            }
            let Some(invoice) = invoices.into_iter().find(|d| !d.issued_here && d.status == Status::Received)
            else {
                continue;
            };
            let doc = &invoice.document;
            if let Some(why) = overcharge(doc.amount, max, &doc.id) {
                let rejection = Rejection {
                    rejection_reason: RejectionReason::IncorrectAmount,
                    total_amount_accepted: "0".into(),
                    message: Some(why),
                };
                if let Err(e) = payments.reject(Kind::Invoice, &doc.id, rejection).await {
                    tracing::warn!(job = %id, invoice = %doc.id, error = %e, "rejecting a late invoice");
                }
                continue;
            }
            let acceptance = Acceptance {
                total_amount_accepted: doc.amount.to_string(),
                allocation_id: allocation.clone(),
            };
            match payments.accept(Kind::Invoice, &doc.id, acceptance).await {
                Ok(()) => {
                    waiting -= 1;
                    self.note_late_invoice(&id, &provider, &doc.id, doc.amount).await?;
                    tracing::info!(job = %id, invoice = %doc.id, provider = %provider, amount = %doc.amount, "accepted a late invoice");
                }
                Err(e) => {
                    tracing::warn!(job = %id, invoice = %doc.id, error = %e, "accepting a late invoice")
                }
            }
        }
        // Released once nothing more is to be accepted from it, or at its timeout (a
        // released one is not found: nothing to do); the job is watched until its verified
        // providers are marked paid, for an hour at the most.
        if let Ok(held) = payments.allocation(&allocation).await
            && (waiting == 0 || given_up || held.timeout.is_some_and(|t| t <= chrono::Utc::now()))
            && let Err(e) = payments.release_allocation(&allocation).await
        {
            tracing::warn!(job = %id, %allocation, error = %e, "releasing the allocation");
        }
        if unpaid == 0 || given_up {
            store::jobs::hold_allocation(&self.inner.pool, &id, false).await?;
        }
        Ok(())
    }

    /// Notes a late invoice's acceptance on an ended job and charges its owner's cap for it, in
    /// one transaction and once: the job ended before this was paid, so what it gave back of the
    /// cap did not count it.
    async fn note_late_invoice(
        &self,
        id: &str,
        provider: &str,
        invoice: &str,
        amount: Decimal,
    ) -> Result<()> {
        let mut tx = self.inner.pool.begin().await?;
        if store::executions::note_late_invoice(&mut *tx, id, provider, invoice, amount).await? {
            store::users::charge_owner(&mut *tx, id, amount).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
