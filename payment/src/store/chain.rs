//! The `chain_batches` and `chain_txs` tables: each payment transaction a payer signed (one
//! batch a nonce), and every signed version of it, stored before it is sent.

use crate::Result;
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

/// A payer's batches not mined yet, by nonce: id, nonce and purpose.
pub(crate) async fn pending(
    db: impl PgExecutor<'_>,
    platform: &str,
    payer: &str,
) -> Result<Vec<(i64, i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, nonce, purpose FROM chain_batches
         WHERE platform = $1 AND payer_addr = $2 AND state = 'pending' ORDER BY nonce",
    )
    .bind(platform)
    .bind(payer)
    .fetch_all(db)
    .await?)
}

/// How many of a payer's batches are not mined yet.
pub(crate) async fn pending_count(db: impl PgExecutor<'_>, platform: &str, payer: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM chain_batches WHERE platform = $1 AND payer_addr = $2 AND state = 'pending'",
    )
    .bind(platform)
    .bind(payer)
    .fetch_one(db)
    .await?)
}

/// The highest nonce a payer's batches used.
pub(crate) async fn last_nonce(db: impl PgExecutor<'_>, platform: &str, payer: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT max(nonce) FROM chain_batches WHERE platform = $1 AND payer_addr = $2")
        .bind(platform)
        .bind(payer)
        .fetch_one(db)
        .await?)
}

/// A new batch; its id.
pub(crate) async fn insert_batch(
    db: impl PgExecutor<'_>,
    platform: &str,
    payer: &str,
    nonce: i64,
    purpose: &str,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO chain_batches (platform, payer_addr, nonce, purpose) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(platform)
    .bind(payer)
    .bind(nonce)
    .bind(purpose)
    .fetch_one(db)
    .await?)
}

/// A batch's transaction was mined (`state` `mined` or `reverted`).
pub(crate) async fn mined(
    db: impl PgExecutor<'_>,
    batch: i64,
    state: &str,
    hash: &str,
    block: i64,
) -> Result<()> {
    sqlx::query("UPDATE chain_batches SET state = $4, mined_hash = $2, mined_block = $3 WHERE id = $1")
        .bind(batch)
        .bind(hash)
        .bind(block)
        .bind(state)
        .execute(db)
        .await?;
    Ok(())
}

/// A signed transaction, as it is stored before it is sent.
pub(crate) struct TxRow {
    pub hash: String,
    pub raw: Vec<u8>,
    pub max_fee: Decimal,
    pub priority_fee: Decimal,
    pub gas_limit: i64,
    pub sent: bool,
    pub signed_at: chrono::DateTime<chrono::Utc>,
}

fn tx_row(r: &PgRow) -> Result<TxRow> {
    Ok(TxRow {
        hash: r.try_get("hash")?,
        raw: r.try_get("raw")?,
        max_fee: r.try_get("max_fee")?,
        priority_fee: r.try_get("priority_fee")?,
        gas_limit: r.try_get("gas_limit")?,
        sent: r.try_get("sent")?,
        signed_at: r.try_get("signed_at")?,
    })
}

/// A batch's signed transactions, oldest first.
pub(crate) async fn txs(db: impl PgExecutor<'_>, batch: i64) -> Result<Vec<TxRow>> {
    let rows = sqlx::query(
        "SELECT hash, raw, max_fee, priority_fee, gas_limit, sent_at IS NOT NULL AS sent, signed_at
         FROM chain_txs WHERE batch_id = $1 ORDER BY signed_at, hash",
    )
    .bind(batch)
    .fetch_all(db)
    .await?;
    rows.iter().map(tx_row).collect()
}

pub(crate) async fn insert_tx(
    db: impl PgExecutor<'_>,
    hash: &str,
    batch: i64,
    raw: &[u8],
    max_fee: Decimal,
    priority_fee: Decimal,
    gas_limit: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO chain_txs (hash, batch_id, raw, max_fee, priority_fee, gas_limit) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hash)
    .bind(batch)
    .bind(raw)
    .bind(max_fee)
    .bind(priority_fee)
    .bind(gas_limit)
    .execute(db)
    .await?;
    Ok(())
}

/// A transaction was sent (kept as the first time).
pub(crate) async fn sent(db: impl PgExecutor<'_>, hash: &str) -> Result<()> {
    sqlx::query("UPDATE chain_txs SET sent_at = COALESCE(sent_at, now()) WHERE hash = $1")
        .bind(hash)
        .execute(db)
        .await?;
    Ok(())
}
