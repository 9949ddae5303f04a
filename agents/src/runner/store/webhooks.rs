//! The `job_webhook_deliveries` table: each step a job's webhook is to receive, leased while it
//! is sent, with its tries, last status and error.

use crate::Result;
use crate::runner::Delivery;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// A job's deliveries, oldest step first.
pub(crate) async fn of_job(db: impl PgExecutor<'_>, job_id: &str) -> Result<Vec<Delivery>> {
    Ok(sqlx::query_as(
        "SELECT event_id, url, attempts, next_at, delivered_at, gave_up_at, last_status, last_error
         FROM job_webhook_deliveries WHERE job_id = $1 ORDER BY event_id",
    )
    .bind(job_id)
    .fetch_all(db)
    .await?)
}

/// A delivery leased to be sent, with its step and the owner whose secret signs it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Due {
    pub event_id: i64,
    pub job_id: String,
    pub url: String,
    pub attempts: i32,
    pub at: DateTime<Utc>,
    pub state: i16,
    pub message: String,
    pub signer: String,
}

/// Leases up to `max` due deliveries for 30 s, each the earliest one of its job not delivered
/// yet, counting a try for each.
pub(crate) async fn lease_due(db: impl PgExecutor<'_>, max: i64) -> Result<Vec<Due>> {
    Ok(sqlx::query_as(
        "UPDATE job_webhook_deliveries d SET leased_until = now() + interval '30 seconds',
             attempts = d.attempts + 1
         FROM job_events ev, jobs j
         WHERE d.event_id IN (
             SELECT x.event_id FROM job_webhook_deliveries x
             WHERE x.delivered_at IS NULL AND x.gave_up_at IS NULL AND x.next_at <= now()
               AND (x.leased_until IS NULL OR x.leased_until < now())
               AND NOT EXISTS (
                   SELECT 1 FROM job_webhook_deliveries y
                   WHERE y.job_id = x.job_id AND y.event_id < x.event_id
                     AND y.delivered_at IS NULL AND y.gave_up_at IS NULL)
             ORDER BY x.next_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           AND ev.id = d.event_id AND j.id = d.job_id
         RETURNING d.event_id, d.job_id, d.url, d.attempts, ev.at, ev.state, ev.message,
             coalesce((SELECT u.service FROM job_users u WHERE 'user:' || u.id = j.owner), j.owner) AS signer",
    )
    .bind(max)
    .fetch_all(db)
    .await?)
}

pub(crate) async fn delivered(db: impl PgExecutor<'_>, event_id: i64, status: Option<i16>) -> Result<()> {
    sqlx::query(
        "UPDATE job_webhook_deliveries SET delivered_at = now(), leased_until = NULL,
             last_status = $2, last_error = NULL WHERE event_id = $1",
    )
    .bind(event_id)
    .bind(status)
    .execute(db)
    .await?;
    Ok(())
}

/// A try failed: tried again after `backoff_secs`, and given up on a day after the step.
pub(crate) async fn failed(
    db: impl PgExecutor<'_>,
    event_id: i64,
    status: Option<i16>,
    error: &str,
    backoff_secs: f64,
) -> Result<()> {
    sqlx::query(
        "UPDATE job_webhook_deliveries SET leased_until = NULL, last_status = $2, last_error = $3,
             next_at = now() + make_interval(secs => $4),
             gave_up_at = CASE WHEN created_at < now() - interval '1 day' THEN now() END
         WHERE event_id = $1",
    )
    .bind(event_id)
    .bind(status)
    .bind(error)
    .bind(backoff_secs)
    .execute(db)
    .await?;
    Ok(())
}
