//! The node's own queries, apart from its crates' tables: the embedded cluster's database, and
//! the health check.

use sqlx::PgExecutor;

/// The database the embedded cluster keeps agora's tables in. SQL names cannot be bound as parameters,
/// so [`create_database`] names it in its text.
pub const EMBEDDED_DB: &str = "agora";

/// Whether the cluster has the node's database.
pub async fn has_database(db: impl PgExecutor<'_>) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(EMBEDDED_DB)
        .fetch_one(db)
        .await
}

/// Creates the node's database ([`EMBEDDED_DB`]).
pub async fn create_database(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("CREATE DATABASE agora").execute(db).await?;
    Ok(())
}

/// Whether the database answers.
pub async fn ping(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(db).await?;
    Ok(())
}
