//! The `payment_orders` table: what an acceptance orders paid, until a batch pays it or the
//! chain refuses it.

use crate::Result;
use rust_decimal::Decimal;
use sqlx::{PgExecutor, Row};

/// What an agreement's orders (one activity's, when named) add up to, failed ones aside.
pub(crate) async fn ordered(
    db: impl PgExecutor<'_>,
    agreement_id: &str,
    activity_id: Option<String>,
) -> Result<Decimal> {
    let ordered: Option<Decimal> = sqlx::query_scalar(
        "SELECT sum(amount) FROM payment_orders
         WHERE agreement_id = $1 AND ($2::text IS NULL OR activity_id = $2) AND failure IS NULL",
    )
    .bind(agreement_id)
    .bind(activity_id)
    .fetch_one(db)
    .await?;
    Ok(ordered.unwrap_or_default())
}

/// A new order.
pub(crate) struct NewOrder<'a> {
    pub platform: &'a str,
    pub payer_addr: String,
    pub payee_addr: String,
    pub payee_id: String,
    pub payee_peer: &'a str,
    pub amount: Decimal,
    pub agreement_id: &'a str,
    pub activity_id: Option<&'a str>,
    pub document_kind: &'a str,
    pub document_id: &'a str,
    pub allocation_id: &'a str,
}

pub(crate) async fn insert(db: impl PgExecutor<'_>, o: NewOrder<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO payment_orders (platform, payer_addr, payee_addr, payee_id, payee_peer, amount,
             agreement_id, activity_id, document_kind, document_id, allocation_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(o.platform)
    .bind(o.payer_addr)
    .bind(o.payee_addr)
    .bind(o.payee_id)
    .bind(o.payee_peer)
    .bind(o.amount)
    .bind(o.agreement_id)
    .bind(o.activity_id)
    .bind(o.document_kind)
    .bind(o.document_id)
    .bind(o.allocation_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Seconds the oldest order of a payer on a platform has waited for a batch; `None` if none waits.
pub(crate) async fn oldest_wait(db: impl PgExecutor<'_>, platform: &str, payer: &str) -> Result<Option<f64>> {
    Ok(sqlx::query_scalar(
        "SELECT extract(epoch FROM clock_timestamp() - min(created_at))::float8 FROM payment_orders
         WHERE platform = $1 AND payer_addr = $2 AND batch_id IS NULL AND failure IS NULL",
    )
    .bind(platform)
    .bind(payer)
    .fetch_one(db)
    .await?)
}

/// The orders waiting for a batch, oldest first: id, payee and amount.
pub(crate) async fn waiting(
    db: impl PgExecutor<'_>,
    platform: &str,
    payer: &str,
) -> Result<Vec<(i64, String, Decimal)>> {
    Ok(sqlx::query_as(
        "SELECT id, payee_addr, amount FROM payment_orders
         WHERE platform = $1 AND payer_addr = $2 AND batch_id IS NULL AND failure IS NULL ORDER BY id",
    )
    .bind(platform)
    .bind(payer)
    .fetch_all(db)
    .await?)
}

/// Puts orders in a batch; how many were still waiting and are now in it.
pub(crate) async fn batch(db: impl PgExecutor<'_>, batch: i64, ids: &[i64]) -> Result<u64> {
    Ok(sqlx::query("UPDATE payment_orders SET batch_id = $1 WHERE id = ANY($2) AND batch_id IS NULL")
        .bind(batch)
        .bind(ids)
        .execute(db)
        .await?
        .rows_affected())
}

/// Takes a batch's orders out of it, to wait for another.
pub(crate) async fn unbatch(db: impl PgExecutor<'_>, batch: i64) -> Result<()> {
    sqlx::query("UPDATE payment_orders SET batch_id = NULL WHERE batch_id = $1")
        .bind(batch)
        .execute(db)
        .await?;
    Ok(())
}

/// An order a mined batch paid.
pub(crate) struct PaidOrder {
    pub payee_addr: String,
    pub payee_id: String,
    pub payee_peer: String,
    pub amount: Decimal,
    pub agreement_id: String,
    pub activity_id: Option<String>,
    pub document_kind: String,
    pub document_id: String,
    pub allocation_id: Option<String>,
}

/// Marks a batch's orders paid, and returns them.
pub(crate) async fn mark_paid(db: impl PgExecutor<'_>, batch: i64) -> Result<Vec<PaidOrder>> {
    let rows = sqlx::query(
        "UPDATE payment_orders SET paid = true WHERE batch_id = $1
         RETURNING payee_addr, payee_id, payee_peer, amount, agreement_id, activity_id, document_kind, document_id, allocation_id",
    )
    .bind(batch)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|o| {
            Ok(PaidOrder {
                payee_addr: o.try_get("payee_addr")?,
                payee_id: o.try_get("payee_id")?,
                payee_peer: o.try_get("payee_peer")?,
                amount: o.try_get("amount")?,
                agreement_id: o.try_get("agreement_id")?,
                activity_id: o.try_get("activity_id")?,
                document_kind: o.try_get("document_kind")?,
                document_id: o.try_get("document_id")?,
                allocation_id: o.try_get("allocation_id")?,
            })
        })
        .collect()
}

/// Fails the orders of `ids` that wait for a batch, with the reason; returns each one's
/// allocation, amount and document.
pub(crate) async fn fail(
    db: impl PgExecutor<'_>,
    ids: &[i64],
    why: &str,
) -> Result<Vec<(String, Decimal, String)>> {
    Ok(sqlx::query_as(
        "UPDATE payment_orders SET failure = $2 WHERE id = ANY($1) AND batch_id IS NULL AND failure IS NULL
         RETURNING allocation_id, amount, document_id",
    )
    .bind(ids)
    .bind(why)
    .fetch_all(db)
    .await?)
}

/// What was paid for an agreement, per activity (none for the agreement's own orders).
pub(crate) async fn paid_of_agreement(
    db: impl PgExecutor<'_>,
    agreement_id: &str,
) -> Result<Vec<(Option<String>, Decimal)>> {
    Ok(sqlx::query_as("SELECT activity_id, amount FROM payment_orders WHERE agreement_id = $1 AND paid")
        .bind(agreement_id)
        .fetch_all(db)
        .await?)
}

/// What the orders of a platform that are neither paid nor failed add up to.
pub(crate) async fn pending(db: impl PgExecutor<'_>, platform: &str) -> Result<Decimal> {
    let sum: Option<Decimal> = sqlx::query_scalar(
        "SELECT sum(amount) FROM payment_orders WHERE platform = $1 AND NOT paid AND failure IS NULL",
    )
    .bind(platform)
    .fetch_one(db)
    .await?;
    Ok(sum.unwrap_or_default())
}
