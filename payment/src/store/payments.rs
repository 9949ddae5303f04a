//! The `payments` table: payments as the payer made them and as the payee found them on chain.

use crate::model::Payment;
use crate::{Error, Result};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

fn payment(r: &PgRow) -> Result<Payment> {
    let details: serde_json::Value = r.try_get("details")?;
    let shares =
        |key: &str| serde_json::from_value(details[key].clone()).map_err(|e| Error::Corrupt(e.to_string()));
    Ok(Payment {
        payment_id: r.try_get("id")?,
        payer_id: r.try_get("payer_id")?,
        payee_id: r.try_get("payee_id")?,
        payer_addr: r.try_get("payer_addr")?,
        payee_addr: r.try_get("payee_addr")?,
        payment_platform: r.try_get("platform")?,
        amount: r.try_get("amount")?,
        timestamp: r.try_get("created_at")?,
        agreement_payments: shares("agreementPayments")?,
        activity_payments: shares("activityPayments")?,
        details: r.try_get("tx_hash")?,
    })
}

/// Inserts a payment as `side` (`payer` or `payee`); `false` when it was there already.
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    p: &Payment,
    side: &str,
    signature: &str,
    verified: bool,
) -> Result<bool> {
    let details = serde_json::json!({
        "agreementPayments": p.agreement_payments,
        "activityPayments": p.activity_payments,
    });
    let inserted = sqlx::query(
        "INSERT INTO payments (id, side, platform, payer_id, payee_id, payer_addr, payee_addr, amount, tx_hash,
             created_at, details, signature, verified)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
    )
    .bind(&p.payment_id)
    .bind(side)
    .bind(&p.payment_platform)
    .bind(&p.payer_id)
    .bind(&p.payee_id)
    .bind(&p.payer_addr)
    .bind(&p.payee_addr)
    .bind(p.amount)
    .bind(&p.details)
    .bind(p.timestamp)
    .bind(details)
    .bind(signature)
    .bind(verified)
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// For a payment `p` and the principal bound at `$n`: the ids of the documents it pays that are
/// the principal's, `seen`; NULL when there is no principal (all are seen). One batch may pay
/// several principals' documents to a payee.
fn seen(n: usize) -> String {
    format!(
        "CASE WHEN ${n}::text IS NULL THEN NULL ELSE ARRAY(
             SELECT d.id FROM payment_documents d
             WHERE d.principal = ${n} AND d.id IN (
                 SELECT s->>'documentId'
                 FROM jsonb_array_elements((p.details->'agreementPayments') || (p.details->'activityPayments')) s))
         END AS seen"
    )
}

/// A payment as a principal sees it: only the shares of its own documents, and their sum.
fn seen_payment(r: &PgRow) -> Result<Payment> {
    let mut found = payment(r)?;
    if let Some(seen) = r.try_get::<Option<Vec<String>>, _>("seen")? {
        found.agreement_payments.retain(|s| seen.contains(&s.document_id));
        found.activity_payments.retain(|s| seen.contains(&s.document_id));
        found.amount =
            found.agreement_payments.iter().chain(&found.activity_payments).map(|s| s.amount).sum();
    }
    Ok(found)
}

/// Payments made, or received and found on chain, after `after`, oldest first, as `principal`
/// (all when `None`) sees them.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    after: Option<chrono::DateTime<chrono::Utc>>,
    max: i64,
    principal: Option<String>,
) -> Result<Vec<Payment>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM (SELECT *, {} FROM payments p
                        WHERE (side = 'payer' OR verified) AND ($1::timestamptz IS NULL OR created_at > $1)) x
         WHERE $3::text IS NULL OR cardinality(seen) > 0
         ORDER BY created_at, id LIMIT $2",
        seen(3)
    )))
    .bind(after)
    .bind(max)
    .bind(principal)
    .fetch_all(db)
    .await?;
    rows.iter().map(seen_payment).collect()
}

/// One payment made, or received and found on chain, as `principal` sees it.
pub(crate) async fn get(
    db: impl PgExecutor<'_>,
    id: &str,
    principal: Option<String>,
) -> Result<Option<Payment>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM (SELECT *, {} FROM payments p WHERE id = $1 AND (side = 'payer' OR verified)) x
         WHERE $2::text IS NULL OR cardinality(seen) > 0 LIMIT 1",
        seen(2)
    )))
    .bind(id)
    .bind(principal)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(seen_payment).transpose()
}

/// Notices of a payer not yet found on chain and not given up on.
pub(crate) async fn unverified_of_payer(db: impl PgExecutor<'_>, payer: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM payments WHERE side = 'payee' AND payer_addr = $1 AND NOT verified AND problem IS NULL",
    )
    .bind(payer)
    .fetch_one(db)
    .await?)
}

/// The received payment with this id, or else one that names the same transaction to the same
/// payee: its id.
pub(crate) async fn same_or_same_transfer(
    db: impl PgExecutor<'_>,
    id: &str,
    tx_hash: &str,
    payee: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM payments WHERE side = 'payee' AND (id = $1 OR (tx_hash = $2 AND payee_addr = $3))
         ORDER BY id = $1 DESC LIMIT 1",
    )
    .bind(id)
    .bind(tx_hash)
    .bind(payee)
    .fetch_optional(db)
    .await?)
}

/// Received notices due for a look on chain, at most `max`, those never looked at first.
pub(crate) async fn due_for_check(db: impl PgExecutor<'_>, max: i64) -> Result<Vec<Payment>> {
    let rows = sqlx::query(
        "SELECT * FROM payments WHERE side = 'payee' AND NOT verified AND problem IS NULL
             AND (next_check_at IS NULL OR next_check_at <= now())
         ORDER BY next_check_at NULLS FIRST, created_at LIMIT $1",
    )
    .bind(max)
    .fetch_all(db)
    .await?;
    rows.iter().map(payment).collect()
}

/// A notice not found on chain yet: looked at again after 1, 2, 4 … 60 s, and given up on once
/// it has waited longer than `lifetime_secs`.
pub(crate) async fn check_later(db: impl PgExecutor<'_>, id: &str, lifetime_secs: f64) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET checks = checks + 1,
             next_check_at = now() + make_interval(secs => least(60, power(2, least(checks, 6)))),
             problem = CASE WHEN received_at < now() - make_interval(secs => $2)
                 THEN 'the transaction was not found on chain in time' END
         WHERE id = $1 AND side = 'payee'",
    )
    .bind(id)
    .bind(lifetime_secs)
    .execute(db)
    .await?;
    Ok(())
}

/// A received payment found on chain.
pub(crate) async fn verified(db: impl PgExecutor<'_>, id: &str) -> Result<()> {
    sqlx::query("UPDATE payments SET verified = true WHERE id = $1 AND side = 'payee'")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// A received payment whose transaction does not pay what it says.
pub(crate) async fn problem(db: impl PgExecutor<'_>, id: &str, problem: &str) -> Result<()> {
    sqlx::query("UPDATE payments SET problem = $2 WHERE id = $1 AND side = 'payee'")
        .bind(id)
        .bind(problem)
        .execute(db)
        .await?;
    Ok(())
}

/// What verified payments to this node paid for an agreement, per activity share.
pub(crate) async fn received_for_agreement(
    db: impl PgExecutor<'_>,
    agreement_id: &str,
) -> Result<Vec<(Option<String>, Decimal)>> {
    Ok(sqlx::query_as(
        "SELECT share->>'activityId', (share->>'amount')::numeric FROM payments p,
             jsonb_array_elements((p.details->'agreementPayments') || (p.details->'activityPayments')) share
         WHERE p.side = 'payee' AND p.verified AND share->>'agreementId' = $1",
    )
    .bind(agreement_id)
    .fetch_all(db)
    .await?)
}

/// What this node paid (`payer`) or received and verified (`payee`) on a platform.
pub(crate) async fn total(db: impl PgExecutor<'_>, platform: &str, payer: bool) -> Result<Decimal> {
    let sql = if payer {
        "SELECT sum(amount) FROM payments WHERE platform = $1 AND side = 'payer'"
    } else {
        "SELECT sum(amount) FROM payments WHERE platform = $1 AND side = 'payee' AND verified"
    };
    let sum: Option<Decimal> = sqlx::query_scalar(sql).bind(platform).fetch_one(db).await?;
    Ok(sum.unwrap_or_default())
}
