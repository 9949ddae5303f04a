//! The `payment_documents` table: debit notes and invoices, as issued here or received.

use crate::model::{Document, DocumentRow, Kind, Status};
use crate::{Error, Result};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

pub(crate) fn document_row(r: &PgRow) -> Result<DocumentRow> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    let activity_ids: Option<Value> = r.try_get("activity_ids")?;
    Ok(DocumentRow {
        document: Document {
            id: r.try_get("id")?,
            kind: Kind::parse(&kind).ok_or_else(|| Error::Corrupt(format!("document kind {kind}")))?,
            agreement_id: r.try_get("agreement_id")?,
            activity_id: r.try_get("activity_id")?,
            activity_ids: activity_ids
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| Error::Corrupt(e.to_string()))?,
            issuer_id: r.try_get("issuer_id")?,
            recipient_id: r.try_get("recipient_id")?,
            payee_addr: r.try_get("payee_addr")?,
            payer_addr: r.try_get("payer_addr")?,
            payment_platform: r.try_get("platform")?,
            previous_id: r.try_get("previous_id")?,
            amount: r.try_get("amount")?,
            usage_counter_vector: r.try_get("usage")?,
            payment_due_date: r.try_get("payment_due_date")?,
            timestamp: r.try_get("created_at")?,
        },
        status: Status::parse(&status).ok_or_else(|| Error::Corrupt(format!("document status {status}")))?,
        issued_here: r.try_get::<String, _>("side")? == "issuer",
        signature: r.try_get("signature")?,
        accepted_amount: r.try_get("accepted_amount")?,
        allocation_id: r.try_get("allocation_id")?,
    })
}

fn side(issued_here: bool) -> &'static str {
    if issued_here { "issuer" } else { "recipient" }
}

/// Inserts a document as issued here or received; it is its agreement's `principal`'s. `false`
/// when it was there already.
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    d: &Document,
    issued_here: bool,
    status: Status,
    signature: &str,
    principal: &str,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO payment_documents (id, kind, side, agreement_id, activity_id, activity_ids,
             issuer_id, recipient_id, payee_addr, payer_addr, platform, previous_id, amount, usage,
             payment_due_date, status, created_at, signature, principal)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&d.id)
    .bind(d.kind.as_str())
    .bind(side(issued_here))
    .bind(&d.agreement_id)
    .bind(&d.activity_id)
    .bind(d.activity_ids.as_ref().map(|a| serde_json::json!(a)))
    .bind(&d.issuer_id)
    .bind(&d.recipient_id)
    .bind(&d.payee_addr)
    .bind(&d.payer_addr)
    .bind(&d.payment_platform)
    .bind(&d.previous_id)
    .bind(d.amount)
    .bind(&d.usage_counter_vector)
    .bind(d.payment_due_date)
    .bind(status.as_str())
    .bind(d.timestamp)
    .bind(signature)
    .bind(principal)
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub(crate) async fn get(db: impl PgExecutor<'_>, kind: Kind, id: &str) -> Result<Option<DocumentRow>> {
    let row = sqlx::query("SELECT * FROM payment_documents WHERE id = $1 AND kind = $2")
        .bind(id)
        .bind(kind.as_str())
        .fetch_optional(db)
        .await?;
    row.as_ref().map(document_row).transpose()
}

/// Documents of `kind` of `principal` (all when `None`), oldest first, only those after `after`.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    kind: Kind,
    after: Option<chrono::DateTime<chrono::Utc>>,
    max: i64,
    principal: Option<String>,
) -> Result<Vec<DocumentRow>> {
    let rows = sqlx::query(
        "SELECT * FROM payment_documents WHERE kind = $1 AND ($2::timestamptz IS NULL OR created_at > $2)
           AND ($4::text IS NULL OR principal = $4)
         ORDER BY created_at, id LIMIT $3",
    )
    .bind(kind.as_str())
    .bind(after)
    .bind(max)
    .bind(principal)
    .fetch_all(db)
    .await?;
    rows.iter().map(document_row).collect()
}

/// The documents of `kind` of one agreement, oldest first.
pub(crate) async fn of_agreement(
    db: impl PgExecutor<'_>,
    kind: Kind,
    agreement_id: &str,
) -> Result<Vec<DocumentRow>> {
    let rows = sqlx::query(
        "SELECT * FROM payment_documents WHERE kind = $1 AND agreement_id = $2 ORDER BY created_at, id",
    )
    .bind(kind.as_str())
    .bind(agreement_id)
    .fetch_all(db)
    .await?;
    rows.iter().map(document_row).collect()
}

/// Whose a document is.
pub(crate) async fn principal(db: impl PgExecutor<'_>, kind: Kind, id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT principal FROM payment_documents WHERE id = $1 AND kind = $2")
        .bind(id)
        .bind(kind.as_str())
        .fetch_optional(db)
        .await?)
}

/// A document's status, its row locked for the rest of the transaction.
pub(crate) async fn status_for_update(db: impl PgExecutor<'_>, id: &str) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT status FROM payment_documents WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_one(db)
        .await?)
}

/// What the debit notes of an agreement (issued here or received) ask together: the latest of
/// each activity, cancelled ones aside.
pub(crate) async fn debit_notes_total(
    db: impl PgExecutor<'_>,
    agreement_id: &str,
    issued_here: bool,
) -> Result<Decimal> {
    let total: Option<Decimal> = sqlx::query_scalar(
        "SELECT sum(latest) FROM (
             SELECT max(amount) AS latest FROM payment_documents
             WHERE kind = 'debit_note' AND agreement_id = $1 AND side = $2 AND status <> 'CANCELLED'
             GROUP BY activity_id) notes",
    )
    .bind(agreement_id)
    .bind(side(issued_here))
    .fetch_one(db)
    .await?;
    Ok(total.unwrap_or_default())
}

/// The last debit note issued here for an activity, cancelled ones aside: its id and amount.
pub(crate) async fn last_issued_debit_note(
    db: impl PgExecutor<'_>,
    agreement_id: &str,
    activity_id: &str,
) -> Result<Option<(String, Decimal)>> {
    Ok(sqlx::query_as(
        "SELECT id, amount FROM payment_documents
         WHERE kind = 'debit_note' AND side = 'issuer' AND agreement_id = $1 AND activity_id = $2
           AND status <> 'CANCELLED'
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(agreement_id)
    .bind(activity_id)
    .fetch_optional(db)
    .await?)
}

/// The most a received debit note of an activity asked, other than `except`.
pub(crate) async fn most_received_for_activity(
    db: impl PgExecutor<'_>,
    agreement_id: &str,
    activity_id: &str,
    except: &str,
) -> Result<Option<Decimal>> {
    Ok(sqlx::query_scalar(
        "SELECT max(amount) FROM payment_documents
         WHERE kind = 'debit_note' AND side = 'recipient' AND agreement_id = $1 AND activity_id = $2
           AND id <> $3",
    )
    .bind(agreement_id)
    .bind(activity_id)
    .bind(except)
    .fetch_one(db)
    .await?)
}

/// How many debit notes of an agreement this node received.
pub(crate) async fn received_debit_notes(db: impl PgExecutor<'_>, agreement_id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM payment_documents WHERE agreement_id = $1 AND side = 'recipient' AND kind = 'debit_note'",
    )
    .bind(agreement_id)
    .fetch_one(db)
    .await?)
}

/// Moves a document from one of `from` to `to`; `false` if it was in none of them.
pub(crate) async fn move_status(
    db: impl PgExecutor<'_>,
    id: &str,
    from: &[Status],
    to: Status,
) -> Result<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let moved = sqlx::query("UPDATE payment_documents SET status = $3 WHERE id = $1 AND status = ANY($2)")
        .bind(id)
        .bind(&from)
        .bind(to.as_str())
        .execute(db)
        .await?
        .rows_affected();
    Ok(moved == 1)
}

/// Records the acceptance of a document: its amount and the allocation it is paid from.
pub(crate) async fn accept(
    db: impl PgExecutor<'_>,
    id: &str,
    accepted: Decimal,
    allocation_id: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE payment_documents SET status = 'ACCEPTED', accepted_amount = $2, allocation_id = $3, rejection = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(accepted)
    .bind(allocation_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Rejects a received document not accepted yet; `false` if it was not in such a state.
pub(crate) async fn reject_received(db: impl PgExecutor<'_>, id: &str, rejection: &Value) -> Result<bool> {
    let updated = sqlx::query(
        "UPDATE payment_documents SET status = 'REJECTED', rejection = $2
         WHERE id = $1 AND status IN ('RECEIVED', 'REJECTED')",
    )
    .bind(id)
    .bind(rejection)
    .execute(db)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Notes the rejection of a document issued here, while it may still be rejected.
pub(crate) async fn note_rejection(db: impl PgExecutor<'_>, id: &str, rejection: &Value) -> Result<()> {
    sqlx::query(
        "UPDATE payment_documents SET rejection = $2 WHERE id = $1 AND status IN ('ISSUED', 'RECEIVED', 'REJECTED')",
    )
    .bind(id)
    .bind(rejection)
    .execute(db)
    .await?;
    Ok(())
}

/// The accepted and settled documents of an agreement on one side: id, kind, activity, amount
/// and status.
pub(crate) async fn accepted_of_agreement(
    db: impl PgExecutor<'_>,
    agreement_id: &str,
    issued_here: bool,
) -> Result<Vec<(String, String, Option<String>, Decimal, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, kind, activity_id, amount, status FROM payment_documents
         WHERE agreement_id = $1 AND side = $2 AND status IN ('ACCEPTED', 'SETTLED')",
    )
    .bind(agreement_id)
    .bind(side(issued_here))
    .fetch_all(db)
    .await?)
}

/// Settles an accepted document.
pub(crate) async fn settle(db: impl PgExecutor<'_>, id: &str) -> Result<()> {
    sqlx::query("UPDATE payment_documents SET status = 'SETTLED' WHERE id = $1 AND status = 'ACCEPTED'")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
