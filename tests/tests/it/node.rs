//! The `agora` node as a user runs it: separate processes, real Postgres.

use agora_tests::{NodeProcess, TestPg, free_port, run_agora, shared_tempdir};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

async fn get(url: &str, key: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "agora failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Identity of the cluster's files: initdb would make new ones.
fn cluster_stamp(data_dir: &Path) -> (u64, i64) {
    let meta = std::fs::metadata(data_dir.join("postgres/data/PG_VERSION")).expect("embedded cluster exists");
    (meta.ino(), meta.mtime_nsec())
}

#[tokio::test]
async fn an_embedded_node_serves_me_with_an_app_key_and_restarts_as_itself() {
    let root = shared_tempdir();
    let data_dir = root.path().join("node");
    let mut node = NodeProcess::start(&data_dir, &[], &[]).await;

    let key = stdout(&node.cli(&["app-key", "create", "demo"], None));
    let key = key.trim().to_string();
    assert_eq!(key.len(), 64, "the key alone on stdout: {key:?}");
    let shown: Value = serde_json::from_str(&stdout(&node.cli(&["id", "show", "--json"], None))).unwrap();
    let address = shown["address"].as_str().unwrap().to_string();
    assert!(address.starts_with("0x") && address.len() == 42);

    let (status, body) = get(&node.url("/me"), Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    let me: Value = serde_json::from_str(&body).unwrap();
    // In lower case, as market and payment documents give it: Golem's SDKs compare the two.
    assert_eq!(me["identity"], address.to_lowercase());
    assert_eq!(me["name"], "demo");
    assert_eq!(me["role"], "manager");
    assert_eq!(get(&node.url("/me"), None).await.0, 401);
    assert_eq!(get(&node.url("/me"), Some("not-a-key")).await.0, 401);
    assert_eq!(get(&node.url("/version"), None).await.0, 200);
    assert_eq!(get(&node.url("/health"), None).await.0, 200);
    assert_eq!(get(&node.url("/metrics"), None).await.0, 401);
    let (status, metrics) = get(&node.url("/metrics"), Some(&key)).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("agora_http_requests_total{method=\"GET\",path=\"/me\",status=\"401\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("agora_auth_failures_total 3"), "{metrics}");

    let stamp = cluster_stamp(&data_dir);
    assert_eq!(node.stop(), Some(0), "SIGTERM exits 0; log: {}", node.log());
    assert!(!data_dir.join("node.json").exists(), "node.json is removed on shutdown");
    assert!(!data_dir.join("postgres/data/postmaster.pid").exists(), "the embedded server stopped");

    let mut node = NodeProcess::start(&data_dir, &[], &[]).await;
    let (status, body) = get(&node.url("/me"), Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["identity"], address.to_lowercase());
    assert_eq!(cluster_stamp(&data_dir), stamp, "the same cluster is reused, none created");
    assert_eq!(
        std::fs::read_dir(data_dir.join("postgres"))
            .unwrap()
            .filter(|e| { e.as_ref().unwrap().file_name().to_str().unwrap().starts_with("data") })
            .count(),
        1
    );
    assert_eq!(node.stop(), Some(0));
}

#[tokio::test]
async fn the_cli_manages_identities_and_app_keys() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("node");
    let url = pg.url();
    let mut node = NodeProcess::start(&data_dir, &[], &[("DATABASE_URL", url.as_str())]).await;
    assert!(!data_dir.join("postgres").exists(), "with DATABASE_URL no embedded cluster is made");

    let created: Value =
        serde_json::from_str(&stdout(&node.cli(&["id", "create", "--alias", "work", "--json"], None)))
            .unwrap();
    assert_eq!(created["alias"], "work");
    let list: Vec<Value> = serde_json::from_str(&stdout(&node.cli(&["id", "list", "--json"], None))).unwrap();
    assert_eq!(list.len(), 2);
    let table = stdout(&node.cli(&["id", "list"], None));
    assert!(table.starts_with("ADDRESS") && table.contains("work"), "{table}");

    stdout(&node.cli(&["id", "lock", "work"], Some("pw-1\n")));
    let shown: Value =
        serde_json::from_str(&stdout(&node.cli(&["id", "show", "work", "--json"], None))).unwrap();
    assert_eq!((shown["locked"].as_bool(), shown["unlocked"].as_bool()), (Some(true), Some(false)));
    let wrong = node.cli(&["id", "unlock", "work"], Some("nope\n"));
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong password"));
    stdout(&node.cli(&["id", "unlock", "work"], Some("pw-1\n")));

    let key = stdout(&node.cli(&["app-key", "create", "w", "--identity", "work"], None)).trim().to_string();
    let (status, body) = get(&node.url("/me"), Some(&key)).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["identity"],
        created["address"].as_str().unwrap().to_lowercase()
    );
    let keys: Vec<Value> =
        serde_json::from_str(&stdout(&node.cli(&["app-key", "list", "--json"], None))).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "w");
    assert!(keys[0].get("key").is_none(), "a listing never shows keys");

    stdout(&node.cli(&["app-key", "drop", "w"], None));
    assert_eq!(get(&node.url("/me"), Some(&key)).await.0, 401);
    let again = node.cli(&["app-key", "drop", "w"], None);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no app-key named 'w'"));
    assert_eq!(node.stop(), Some(0));

    let gone = run_agora(&["--data-dir", data_dir.to_str().unwrap(), "id", "list"], None);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no agora node is running"));
}

/// Runs `agora node run` expecting it to fail at once with exit code 2; returns stderr.
fn refused(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(agora_tests::agora_bin());
    cmd.args(["node", "run", "--data-dir"]).arg(data_dir).args(extra).env_remove("DATABASE_URL");
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    stderr
}

#[test]
fn a_config_file_with_an_unknown_key_or_bad_value_is_refused_before_anything_is_made() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("node");
    let config = root.path().join("agora.toml");
    std::fs::write(&config, "api_addr = \"127.0.0.1:0\"\ndatabse_url = \"postgres://x@127.0.0.1/db\"\n")
        .unwrap();
    let err = refused(&data_dir, &["--config", config.to_str().unwrap()], &[]);
    assert!(err.contains("unknown field `databse_url`") && err.contains("line 2"), "{err}");
    assert!(!data_dir.exists());

    std::fs::write(&config, "api_addr = \"localhost-ish\"\n").unwrap();
    let err = refused(&data_dir, &["--config", config.to_str().unwrap()], &[]);
    assert!(err.contains("agora.toml") && err.contains("api_addr"), "{err}");
    assert!(!data_dir.exists());

    let err = refused(&data_dir, &[], &[("AGORA_API_ADDR", "not-an-address")]);
    assert!(err.contains("AGORA_API_ADDR") || err.contains("--api-addr"), "{err}");
    assert!(!data_dir.exists());
}

#[test]
fn an_unreachable_database_url_is_refused_and_leaves_no_data_dir() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("node");
    let url = format!("postgres://agora:secret@127.0.0.1:{}/agora", free_port());
    let err = refused(&data_dir, &["--api-addr", "127.0.0.1:0"], &[("DATABASE_URL", url.as_str())]);
    assert!(err.contains("cannot reach the database"), "{err}");
    assert!(!err.contains("secret"), "the password is not printed: {err}");
    assert!(!data_dir.exists(), "the data dir this run created is removed");
}

#[test]
fn a_data_dir_that_cannot_be_written_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let blocker = root.path().join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let err = refused(&blocker.join("node"), &["--api-addr", "127.0.0.1:0"], &[]);
    assert!(err.contains("data dir") && err.contains("not usable"), "{err}");
    let err = refused(Path::new("/proc/agora-node"), &["--api-addr", "127.0.0.1:0"], &[]);
    assert!(err.contains("data dir /proc/agora-node"), "{err}");
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a folder");
}

#[test]
fn a_port_in_use_is_refused_before_anything_is_made() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("node");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = refused(&data_dir, &["--api-addr", &addr], &[]);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!data_dir.exists());
}

#[test]
fn missing_postgres_binaries_name_the_package_to_install() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("node");
    let empty = root.path().join("no-postgres-here");
    std::fs::create_dir(&empty).unwrap();
    let err = refused(
        &data_dir,
        &["--api-addr", "127.0.0.1:0", "--postgres-bin-dir", empty.to_str().unwrap()],
        &[],
    );
    assert!(err.contains("apt-get install postgresql") && err.contains("DATABASE_URL"), "{err}");
    assert!(!data_dir.exists(), "nothing is left of a start that could not find PostgreSQL");
}

#[test]
fn a_p2p_port_in_use_is_refused_before_anything_is_made() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("node");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let err = refused(&data_dir, &["--api-addr", "127.0.0.1:0", "--listen", &listen], &[]);
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
    assert!(!data_dir.exists());
    let err = refused(&data_dir, &["--api-addr", "127.0.0.1:0", "--listen", "tcp:7464"], &[]);
    assert!(err.contains("listen: 'tcp:7464' is not a multiaddr"), "{err}");
}
