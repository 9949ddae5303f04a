//! Every table says which crate owns it (a comment its migration sets), so a new table cannot
//! land without an owner.

use agora_tests::TestPg;

#[tokio::test]
async fn every_table_names_the_crate_that_owns_it() {
    let pg = TestPg::start().await;
    let pool = pg.migrated_pool().await;
    let tables: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, obj_description(c.oid, 'pg_class')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> '_sqlx_migrations'
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.len() >= 11, "{tables:?}");
    let crates = ["agora-identity", "agora-market", "agora-activity", "agora-payment", "agora-agents"];
    for (table, comment) in &tables {
        let owner = comment.as_deref().and_then(|c| c.strip_prefix("owned by "));
        assert!(
            owner.is_some_and(|o| crates.contains(&o)),
            "table {table} names no owning crate: {comment:?}"
        );
    }
}
