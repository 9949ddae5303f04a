//! Payments benchmark, on a fresh anvil and two real nodes (a requestor and a provider):
//! - latency: an invoice accepted, one at a time, until the requestor's node records its payment
//!   mined (the invoice Settled there), and until the provider's node has found the transfer on
//!   chain itself (Settled there); p50 and p90 of each;
//! - throughput: 100 debit notes accepted at once, and the payments confirmed per second until
//!   the last is Settled on the requestor's node.
//!
//! The batch window is the node's default (2 s) unless `AGORA_BATCH_WINDOW` says otherwise; it is
//! most of the latency, by design.
//!
//! `cargo build --release --bin agora && cargo bench -p agora-tests --bench payments`.

use agora_tests::flow::{agree_with, get, net_id, post};
use agora_tests::{Anvil, NodeProcess, TestPg};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PLATFORM: &str = "erc20-dev-tglm";

async fn status(node: &NodeProcess, path: &str) -> String {
    let (code, d) = get(node, path).await;
    assert_eq!(code, 200, "{d}");
    d["status"].as_str().unwrap_or_default().to_string()
}

async fn until_settled(node: &NodeProcess, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while status(node, path).await != "SETTLED" {
        assert!(Instant::now() < deadline, "{path} is not settled after 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn issue(p: &NodeProcess, kind: &str, body: Value) -> String {
    let (code, d) = post(p, &format!("/payment-api/v1/{kind}"), body).await;
    assert_eq!(code, 201, "{d}");
    let id = d[if kind == "invoices" { "invoiceId" } else { "debitNoteId" }].as_str().unwrap().to_string();
    let (code, sent) = post(p, &format!("/payment-api/v1/{kind}/{id}/send"), json!(null)).await;
    assert_eq!(code, 200, "{sent}");
    id
}

#[tokio::main]
async fn main() {
    let window = std::env::var("AGORA_BATCH_WINDOW").unwrap_or_else(|_| "2".into());
    let pg = TestPg::start().await;
    let anvil = Anvil::start().await;
    let rpc = anvil.rpc_url();
    let root = tempfile::tempdir().expect("temp dir");
    let p_db = pg.another_database("p").await;
    let flags = ["--chain-rpc", rpc.as_str(), "--batch-window", window.as_str()];
    let p = NodeProcess::start(&root.path().join("p"), &flags, &[("DATABASE_URL", p_db.as_str())]).await;
    let (_, p_addr) = net_id(&p);
    let r_flags = [&flags[..], &["--peer", p_addr.as_str()]].concat();
    let r =
        NodeProcess::start(&root.path().join("r"), &r_flags, &[("DATABASE_URL", pg.url().as_str())]).await;
    let out = r.cli(&["payment", "fund"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, a) =
        post(&r, "/payment-api/v1/allocations", json!({"totalAmount": "900", "paymentPlatform": PLATFORM}))
            .await;
    assert_eq!(code, 201, "{a}");
    let allocation = a["allocationId"].as_str().unwrap().to_string();
    let agreement = || {
        agree_with(
            &r,
            &p,
            json!({"golem.runtime.name": "wasmtime"}),
            json!({}),
            json!({"golem.com.payment.chosen-platform": PLATFORM}),
        )
    };

    // Latency, one invoice at a time (the first also approves the batch payer: left out).
    let (mut payer, mut payee) = (Vec::new(), Vec::new());
    for round in 0..21 {
        let id = agreement().await;
        let invoice = issue(&p, "invoices", json!({"agreementId": id, "amount": "0.01"})).await;
        let path = format!("/payment-api/v1/invoices/{invoice}");
        while status(&r, &path).await != "RECEIVED" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        let (code, body) = post(
            &r,
            &format!("{path}/accept"),
            json!({"totalAmountAccepted": "0.01", "allocationId": allocation}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        until_settled(&r, &path).await;
        let on_payer = started.elapsed();
        until_settled(&p, &path).await;
        if round > 0 {
            payer.push(on_payer);
            payee.push(started.elapsed());
        }
    }
    payer.sort();
    payee.sort();
    println!(
        "accepted → mined and recorded by the payer: p50 {:.0} ms, p90 {:.0} ms ({} invoices, batch window {window} s)",
        percentile(&payer, 0.5).as_secs_f64() * 1e3,
        percentile(&payer, 0.9).as_secs_f64() * 1e3,
        payer.len()
    );
    println!(
        "accepted → found on chain by the payee: p50 {:.0} ms, p90 {:.0} ms",
        percentile(&payee, 0.5).as_secs_f64() * 1e3,
        percentile(&payee, 0.9).as_secs_f64() * 1e3
    );

    // Throughput: 100 debit notes (10 agreements × 10 activities), accepted at once.
    let due = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut notes = Vec::new();
    for _ in 0..10 {
        let id = agreement().await;
        for activity in 0..10 {
            let body = json!({"agreementId": id, "activityId": format!("activity-{activity}"),
                              "totalAmountDue": "0.001", "paymentDueDate": due});
            notes.push(issue(&p, "debitNotes", body).await);
        }
    }
    for note in &notes {
        while status(&r, &format!("/payment-api/v1/debitNotes/{note}")).await != "RECEIVED" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let started = Instant::now();
    let accepting = notes.iter().map(|n| {
        let (r, allocation) = (&r, allocation.clone());
        async move {
            let path = format!("/payment-api/v1/debitNotes/{n}/accept");
            post(r, &path, json!({"totalAmountAccepted": "0.001", "allocationId": allocation})).await
        }
    });
    for (code, body) in futures_util::future::join_all(accepting).await {
        assert_eq!(code, 200, "{body}");
    }
    for note in &notes {
        until_settled(&r, &format!("/payment-api/v1/debitNotes/{note}")).await;
    }
    let took = started.elapsed();
    println!(
        "{} debit notes accepted at once, all paid and recorded in {:.2} s: {:.1} payments confirmed per second",
        notes.len(),
        took.as_secs_f64(),
        notes.len() as f64 / took.as_secs_f64()
    );
}
