//! The requestor's job runner: a job's rows in Postgres, and the flow that runs it. It reserves
//! the budget in an allocation, publishes a demand, waits for bids, chooses providers by
//! reputation, negotiates, runs, verifies by commit and reveal (adding replicas while a verdict
//! is still possible), pays the verified providers and rejects the others' invoices.

use crate::job::{ExecState, JobSpec, JobState};
use crate::verify::Commitment;
use crate::{Error, Result};
use agora_activity::Activities;
use agora_market::api::ProposalView;
use agora_market::{AgreementState, Market};
use agora_payment::Payments;
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

mod flow;
mod settle;

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
    agreement_id: Option<String>,
    peer: Option<String>,
    activity_id: Option<String>,
    commitment: Option<Commitment>,
    /// The most it may cost, from its offer; the agreed terms may not cost more.
    worst_cost: Decimal,
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

    /// Cancels a job that is not finished: its activities stop and its agreements end.
    pub async fn cancel(&self, id: &str) -> Result<()> {
        let state = self.state(id).await?;
        if state.is_final() {
            return Err(Error::Conflict(format!("job {id} is already {}", state.label())));
        }
        let verdict: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM job_executions WHERE job_id = $1 AND state IN ($2, $3))",
        )
        .bind(id)
        .bind(ExecState::Verified.code())
        .bind(ExecState::Paid.code())
        .fetch_one(&self.inner.pool)
        .await?;
        if state == JobState::Paying || verdict {
            return Err(Error::Conflict(format!(
                "job {id} has its verdict and is paying its verified providers; it ends when they are paid"
            )));
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

    /// The job a full id or a unique prefix of one names (as `agora job list` shows them).
    pub async fn resolve(&self, id: &str) -> Result<String> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(format!("no job {id}")));
        }
        let found: Vec<String> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE id LIKE $1 || '%' ORDER BY id LIMIT 2")
                .bind(id.to_ascii_lowercase())
                .fetch_all(&self.inner.pool)
                .await?;
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NotFound(format!("no job {id}"))),
            _ => {
                Err(Error::BadInput(format!("{id} is the start of more than one job's id; give more of it")))
            }
        }
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

    /// Ends a job, once: a job already ended keeps its end.
    async fn finish(&self, id: &str, state: JobState, message: &str) -> Result<()> {
        let ended = sqlx::query("UPDATE jobs SET message = $2 WHERE id = $1 AND state < 6")
            .bind(id)
            .bind(message)
            .execute(&self.inner.pool)
            .await?
            .rows_affected();
        if ended == 0 {
            return Ok(());
        }
        self.record(id, state, message).await
    }

    /// Ends what a job left behind: its activities, its agreements, its allocation.
    async fn clean_up(&self, id: &str) {
        let rows = sqlx::query("SELECT agreement_id, activity_id FROM job_executions WHERE job_id = $1")
            .bind(id)
            .fetch_all(&self.inner.pool)
            .await;
        let rows = rows.unwrap_or_else(|e| {
            tracing::warn!(job = id, error = %e, "cannot read the job's agreements to end them");
            Vec::new()
        });
        for row in rows {
            if let Some(activity) = row.get::<Option<String>, _>("activity_id") {
                let _ended = self.inner.activities.destroy(&activity).await;
            }
            if let Some(agreement) = row.get::<Option<String>, _>("agreement_id") {
                self.end_agreement(&agreement, "the job ended").await;
            }
        }
        let job: Result<Option<(Option<String>, Option<String>)>, _> =
            sqlx::query_as("SELECT allocation_id, demand_id FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.inner.pool)
                .await;
        let (allocation, demand) = job
            .unwrap_or_else(|e| {
                tracing::warn!(job = id, error = %e, "cannot read the job's allocation and demand to end them");
                None
            })
            .unwrap_or_default();
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
}

/// An id or address shortened for people: its first characters.
pub fn short(text: &str) -> String {
    text.chars().take(10).collect()
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
