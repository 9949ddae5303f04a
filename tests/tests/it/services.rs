//! Each local service starts through the support code and answers.

use agora_tests::{Anvil, BUSYBOX_IMAGE, Dockerd, TestPg};
use bollard::models::{ContainerCreateBody, HostConfig};
use futures_util::StreamExt;

#[tokio::test]
async fn postgres_answers_a_query_in_its_own_database() {
    let pg = TestPg::start().await;
    let pool = pg.migrated_pool().await;
    let (db, two): (String, i32) =
        sqlx::query_as("SELECT current_database(), 1 + 1").fetch_one(&pool).await.unwrap();
    assert!(db.starts_with("agora_test_"), "{db}");
    assert_eq!(two, 2);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('identities', 'app_keys')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 2);
}

#[tokio::test]
async fn anvil_answers_eth_chain_id() {
    let anvil = Anvil::start().await;
    let id = anvil.call("eth_chainId").await.unwrap();
    assert_eq!(id, serde_json::json!(format!("{:#x}", Anvil::CHAIN_ID)));
    let accounts = reqwest::Client::new()
        .post(anvil.rpc_url())
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "eth_accounts", "params": []}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(accounts["result"].as_array().map(Vec::len), Some(10));
}

#[tokio::test]
async fn dockerd_runs_a_container_that_writes_into_a_bind_mount() {
    let dockerd = Dockerd::start().await;
    let docker = dockerd.client();
    let out = tempfile::tempdir().unwrap();
    let body = ContainerCreateBody {
        image: Some(BUSYBOX_IMAGE.into()),
        cmd: Some(vec!["sh".into(), "-c".into(), "echo written-in-a-container > /out/result.txt".into()]),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/out:rw", out.path().display())]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker.create_container(None, body).await.unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    let waited = docker.wait_container(&created.id, None).next().await.expect("a wait result").unwrap();
    assert_eq!(waited.status_code, 0);
    docker.remove_container(&created.id, None).await.unwrap();
    let written = std::fs::read_to_string(out.path().join("result.txt")).unwrap();
    assert_eq!(written, "written-in-a-container\n");
}
