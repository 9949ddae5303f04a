//! The `job_users` table (a service's end users, with their caps and what they spent) and
//! `job_webhook_secrets` (the secret each service's webhooks are signed with).

use crate::Result;
use crate::runner::EndUser;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgExecutor, Row};

const USER_COLUMNS: &str =
    "id, name, service, cap_total, cap_per_job, spent, submissions_per_minute, created_at";

fn user_of(row: &sqlx::postgres::PgRow) -> EndUser {
    EndUser {
        id: row.get("id"),
        name: row.get("name"),
        service: row.get("service"),
        cap_total: row.get::<Option<Decimal>, _>("cap_total").map(|d| d.normalize()),
        cap_per_job: row.get::<Option<Decimal>, _>("cap_per_job").map(|d| d.normalize()),
        spent: row.get::<Decimal, _>("spent").normalize(),
        submissions_per_minute: row.get("submissions_per_minute"),
        created_at: row.get("created_at"),
    }
}

/// A new end user.
pub(crate) struct NewRow<'a> {
    pub id: &'a str,
    pub service: &'a str,
    pub name: &'a str,
    pub key_hash: Vec<u8>,
    pub cap_total: Option<Decimal>,
    pub cap_per_job: Option<Decimal>,
    pub submissions_per_minute: Option<i32>,
}

/// Inserts an end user; the database's error as it is (a unique violation for a name taken).
pub(crate) async fn insert(db: impl PgExecutor<'_>, new: NewRow<'_>) -> sqlx::Result<EndUser> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO job_users (id, service, name, key_hash, cap_total, cap_per_job, submissions_per_minute)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {USER_COLUMNS}"
    )))
    .bind(new.id)
    .bind(new.service)
    .bind(new.name)
    .bind(new.key_hash)
    .bind(new.cap_total)
    .bind(new.cap_per_job)
    .bind(new.submissions_per_minute)
    .fetch_one(db)
    .await?;
    Ok(user_of(&row))
}

/// The end users of a service (all, when `None`), oldest first.
pub(crate) async fn of_service(db: impl PgExecutor<'_>, service: Option<String>) -> Result<Vec<EndUser>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM job_users WHERE $1::text IS NULL OR service = $1 ORDER BY created_at, id"
    )))
    .bind(service)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(user_of).collect())
}

/// One end user, if `scope` (a service, or the user itself; all when `None`) sees it.
pub(crate) async fn get(db: impl PgExecutor<'_>, id: &str, scope: Option<String>) -> Result<Option<EndUser>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM job_users WHERE id = $1 AND ($2::text IS NULL OR service = $2 OR 'user:' || id = $2)"
    )))
    .bind(id)
    .bind(scope)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(user_of))
}

/// Gives an end user's key a new hash; `false` if the service (all when `None`) has no such user.
pub(crate) async fn set_key_hash(
    db: impl PgExecutor<'_>,
    id: &str,
    service: Option<String>,
    key_hash: Vec<u8>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE job_users SET key_hash = $3 WHERE id = $1 AND ($2::text IS NULL OR service = $2)",
    )
    .bind(id)
    .bind(service)
    .bind(key_hash)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The end user whose key has this hash.
pub(crate) async fn by_key_hash(db: impl PgExecutor<'_>, key_hash: Vec<u8>) -> Result<Option<EndUser>> {
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM job_users WHERE key_hash = $1")))
            .bind(key_hash)
            .fetch_optional(db)
            .await?;
    Ok(row.as_ref().map(user_of))
}

/// Locks an end user's row for the rest of the transaction, waiting at most 2 s for its turn;
/// the database's error as it is (`55P03` when the turn did not come).
pub(crate) async fn lock(db: &mut sqlx::PgConnection, id: &str) -> sqlx::Result<Option<EndUser>> {
    sqlx::query("SET LOCAL lock_timeout = '2s'").execute(&mut *db).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM job_users WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(user_of))
}

/// Counts `amount` as spent (or held by a job) by an end user.
pub(crate) async fn spend(db: impl PgExecutor<'_>, id: &str, amount: Decimal) -> Result<()> {
    sqlx::query("UPDATE job_users SET spent = spent + $2 WHERE id = $1")
        .bind(id)
        .bind(amount)
        .execute(db)
        .await?;
    Ok(())
}

/// A job ends: the user that owns it gets back what the job held, less what its verified
/// providers (executions in `paid_states`) were paid.
pub(crate) async fn settle_job(db: impl PgExecutor<'_>, job_id: &str, paid_states: [i16; 2]) -> Result<()> {
    sqlx::query(
        "UPDATE job_users u SET spent = u.spent - j.reserved + coalesce(
             (SELECT sum(e.amount) FROM job_executions e
              WHERE e.job_id = j.id AND e.state IN ($2, $3) AND e.amount IS NOT NULL), 0)
         FROM jobs j WHERE j.id = $1 AND j.owner = 'user:' || u.id",
    )
    .bind(job_id)
    .bind(paid_states[0])
    .bind(paid_states[1])
    .execute(db)
    .await?;
    Ok(())
}

/// The secret that signs an owner's webhooks, if it has one.
pub(crate) async fn secret(db: impl PgExecutor<'_>, owner: &str) -> Result<Option<Vec<u8>>> {
    Ok(sqlx::query_scalar("SELECT secret FROM job_webhook_secrets WHERE owner = $1")
        .bind(owner)
        .fetch_optional(db)
        .await?)
}

/// Keeps `fresh` as an owner's secret unless it has one; the one it has.
pub(crate) async fn keep_secret(db: &sqlx::PgPool, owner: &str, fresh: Vec<u8>) -> Result<Vec<u8>> {
    sqlx::query("INSERT INTO job_webhook_secrets (owner, secret) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(owner)
        .bind(fresh)
        .execute(db)
        .await?;
    Ok(sqlx::query_scalar("SELECT secret FROM job_webhook_secrets WHERE owner = $1")
        .bind(owner)
        .fetch_one(db)
        .await?)
}

/// How many jobs an owner submitted in the last minute, and when the oldest of them was.
pub(crate) async fn submitted_last_minute(
    db: impl PgExecutor<'_>,
    owner: &str,
) -> Result<(i64, Option<DateTime<Utc>>)> {
    Ok(sqlx::query_as(
        "SELECT count(*), min(created_at) FROM jobs WHERE owner = $1 AND created_at > now() - interval '1 minute'",
    )
    .bind(owner)
    .fetch_one(db)
    .await?)
}

/// Charges a late payment for a job to the end user that owns it, if one does.
pub(crate) async fn charge_owner(db: impl PgExecutor<'_>, job_id: &str, amount: Decimal) -> Result<()> {
    sqlx::query("UPDATE job_users u SET spent = u.spent + $2 FROM jobs j WHERE j.id = $1 AND j.owner = 'user:' || u.id")
        .bind(job_id)
        .bind(amount)
        .execute(db)
        .await?;
    Ok(())
}
