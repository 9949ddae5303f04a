//! The `jobs` table: each job's spec, owner, state, what it holds (allocation, demand, part of its
//! owner's cap), its runner and its verified results.

use crate::Result;
use crate::runner::JobView;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{PgExecutor, Row};

/// The condition that a job has not ended: its state is below the final ones (6 and up).
const UNFINISHED: &str = "state < 6";

/// A job's state code.
pub(crate) async fn state(db: impl PgExecutor<'_>, id: &str) -> Result<Option<i16>> {
    Ok(sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(id).fetch_optional(db).await?)
}

/// A job as the API shows it.
pub(crate) async fn view(db: impl PgExecutor<'_>, id: &str) -> Result<Option<JobView>> {
    let row = sqlx::query("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional(db).await?;
    Ok(row.as_ref().map(JobView::of))
}

/// Moves an unfinished job to `state`; `false` if it has ended.
pub(crate) async fn set_state(db: impl PgExecutor<'_>, id: &str, state: i16) -> Result<bool> {
    let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET state = $2, updated_at = now() WHERE id = $1 AND {UNFINISHED}"
    )))
    .bind(id)
    .bind(state)
    .execute(db)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// Ends an unfinished job with its final state and message; `false` if it had ended.
pub(crate) async fn end(db: impl PgExecutor<'_>, id: &str, state: i16, message: &str) -> Result<bool> {
    let ended = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET state = $2, message = $3, updated_at = now() WHERE id = $1 AND {UNFINISHED}"
    )))
    .bind(id)
    .bind(state)
    .bind(message)
    .execute(db)
    .await?
    .rows_affected();
    Ok(ended == 1)
}

/// The job holds nothing of its owner's cap any more.
pub(crate) async fn release_reserved(db: impl PgExecutor<'_>, id: &str) -> Result<()> {
    sqlx::query("UPDATE jobs SET reserved = 0 WHERE id = $1").bind(id).execute(db).await?;
    Ok(())
}

/// A job's allocation and demand, if it has made them.
pub(crate) async fn allocation_and_demand(
    db: impl PgExecutor<'_>,
    id: &str,
) -> Result<Option<(Option<String>, Option<String>)>> {
    Ok(sqlx::query_as("SELECT allocation_id, demand_id FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?)
}

pub(crate) async fn set_allocation(db: impl PgExecutor<'_>, id: &str, allocation: &str) -> Result<()> {
    sqlx::query("UPDATE jobs SET allocation_id = $2 WHERE id = $1")
        .bind(id)
        .bind(allocation)
        .execute(db)
        .await?;
    Ok(())
}

pub(crate) async fn set_demand(db: impl PgExecutor<'_>, id: &str, demand: &str) -> Result<()> {
    sqlx::query("UPDATE jobs SET demand_id = $2 WHERE id = $1").bind(id).bind(demand).execute(db).await?;
    Ok(())
}

pub(crate) async fn set_results(db: impl PgExecutor<'_>, id: &str, results: &Value) -> Result<()> {
    sqlx::query("UPDATE jobs SET results = $2 WHERE id = $1").bind(id).bind(results).execute(db).await?;
    Ok(())
}

/// Forgets what a job made (allocation, demand, results, decision), to run it from the start.
pub(crate) async fn reset(db: impl PgExecutor<'_>, id: &str) -> Result<()> {
    sqlx::query("UPDATE jobs SET allocation_id = NULL, demand_id = NULL, results = NULL, decided = FALSE WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Marks a job decided, unless a cancel was recorded first: whether it is.
pub(crate) async fn decide(db: impl PgExecutor<'_>, id: &str) -> Result<bool> {
    let decided = sqlx::query("UPDATE jobs SET decided = TRUE WHERE id = $1 AND NOT cancel_requested")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected();
    Ok(decided == 1)
}

/// Records a cancel unless the job is decided: whether it was recorded.
pub(crate) async fn request_cancel(db: impl PgExecutor<'_>, id: &str) -> Result<bool> {
    let requested = sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND NOT decided")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected();
    Ok(requested == 1)
}

/// Takes a job still queued for `runner` (to cancel it): whether it was still queued.
pub(crate) async fn take_queued_one(db: impl PgExecutor<'_>, id: &str, runner: &str) -> Result<bool> {
    let taken: Option<String> = sqlx::query_scalar(
        "UPDATE jobs SET runner = $2 WHERE id = $1 AND runner IS NULL AND state = 0 RETURNING id",
    )
    .bind(id)
    .bind(runner)
    .fetch_optional(db)
    .await?;
    Ok(taken.is_some())
}

/// Whether the job's allocation stays held after it ended, for invoices that come late.
pub(crate) async fn hold_allocation(db: impl PgExecutor<'_>, id: &str, held: bool) -> Result<()> {
    sqlx::query("UPDATE jobs SET allocation_held = $2 WHERE id = $1").bind(id).bind(held).execute(db).await?;
    Ok(())
}

/// Ended jobs of `runner` whose allocations are held for late invoices: id, allocation, and
/// whether the watch (`watch_secs` since the job ended) is over.
pub(crate) async fn held_allocations(
    db: impl PgExecutor<'_>,
    runner: &str,
    watch_secs: f64,
) -> Result<Vec<(String, String, bool)>> {
    Ok(sqlx::query_as(
        "SELECT id, allocation_id, updated_at < now() - make_interval(secs => $2) FROM jobs
         WHERE allocation_held AND allocation_id IS NOT NULL AND runner = $1 AND state >= 6",
    )
    .bind(runner)
    .bind(watch_secs)
    .fetch_all(db)
    .await?)
}

/// Whose money a job spends: its owner, or the service of the end user that owns it.
pub(crate) async fn principal(db: impl PgExecutor<'_>, id: &str) -> Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce((SELECT u.service FROM job_users u WHERE 'user:' || u.id = j.owner), j.owner)
         FROM jobs j WHERE j.id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await?)
}

/// A new job.
pub(crate) struct NewJob<'a> {
    pub id: &'a str,
    pub spec: Value,
    pub owner: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a [u8],
    pub reserved: Decimal,
}

/// Inserts a job; `false` when its owner used its idempotency key already.
pub(crate) async fn insert(db: impl PgExecutor<'_>, job: NewJob<'_>) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, spec, owner, idempotency_key, request_hash, reserved)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    )
    .bind(job.id)
    .bind(job.spec)
    .bind(job.owner)
    .bind(job.idempotency_key)
    .bind(job.request_hash)
    .bind(job.reserved)
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The job an owner submitted with an idempotency key: its id and request's hash.
pub(crate) async fn by_idempotency_key(
    db: impl PgExecutor<'_>,
    owner: &str,
    key: &str,
) -> Result<Option<(String, Option<Vec<u8>>)>> {
    Ok(sqlx::query_as("SELECT id, request_hash FROM jobs WHERE owner = $1 AND idempotency_key = $2")
        .bind(owner)
        .bind(key)
        .fetch_optional(db)
        .await?)
}

/// Jobs started before the queue existed (runner `local`) become `runner`'s.
pub(crate) async fn adopt_local(db: impl PgExecutor<'_>, runner: &str) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET runner = $1 WHERE runner = 'local' AND {UNFINISHED}"
    )))
    .bind(runner)
    .execute(db)
    .await?;
    Ok(())
}

/// A job to start: its id and stored spec.
pub(crate) type Started = (String, Value);

/// The unfinished jobs `runner` runs, oldest first.
pub(crate) async fn of_runner(db: impl PgExecutor<'_>, runner: &str) -> Result<Vec<Started>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, spec FROM jobs WHERE runner = $1 AND {UNFINISHED} ORDER BY created_at"
    )))
    .bind(runner)
    .fetch_all(db)
    .await?)
}

/// Takes up to `max` queued jobs for `runner`, oldest first; jobs other runners are taking are
/// skipped.
pub(crate) async fn take_queued(db: impl PgExecutor<'_>, runner: &str, max: i64) -> Result<Vec<Started>> {
    let mut rows: Vec<(String, Value, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE jobs SET runner = $1, updated_at = now() WHERE id IN (
             SELECT id FROM jobs WHERE runner IS NULL AND state = 0 AND NOT cancel_requested
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING id, spec, created_at",
    )
    .bind(runner)
    .bind(max)
    .fetch_all(db)
    .await?;
    rows.sort_by_key(|r| r.2);
    Ok(rows.into_iter().map(|(id, spec, _)| (id, spec)).collect())
}

/// The jobs of `runner` whose cancel was asked, before `paying` and with no verified execution
/// (one in `verdict_states`).
pub(crate) async fn cancelled_of_runner(
    db: impl PgExecutor<'_>,
    runner: &str,
    paying: i16,
    verdict_states: [i16; 2],
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT j.id FROM jobs j WHERE j.runner = $1 AND j.cancel_requested AND j.state < $2
           AND NOT EXISTS (SELECT 1 FROM job_executions e WHERE e.job_id = j.id AND e.state IN ($3, $4))",
    )
    .bind(runner)
    .bind(paying)
    .bind(verdict_states[0])
    .bind(verdict_states[1])
    .fetch_all(db)
    .await?)
}

/// The SQL condition that limits `jobs` (as `j`) to what the principal bound at `$n` may see:
/// its own jobs and its end users'; all when it is NULL. Dynamic SQL in the store is put together
/// from constants only; every value is bound.
fn visible(n: usize) -> String {
    format!(
        "(${n}::text IS NULL OR j.owner = ${n} OR j.owner IN (SELECT 'user:' || u.id FROM job_users u WHERE u.service = ${n}))"
    )
}

/// The ids (at most two) of the jobs `scope` sees whose id is `id`, or starts with it.
pub(crate) async fn matching_ids(
    db: impl PgExecutor<'_>,
    id: &str,
    whole: bool,
    scope: Option<String>,
) -> Result<Vec<String>> {
    let matching = if whole { "j.id = $1" } else { "j.id LIKE $1 || '%'" };
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT j.id FROM jobs j WHERE {matching} AND {} ORDER BY j.id LIMIT 2",
        visible(2)
    )))
    .bind(id)
    .bind(scope)
    .fetch_all(db)
    .await?)
}

/// What a listing filters by.
pub(crate) struct Listing<'a> {
    pub scope: Option<String>,
    pub states: Option<Vec<i16>>,
    pub user: Option<&'a str>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// The last job of the page before: its creation time and id.
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

/// Jobs as the API lists them, newest first, each with its creation time and id for the cursor.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    l: Listing<'_>,
) -> Result<Vec<(JobView, DateTime<Utc>, String)>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT j.* FROM jobs j WHERE {}
           AND ($2::smallint[] IS NULL OR j.state = ANY($2))
           AND ($3::text IS NULL OR j.owner = 'user:' || $3)
           AND ($4::timestamptz IS NULL OR j.created_at >= $4)
           AND ($5::timestamptz IS NULL OR j.created_at < $5)
           AND ($6::timestamptz IS NULL OR (j.created_at, j.id) < ($6, $7))
         ORDER BY j.created_at DESC, j.id DESC LIMIT $8",
        visible(1)
    )))
    .bind(l.scope)
    .bind(l.states)
    .bind(l.user)
    .bind(l.created_after)
    .bind(l.created_before)
    .bind(l.after.as_ref().map(|a| a.0))
    .bind(l.after.as_ref().map(|a| a.1.clone()))
    .bind(l.limit)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(|r| (JobView::of(r), r.get("created_at"), r.get("id"))).collect())
}

/// A job's state code, spec and results.
pub(crate) async fn results(
    db: impl PgExecutor<'_>,
    id: &str,
) -> Result<Option<(i16, Value, Option<Value>)>> {
    Ok(sqlx::query_as("SELECT state, spec, results FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?)
}
