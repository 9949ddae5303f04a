//! Transfer benchmark, printing its figures beside a reference taken in the same run:
//! - a 1 GiB file into a node with `agora blob put` (streamed over REST, hashed, stored);
//! - the same GiB from that node to another over loopback (libp2p, `/agora/blob/1`), fetched by
//!   the provider's node for a `transfer` into an activity;
//! - `cp` of the same file on the same disk, the reference; and `cp` then `sync` of the copy, as
//!   the nodes sync a blob before naming it;
//! - SHA-256 of the file on one core, which bounds any receipt that checks what it takes in.
//!
//! `cargo build --release --bin agora && cargo bench -p agora-tests --bench transfer`.

use agora_tests::data::pattern_file;
use agora_tests::flow::{agree, batch, create_activity, net_id, put_blob};
use agora_tests::{NodeProcess, TestPg, module};
use serde_json::json;
use std::time::{Duration, Instant};

const SIZE: u64 = 1 << 30;

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / f64::from(1 << 20) / took.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let urls = [pg.url(), pg.another_database("p").await];
    let r = NodeProcess::start(&root.path().join("r"), &[], &[("DATABASE_URL", urls[0].as_str())]).await;
    let (_, r_addr) = net_id(&r);
    let p = NodeProcess::start(
        &root.path().join("p"),
        &["--peer", &r_addr],
        &[("DATABASE_URL", urls[1].as_str())],
    )
    .await;
    let input = root.path().join("in.bin");
    let (whole, _) = pattern_file(&input, SIZE, 0);

    // The reference: cp on the same disk, from the page cache as the nodes read it.
    let copy = root.path().join("copy.bin");
    let started = Instant::now();
    let status = std::process::Command::new("cp").arg(&input).arg(&copy).status().expect("cp");
    assert!(status.success());
    let cp = started.elapsed();
    std::fs::remove_file(&copy).expect("remove the copy");
    // The nodes sync a blob to disk before naming it; so does this second reference.
    let started = Instant::now();
    let status = std::process::Command::new("cp").arg(&input).arg(&copy).status().expect("cp");
    assert!(status.success());
    let status = std::process::Command::new("sync").arg(&copy).status().expect("sync");
    assert!(status.success());
    let cp_synced = started.elapsed();
    std::fs::remove_file(&copy).expect("remove the copy");

    // What every receipt must do at least once: hash the bytes (SHA-256, one core).
    let started = Instant::now();
    assert_eq!(agora_tests::data::file_sha256(&input), whole);
    let hashing = started.elapsed();

    let started = Instant::now();
    let out = r.cli(&["blob", "put", input.to_str().expect("utf-8 path")], None);
    let upload = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();
    assert_eq!(url, format!("blob:sha256:{whole}"));

    let package = put_blob(&r, module("head")).await;
    let offer = json!({"golem.runtime.name": "wasmtime", "golem.inf.mem.gib": 0.0625});
    let agreement = agree(&r, &p, offer, json!({"golem.srv.comp.task_package": package})).await;
    let activity = create_activity(&r, &agreement).await;
    let results = batch(&r, &activity, json!([{"deploy": {}}, {"start": {}}])).await;
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:?}");
    let started = Instant::now();
    let results =
        batch(&r, &activity, json!([{"transfer": {"from": url, "to": "container:/input/in.bin"}}])).await;
    let between = started.elapsed();
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:?}");

    println!("transfer of {} MiB", SIZE >> 20);
    println!("  cp on the same disk (reference): {:>7.0} MiB/s ({:.2} s)", rate(SIZE, cp), cp.as_secs_f64());
    println!(
        "  cp, then sync of the copy (reference): {:>7.0} MiB/s ({:.2} s)",
        rate(SIZE, cp_synced),
        cp_synced.as_secs_f64()
    );
    println!(
        "  SHA-256 of the file, one core (each receipt hashes every byte): {:>7.0} MiB/s ({:.2} s)",
        rate(SIZE, hashing),
        hashing.as_secs_f64()
    );
    println!(
        "  upload into a node (agora blob put): {:>7.0} MiB/s ({:.2} s)",
        rate(SIZE, upload),
        upload.as_secs_f64()
    );
    println!(
        "  node to node over loopback (a transfer command): {:>7.0} MiB/s ({:.2} s), {:.2}× cp, {:.2}× cp then sync",
        rate(SIZE, between),
        between.as_secs_f64(),
        cp.as_secs_f64() / between.as_secs_f64(),
        cp_synced.as_secs_f64() / between.as_secs_f64()
    );
}
