//! The requestor's job runner: a job's rows in Postgres, and the flow that runs it. It reserves
//! the budget in an allocation, publishes a demand, waits for bids, chooses providers by
//! reputation, negotiates, runs, verifies by commit and reveal (adding replicas while a verdict
//! is still possible), pays the verified providers and rejects the others' invoices.

use crate::job::{ExecState, JobSpec, JobState};
use crate::verify::Commitment;
use crate::{Error, Result};
use agora_activity::Activities;
use agora_agreement::AgreementState;
use agora_market::Market;
use agora_market::api::ProposalView;
use agora_payment::Payments;
use alloy_primitives::Address;
use futures_util::FutureExt;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod bounds;
mod choice;
mod execution;
mod flow;
mod late;
mod negotiation;
mod queue;
mod referee;
mod reputation;
mod resume;
mod settle;
mod store;
mod users;
mod verdict;
mod views;
mod webhooks;

pub use queue::{JobFilter, JobPage, MAX_PAGE, ResultContent, ResultFile, Submitted};
pub use users::{CreatedEndUser, EndUser, NewEndUser, Principal};
pub use views::{ExecutionView, JobDetail, JobEvent, JobView};
pub use webhooks::{Delivery, signature};

/// How long negotiating with one provider may take, from counter to approval: Golem's SDK gives
/// a provider 15 s to approve.
const NEGOTIATION: Duration = Duration::from_secs(20);
/// How long the runner waits for an ended agreement's invoice.
const INVOICE_WAIT: Duration = Duration::from_secs(60);
/// How often the runner accepts the debit notes of replicas at work.
const DEBIT_NOTE_TICK: Duration = Duration::from_millis(500);
/// How long it waits for an unverified provider's invoice, to reject it.
const REJECT_WAIT: Duration = Duration::from_secs(10);
/// How often a wait for a job's steps reads them, for steps another node records.
const EVENT_POLL: Duration = Duration::from_millis(500);
/// How long it waits for the verified providers' payments to be confirmed on chain.
const PAYMENT_WAIT: Duration = Duration::from_secs(180);
/// The states of a replica with a verdict in its favour: verified, and then paid.
const VERDICT: [i16; 2] = [ExecState::Verified.code(), ExecState::Paid.code()];

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
    /// This node as the `runner` column names it: its address in lower case.
    node: String,
    /// Several nodes share the job queue's database.
    shared_queue: bool,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// The running jobs' stops, by id.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Woken when any job records an event.
    events: tokio::sync::Notify,
    /// Jobs running at once, at most; the others wait, queued.
    slots: Arc<tokio::sync::Semaphore>,
    max_running: usize,
    /// Woken when a job is queued here, so the queue is read at once.
    queued: tokio::sync::Notify,
    /// Woken when a step is recorded for a job with a webhook.
    deliveries: tokio::sync::Notify,
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
    /// The most its invoice may ask: what the agreed terms give for the run as the requestor
    /// saw it, once it ran; never more than `worst_cost`.
    max_amount: Option<Decimal>,
    stdout: Option<String>,
    /// The run command's result: stdout, stderr and exit code, to rebuild the results folder.
    run: Option<agora_activity::wire::CommandResult>,
    outputs: BTreeMap<String, String>,
    failure: Option<String>,
    /// It turned the agreement down (at capacity, or still ending earlier agreements): it never
    /// ran, and may be asked again.
    busy: bool,
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
        let node = format!("{:#x}", identity.address());
        Self {
            inner: Arc::new(Inner {
                pool,
                market,
                activities,
                payments,
                net,
                identity,
                node,
                shared_queue: false,
                tasks,
                shutdown,
                running: Mutex::default(),
                events: tokio::sync::Notify::new(),
                slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_RUNNING)),
                max_running: DEFAULT_MAX_RUNNING,
                queued: tokio::sync::Notify::new(),
                deliveries: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The job queue's database is shared with other requestor nodes.
    pub fn with_shared_queue(mut self) -> Self {
        Arc::get_mut(&mut self.inner).expect("set before the runner is shared").shared_queue = true;
        self
    }

    /// Runs at most `max` jobs at once.
    pub fn with_max_running(mut self, max: usize) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("set before the runner is shared");
        inner.max_running = max.max(1);
        inner.slots = Arc::new(tokio::sync::Semaphore::new(inner.max_running));
        self
    }

    fn start(&self, id: String, spec: JobSpec) {
        let stop = self.inner.shutdown.child_token();
        self.inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), stop.clone());
        let jobs = self.clone();
        self.inner.tasks.spawn(async move {
            let slots = jobs.inner.slots.clone();
            let outcome = tokio::select! {
                outcome = async {
                    let _slot = slots.acquire_owned().await.expect("the semaphore is never closed");
                    // A panic ends this job, with its reason, and what it holds is released below;
                    // the runner and the other jobs go on.
                    std::panic::AssertUnwindSafe(jobs.run(&id, &spec)).catch_unwind().await.unwrap_or_else(
                        |panic| Err(Error::Internal(format!("the job's task failed: {}", crate::panic_message(&*panic)))),
                    )
                } => Some(outcome),
                () = stop.cancelled() => None,
            };
            jobs.inner.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
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

    async fn state(&self, id: &str) -> Result<JobState> {
        let code = store::jobs::state(&self.inner.pool, id).await?;
        let code = code.ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
        Ok(JobState::from_code(code).expect("the table checks the state"))
    }

    /// A job as `GET /jobs/{id}` shows it: its spec, state, results, replicas and steps.
    pub async fn get(&self, id: &str) -> Result<JobDetail> {
        let job = store::jobs::view(&self.inner.pool, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
        Ok(JobDetail {
            job,
            executions: store::executions::views(&self.inner.pool, id).await?,
            events: self.events(id, 0).await?,
        })
    }

    /// A job's steps after event `after`, oldest first.
    pub async fn events(&self, id: &str, after: i64) -> Result<Vec<JobEvent>> {
        store::events::after(&self.inner.pool, id, after).await
    }

    /// Waits up to `timeout` for a job's steps after `after`. Steps recorded by this node wake
    /// it at once; steps another node sharing the database records are read within
    /// [`EVENT_POLL`].
    pub async fn wait_events(&self, id: &str, after: i64, timeout: Duration) -> Result<Vec<JobEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.inner.events.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The state before the steps: a job's last step is written with its final state, so
            // a final state read first means its last step is among those read after.
            let ended = self.state(id).await?.is_final();
            let events = self.events(id, after).await?;
            if !events.is_empty() || ended || Instant::now() >= deadline {
                return Ok(events);
            }
            let _woken = tokio::time::timeout_at(deadline.min(Instant::now() + EVENT_POLL), notified).await;
        }
    }

    /// Records a step: the job's state now, and what happened.
    async fn record(&self, id: &str, state: JobState, message: &str) -> Result<()> {
        let mut tx = self.inner.pool.begin().await?;
        if !store::jobs::set_state(&mut *tx, id, state.code()).await? {
            // The job has ended (a cancel, say): what its flow still says is not one of its steps.
            tracing::info!(job = id, state = state.label(), "after the job's end: {message}");
            return Ok(());
        }
        let hooked = self.step(&mut tx, id, state, message).await?;
        tx.commit().await?;
        self.recorded(id, state, message, hooked);
        Ok(())
    }

    /// A step's event, and its webhook delivery when the job has a webhook; whether it has one.
    async fn step(
        &self,
        tx: &mut sqlx::PgConnection,
        id: &str,
        state: JobState,
        message: &str,
    ) -> Result<bool> {
        store::events::insert(tx, id, state.code(), message).await
    }

    fn recorded(&self, id: &str, state: JobState, message: &str, hooked: bool) {
        tracing::info!(job = id, state = state.label(), "{message}");
        self.inner.events.notify_waiters();
        if hooked {
            self.inner.deliveries.notify_one();
        }
    }

    /// Ends a job, once: a job already ended keeps its end. What it held of its owner's
    /// spending cap is given back, less what its verified providers were paid.
    async fn finish(&self, id: &str, state: JobState, message: &str) -> Result<()> {
        let mut tx = self.inner.pool.begin().await?;
        if !store::jobs::end(&mut *tx, id, state.code(), message).await? {
            return Ok(());
        }
        store::users::settle_job(&mut *tx, id, VERDICT).await?;
        store::jobs::release_reserved(&mut *tx, id).await?;
        let hooked = self.step(&mut tx, id, state, message).await?;
        tx.commit().await?;
        self.recorded(id, state, message, hooked);
        Ok(())
    }

    /// Ends what a job left behind: its activities, its agreements, its allocation.
    async fn clean_up(&self, id: &str) {
        let rows = store::executions::of_job(&self.inner.pool, id).await;
        let rows = rows.unwrap_or_else(|e| {
            tracing::warn!(job = id, error = %e, "cannot read the job's agreements to end them");
            Vec::new()
        });
        for row in rows {
            if let Some(activity) = row.activity_id {
                let _ended = self.inner.activities.destroy(&activity).await;
            }
            if let Some(agreement) = row.agreement_id {
                self.end_agreement(&agreement, "the job ended").await;
            }
        }
        let job = store::jobs::allocation_and_demand(&self.inner.pool, id).await;
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
        write_execution(&self.inner.pool, id, replica, state, reason).await
    }
}

/// A replica's row, through `db` (the pool, or a transaction that writes it with others).
async fn write_execution(
    db: impl sqlx::PgExecutor<'_>,
    id: &str,
    replica: &Replica,
    state: ExecState,
    reason: Option<&str>,
) -> Result<()> {
    let commitment =
        replica.commitment.map(|c| json!({"hash": c.hash.map(hex::encode), "seal": hex::encode(c.seal)}));
    let row = store::executions::Write {
        provider: format!("{:#x}", replica.provider),
        agreement_id: replica.agreement_id.as_deref(),
        activity_id: replica.activity_id.as_deref(),
        state: state.code(),
        commitment,
        reason,
        max_amount: replica.max_amount,
    };
    store::executions::write(db, id, row).await
}

/// An id or address shortened for people: its first characters.
pub fn short(text: &str) -> String {
    text.chars().take(10).collect()
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill(&mut bytes);
    hex::encode(bytes)
}
