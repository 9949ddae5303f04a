//! Jobs benchmark, on its own local network: anvil, a requestor node and three provider agents
//! (`--provider`), on one PostgreSQL server. It submits 50 WASM hello jobs, one after another,
//! each on three providers (concurrency 3), and measures from submit to:
//! - verified results: the job's verified result is readable (`results` in `GET /jobs/{id}`);
//! - paid: the job is completed, its verified providers' invoices paid on chain.
//!
//! It prints `p50_ms=… p99_ms=… jobs_per_min=…` for verified results, then the same for paid.
//!
//! `cargo build --release --bin agora && cargo bench -p agora-agents --bench jobs`.

use agora_tests::flow::{get, net_id, post, put_blob};
use agora_tests::{Anvil, NodeProcess, TestPg, module};
use serde_json::json;
use std::time::{Duration, Instant};

const JOBS: usize = 50;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut times: Vec<Duration>, wall: Duration) {
    times.sort();
    println!(
        "{what}: jobs={} p50_ms={:.0} p99_ms={:.0} jobs_per_min={:.1}",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.len() as f64 / wall.as_secs_f64() * 60.0
    );
}

#[tokio::main]
async fn main() {
    let pg = TestPg::start().await;
    let anvil = Anvil::start().await;
    let rpc = anvil.rpc_url();
    let root = tempfile::tempdir().expect("temp dir");
    let mut providers = Vec::new();
    let mut peers = Vec::new();
    for i in 0..3 {
        let db = pg.another_database(&format!("p{i}")).await;
        let flags = ["--provider", "--chain-rpc", rpc.as_str()];
        let p =
            NodeProcess::start(&root.path().join(format!("p{i}")), &flags, &[("DATABASE_URL", db.as_str())])
                .await;
        peers.push(net_id(&p).1);
        providers.push(p);
    }
    let mut flags = vec!["--chain-rpc", rpc.as_str(), "--batch-window", "0"];
    for peer in &peers {
        flags.extend(["--peer", peer.as_str()]);
    }
    let r = NodeProcess::start(&root.path().join("r"), &flags, &[("DATABASE_URL", pg.url().as_str())]).await;
    let out = r.cli(&["payment", "fund", "--json"], None);
    assert!(out.status.success(), "fund: {}", String::from_utf8_lossy(&out.stderr));
    let package = put_blob(&r, module("hello")).await;
    let spec =
        json!({"module": package, "entry_point": "hello", "concurrency": 3, "budget": "10", "timeout": 30});

    let run = |spec: serde_json::Value| {
        let r = &r;
        async move {
            let started = Instant::now();
            let (status, created) = post(r, "/jobs", spec).await;
            assert_eq!(status, 201, "{created}");
            let id = created["jobId"].as_str().expect("jobId").to_string();
            let mut verified = None;
            loop {
                let (_, job) = get(r, &format!("/jobs/{id}")).await;
                if verified.is_none() && !job["results"].is_null() {
                    verified = Some(started.elapsed());
                }
                if job["stateCode"].as_i64().expect("stateCode") >= 6 {
                    assert_eq!(job["state"], "completed", "{job:#}");
                    return (verified.expect("a completed job has results"), started.elapsed());
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "job {id} is not done after 120 s: {job:#}"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    // One job first: the providers compile the module and the nodes open their connections.
    run(spec.clone()).await;

    let mut verified = Vec::new();
    let mut paid = Vec::new();
    let wall = Instant::now();
    for _ in 0..JOBS {
        let (v, p) = run(spec.clone()).await;
        verified.push(v);
        paid.push(p);
    }
    let wall = wall.elapsed();
    report("submit_to_verified", verified, wall);
    report("submit_to_paid", paid, wall);
}
