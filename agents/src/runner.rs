//! The requestor's job runner: a job's rows in Postgres, and the flow that runs it. It reserves
//! the budget in an allocation, publishes a demand, waits for bids, chooses providers by
//! reputation, negotiates, runs, verifies by commit and reveal (adding replicas while a verdict
//! is still possible), pays the verified providers and rejects the others' invoices.

use crate::job::{ExecState, JobSpec, JobState, Verifier};
use crate::verify::{self, Commitment, Loss, NoVerdict};
use crate::wire::{SignedCommitment, VerifyRequest, VerifyResponse};
use crate::{Error, Result};
use agora_activity::Activities;
use agora_market::api::{DemandOfferBase, Event, ProposalView};
use agora_market::{AgreementState, Market, ProposalState};
use agora_payment::Payments;
use agora_payment::model::{Acceptance, Kind, NewAllocation, Rejection, RejectionReason, Status};
use alloy_primitives::Address;
use chrono::Utc;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long negotiating with one provider may take, from counter to approval: Golem's SDK gives
/// a provider 15 s to approve.
const NEGOTIATION: Duration = Duration::from_secs(20);
/// How long the runner waits for an ended agreement's invoice.
const INVOICE_WAIT: Duration = Duration::from_secs(60);
/// How often the runner accepts the debit notes of replicas at work.
const DEBIT_NOTE_TICK: Duration = Duration::from_millis(500);
/// How long it waits for an unverified provider's invoice, to reject it.
const REJECT_WAIT: Duration = Duration::from_secs(10);
/// How long it waits for the verified providers' payments to be confirmed on chain.
const PAYMENT_WAIT: Duration = Duration::from_secs(180);

/// The job runner. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    market: Market,
    activities: Activities,
    payments: Payments,
    net: agora_net::NetHandle,
    identity: agora_identity::Identity,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// The running jobs' stops, by id.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Woken when any job records an event.
    events: tokio::sync::Notify,
    /// Jobs running at once, at most; the others wait, queued.
    slots: Arc<tokio::sync::Semaphore>,
}

/// Jobs a node runs at once unless its settings say otherwise.
pub const DEFAULT_MAX_RUNNING: usize = 8;

/// One replica as the flow knows it.
#[derive(Debug, Clone)]
struct Replica {
    provider: Address,
    proposal: ProposalView,
    /// The worst it may cost, from its prices and the job's timeout.
    agreement_id: Option<String>,
    peer: Option<String>,
    activity_id: Option<String>,
    commitment: Option<Commitment>,
    stdout: Option<String>,
    /// The run command's result: stdout, stderr and exit code, to rebuild the results folder.
    run: Option<agora_activity::wire::CommandResult>,
    outputs: BTreeMap<String, String>,
    failure: Option<String>,
}

impl Jobs {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: PgPool,
        market: Market,
        activities: Activities,
        payments: Payments,
        net: agora_net::NetHandle,
        identity: agora_identity::Identity,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                market,
                activities,
                payments,
                net,
                identity,
                tasks,
                shutdown,
                running: Mutex::default(),
                events: tokio::sync::Notify::new(),
                slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_RUNNING)),
            }),
        }
    }

    /// Runs at most `max` jobs at once.
    pub fn with_max_running(mut self, max: usize) -> Self {
        Arc::get_mut(&mut self.inner).expect("set before the runner is shared").slots =
            Arc::new(tokio::sync::Semaphore::new(max.max(1)));
        self
    }

    /// Checks and stores a job, and starts it; returns its id.
    pub async fn submit(&self, spec: JobSpec) -> Result<String> {
        spec.check().map_err(Error::BadInput)?;
        let id = new_id();
        sqlx::query("INSERT INTO jobs (id, spec) VALUES ($1, $2)")
            .bind(&id)
            .bind(serde_json::to_value(&spec).expect("a spec is JSON"))
            .execute(&self.inner.pool)
            .await?;
        self.record(&id, JobState::Queued, "queued").await?;
        self.start(id.clone(), spec);
        Ok(id)
    }

    /// After a restart: every unfinished job starts again where it can (see [`Jobs::run`]).
    pub async fn recover(&self) -> Result<()> {
        let rows = sqlx::query("SELECT id, spec, state FROM jobs WHERE state < 6 ORDER BY created_at")
            .fetch_all(&self.inner.pool)
            .await?;
        for row in rows {
            let id: String = row.get("id");
            match serde_json::from_value::<JobSpec>(row.get("spec")) {
                Ok(spec) => self.start(id, spec),
                Err(e) => {
                    self.clean_up(&id).await;
                    self.finish(&id, JobState::Failed, &format!("its stored spec no longer reads: {e}"))
                        .await?;
                }
            }
        }
        Ok(())
    }

    fn start(&self, id: String, spec: JobSpec) {
        let stop = self.inner.shutdown.child_token();
        self.inner.running.lock().expect("running").insert(id.clone(), stop.clone());
        let jobs = self.clone();
        self.inner.tasks.spawn(async move {
            let slots = jobs.inner.slots.clone();
            let outcome = tokio::select! {
                outcome = async {
                    let _slot = slots.acquire_owned().await.expect("the semaphore is never closed");
                    jobs.run(&id, &spec).await
                } => Some(outcome),
                () = stop.cancelled() => None,
            };
            jobs.inner.running.lock().expect("running").remove(&id);
            let ended = match outcome {
                Some(Ok((state, message))) => jobs.finish(&id, state, &message).await,
                Some(Err(e)) => {
                    jobs.clean_up(&id).await;
                    jobs.finish(&id, JobState::Failed, &e.to_string()).await
                }
                // Cancelled, or the node is stopping (then `recover` ends it at the next start).
                None if jobs.inner.shutdown.is_cancelled() => Ok(()),
                None => {
                    jobs.clean_up(&id).await;
                    jobs.finish(&id, JobState::Cancelled, "cancelled by the requestor").await
                }
            };
            if let Err(e) = ended {
                tracing::warn!(job = %id, error = %e, "recording the job's end");
            }
        });
    }

    /// Accepts, until the node stops, the debit notes of replicas still at work: they say the
    /// provider is working, and bind nothing (no `paymentDueDate`), so accepting them pays
    /// nothing before the verdict. A provider whose notes go unaccepted stops working.
    pub fn serve(&self) {
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
                    }
                }
            }
        });
    }

    async fn accept_debit_notes(&self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT e.agreement_id, j.allocation_id FROM job_executions e JOIN jobs j ON j.id = e.job_id
             WHERE j.state < 5 AND e.state IN (1, 2, 3) AND e.agreement_id IS NOT NULL AND j.allocation_id IS NOT NULL",
        )
        .fetch_all(&self.inner.pool)
        .await?;
        for row in rows {
            let (agreement, allocation): (String, String) = (row.get(0), row.get(1));
            let notes = self.inner.payments.agreement_documents(Kind::DebitNote, &agreement).await?;
            for note in notes {
                let d = &note.document;
                if note.issued_here || note.status != Status::Received || d.payment_due_date.is_some() {
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

    /// Cancels a job that is not finished: its activities stop and its agreements end.
    pub async fn cancel(&self, id: &str) -> Result<()> {
        let state = self.state(id).await?;
        if state.is_final() {
            return Err(Error::Conflict(format!("job {id} is already {}", state.label())));
        }
        let stop = self.inner.running.lock().expect("running").get(id).cloned();
        match stop {
            Some(stop) => stop.cancel(),
            None => {
                self.clean_up(id).await;
                self.finish(id, JobState::Cancelled, "cancelled by the requestor").await?;
            }
        }
        Ok(())
    }

    async fn state(&self, id: &str) -> Result<JobState> {
        let code: Option<i16> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?;
        let code = code.ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
        Ok(JobState::from_code(code).expect("the table checks the state"))
    }

    /// A job as `GET /jobs/{id}` shows it: its spec, state, results, replicas and steps.
    pub async fn get(&self, id: &str) -> Result<Value> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
        let mut job = job_view(&row);
        let executions =
            sqlx::query("SELECT * FROM job_executions WHERE job_id = $1 ORDER BY created_at, provider")
                .bind(id)
                .fetch_all(&self.inner.pool)
                .await?;
        job["executions"] = executions.iter().map(execution_view).collect();
        job["events"] = json!(self.events(id, 0).await?);
        Ok(job)
    }

    /// Every job, newest first.
    pub async fn list(&self) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT * FROM jobs ORDER BY created_at DESC, id")
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(rows.iter().map(job_view).collect())
    }

    /// A job's steps after event `after`, oldest first.
    pub async fn events(&self, id: &str, after: i64) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT * FROM job_events WHERE job_id = $1 AND id > $2 ORDER BY id")
            .bind(id)
            .bind(after)
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let state = JobState::from_code(r.get("state")).expect("a state");
                json!({
                    "id": r.get::<i64, _>("id"),
                    "at": r.get::<chrono::DateTime<Utc>, _>("at"),
                    "state": state.label(),
                    "stateCode": state.code(),
                    "message": r.get::<String, _>("message"),
                })
            })
            .collect())
    }

    /// Waits up to `timeout` for a job's steps after `after`.
    pub async fn wait_events(&self, id: &str, after: i64, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.inner.events.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let events = self.events(id, after).await?;
            if !events.is_empty() || self.state(id).await?.is_final() {
                return Ok(events);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// Records a step: the job's state now, and what happened.
    async fn record(&self, id: &str, state: JobState, message: &str) -> Result<()> {
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("UPDATE jobs SET state = $2, updated_at = now() WHERE id = $1 AND state < 6")
            .bind(id)
            .bind(state.code())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO job_events (job_id, state, message) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(state.code())
            .bind(message)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(job = id, state = state.label(), "{message}");
        self.inner.events.notify_waiters();
        Ok(())
    }

    async fn finish(&self, id: &str, state: JobState, message: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET message = $2 WHERE id = $1")
            .bind(id)
            .bind(message)
            .execute(&self.inner.pool)
            .await?;
        self.record(id, state, message).await
    }

    /// Ends what a job left behind: its activities, its agreements, its allocation.
    async fn clean_up(&self, id: &str) {
        let rows = sqlx::query("SELECT agreement_id, activity_id FROM job_executions WHERE job_id = $1")
            .bind(id)
            .fetch_all(&self.inner.pool)
            .await
            .unwrap_or_default();
        for row in rows {
            if let Some(activity) = row.get::<Option<String>, _>("activity_id") {
                let _ended = self.inner.activities.destroy(&activity).await;
            }
            if let Some(agreement) = row.get::<Option<String>, _>("agreement_id") {
                self.end_agreement(&agreement, "the job ended").await;
            }
        }
        let job: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT allocation_id, demand_id FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.inner.pool)
                .await
                .ok()
                .flatten();
        let (allocation, demand) = job.unwrap_or_default();
        if let Some(allocation) = allocation {
            let _released = self.inner.payments.release_allocation(&allocation).await;
        }
        if let Some(demand) = demand {
            let _gone = self.inner.market.unsubscribe_demand(&demand).await;
        }
    }

    async fn end_agreement(&self, agreement_id: &str, why: &str) {
        let Ok(agreement) = self.inner.market.agreement(agreement_id).await else { return };
        let reason = Some(json!({"message": why}));
        let ended = match agreement.state {
            AgreementState::Approved => self.inner.market.terminate_agreement(agreement_id, reason).await,
            AgreementState::Proposal | AgreementState::Pending => {
                self.inner.market.cancel_agreement(agreement_id, reason).await
            }
            _ => Ok(()),
        };
        if let Err(e) = ended {
            tracing::warn!(agreement = agreement_id, error = %e, "ending the agreement");
        }
    }

    async fn set_execution(
        &self,
        id: &str,
        replica: &Replica,
        state: ExecState,
        reason: Option<&str>,
    ) -> Result<()> {
        let commitment =
            replica.commitment.map(|c| json!({"hash": c.hash.map(hex::encode), "seal": hex::encode(c.seal)}));
        sqlx::query(
            "INSERT INTO job_executions (job_id, provider, agreement_id, activity_id, state, commitment, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (job_id, provider) DO UPDATE SET agreement_id = $3, activity_id = $4, state = $5,
                 commitment = coalesce($6, job_executions.commitment), reason = coalesce($7, job_executions.reason)",
        )
        .bind(id)
        .bind(format!("{:#x}", replica.provider))
        .bind(&replica.agreement_id)
        .bind(&replica.activity_id)
        .bind(state.code())
        .bind(commitment)
        .bind(reason)
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }

    /// Runs a job to its end; returns the state it ends in and why. A job an earlier run of the
    /// node left under way is resumed: settled if its verdict was reached, else run again.
    async fn run(&self, id: &str, spec: &JobSpec) -> Result<(JobState, String)> {
        if let Some(outcome) = self.resume(id).await? {
            return Ok(outcome);
        }
        self.run_fresh(id, spec).await
    }

    /// What a restart finds of a job: `None` when it is to run from the start.
    async fn resume(&self, id: &str) -> Result<Option<(JobState, String)>> {
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
            .filter_map(|r| Some(Party { provider: provider_of(r)?, agreement_id: r.get("agreement_id") }))
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
            if let Some(allocation) = &allocation {
                self.settle(id, &parties, &paid, &refused, allocation).await?;
                let _released = self.inner.payments.release_allocation(allocation).await;
            }
            if let Some(demand) = &demand {
                let _gone = self.inner.market.unsubscribe_demand(demand).await;
            }
            let outcome = format!("verified: {} accepted, {} rejected", paid.len(), refused.len());
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
            self.settle(id, &parties, &[], &refused, allocation).await?;
            let _released = self.inner.payments.release_allocation(allocation).await;
        }
        if let Some(demand) = &demand {
            let _gone = self.inner.market.unsubscribe_demand(demand).await;
        }
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("DELETE FROM job_executions WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE jobs SET allocation_id = NULL, demand_id = NULL, results = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn run_fresh(&self, id: &str, spec: &JobSpec) -> Result<(JobState, String)> {
        let budget = spec.check().map_err(Error::BadInput)?;

        let t = Duration::from_secs(spec.timeout);
        let started = Instant::now();
        // Commit by start + 2T, reveal by decision + T, then the invoices and payments.
        let final_deadline = Utc::now()
            + chrono::Duration::from_std(4 * t + INVOICE_WAIT + PAYMENT_WAIT).expect("a bounded timeout");

        self.record(id, JobState::FindingProviders, &format!("reserving a budget of {budget}")).await?;
        let allocation = self
            .inner
            .payments
            .create_allocation(NewAllocation {
                address: None,
                payment_platform: None,
                total_amount: budget.to_string(),
                timeout: Some(final_deadline),
                make_deposit: false,
            })
            .await?;
        sqlx::query("UPDATE jobs SET allocation_id = $2 WHERE id = $1")
            .bind(id)
            .bind(&allocation.id)
            .execute(&self.inner.pool)
            .await?;

        let base = self.demand(id, spec, &allocation, final_deadline).await?;
        let demand_id = self.inner.market.subscribe_demand(&base).await?;
        sqlx::query("UPDATE jobs SET demand_id = $2 WHERE id = $1")
            .bind(id)
            .bind(&demand_id)
            .execute(&self.inner.pool)
            .await?;
        self.record(id, JobState::FindingProviders, &format!("waiting for {} bids", spec.min_bids())).await?;
        let mut bids = Bids { offers: BTreeMap::new(), only: spec.providers.clone() };
        let bid_deadline = started + t;
        while bids.offers.len() < spec.min_bids() {
            let left = bid_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok((
                    JobState::Failed,
                    format!(
                        "{} providers bid within the job's timeout of {} s; min_bids is {}",
                        bids.offers.len(),
                        spec.timeout,
                        spec.min_bids()
                    ),
                ));
            }
            let events = self
                .inner
                .market
                .collect_demand_events(&demand_id, left.min(Duration::from_secs(1)), 100)
                .await?;
            bids.take(events);
        }
        let reputation = self.reputation(&bids.offers.keys().copied().collect::<Vec<_>>()).await?;
        let mut pool = choose(&bids.offers, &reputation);
        self.record(
            id,
            JobState::Negotiating,
            &format!("{} bids; choosing {}", bids.offers.len(), spec.concurrency),
        )
        .await?;

        let mut replicas: Vec<Replica> = Vec::new();
        let mut spent_worst = Decimal::ZERO;
        let mut wanted = spec.concurrency;
        let verdict = loop {
            // Engage `wanted` more providers, within the budget.
            let mut fresh = Vec::new();
            while fresh.len() < wanted {
                let Some(address) = pool.first().copied() else { break };
                pool.remove(0);
                let proposal = bids.offers[&address].clone();
                let worst_cost = worst_cost(&proposal, t);
                if spent_worst + worst_cost > budget {
                    continue;
                }
                spent_worst += worst_cost;
                fresh.push(Replica {
                    provider: address,
                    proposal,

                    agreement_id: None,
                    peer: None,
                    activity_id: None,
                    commitment: None,
                    stdout: None,
                    run: None,
                    outputs: BTreeMap::new(),
                    failure: None,
                });
            }
            if fresh.is_empty() && replicas.is_empty() {
                return Ok((JobState::Failed, format!("no provider's price fits the budget of {budget}")));
            }
            if !fresh.is_empty() {
                self.negotiate(id, &demand_id, &base, &mut fresh, &mut bids).await?;
                self.record(id, JobState::Running, &format!("running on {}", providers(&fresh))).await?;
                let runs = fresh.iter_mut().map(|r| self.execute(id, spec, r, started + 2 * t));
                futures_util::future::join_all(runs).await;
                replicas.extend(fresh);
            }
            if spec.verifier == Verifier::None {
                break None;
            }
            self.resolve_replays(id, &mut replicas, Instant::now() + t).await;
            let commitments: Vec<Commitment> = replicas.iter().filter_map(|r| r.commitment).collect();
            let verdict = verify::decide(&commitments, spec.confidence);
            match &verdict.undecided {
                None => break Some(verdict),
                Some(why) => {
                    let more = pool.iter().any(|a| spent_worst + worst_cost(&bids.offers[a], t) <= budget);
                    let next = if more {
                        "; adding a replica"
                    } else if pool.is_empty() {
                        "; no provider left to add"
                    } else {
                        "; the budget cannot pay for another replica"
                    };
                    self.record(
                        id,
                        JobState::Verifying,
                        &format!("no verdict yet ({}){next}", no_verdict(why)),
                    )
                    .await?;
                    if !more {
                        break Some(verdict);
                    }
                    // Pool members that the budget cannot take are skipped as they come up.
                    wanted = 1;
                }
            }
        };

        // The decision: who is paid, who is not, and why.
        let mut paid: Vec<Address> = Vec::new();
        let mut refused: BTreeMap<Address, String> = BTreeMap::new();
        let mut results = None;
        match &verdict {
            None => {
                // No verifier: the one replica is paid when its run finished.
                for r in &replicas {
                    match &r.failure {
                        None => paid.push(r.provider),
                        Some(why) => {
                            refused.insert(r.provider, why.clone());
                        }
                    }
                }
            }
            Some(verdict) => {
                for r in &replicas {
                    if let Some(why) = &r.failure {
                        refused.insert(r.provider, why.clone());
                    }
                }
                for (provider, loss) in &verdict.losers {
                    refused.insert(*provider, format!("verification failed: {}", loss_reason(loss)));
                }
                if verdict.undecided.is_none() {
                    self.record(
                        id,
                        JobState::Verifying,
                        &format!("{} results agree; asking them to reveal", verdict.winners.len()),
                    )
                    .await?;
                    let reveal_deadline = Instant::now() + t;
                    let winners: Vec<&Replica> = verdict
                        .winners
                        .iter()
                        .map(|w| replicas.iter().find(|r| r.provider == *w).expect("a winner ran"))
                        .collect();
                    // All at once: one that holds its answer does not eat into the others' time.
                    let reveals = futures_util::future::join_all(
                        winners.iter().map(|r| self.reveal(id, r, reveal_deadline)),
                    )
                    .await;
                    for (replica, revealed) in winners.into_iter().zip(reveals) {
                        let winner = &replica.provider;
                        match revealed {
                            Ok(digest) => {
                                paid.push(*winner);
                                if results.as_ref().is_none_or(|r: &Value| r["checked"] != true) {
                                    let checked = self.check_outputs(spec, replica, &digest);
                                    if let Err(why) = &checked {
                                        tracing::info!(job = id, provider = %winner, "outputs not checked: {why}");
                                    }
                                    results = Some(json!({
                                        "digest": digest, "stdout": replica.stdout, "outputs": replica.outputs,
                                        "checked": checked.is_ok(), "unchecked": checked.err(),
                                    }));
                                }
                            }
                            Err(why) => {
                                refused.insert(*winner, format!("verification failed: {why}"));
                            }
                        }
                    }
                    let needed = spec.confidence.max(2);
                    if paid.len() < needed {
                        for p in paid.drain(..) {
                            refused.insert(p, "verification failed: too few results were revealed".into());
                        }
                        results = None;
                    }
                }
            }
        }
        for r in &replicas {
            let state = if paid.contains(&r.provider) {
                ExecState::Verified
            } else if r.failure.is_some() {
                ExecState::Failed
            } else {
                ExecState::Lost
            };
            self.set_execution(id, r, state, refused.get(&r.provider).map(String::as_str)).await?;
        }
        if verdict.is_some() {
            self.update_reputation(&replicas, &paid, &refused, verdict.as_ref()).await?;
        }
        if let Some(results) = &results {
            sqlx::query("UPDATE jobs SET results = $2 WHERE id = $1")
                .bind(id)
                .bind(results)
                .execute(&self.inner.pool)
                .await?;
        }
        let outcome = match &verdict {
            Some(v) if v.undecided.is_some() => {
                format!("no verdict: {}", no_verdict(v.undecided.as_ref().expect("undecided")))
            }
            _ if paid.is_empty() => "no result was verified".to_string(),
            _ => format!("verified: {} accepted, {} rejected", paid.len(), refused.len()),
        };
        self.record(id, JobState::Verifying, &outcome).await?;

        // The agreements end; the providers invoice; only the verified are paid.
        for r in &replicas {
            if let Some(activity) = &r.activity_id {
                let _ended = self.inner.activities.destroy(activity).await;
            }
            if let Some(agreement) = &r.agreement_id {
                self.end_agreement(agreement, "the job's run is over").await;
            }
        }
        self.record(id, JobState::Paying, &format!("accepting the invoices of {}", paid.len())).await?;
        self.settle(id, &parties(&replicas), &paid, &refused, &allocation.id).await?;
        let _released = self.inner.payments.release_allocation(&allocation.id).await;
        let _gone = self.inner.market.unsubscribe_demand(&demand_id).await;
        Ok(if results.is_some() || (verdict.is_none() && !paid.is_empty()) {
            (JobState::Completed, outcome)
        } else {
            (JobState::Failed, outcome)
        })
    }

    /// The demand: the job's package and runtime, its payment platform and allocation.
    async fn demand(
        &self,
        id: &str,
        spec: &JobSpec,
        allocation: &agora_payment::model::Allocation,
        until: chrono::DateTime<Utc>,
    ) -> Result<DemandOfferBase> {
        let decorations =
            self.inner.payments.demand_decorations(std::slice::from_ref(&allocation.id)).await?;
        let mut properties = serde_json::Map::new();
        properties.insert("golem.srv.comp.expiration".into(), json!(until.timestamp_millis()));
        properties.insert(agora_market::keys::TASK_PACKAGE.into(), json!(spec.module));
        properties.insert(agora_market::keys::CHOSEN_PLATFORM.into(), json!(allocation.platform));
        properties.insert("agora.job.id".into(), json!(id));
        for p in decorations["properties"].as_array().into_iter().flatten() {
            if let Some(key) = p["key"].as_str() {
                properties.insert(key.into(), p["value"].clone());
            }
        }
        let mut constraints = format!(
            "(golem.runtime.name={})(golem.com.pricing.model=linear)(golem.com.scheme=payu)",
            spec.engine.runtime()
        );
        if let Some(subnet) = &spec.subnet {
            constraints.push_str(&format!("(golem.node.debug.subnet={subnet})"));
        }
        constraints.push_str(&format!("({}=*)", agora_market::keys::platform_address(&allocation.platform)));
        Ok(DemandOfferBase {
            properties: Value::Object(properties),
            constraints: format!("(&{constraints})"),
        })
    }

    /// Counters each replica's offer, signs an agreement on the provider's answer, and waits for
    /// its approval. A replica that does not get there is marked failed.
    async fn negotiate(
        &self,
        id: &str,
        demand_id: &str,
        base: &DemandOfferBase,
        replicas: &mut [Replica],
        bids: &mut Bids,
    ) -> Result<()> {
        let deadline = Instant::now() + NEGOTIATION;
        let mut drafts: HashMap<String, usize> = HashMap::new();
        for (i, r) in replicas.iter_mut().enumerate() {
            self.set_execution(id, r, ExecState::Chosen, None).await?;
            match self.inner.market.counter_proposal(demand_id, &r.proposal.proposal_id, base, false).await {
                Ok(draft) => {
                    drafts.insert(draft, i);
                }
                Err(e) => r.failure = Some(format!("negotiation failed: {e}")),
            }
        }
        let valid_to = Utc::now() + chrono::Duration::hours(1);
        let mut pending = drafts.len();
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let events = self
                .inner
                .market
                .collect_demand_events(demand_id, left.min(Duration::from_secs(1)), 100)
                .await?;
            for event in &events {
                if let Event::ProposalRejected { proposal_id, reason, .. } = event
                    && let Some(&i) = drafts.get(proposal_id)
                {
                    pending -= 1;
                    let why = reason.as_ref().and_then(|r| r["message"].as_str().map(str::to_string));
                    replicas[i].failure = Some(format!(
                        "the provider declined: {}",
                        why.unwrap_or_else(|| "no reason given".into())
                    ));
                }
            }
            for event in bids.take(events) {
                let Some(&i) = event.prev_proposal_id.as_ref().and_then(|prev| drafts.get(prev)) else {
                    continue;
                };
                pending -= 1;
                let r = &mut replicas[i];
                let agreed = async {
                    let agreement = self.inner.market.create_agreement(&event.proposal_id, valid_to).await?;
                    r.agreement_id = Some(agreement.clone());
                    self.inner.market.confirm_agreement(&agreement).await?;
                    Ok::<_, agora_market::Error>(agreement)
                };
                if let Err(e) = agreed.await {
                    r.failure = Some(format!("negotiation failed: {e}"));
                }
            }
        }
        let approvals = replicas.iter_mut().map(|r| async move {
            if r.failure.is_some() {
                return;
            }
            let Some(agreement) = r.agreement_id.clone() else {
                r.failure = Some("the provider did not answer the counter-proposal".into());
                return;
            };
            match self.inner.market.wait_for_approval(&agreement, NEGOTIATION).await {
                Ok(Some(AgreementState::Approved)) => {
                    r.peer = self.inner.market.agreement(&agreement).await.ok().map(|a| a.peer_id);
                }
                Ok(Some(state)) => {
                    r.failure = Some(format!("the provider's answer to the agreement: {state}"))
                }
                Ok(None) => {
                    r.failure =
                        Some(format!("the provider did not approve within {} s", NEGOTIATION.as_secs()));
                }
                Err(e) => r.failure = Some(format!("negotiation failed: {e}")),
            }
        });
        futures_util::future::join_all(approvals).await;
        for r in replicas.iter() {
            let state = if r.failure.is_some() { ExecState::Failed } else { ExecState::Agreed };
            self.set_execution(id, r, state, r.failure.as_deref()).await?;
        }
        Ok(())
    }

    /// Runs the job on one replica and takes its commitment, by `deadline`.
    async fn execute(&self, id: &str, spec: &JobSpec, r: &mut Replica, deadline: Instant) {
        if r.failure.is_some() {
            return;
        }
        let ran = tokio::time::timeout_at(deadline, self.execute_inner(id, spec, r)).await;
        let failure = match ran {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => Some("it did not commit to a result by the commit deadline".into()),
        };
        let state = if failure.is_some() { ExecState::Failed } else { ExecState::Committed };
        r.failure = failure;
        if let Err(e) = self.set_execution(id, r, state, r.failure.as_deref()).await {
            tracing::warn!(job = id, error = %e, "recording a replica");
        }
    }

    async fn execute_inner(&self, id: &str, spec: &JobSpec, r: &mut Replica) -> Result<(), String> {
        let activities = &self.inner.activities;
        let agreement = r.agreement_id.clone().expect("an agreed replica");
        let activity =
            activities.create(&agreement).await.map_err(|e| format!("creating the activity: {e}"))?;
        r.activity_id = Some(activity.clone());
        self.set_execution(id, r, ExecState::Running, None).await.map_err(|e| e.to_string())?;
        let batch = activities
            .exec(&activity, &spec.script().to_string())
            .await
            .map_err(|e| format!("starting the run: {e}"))?;
        let results = loop {
            let results = activities
                .results(&activity, &batch, Duration::from_secs(10), None)
                .await
                .map_err(|e| format!("the run's results: {e}"))?;
            if results.last().is_some_and(|l| l.is_batch_finished) {
                break results;
            }
        };
        if let Some(failed) = results.iter().find(|c| c.result != "Ok") {
            return Err(format!(
                "command {} failed: {}",
                failed.index,
                failed.message.clone().unwrap_or_default()
            ));
        }
        let run_index = 2 + spec.inputs.len();
        r.stdout = results.get(run_index).and_then(|c| c.stdout.clone());
        r.run = results.get(run_index).cloned();
        for (output, result) in spec.outputs.iter().zip(results.iter().skip(run_index + 1)) {
            if let Some(blob) = &result.blob {
                r.outputs.insert(output.name.clone(), blob.clone());
            }
        }
        if spec.verifier == Verifier::None {
            return Ok(());
        }
        let peer = r.peer.clone().ok_or("the provider's peer is unknown")?;
        let request = VerifyRequest::Commit { activity_id: activity.clone(), job_id: id.into() };
        let answer: VerifyResponse = self
            .inner
            .net
            .request_typed(agora_net::Channel::Verify, &peer, &request)
            .await
            .map_err(|e| format!("asking for its commitment: {e}"))?;
        let sealed = match answer {
            VerifyResponse::Committed { sealed } => sealed,
            VerifyResponse::Refused { message } => return Err(format!("it committed to nothing: {message}")),
            other => return Err(format!("it answered a commit with {other:?}")),
        };
        let bytes = hex::decode(sealed).map_err(|_| "its commitment is not hex")?;
        let opened =
            self.inner.identity.unseal(&bytes).map_err(|e| format!("its commitment does not open: {e}"))?;
        let signed: SignedCommitment =
            serde_json::from_slice(&opened).map_err(|e| format!("its commitment is malformed: {e}"))?;
        agora_identity::verify_json(&signed.body, &signed.signature, r.provider)
            .map_err(|e| format!("its commitment is not signed by it: {e}"))?;
        if signed.body.job_id != id || signed.body.activity_id != activity {
            return Err("its commitment is for another job or activity".into());
        }
        r.commitment = Some(signed.body.commitment()?);
        Ok(())
    }

    /// A seal held by more than one provider was copied: each holder is asked to reveal now, and
    /// only the one whose digest opens it under its own address keeps its commitment. The others
    /// fail, as replays.
    async fn resolve_replays(&self, id: &str, replicas: &mut [Replica], deadline: Instant) {
        let mut holders: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
        for (i, r) in replicas.iter().enumerate() {
            if let Some(c) = r.commitment {
                holders.entry(c.seal).or_default().push(i);
            }
        }
        for indices in holders.into_values().filter(|h| h.len() > 1) {
            for i in indices {
                if self.reveal(id, &replicas[i], deadline).await.is_err() {
                    let r = &mut replicas[i];
                    r.commitment = None;
                    r.failure = Some(format!("verification failed: {}", loss_reason(&Loss::Replayed)));
                    if let Err(e) = self.set_execution(id, r, ExecState::Failed, r.failure.as_deref()).await {
                        tracing::warn!(job = id, error = %e, "recording a replica");
                    }
                }
            }
        }
    }

    /// Rebuilds a winner's results folder from what came back (its stdout, stderr and exit code,
    /// and its outputs, fetched into this node's blobs) and checks its `h1:` hash against the
    /// verified digest. It can only match when the job names every file its run leaves in
    /// `/output`, and its stdout and stderr are text within the size a result carries.
    fn check_outputs(&self, spec: &JobSpec, r: &Replica, digest: &str) -> Result<(), String> {
        let run = r.run.as_ref().ok_or("no run result")?;
        let dir = std::env::temp_dir().join(format!("agora-results-{}", new_id()));
        let built = (|| -> Result<String, String> {
            let io = |e: std::io::Error| e.to_string();
            std::fs::create_dir_all(dir.join("outputs")).map_err(io)?;
            std::fs::write(dir.join("stdout"), run.stdout.as_deref().unwrap_or_default()).map_err(io)?;
            std::fs::write(dir.join("stderr"), run.stderr.as_deref().unwrap_or_default()).map_err(io)?;
            std::fs::write(dir.join("exitCode"), format!("{}\n", run.exit_code.unwrap_or_default()))
                .map_err(io)?;
            for output in &spec.outputs {
                let blob = r
                    .outputs
                    .get(&output.name)
                    .ok_or_else(|| format!("output {} did not come back", output.name))?;
                let sha = blob.strip_prefix("blob:sha256:").unwrap_or(blob);
                let from = self
                    .inner
                    .activities
                    .blobs()
                    .path(sha)
                    .ok_or_else(|| format!("blob {sha} is not here"))?;
                let to = dir.join("outputs").join(&output.path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::copy(from, to).map_err(io)?;
            }
            agora_activity::results_hash(&dir).map_err(|e| e.to_string())
        })();
        let _removed = std::fs::remove_dir_all(&dir);
        let built = built?;
        if built != digest {
            return Err(format!(
                "what came back hashes to {built}, not the verified {digest}: name every file the run leaves in /output"
            ));
        }
        Ok(())
    }

    /// Asks a winner for its digest, which must open its commitment.
    async fn reveal(&self, id: &str, r: &Replica, deadline: Instant) -> Result<String, String> {
        let (Some(peer), Some(activity), Some(commitment)) = (&r.peer, &r.activity_id, &r.commitment) else {
            return Err("it has no commitment".into());
        };
        let request = VerifyRequest::Reveal { activity_id: activity.clone(), job_id: id.into() };
        let asked =
            self.inner.net.request_typed::<_, VerifyResponse>(agora_net::Channel::Verify, peer, &request);
        let digest = match tokio::time::timeout_at(deadline, asked).await {
            Err(_) => return Err("it did not reveal by the reveal deadline".into()),
            Ok(Err(e)) => return Err(format!("it did not reveal: {e}")),
            Ok(Ok(VerifyResponse::Revealed { digest })) => digest,
            Ok(Ok(other)) => return Err(format!("it answered the reveal with {other:?}")),
        };
        if !verify::reveal_opens(id, commitment, &digest) {
            return Err(loss_reason(&Loss::BadReveal));
        }
        Ok(digest)
    }

    /// Accepts the verified providers' invoices and rejects the others', then waits until the
    /// accepted ones are paid.
    async fn settle(
        &self,
        id: &str,
        parties: &[Party],
        paid: &[Address],
        refused: &BTreeMap<Address, String>,
        allocation: &str,
    ) -> Result<()> {
        let payments = &self.inner.payments;
        // The verified providers' invoices are waited for; the others' only briefly, so that a
        // provider that went away does not hold the job up (its invoice, if it comes later, is
        // never accepted).
        let started = Instant::now();
        let deadline =
            |r: &Party| started + if paid.contains(&r.provider) { INVOICE_WAIT } else { REJECT_WAIT };
        let mut open: Vec<&Party> = parties.iter().collect();
        loop {
            open.retain(|r| Instant::now() < deadline(r));
            if open.is_empty() {
                break;
            }
            let mut still = Vec::new();
            for r in open {
                let agreement = &r.agreement_id;
                let invoice = payments
                    .agreement_documents(Kind::Invoice, agreement)
                    .await?
                    .into_iter()
                    .find(|d| !d.issued_here && d.status == Status::Received);
                let Some(invoice) = invoice else {
                    still.push(r);
                    continue;
                };
                let doc = &invoice.document;
                let provider = format!("{:#x}", r.provider);
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
                    payments.reject(Kind::Invoice, &doc.id, rejection).await?;
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
                return Ok(());
            }
            for row in rows {
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
                return Err(Error::Conflict(format!(
                    "the accepted invoices were not paid within {} s; `agora payment status` shows why",
                    PAYMENT_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn note_invoice(
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
    async fn tx_of(&self, invoice: &str) -> Result<Option<String>> {
        let payments = self.inner.payments.payments(None, 10_000).await?;
        Ok(payments
            .into_iter()
            .find(|p| {
                p.agreement_payments.iter().chain(&p.activity_payments).any(|s| s.document_id == invoice)
            })
            .map(|p| p.details))
    }

    async fn reputation(&self, providers: &[Address]) -> Result<HashMap<Address, (f64, i64, i64)>> {
        let names: Vec<String> = providers.iter().map(|p| format!("{p:#x}")).collect();
        let rows =
            sqlx::query("SELECT provider, score, verified, failed FROM reputation WHERE provider = ANY($1)")
                .bind(&names)
                .fetch_all(&self.inner.pool)
                .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let p: String = r.get("provider");
                Some((p.parse().ok()?, (r.get("score"), r.get("verified"), r.get("failed"))))
            })
            .collect())
    }

    /// +1 for each verified run, ×2/3 for each failed one; a run that only lacked a verdict
    /// (a tie) counts neither way.
    async fn update_reputation(
        &self,
        replicas: &[Replica],
        paid: &[Address],
        refused: &BTreeMap<Address, String>,
        verdict: Option<&verify::Verdict>,
    ) -> Result<()> {
        let no_verdict: Vec<Address> = verdict
            .map(|v| v.losers.iter().filter(|(_, l)| *l == Loss::NoVerdict).map(|(p, _)| *p).collect())
            .unwrap_or_default();
        for r in replicas {
            let verified = paid.contains(&r.provider);
            if !verified && (!refused.contains_key(&r.provider) || no_verdict.contains(&r.provider)) {
                continue;
            }
            let provider = format!("{:#x}", r.provider);
            let before: f64 = sqlx::query_scalar("SELECT score FROM reputation WHERE provider = $1")
                .bind(&provider)
                .fetch_optional(&self.inner.pool)
                .await?
                .unwrap_or(0.0);
            sqlx::query(
                "INSERT INTO reputation (provider, score, verified, failed) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (provider) DO UPDATE SET score = $2, verified = reputation.verified + $3,
                     failed = reputation.failed + $4, updated_at = now()",
            )
            .bind(&provider)
            .bind(verify::reputation_after(before, verified))
            .bind(i64::from(verified))
            .bind(i64::from(!verified))
            .execute(&self.inner.pool)
            .await?;
        }
        Ok(())
    }
}

/// A provider that ran the job under an agreement, as paying and rejecting see it.
#[derive(Debug, Clone)]
struct Party {
    provider: Address,
    agreement_id: String,
}

fn parties(replicas: &[Replica]) -> Vec<Party> {
    replicas
        .iter()
        .filter(|r| r.activity_id.is_some())
        .filter_map(|r| Some(Party { provider: r.provider, agreement_id: r.agreement_id.clone()? }))
        .collect()
}

/// The providers' first proposals on a demand, one per provider.
#[derive(Debug)]
struct Bids {
    offers: BTreeMap<Address, ProposalView>,
    /// The job's own list of providers; any when empty.
    only: Vec<Address>,
}

impl Bids {
    /// Keeps new providers' Initial proposals; returns the other proposals (counters).
    fn take(&mut self, events: Vec<Event>) -> Vec<ProposalView> {
        let mut others = Vec::new();
        for event in events {
            let Event::Proposal { proposal, .. } = event else { continue };
            if proposal.state == ProposalState::Initial {
                if let Ok(provider) = proposal.issuer_id.parse::<Address>()
                    && (self.only.is_empty() || self.only.contains(&provider))
                {
                    self.offers.entry(provider).or_insert(proposal);
                }
            } else {
                others.push(proposal);
            }
        }
        others
    }
}

/// The order providers are asked in: at random, weighted by reputation (1 + score), leaving out
/// those that failed more often than they were verified.
fn choose(
    offers: &BTreeMap<Address, ProposalView>,
    reputation: &HashMap<Address, (f64, i64, i64)>,
) -> Vec<Address> {
    let mut rng = rand::thread_rng();
    let mut left: Vec<(Address, f64)> = offers
        .keys()
        .filter(|p| reputation.get(*p).is_none_or(|(_, verified, failed)| failed <= verified))
        .map(|p| (*p, 1.0 + reputation.get(p).map_or(0.0, |r| r.0.max(0.0))))
        .collect();
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let total: f64 = left.iter().map(|(_, w)| w).sum();
        let mut pick = rng.r#gen::<f64>() * total;
        let mut index = left.len() - 1;
        for (i, (_, w)) in left.iter().enumerate() {
            if pick < *w {
                index = i;
                break;
            }
            pick -= w;
        }
        order.push(left.remove(index).0);
    }
    order
}

/// The most a run of `timeout` may cost at a proposal's linear prices: every second of it, on
/// every CPU thread offered, plus the start price (fuel is not priced by a worst case).
fn worst_cost(proposal: &ProposalView, timeout: Duration) -> Decimal {
    let Ok(flat) = agora_grammar::flatten(&proposal.properties) else { return Decimal::MAX };
    let Ok(pricing) = crate::LinearPricing::from_properties(&flat) else { return Decimal::MAX };
    let secs = Decimal::from(timeout.as_secs());
    let threads = flat
        .get("golem.inf.cpu.threads")
        .and_then(Value::as_f64)
        .and_then(|t| Decimal::try_from(t).ok())
        .unwrap_or(Decimal::ONE);
    let usage: Vec<Decimal> = pricing
        .usage_vector
        .iter()
        .map(|counter| match counter.as_str() {
            "golem.usage.duration_sec" => secs,
            "golem.usage.cpu_sec" => secs * threads,
            _ => Decimal::ZERO,
        })
        .collect();
    pricing.cost(&usage).unwrap_or(Decimal::MAX)
}

fn providers(replicas: &[Replica]) -> String {
    let names: Vec<String> = replicas
        .iter()
        .filter(|r| r.failure.is_none())
        .map(|r| short(&format!("{:#x}", r.provider)))
        .collect();
    if names.is_empty() { "no provider".into() } else { names.join(", ") }
}

/// An id or address shortened for people: its first characters.
pub fn short(text: &str) -> String {
    text.chars().take(10).collect()
}

fn no_verdict(why: &NoVerdict) -> String {
    match why {
        NoVerdict::TooFew => "fewer than two results".into(),
        NoVerdict::Tie => "a tie".into(),
        NoVerdict::ConfidenceNotMet { largest, confidence } => {
            format!("confidence not met: {largest} alike, {confidence} needed")
        }
    }
}

fn loss_reason(loss: &Loss) -> String {
    match loss {
        Loss::Outvoted => "its result differs from the verified one",
        Loss::NoVerdict => "no result could be verified",
        Loss::NoResult => "it committed to no result",
        Loss::Replayed => "its commitment copies another provider's",
        Loss::BadReveal => "its reveal does not open its commitment",
    }
    .into()
}

fn job_view(row: &sqlx::postgres::PgRow) -> Value {
    let state = JobState::from_code(row.get("state")).expect("the table checks the state");
    json!({
        "jobId": row.get::<String, _>("id"),
        "state": state.label(),
        "stateCode": state.code(),
        "spec": row.get::<Value, _>("spec"),
        "allocationId": row.get::<Option<String>, _>("allocation_id"),
        "results": row.get::<Option<Value>, _>("results"),
        "message": row.get::<Option<String>, _>("message"),
        "createdAt": row.get::<chrono::DateTime<Utc>, _>("created_at"),
        "updatedAt": row.get::<chrono::DateTime<Utc>, _>("updated_at"),
    })
}

fn execution_view(row: &sqlx::postgres::PgRow) -> Value {
    let state = ExecState::from_code(row.get("state")).expect("the table checks the state");
    json!({
        "provider": row.get::<String, _>("provider"),
        "agreementId": row.get::<Option<String>, _>("agreement_id"),
        "activityId": row.get::<Option<String>, _>("activity_id"),
        "state": state.label(),
        "stateCode": state.code(),
        "commitment": row.get::<Option<Value>, _>("commitment"),
        "reason": row.get::<Option<String>, _>("reason"),
        "invoiceId": row.get::<Option<String>, _>("invoice_id"),
        "amount": row.get::<Option<Decimal>, _>("amount").map(|a| a.normalize().to_string()),
        "txHash": row.get::<Option<String>, _>("tx_hash"),
    })
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill(&mut bytes);
    hex::encode(bytes)
}
