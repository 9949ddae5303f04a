//! Paying after the verdict: the verified providers' invoices accepted, each up to what its run
//! justifies, the others' rejected with the reason; the allocation released or held for a late
//! invoice.

use super::store;
use super::{INVOICE_WAIT, Jobs, PAYMENT_WAIT, REJECT_WAIT, Replica, short};
use crate::Result;
use crate::job::{ExecState, JobState};
use agora_payment::model::{Acceptance, Kind, Rejection, RejectionReason, Status};
use alloy_primitives::Address;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

impl Jobs {
    /// Accepts the verified providers' invoices, each up to what its run justifies, and rejects
    /// the others', then waits until the accepted ones are paid. A verified provider whose invoice
    /// asks more is rejected with both figures, and its corrected invoice is accepted while the
    /// wait lasts. Failing to answer one provider never stops the answers to the others.
    pub(super) async fn settle(
        &self,
        id: &str,
        parties: &[Party],
        paid: &[Address],
        refused: &BTreeMap<Address, String>,
        allocation: &str,
    ) -> Result<Settled> {
        let payments = &self.inner.payments;
        let mut settled = Settled::default();
        // The verified providers' invoices are waited for; the others' only briefly, so that a
        // provider that went away does not hold the job up (its invoice, if it comes later, is
        // never accepted).
        let started = Instant::now();
        let deadline =
            |r: &Party| started + if paid.contains(&r.provider) { INVOICE_WAIT } else { REJECT_WAIT };
        let mut open: Vec<&Party> = parties.iter().collect();
        // Verified providers whose invoice asked more than their run justifies, and why.
        let mut overcharged: BTreeMap<Address, String> = BTreeMap::new();
        loop {
            for late in open.iter().filter(|r| Instant::now() >= deadline(r) && paid.contains(&r.provider)) {
                settled.awaiting_invoice += 1;
                let who = short(&format!("{:#x}", late.provider));
                settled.pending.push(match overcharged.get(&late.provider) {
                    Some(why) => format!(
                        "{why}, and {who} sent no corrected invoice within {} s",
                        INVOICE_WAIT.as_secs()
                    ),
                    None => format!("{who} sent no invoice within {} s", INVOICE_WAIT.as_secs()),
                });
            }
            open.retain(|r| Instant::now() < deadline(r));
            if open.is_empty() {
                break;
            }
            let mut still = Vec::new();
            for r in open {
                let agreement = &r.agreement_id;
                let invoices = payments.agreement_documents(Kind::Invoice, agreement).await?;
                let accepted = invoices
                    .iter()
                    .find(|d| !d.issued_here && matches!(d.status, Status::Accepted | Status::Settled));
                if paid.contains(&r.provider)
                    && let Some(done) = accepted
                {
                    // Accepted by a run of the node that stopped before it recorded so on the
                    // job: recorded now, so the owner's cap stays charged for what is paid.
                    let amount = done.accepted_amount.unwrap_or(done.document.amount);
                    let provider = format!("{:#x}", r.provider);
                    self.note_invoice(id, &provider, &done.document.id, Some(amount), ExecState::Verified)
                        .await?;
                    continue;
                }
                let invoice = invoices.into_iter().find(|d| !d.issued_here && d.status == Status::Received);
                let Some(invoice) = invoice else {
                    still.push(r);
                    continue;
                };
                let doc = &invoice.document;
                let provider = format!("{:#x}", r.provider);
                if paid.contains(&r.provider)
                    && let Some(why) = overcharge(doc.amount, r.max_amount, &doc.id)
                {
                    let rejection = Rejection {
                        rejection_reason: RejectionReason::IncorrectAmount,
                        total_amount_accepted: "0".into(),
                        message: Some(why.clone()),
                    };
                    if let Err(e) = payments.reject(Kind::Invoice, &doc.id, rejection).await {
                        tracing::warn!(job = id, invoice = %doc.id, error = %e, "rejecting an invoice");
                    }
                    self.record(
                        id,
                        JobState::Paying,
                        &format!("rejected {why}; waiting for a corrected one"),
                    )
                    .await?;
                    overcharged.insert(r.provider, why);
                    still.push(r);
                    continue;
                }
                if paid.contains(&r.provider) {
                    let accepted = payments
                        .accept(
                            Kind::Invoice,
                            &doc.id,
                            Acceptance {
                                total_amount_accepted: doc.amount.to_string(),
                                allocation_id: allocation.into(),
                            },
                        )
                        .await;
                    match accepted {
                        Ok(()) => {
                            self.note_invoice(id, &provider, &doc.id, Some(doc.amount), ExecState::Verified)
                                .await?;
                            self.record(
                                id,
                                JobState::Paying,
                                &format!(
                                    "accepted invoice {} of {} for {}",
                                    short(&doc.id),
                                    short(&provider),
                                    doc.amount
                                ),
                            )
                            .await?;
                        }
                        Err(e) => {
                            settled.unpaid.push(format!(
                                "invoice {} of {} could not be accepted: {e}",
                                short(&doc.id),
                                short(&provider)
                            ));
                            self.record(
                                id,
                                JobState::Paying,
                                &format!(
                                    "could not accept invoice {} of {}: {e}",
                                    short(&doc.id),
                                    short(&provider)
                                ),
                            )
                            .await?;
                        }
                    }
                } else {
                    let reason =
                        refused.get(&r.provider).cloned().unwrap_or_else(|| "verification failed".into());
                    let rejection = Rejection {
                        rejection_reason: RejectionReason::BadService,
                        total_amount_accepted: "0".into(),
                        message: Some(reason.clone()),
                    };
                    // A rejection that fails (the provider withdrew it meanwhile counts as done)
                    // is the provider's loss alone: the others are still answered.
                    if let Err(e) = payments.reject(Kind::Invoice, &doc.id, rejection).await {
                        tracing::warn!(job = id, invoice = %doc.id, error = %e, "rejecting an invoice");
                    }
                    self.note_invoice(id, &provider, &doc.id, None, ExecState::Rejected).await?;
                    self.record(
                        id,
                        JobState::Paying,
                        &format!("rejected invoice {} of {}: {reason}", short(&doc.id), short(&provider)),
                    )
                    .await?;
                }
            }
            open = still;
            if !open.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // The accepted invoices are paid by the payment driver; the job waits for the chain.
        let deadline = Instant::now() + PAYMENT_WAIT;
        loop {
            let rows =
                store::executions::invoiced_in(&self.inner.pool, id, ExecState::Verified.code()).await?;
            if rows.is_empty() {
                return Ok(settled);
            }
            for (provider, invoice) in &rows {
                if payments.document(Kind::Invoice, invoice).await?.status == Status::Settled {
                    let tx = self.tx_of(invoice).await?;
                    let paid = ExecState::Paid.code();
                    store::executions::paid(&self.inner.pool, id, provider, paid, tx.as_deref()).await?;
                    self.record(
                        id,
                        JobState::Paying,
                        &format!("paid {} in transaction {}", short(provider), tx.as_deref().unwrap_or("?")),
                    )
                    .await?;
                }
            }
            if Instant::now() >= deadline {
                // Accepted is ordered: the driver pays them when it can; the job does not wait.
                settled.pending.push(format!(
                    "{} accepted invoice(s) not yet confirmed on chain after {} s; `agora payment status` shows why",
                    rows.len(),
                    PAYMENT_WAIT.as_secs()
                ));
                return Ok(settled);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Releases a job's allocation, unless a verified provider's invoice is still awaited: then
    /// it holds, and [`Jobs::settle_late`] accepts that invoice when it comes.
    pub(super) async fn release_or_hold(&self, id: &str, allocation: &str, settled: &Settled) -> Result<()> {
        if settled.awaiting_invoice == 0 {
            if let Err(e) = self.inner.payments.release_allocation(allocation).await {
                tracing::warn!(job = id, %allocation, error = %e, "releasing the allocation");
            }
            return Ok(());
        }
        store::jobs::hold_allocation(&self.inner.pool, id, true).await
    }

    pub(super) async fn note_invoice(
        &self,
        id: &str,
        provider: &str,
        invoice: &str,
        amount: Option<Decimal>,
        state: ExecState,
    ) -> Result<()> {
        store::executions::note_invoice(&self.inner.pool, id, provider, invoice, amount, state.code()).await
    }

    /// The transaction that paid an invoice.
    pub(super) async fn tx_of(&self, invoice: &str) -> Result<Option<String>> {
        let payments = self.inner.payments.payments(None, 10_000, agora_payment::Scope::All).await?;
        Ok(payments
            .into_iter()
            .find(|p| {
                p.agreement_payments.iter().chain(&p.activity_payments).any(|s| s.document_id == invoice)
            })
            .map(|p| p.details))
    }
}

/// What paying left undone: verified providers the requestor could not pay (an acceptance
/// refused), and payments still on their way.
#[derive(Debug, Default)]
pub(super) struct Settled {
    pub(super) unpaid: Vec<String>,
    pub(super) pending: Vec<String>,
    /// Verified providers whose invoice did not come (or not at a justified amount) in time:
    /// the allocation holds for them.
    pub(super) awaiting_invoice: usize,
}

/// A provider that ran the job under an agreement, as paying and rejecting see it.
#[derive(Debug, Clone)]
pub(super) struct Party {
    pub(super) provider: Address,
    pub(super) agreement_id: String,
    /// The most its invoice may ask (see `bounds::justified`); nothing is justified without it.
    pub(super) max_amount: Option<Decimal>,
}

pub(super) fn parties(replicas: &[Replica]) -> Vec<Party> {
    replicas
        .iter()
        .filter(|r| r.activity_id.is_some())
        .filter_map(|r| {
            Some(Party {
                provider: r.provider,
                agreement_id: r.agreement_id.clone()?,
                max_amount: r.max_amount,
            })
        })
        .collect()
}

/// Why an invoice of `amount` cannot be accepted when its run justifies at most `max`; `None`
/// when it can.
pub(super) fn overcharge(amount: Decimal, max: Option<Decimal>, invoice: &str) -> Option<String> {
    match max {
        Some(max) if amount <= max => None,
        Some(max) => Some(format!(
            "invoice {} asks {}, but the agreed terms give at most {} for the run as the requestor saw it",
            short(invoice),
            amount.normalize(),
            max.normalize()
        )),
        // A replica of a job begun before bounds were recorded: accepted as invoiced, as then.
        None => None,
    }
}
