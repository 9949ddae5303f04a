//! The `job_executions` table: each replica of a job, on one provider: its agreement, activity,
//! state, commitment, why it lost, what it may be paid and what it was.

use crate::Result;
use crate::runner::ExecutionView;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgExecutor;

/// A replica as a restart reads it back.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ExecutionRow {
    pub provider: String,
    pub agreement_id: Option<String>,
    pub activity_id: Option<String>,
    pub state: i16,
    pub reason: Option<String>,
    pub max_amount: Option<Decimal>,
}

/// A job's replicas as the API shows them, oldest first.
pub(crate) async fn views(db: impl PgExecutor<'_>, job_id: &str) -> Result<Vec<ExecutionView>> {
    let rows = sqlx::query("SELECT * FROM job_executions WHERE job_id = $1 ORDER BY created_at, provider")
        .bind(job_id)
        .fetch_all(db)
        .await?;
    Ok(rows.iter().map(ExecutionView::of).collect())
}

/// A job's replicas.
pub(crate) async fn of_job(db: impl PgExecutor<'_>, job_id: &str) -> Result<Vec<ExecutionRow>> {
    Ok(sqlx::query_as(
        "SELECT provider, agreement_id, activity_id, state, reason, max_amount FROM job_executions WHERE job_id = $1",
    )
    .bind(job_id)
    .fetch_all(db)
    .await?)
}

/// A replica's row as the runner writes it.
pub(crate) struct Write<'a> {
    pub provider: String,
    pub agreement_id: Option<&'a str>,
    pub activity_id: Option<&'a str>,
    pub state: i16,
    pub commitment: Option<Value>,
    pub reason: Option<&'a str>,
    pub max_amount: Option<Decimal>,
}

/// Writes a replica's row: a replica chosen again loses its old reason; a commitment, reason or
/// bound not given keeps the one written before.
pub(crate) async fn write(db: impl PgExecutor<'_>, job_id: &str, w: Write<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_executions (job_id, provider, agreement_id, activity_id, state, commitment, reason, max_amount)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (job_id, provider) DO UPDATE SET agreement_id = $3, activity_id = $4, state = $5,
             commitment = coalesce($6, job_executions.commitment),
             -- Chosen again (a busy provider asked anew): the old reason goes.
             reason = CASE WHEN $5 = 0 THEN $7 ELSE coalesce($7, job_executions.reason) END,
             max_amount = coalesce($8, job_executions.max_amount)",
    )
    .bind(job_id)
    .bind(w.provider)
    .bind(w.agreement_id)
    .bind(w.activity_id)
    .bind(w.state)
    .bind(w.commitment)
    .bind(w.reason)
    .bind(w.max_amount)
    .execute(db)
    .await?;
    Ok(())
}

/// The runner sent the replica's run now (by the database's clock).
pub(crate) async fn mark_exec(db: impl PgExecutor<'_>, job_id: &str, provider: &str) -> Result<()> {
    sqlx::query("UPDATE job_executions SET exec_at = now() WHERE job_id = $1 AND provider = $2")
        .bind(job_id)
        .bind(provider)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether a replica of the job is in one of `states` (a verdict was reached).
pub(crate) async fn any_in(db: impl PgExecutor<'_>, job_id: &str, states: [i16; 2]) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM job_executions WHERE job_id = $1 AND state IN ($2, $3))",
    )
    .bind(job_id)
    .bind(states[0])
    .bind(states[1])
    .fetch_one(db)
    .await?)
}

/// The replicas in `state` with an invoice noted: provider and invoice.
pub(crate) async fn invoiced_in(
    db: impl PgExecutor<'_>,
    job_id: &str,
    state: i16,
) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT provider, invoice_id FROM job_executions WHERE job_id = $1 AND state = $2 AND invoice_id IS NOT NULL",
    )
    .bind(job_id)
    .bind(state)
    .fetch_all(db)
    .await?)
}

/// A verified replica waiting for its payment: provider, agreement, bound and invoice.
pub(crate) type Unpaid = (String, String, Option<Decimal>, Option<String>);

/// The replicas in `state` with an agreement.
pub(crate) async fn with_agreement_in(
    db: impl PgExecutor<'_>,
    job_id: &str,
    state: i16,
) -> Result<Vec<Unpaid>> {
    Ok(sqlx::query_as(
        "SELECT provider, agreement_id, max_amount, invoice_id FROM job_executions
         WHERE job_id = $1 AND state = $2 AND agreement_id IS NOT NULL",
    )
    .bind(job_id)
    .bind(state)
    .fetch_all(db)
    .await?)
}

/// A replica was paid, by this transaction.
pub(crate) async fn paid(
    db: impl PgExecutor<'_>,
    job_id: &str,
    provider: &str,
    state: i16,
    tx: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE job_executions SET state = $3, tx_hash = $4 WHERE job_id = $1 AND provider = $2")
        .bind(job_id)
        .bind(provider)
        .bind(state)
        .bind(tx)
        .execute(db)
        .await?;
    Ok(())
}

/// Notes a replica's invoice, what was accepted of it, and its state.
pub(crate) async fn note_invoice(
    db: impl PgExecutor<'_>,
    job_id: &str,
    provider: &str,
    invoice: &str,
    amount: Option<Decimal>,
    state: i16,
) -> Result<()> {
    sqlx::query("UPDATE job_executions SET invoice_id = $3, amount = $4, state = $5 WHERE job_id = $1 AND provider = $2")
        .bind(job_id)
        .bind(provider)
        .bind(invoice)
        .bind(amount)
        .bind(state)
        .execute(db)
        .await?;
    Ok(())
}

/// Notes a late invoice on a replica that has none: whether it was noted now.
pub(crate) async fn note_late_invoice(
    db: impl PgExecutor<'_>,
    job_id: &str,
    provider: &str,
    invoice: &str,
    amount: Decimal,
) -> Result<bool> {
    let noted = sqlx::query(
        "UPDATE job_executions SET invoice_id = $3, amount = $4
         WHERE job_id = $1 AND provider = $2 AND invoice_id IS NULL",
    )
    .bind(job_id)
    .bind(provider)
    .bind(invoice)
    .bind(amount)
    .execute(db)
    .await?
    .rows_affected();
    Ok(noted == 1)
}

/// A running replica's agreement, as debit notes are accepted for it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Working {
    pub job_id: String,
    pub agreement_id: String,
    pub allocation_id: String,
    /// How long ago its run was sent, by the database's clock.
    pub seen_secs: Option<f64>,
}

/// The replicas with an agreement of `runner`'s jobs that are not paying yet.
pub(crate) async fn working(db: impl PgExecutor<'_>, runner: &str) -> Result<Vec<Working>> {
    Ok(sqlx::query_as(
        "SELECT e.job_id, e.agreement_id, j.allocation_id,
                extract(epoch FROM now() - e.exec_at)::float8 AS seen_secs
         FROM job_executions e JOIN jobs j ON j.id = e.job_id
         WHERE j.state < 5 AND e.agreement_id IS NOT NULL AND j.allocation_id IS NOT NULL AND j.runner = $1",
    )
    .bind(runner)
    .fetch_all(db)
    .await?)
}

/// Forgets a job's replicas (it runs again from the start).
pub(crate) async fn delete_of_job(db: impl PgExecutor<'_>, job_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM job_executions WHERE job_id = $1").bind(job_id).execute(db).await?;
    Ok(())
}
