//! A GiB through the whole data path on real nodes: into the requestor's node with the CLI, to
//! the provider's, through a WASM run, and 256 MiB back, with each node's resident memory
//! watched; and the way back carries on when the provider's node is restarted halfway.

use agora_tests::data::{RssWatch, file_sha256, pattern_file};
use agora_tests::flow::{agree, batch, create_activity, get, metric, net_id, post, put_blob};
use agora_tests::{NodeProcess, TestPg, module};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
const OUT: u64 = 256 << 20;
/// The most a node's resident memory may grow while a GiB goes through it.
const MAX_GROWTH: u64 = 100 << 20;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Prints what a node's memory did, and checks it stayed within [`MAX_GROWTH`].
fn memory(who: &str, (baseline, peak): (u64, u64)) {
    let grew = peak.saturating_sub(baseline);
    println!(
        "{who}: resident {:.1} MiB at the start, {:.1} MiB at the most (+{:.1} MiB)",
        mib(baseline),
        mib(peak),
        mib(grew)
    );
    assert!(grew <= MAX_GROWTH, "{who}'s resident memory grew by {:.1} MiB", mib(grew));
}

#[tokio::test]
async fn a_gib_goes_in_through_a_run_and_back_and_the_way_back_survives_a_provider_restart() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let urls = [pg.url(), pg.another_database("p").await];
    let r = NodeProcess::start(&root.path().join("r"), &[], &[("DATABASE_URL", urls[0].as_str())]).await;
    let (_, r_addr) = net_id(&r);
    let p_dir = root.path().join("p");
    let rate = (64u64 << 20).to_string();
    let p_args = ["--peer", r_addr.as_str(), "--blob-send-rate", rate.as_str()];
    let p_env = [("DATABASE_URL", urls[1].as_str())];
    let mut p = NodeProcess::start(&p_dir, &p_args, &p_env).await;

    let input = root.path().join("in.bin");
    let (whole, head) = pattern_file(&input, GIB, OUT);
    let package = put_blob(&r, module("head")).await;
    let offer =
        json!({"golem.runtime.name": "wasmtime", "golem.inf.mem.gib": 0.0625, "agora.limits.time_sec": 300});
    let agreement = agree(&r, &p, offer, json!({"golem.srv.comp.task_package": package})).await;
    let activity = create_activity(&r, &agreement).await;
    let results = batch(&r, &activity, json!([{"deploy": {}}, {"start": {}}])).await;
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:?}");

    // Memory is watched from here: both nodes are up, the module is compiled.
    let watch_r = RssWatch::start(r.pid());
    let watch_p = RssWatch::start(p.pid());

    // 1. A GiB into the requestor's node with the CLI.
    let started = Instant::now();
    let out = r.cli(&["blob", "put", input.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(url, format!("blob:sha256:{whole}"));
    let put = started.elapsed();

    // 2. The provider fetches it, the module reads it from /input and writes 256 MiB to /output,
    //    and the output is stored as a blob on the provider.
    let script = json!([{"transfer": {"from": url, "to": "container:/input/in.bin"}},
                        {"run": {"entry_point": "head", "args": []}},
                        {"transfer": {"from": "container:/output/out.bin", "to": "blob:"}}]);
    let (status, batch_id) =
        post(&r, &format!("/activity-api/v1/activity/{activity}/exec"), json!({"text": script.to_string()}))
            .await;
    assert_eq!(status, 200, "{batch_id}");
    let batch_id = batch_id.as_str().unwrap().to_string();
    let started = Instant::now();
    let received_before = metric(&r, "agora_blob_received_bytes_total").await;

    // 3. The requestor's node fetches the output back as soon as the provider reports it, while it
    //    answers for the results (asked for on their own task). The provider sends blobs at
    //    64 MiB/s (`--blob-send-rate`), so the way back takes four seconds: once 8 MiB have
    //    arrived, the provider's node is killed and started again, and the connection is cut
    //    mid-transfer.
    let results_path = format!("/activity-api/v1/activity/{activity}/exec/{batch_id}?timeout=10");
    let results = {
        let url = r.url(&results_path);
        let token = r.node.admin_token.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let answer = client.get(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(answer.status(), 200);
                let results: Vec<serde_json::Value> = answer.json().await.unwrap();
                if results.last().is_some_and(|last| last["isBatchFinished"] == true) {
                    return results;
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let received = metric(&r, "agora_blob_received_bytes_total").await - received_before;
        if received >= 8 << 20 {
            break;
        }
        if results.is_finished() {
            panic!("the batch ended before 8 MiB of the output arrived: {:?}", results.await);
        }
        assert!(
            Instant::now() < deadline,
            "8 MiB of the output did not arrive in 180 s.\nrequestor:\n{}\nprovider:\n{}",
            r.log(),
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ran = started.elapsed();
    let on_p = watch_p.stop();
    kill(Pid::from_raw(p.pid() as i32), Signal::SIGKILL).unwrap();
    let _killed = p.stop();
    let cut_at = metric(&r, "agora_blob_received_bytes_total").await - received_before;
    assert!(
        cut_at > 0 && cut_at < OUT,
        "the provider was stopped with {cut_at} bytes of the output received: not mid-transfer"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    p = NodeProcess::start(&p_dir, &p_args, &p_env).await;
    let watch_p_again = RssWatch::start(p.pid());
    let results =
        tokio::time::timeout(Duration::from_secs(300), results).await.expect("the results").unwrap();
    let back = started.elapsed();
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:?}");
    assert_eq!(results[2]["blob"], format!("blob:sha256:{head}"));

    // Both hashes hold: the input's (checked when named on each node) and the output's, fetched
    // back through the CLI.
    let copy = root.path().join("out.bin");
    let out =
        r.cli(&["blob", "get", &format!("blob:sha256:{head}"), "--output", copy.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(file_sha256(&copy), head);
    let (status, _) = get(&r, &format!("/blobs/{whole}")).await;
    assert_eq!(status, 200);

    let received = metric(&r, "agora_blob_received_bytes_total").await - received_before;
    let retries = metric(&r, "agora_blob_fetch_retries_total").await;
    // The restarted provider's own count: what it sent after the cut.
    let sent_again = metric(&p, "agora_blob_sent_bytes_total").await;
    println!(
        "put 1 GiB with the CLI: {:.2} s ({:.0} MiB/s); 8 MiB of the output back {:.2} s after the batch was sent",
        put.as_secs_f64(),
        mib(GIB) / put.as_secs_f64(),
        ran.as_secs_f64()
    );
    println!(
        "the provider was killed with {:.1} MiB of the 256 MiB output received; the output was whole {:.2} s after the batch was sent; {:.1} MiB received in all; the restarted provider sent {:.1} MiB; the fetch asked again {retries} time(s)",
        mib(cut_at),
        back.as_secs_f64(),
        mib(received),
        mib(sent_again),
    );
    assert!(retries >= 1, "the fetch asked again after the cut");
    assert_eq!(received, OUT, "each byte of the output arrived once");
    assert!(
        sent_again > 0 && sent_again <= OUT - cut_at,
        "after the restart the provider sent {sent_again} bytes; {} were missing",
        OUT - cut_at
    );
    memory("the requestor's node", watch_r.stop());
    memory("the provider's node, until it was stopped", on_p);
    memory("the provider's node, restarted", watch_p_again.stop());
}
