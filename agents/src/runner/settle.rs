//! Paying after the verdict (the verified providers' invoices accepted, the others' rejected
//! with the reason), debit notes accepted while replicas work, a job picked up again after a
//! restart, and reputation.

use super::{DEBIT_NOTE_TICK, INVOICE_WAIT, Jobs, PAYMENT_WAIT, REJECT_WAIT, Replica, short};
use crate::Result;
use crate::job::{ExecState, JobState};
use crate::verify::{self, Loss};
use agora_payment::model::{Acceptance, Kind, Rejection, RejectionReason, Status};
use alloy_primitives::Address;
use rust_decimal::Decimal;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

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
        let rows = sqlx::query(
            "SELECT e.job_id, e.agreement_id, j.allocation_id,
                    extract(epoch FROM now() - e.exec_at)::float8 AS seen_secs
             FROM job_executions e JOIN jobs j ON j.id = e.job_id
             WHERE j.state < 5 AND e.agreement_id IS NOT NULL AND j.allocation_id IS NOT NULL AND j.runner = $1",
        )
        .bind(&self.inner.node)
        .fetch_all(&self.inner.pool)
        .await?;
        for row in rows {
            let (id, agreement, allocation): (String, String, String) =
                (row.get("job_id"), row.get("agreement_id"), row.get("allocation_id"));
            let seen =
                row.get::<Option<f64>, _>("seen_secs").map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9)));
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
        let held: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT id, allocation_id, updated_at < now() - make_interval(secs => $2) FROM jobs
             WHERE allocation_held AND allocation_id IS NOT NULL AND runner = $1 AND state >= 6",
        )
        .bind(&self.inner.node)
        .bind(LATE_WATCH.as_secs_f64())
        .fetch_all(&self.inner.pool)
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
        let rows = sqlx::query(
            "SELECT provider, agreement_id, max_amount, invoice_id FROM job_executions
             WHERE job_id = $1 AND state = $2 AND agreement_id IS NOT NULL",
        )
        .bind(&id)
        .bind(ExecState::Verified.code())
        .fetch_all(&self.inner.pool)
        .await?;
        // Verified providers not marked paid yet, and those of them still without an
        // accepted invoice.
        let (mut unpaid, mut waiting) = (rows.len(), 0);
        for row in &rows {
            let provider: String = row.get("provider");
            if let Some(invoice) = row.get::<Option<String>, _>("invoice_id") {
                if payments.document(Kind::Invoice, &invoice).await?.status == Status::Settled {
                    unpaid -= 1;
                    let tx = self.tx_of(&invoice).await?;
                    sqlx::query("UPDATE job_executions SET state = $3, tx_hash = $4 WHERE job_id = $1 AND provider = $2")
                        .bind(&id)
                        .bind(&provider)
                        .bind(ExecState::Paid.code())
                        .bind(&tx)
                        .execute(&self.inner.pool)
                        .await?;
                }
                continue;
            }
            waiting += 1;
            let agreement: String = row.get("agreement_id");
            let max: Option<Decimal> = row.get("max_amount");
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
            sqlx::query("UPDATE jobs SET allocation_held = FALSE WHERE id = $1")
                .bind(&id)
                .execute(&self.inner.pool)
                .await?;
        }
        Ok(())
    }

    /// What a restart finds of a job: `None` when it is to run from the start.
    pub(super) async fn resume(&self, id: &str) -> Result<Option<(JobState, String)>> {
        let job = sqlx::query("SELECT allocation_id, demand_id FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&self.inner.pool)
            .await?;
        let allocation: Option<String> = job.get("allocation_id");
        let demand: Option<String> = job.get("demand_id");
        let rows = sqlx::query("SELECT * FROM job_executions WHERE job_id = $1")
            .bind(id)
            .fetch_all(&self.inner.pool)
            .await?;
        if allocation.is_none() && rows.is_empty() {
            return Ok(None);
        }
        let state_of = |r: &sqlx::postgres::PgRow| ExecState::from_code(r.get("state")).expect("a state");
        let provider_of = |r: &sqlx::postgres::PgRow| r.get::<String, _>("provider").parse::<Address>().ok();
        let parties: Vec<Party> = rows
            .iter()
            .filter(|r| r.get::<Option<String>, _>("activity_id").is_some())
            .filter_map(|r| {
                Some(Party {
                    provider: provider_of(r)?,
                    agreement_id: r.get("agreement_id"),
                    max_amount: r.get("max_amount"),
                })
            })
            .collect();
        for r in &rows {
            if let Some(activity) = r.get::<Option<String>, _>("activity_id") {
                let _ended = self.inner.activities.destroy(&activity).await;
            }
            if let Some(agreement) = r.get::<Option<String>, _>("agreement_id") {
                self.end_agreement(&agreement, "the job's run is over").await;
            }
        }
        let verdict = rows.iter().any(|r| matches!(state_of(r), ExecState::Verified | ExecState::Paid));
        if verdict {
            let paid: Vec<Address> = rows
                .iter()
                .filter(|r| matches!(state_of(r), ExecState::Verified | ExecState::Paid))
                .filter_map(provider_of)
                .collect();
            let refused: BTreeMap<Address, String> = rows
                .iter()
                .filter(|r| !matches!(state_of(r), ExecState::Verified | ExecState::Paid))
                .filter_map(|r| {
                    let reason =
                        r.get::<Option<String>, _>("reason").unwrap_or_else(|| "verification failed".into());
                    Some((provider_of(r)?, reason))
                })
                .collect();
            self.record(id, JobState::Paying, "the requestor node restarted; settling the verified result")
                .await?;
            let mut pending = Vec::new();
            if let Some(allocation) = &allocation {
                let settled = self.settle(id, &parties, &paid, &refused, allocation).await?;
                self.release_or_hold(id, allocation, &settled).await?;
                if !settled.unpaid.is_empty() {
                    if let Some(demand) = &demand {
                        let _gone = self.inner.market.unsubscribe_demand(demand).await;
                    }
                    let outcome = format!("verified, but {}", settled.unpaid.join("; "));
                    return Ok(Some((JobState::Failed, outcome)));
                }
                pending = settled.pending;
            }
            if let Some(demand) = &demand {
                let _gone = self.inner.market.unsubscribe_demand(demand).await;
            }
            let mut outcome = format!("verified: {} accepted, {} rejected", paid.len(), refused.len());
            // As a run that was not interrupted says it: what is still on its way.
            if !pending.is_empty() {
                outcome = format!("{outcome}; {}", pending.join("; "));
            }
            return Ok(Some((if paid.is_empty() { JobState::Failed } else { JobState::Completed }, outcome)));
        }
        // Interrupted before its verdict: what ran is not verified, so it is not paid; the job
        // runs again from the start, on a fresh allocation.
        let why = "the requestor node restarted during the run";
        self.record(id, JobState::Queued, &format!("{why}; its agreements end and the job runs again"))
            .await?;
        let refused: BTreeMap<Address, String> =
            parties.iter().map(|p| (p.provider, why.to_string())).collect();
        if let Some(allocation) = &allocation {
            let _nothing_accepted = self.settle(id, &parties, &[], &refused, allocation).await?;
            let _released = self.inner.payments.release_allocation(allocation).await;
        }
        if let Some(demand) = &demand {
            let _gone = self.inner.market.unsubscribe_demand(demand).await;
        }
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("DELETE FROM job_executions WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE jobs SET allocation_id = NULL, demand_id = NULL, results = NULL, decided = FALSE WHERE id = $1",
        )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(None)
    }

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
            let rows = sqlx::query("SELECT provider, invoice_id FROM job_executions WHERE job_id = $1 AND state = $2 AND invoice_id IS NOT NULL")
                .bind(id)
                .bind(ExecState::Verified.code())
                .fetch_all(&self.inner.pool)
                .await?;
            if rows.is_empty() {
                return Ok(settled);
            }
            for row in &rows {
                let invoice: String = row.get("invoice_id");
                let provider: String = row.get("provider");
                if payments.document(Kind::Invoice, &invoice).await?.status == Status::Settled {
                    let tx = self.tx_of(&invoice).await?;
                    sqlx::query("UPDATE job_executions SET state = $3, tx_hash = $4 WHERE job_id = $1 AND provider = $2")
                        .bind(id)
                        .bind(&provider)
                        .bind(ExecState::Paid.code())
                        .bind(&tx)
                        .execute(&self.inner.pool)
                        .await?;
                    self.record(
                        id,
                        JobState::Paying,
                        &format!("paid {} in transaction {}", short(&provider), tx.as_deref().unwrap_or("?")),
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
        sqlx::query("UPDATE jobs SET allocation_held = TRUE WHERE id = $1")
            .bind(id)
            .execute(&self.inner.pool)
            .await?;
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
        let noted = sqlx::query(
            "UPDATE job_executions SET invoice_id = $3, amount = $4
             WHERE job_id = $1 AND provider = $2 AND invoice_id IS NULL",
        )
        .bind(id)
        .bind(provider)
        .bind(invoice)
        .bind(amount)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if noted == 1 {
            sqlx::query(
                "UPDATE job_users u SET spent = u.spent + $2 FROM jobs j
                 WHERE j.id = $1 AND j.owner = 'user:' || u.id",
            )
            .bind(id)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn note_invoice(
        &self,
        id: &str,
        provider: &str,
        invoice: &str,
        amount: Option<Decimal>,
        state: ExecState,
    ) -> Result<()> {
        sqlx::query("UPDATE job_executions SET invoice_id = $3, amount = $4, state = $5 WHERE job_id = $1 AND provider = $2")
            .bind(id)
            .bind(provider)
            .bind(invoice)
            .bind(amount)
            .bind(state.code())
            .execute(&self.inner.pool)
            .await?;
        Ok(())
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

    pub(super) async fn reputation(&self, providers: &[Address]) -> Result<HashMap<Address, Standing>> {
        let names: Vec<String> = providers.iter().map(|p| format!("{p:#x}")).collect();
        let rows = sqlx::query(
            "SELECT provider, score, verified, failed, caught_at IS NOT NULL AS caught
             FROM reputation WHERE provider = ANY($1)",
        )
        .bind(&names)
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let p: String = r.get("provider");
                let standing = Standing {
                    score: r.get("score"),
                    verified: r.get("verified"),
                    failed: r.get("failed"),
                    caught: r.get("caught"),
                };
                Some((p.parse().ok()?, standing))
            })
            .collect())
    }
}

/// +1 for each verified run, ×2/3 for each failed one; a run that only lacked a verdict
/// (a tie) counts neither way. A provider a referee `caught` loses all its score and is left
/// out from then on; one it `spared` (its result was the referee's) is not judged.
pub(super) async fn update_reputation(
    db: &mut sqlx::PgConnection,
    replicas: &[Replica],
    paid: &[Address],
    refused: &BTreeMap<Address, String>,
    verdict: &verify::Verdict,
    caught: &[Address],
    spared: &[Address],
) -> Result<()> {
    let no_verdict: Vec<Address> =
        verdict.losers.iter().filter(|(_, l)| *l == Loss::NoVerdict).map(|(p, _)| *p).collect();
    for r in replicas {
        let provider = format!("{:#x}", r.provider);
        if caught.contains(&r.provider) {
            sqlx::query(
                "INSERT INTO reputation (provider, score, verified, failed, caught_at) VALUES ($1, 0, 0, 1, now())
                 ON CONFLICT (provider) DO UPDATE SET
                     score = 0, failed = reputation.failed + 1, caught_at = now(), updated_at = now()",
            )
            .bind(&provider)
            .execute(&mut *db)
            .await?;
            continue;
        }
        let verified = paid.contains(&r.provider);
        // A provider that never ran (it declined, or did not answer in time) is not judged.
        if r.activity_id.is_none()
            || spared.contains(&r.provider)
            || !verified && (!refused.contains_key(&r.provider) || no_verdict.contains(&r.provider))
        {
            continue;
        }
        // In one statement, so jobs ending at once do not lose each other's outcomes; the
        // rule is verify::reputation_after's.
        sqlx::query(
            "INSERT INTO reputation (provider, score, verified, failed) VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider) DO UPDATE SET
                 score = CASE WHEN $3 = 1 THEN reputation.score + 1 ELSE reputation.score * 2 / 3 END,
                 verified = reputation.verified + $3, failed = reputation.failed + $4, updated_at = now()",
        )
        .bind(&provider)
        .bind(verify::reputation_after(0.0, verified))
        .bind(i64::from(verified))
        .bind(i64::from(!verified))
        .execute(&mut *db)
        .await?;
    }
    Ok(())
}

/// A provider's record with this node's jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Standing {
    pub(super) score: f64,
    pub(super) verified: i64,
    pub(super) failed: i64,
    /// A referee contradicted a group it was in: it is left out of this node's jobs.
    pub(super) caught: bool,
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
    /// The most its invoice may ask (see `flow::justified`); nothing is justified without it.
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
fn overcharge(amount: Decimal, max: Option<Decimal>, invoice: &str) -> Option<String> {
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
