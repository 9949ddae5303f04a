//! The `allocations` table: money a requestor sets aside on a platform. The table never lets
//! `spent` pass `total`; acceptances take what they need with a compare-and-set.

use crate::Result;
use crate::model::Allocation;
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

fn allocation(r: &PgRow) -> Result<Allocation> {
    Ok(Allocation {
        id: r.try_get("id")?,
        platform: r.try_get("platform")?,
        address: r.try_get("address")?,
        total: r.try_get("total")?,
        spent: r.try_get("spent")?,
        timestamp: r.try_get("created_at")?,
        timeout: r.try_get("timeout")?,
        make_deposit: r.try_get("make_deposit")?,
    })
}

/// What a new allocation holds.
pub(crate) struct NewRow<'a> {
    pub id: &'a str,
    pub platform: &'a str,
    pub address: &'a str,
    pub total: Decimal,
    pub timeout: Option<chrono::DateTime<chrono::Utc>>,
    pub make_deposit: bool,
    pub principal: &'a str,
}

pub(crate) async fn insert(db: impl PgExecutor<'_>, new: NewRow<'_>) -> Result<Allocation> {
    let row = sqlx::query(
        "INSERT INTO allocations (id, platform, address, total, timeout, make_deposit, principal)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
    )
    .bind(new.id)
    .bind(new.platform)
    .bind(new.address)
    .bind(new.total)
    .bind(new.timeout)
    .bind(new.make_deposit)
    .bind(new.principal)
    .fetch_one(db)
    .await?;
    allocation(&row)
}

/// Allocations not released of `principal` (all when `None`), oldest first.
pub(crate) async fn open(db: impl PgExecutor<'_>, principal: Option<String>) -> Result<Vec<Allocation>> {
    let rows = sqlx::query(
        "SELECT * FROM allocations WHERE released_at IS NULL AND ($1::text IS NULL OR principal = $1)
         ORDER BY created_at, id",
    )
    .bind(principal)
    .fetch_all(db)
    .await?;
    rows.iter().map(allocation).collect()
}

/// An allocation not released.
pub(crate) async fn get_open(db: impl PgExecutor<'_>, id: &str) -> Result<Option<Allocation>> {
    let row = sqlx::query("SELECT * FROM allocations WHERE id = $1 AND released_at IS NULL")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(allocation).transpose()
}

/// An allocation, released or not, and whether it is released.
pub(crate) async fn get(db: impl PgExecutor<'_>, id: &str) -> Result<Option<(Allocation, bool)>> {
    let row = sqlx::query("SELECT *, released_at IS NOT NULL AS released FROM allocations WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some((allocation(&row)?, row.try_get("released")?))),
    }
}

/// The owner of an allocation not released.
pub(crate) async fn principal(db: impl PgExecutor<'_>, id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT principal FROM allocations WHERE id = $1 AND released_at IS NULL")
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// A new total and timeout, unless the total is below what was spent: `None` then, or when the
/// allocation is released.
pub(crate) async fn amend(
    db: impl PgExecutor<'_>,
    id: &str,
    total: Decimal,
    timeout: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Option<Allocation>> {
    let row = sqlx::query(
        "UPDATE allocations SET total = $2, timeout = COALESCE($3, timeout)
         WHERE id = $1 AND released_at IS NULL AND spent <= $2 RETURNING *",
    )
    .bind(id)
    .bind(total)
    .bind(timeout)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(allocation).transpose()
}

/// Releases an allocation: `None` if there is none, `Some(true)` if it was released before.
pub(crate) async fn release(db: impl PgExecutor<'_>, id: &str) -> Result<Option<bool>> {
    Ok(sqlx::query_scalar(
        "UPDATE allocations SET released_at = COALESCE(released_at, now()) WHERE id = $1
         RETURNING released_at < now()",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Draws `amount` on an allocation that is open, in time and has that much left; `false` if it
/// has not.
pub(crate) async fn draw(db: impl PgExecutor<'_>, id: &str, amount: Decimal) -> Result<bool> {
    let charged = sqlx::query(
        "UPDATE allocations SET spent = spent + $2
         WHERE id = $1 AND released_at IS NULL AND total - spent >= $2
           AND (timeout IS NULL OR timeout > now())",
    )
    .bind(id)
    .bind(amount)
    .execute(db)
    .await?
    .rows_affected();
    Ok(charged == 1)
}

/// Gives `amount` back to an allocation (an order that failed).
pub(crate) async fn give_back(db: impl PgExecutor<'_>, id: &str, amount: Decimal) -> Result<()> {
    sqlx::query("UPDATE allocations SET spent = spent - $2 WHERE id = $1")
        .bind(id)
        .bind(amount)
        .execute(db)
        .await?;
    Ok(())
}

/// What the open allocations of a platform have left.
pub(crate) async fn unspent(db: impl PgExecutor<'_>, platform: &str) -> Result<Decimal> {
    let sum: Option<Decimal> = sqlx::query_scalar(
        "SELECT sum(total - spent) FROM allocations WHERE platform = $1 AND released_at IS NULL",
    )
    .bind(platform)
    .fetch_one(db)
    .await?;
    Ok(sum.unwrap_or_default())
}
