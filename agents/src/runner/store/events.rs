//! The `job_events` table (each step of a job) and the webhook delivery a step makes.

use crate::Result;
use crate::runner::JobEvent;
use sqlx::PgExecutor;

/// A job's steps after `after`, oldest first.
pub(crate) async fn after(db: impl PgExecutor<'_>, job_id: &str, after: i64) -> Result<Vec<JobEvent>> {
    let rows = sqlx::query("SELECT * FROM job_events WHERE job_id = $1 AND id > $2 ORDER BY id")
        .bind(job_id)
        .bind(after)
        .fetch_all(db)
        .await?;
    Ok(rows.iter().map(JobEvent::of).collect())
}

/// Records a step, and its webhook delivery when the job has a webhook; whether it has one.
pub(crate) async fn insert(
    db: &mut sqlx::PgConnection,
    job_id: &str,
    state: i16,
    message: &str,
) -> Result<bool> {
    let event: i64 = sqlx::query_scalar(
        "INSERT INTO job_events (job_id, state, message) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(job_id)
    .bind(state)
    .bind(message)
    .fetch_one(&mut *db)
    .await?;
    let hooked = sqlx::query(
        "INSERT INTO job_webhook_deliveries (event_id, job_id, url)
         SELECT $1, id, spec->>'webhook' FROM jobs WHERE id = $2 AND spec->>'webhook' IS NOT NULL",
    )
    .bind(event)
    .bind(job_id)
    .execute(db)
    .await?
    .rows_affected();
    Ok(hooked > 0)
}
