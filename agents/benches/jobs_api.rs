//! Jobs API benchmark: how many submissions a requestor node accepts, and how fast it answers
//! reads meanwhile. One node (no providers, `--max-jobs 1`, so the runner stays out of the way)
//! on its own PostgreSQL server; clients on loopback with keep-alive connections.
//!
//! - `submit`: CLIENTS clients POST jobs for SECS seconds, each waiting for its 201 (the job's
//!   row and first step written); it prints the accepted submissions per second and the p50/p99
//!   of a submission. Run twice: as the admin, and as end users with a spending cap, whose
//!   submissions also lock and update the user's row.
//! - `read`: meanwhile READERS clients GET /jobs/{id} of jobs already submitted; it prints the
//!   p50/p99 of a read under that load.
//!
//! `cargo build --release --bin agora && cargo bench -p agora-agents --bench jobs_api`.

use agora_tests::flow::put_blob;
use agora_tests::{NodeProcess, TestPg, module};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
const READERS: usize = 4;
const SECS: u64 = 10;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// Submits as `key` until `stop`; each submission's latency, and the ids of the jobs made.
async fn submitter(
    client: reqwest::Client,
    url: String,
    key: String,
    spec: Value,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, Vec<String>) {
    let mut times = Vec::new();
    let mut ids = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let resp = client.post(&url).bearer_auth(&key).json(&spec).send().await.expect("the node answers");
        assert_eq!(resp.status(), 201, "a submission was refused");
        let body: Value = resp.json().await.expect("JSON");
        times.push(started.elapsed());
        ids.push(body["jobId"].as_str().expect("an id").to_string());
    }
    (times, ids)
}

/// Reads jobs among `ids` until `stop`; each read's latency.
async fn reader(
    client: reqwest::Client,
    base: String,
    key: String,
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let resp = client
            .get(format!("{base}/jobs/{}", ids[i % ids.len()]))
            .bearer_auth(&key)
            .send()
            .await
            .expect("the node answers");
        assert_eq!(resp.status(), 200);
        let _body = resp.bytes().await.expect("a body");
        times.push(started.elapsed());
        i += 1;
    }
    times
}

async fn round(
    what: &str,
    node: &NodeProcess,
    keys: &[String],
    spec: &Value,
    warm: &[String],
) -> Vec<String> {
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let submitters: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(submitter(
                client.clone(),
                node.url("/jobs"),
                keys[i % keys.len()].clone(),
                spec.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // The warm-up has nothing to read yet.
    let readers_now = if warm.is_empty() { 0 } else { READERS };
    let readers: Vec<_> = (0..readers_now)
        .map(|_| {
            tokio::spawn(reader(
                client.clone(),
                node.url(""),
                node.node.admin_token.clone(),
                warm.to_vec(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(SECS)).await;
    stop.store(true, Ordering::Relaxed);
    let mut submits = Vec::new();
    let mut ids = Vec::new();
    for s in submitters {
        let (times, made) = s.await.expect("a submitter");
        submits.extend(times);
        ids.extend(made);
    }
    let wall = started.elapsed();
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await.expect("a reader"));
    }
    submits.sort();
    reads.sort();
    let mut line = format!(
        "{what}: submit clients={CLIENTS} accepted={} per_sec={:.0} p50_ms={:.1} p99_ms={:.1}",
        submits.len(),
        submits.len() as f64 / wall.as_secs_f64(),
        percentile(&submits, 0.5),
        percentile(&submits, 0.99),
    );
    if !reads.is_empty() {
        line += &format!(
            " | read clients={READERS} reads={} p50_ms={:.1} p99_ms={:.1}",
            reads.len(),
            percentile(&reads, 0.5),
            percentile(&reads, 0.99),
        );
    }
    println!("{line}");
    ids
}

/// The `key` of what a POST with `key` creates (an app-key, an end user).
async fn created_key(node: &NodeProcess, key: &str, path: &str, body: Value) -> String {
    let created: Value = reqwest::Client::new()
        .post(node.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("the node answers")
        .json()
        .await
        .expect("JSON");
    created["key"].as_str().expect("a key").to_string()
}

#[tokio::main]
async fn main() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let node = NodeProcess::start(
        &root.path().join("r"),
        &["--max-jobs", "1"],
        &[("DATABASE_URL", pg.url().as_str())],
    )
    .await;
    let package = put_blob(&node, module("hello")).await;
    let spec = json!({"module": package, "entry_point": "hello", "concurrency": 1, "verifier": "none",
                      "budget": "0.001", "timeout": 30});
    let admin = vec![node.node.admin_token.clone()];
    // Jobs to read from the start.
    let warm = round("warm-up", &node, &admin, &spec, &[]).await;
    // Its jobs are not read back: the warm-up's are.
    let _made = round("admin", &node, &admin, &spec, &warm).await;

    let service =
        created_key(&node, &node.node.admin_token, "/admin/v1/app-keys", json!({"name": "bench-service"}))
            .await;
    let mut users = Vec::new();
    for i in 0..CLIENTS {
        let user = json!({"name": format!("user-{i}"), "capTotal": "1000000", "capPerJob": "1"});
        users.push(created_key(&node, &service, "/jobs/users", user).await);
    }
    let _made = round("end users (capped)", &node, &users, &spec, &warm).await;
}
