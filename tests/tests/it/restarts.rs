//! A requestor node that crashes over and over while its jobs run, on real nodes, Postgres and
//! anvil: each job completes once the node stays up, each verified provider is paid once, and
//! the tokens are conserved on chain.

use super::jobs::{Devnet, Mode, executions, said};
use super::money::assert_conserved;
use super::web_service::{create_user, get_as, service_key, submit_as};
use agora_agents::job::ExecState;
use agora_tests::flow::{get, node_address, put_blob};
use agora_tests::{NodeProcess, module};
use alloy_primitives::Address;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// Eight jobs on three honest providers (eight agreements each at most), and the requestor
/// SIGKILLed and restarted five times within seconds while they run. A re-run job waits for
/// providers still ending the interrupted run's agreements instead of failing, and every job
/// completes, each of its verified providers paid once.
#[tokio::test]
async fn repeated_requestor_crashes_fail_no_job_and_pay_each_verified_provider_once() {
    use Mode::*;
    let mut net = Devnet::start(&[Honest, Honest, Honest]).await;
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let all: Vec<&NodeProcess> = net.honest.iter().collect();
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(net.submit(&all, json!({"confidence": 0})).await);
    }
    // The first crash once a job runs; the next within seconds of each restart.
    let first = ids[0].clone();
    agora_tests::wait_for(120, "a job to run", || async {
        let (_, job) = get(&net.requestor, &format!("/jobs/{first}")).await;
        said(&job, "running on").then_some(())
    })
    .await;
    for pause in [0, 1, 2, 3, 5] {
        tokio::time::sleep(Duration::from_secs(pause)).await;
        net.kill_and_restart_requestor().await;
    }
    for id in &ids {
        let job = net.ended(id).await;
        assert_eq!(job["state"], "completed", "{job:#}");
    }
    // An invoice that a crash held up is paid when it comes, while the job's allocation holds.
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(
            agora_tests::wait_for(180, "every verified provider to be paid", || async {
                let (_, job) = get(&net.requestor, &format!("/jobs/{id}")).await;
                (executions(&job, "verified").is_empty()).then_some(job)
            })
            .await,
        );
    }
    // Two alike verify a job (confidence 0): a provider still busy when two others agreed is
    // not needed, and not paid.
    let honest: BTreeSet<Address> = net.honest.iter().map(node_address).collect();
    for job in &jobs {
        let paid = executions(job, "paid");
        let once: BTreeSet<Address> = paid.iter().copied().collect();
        assert_eq!(once.len(), paid.len(), "each provider paid once: {job:#}");
        assert!(paid.len() >= 2 && once.is_subset(&honest), "{job:#}");
    }
    let all_jobs: Vec<&serde_json::Value> = jobs.iter().collect();
    assert_conserved(&net, requestor_before, &before, &all_jobs).await;
}

/// A provider that takes one agreement at a time, busy with one job when another asks for it:
/// the second job records the provider's refusal as a step, with its reason, and waits for it
/// within its deadlines instead of failing; both jobs complete, each provider paid once for each.
#[tokio::test]
async fn a_job_waits_for_a_busy_provider_and_records_why_it_declined() {
    use Mode::*;
    let net = Devnet::start(&[Settings("max_agreements = 1"), Honest, Honest]).await;
    let (busy, h1, h2) = (&net.honest[0], &net.honest[1], &net.honest[2]);
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let count = put_blob(&net.requestor, module("count")).await;
    let first = net.submit(&[busy, h1], json!({"module": count, "entry_point": "count"})).await;
    agora_tests::wait_for(120, "the first job to run", || async {
        let (_, job) = get(&net.requestor, &format!("/jobs/{first}")).await;
        said(&job, "running on").then_some(())
    })
    .await;
    let second = net.submit(&[busy, h2], json!({"confidence": 0})).await;
    let (first, second) = (net.ended(&first).await, net.ended(&second).await);
    for job in [&first, &second] {
        assert_eq!(job["state"], "completed", "{job:#}");
        assert_eq!(executions(job, "paid").len(), 2, "{job:#}");
    }
    assert!(said(&second, "at capacity: 1 agreements of 1 are running"), "{second:#}");
    assert!(said(&second, "busy: asking again"), "{second:#}");
    assert_conserved(&net, requestor_before, &before, &[&first, &second]).await;
}

/// An end user's job whose third provider invoices late, and a requestor killed just after the
/// sweep accepted that invoice and before it noted so on the job: the invoice is paid, the job
/// not told, the user's cap not charged. When the node is back, the sweep notes the invoice and
/// charges the cap, once.
#[tokio::test]
async fn a_late_invoice_accepted_just_before_a_crash_is_charged_to_the_end_user_once() {
    use Mode::*;
    let mut net = Devnet::start(&[Honest, Honest, LateInvoice]).await;
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let shop = service_key(&net.requestor, "shop").await;
    let (carol_id, carol) =
        create_user(&net.requestor, &shop, json!({"name": "carol", "capTotal": "3"})).await;
    let providers: Vec<String> =
        net.honest.iter().chain(&net.bad).map(|p| format!("{:#x}", node_address(p))).collect();
    let spec = json!({"module": net.package, "entry_point": "hello", "concurrency": 3, "confidence": 0,
                      "budget": "1", "timeout": 30, "providers": providers});
    let (status, created) = submit_as(&net.requestor, &carol, spec).await;
    assert_eq!(status, 201, "{created}");
    let id = created["jobId"].as_str().unwrap().to_string();
    let job = all_paid(&net, &id).await;
    assert_eq!(
        spent(&net.requestor, &shop, &carol_id).await,
        amounts(&job),
        "the cap holds what was paid: {job:#}"
    );
    let late = format!("{:#x}", node_address(&net.bad[0]));
    let row = job["executions"].as_array().unwrap().iter().find(|e| e["provider"] == late).unwrap();
    let amount: Decimal = row["amount"].as_str().unwrap().parse().unwrap();

    // What the node leaves when it dies between accepting the late invoice and noting it: the
    // replica verified with no invoice, the allocation held, the cap not charged for it.
    net.kill_requestor().await;
    let pool = net._pg.pool().await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "UPDATE job_executions SET state = $3, invoice_id = NULL, tx_hash = NULL
         WHERE job_id = $1 AND provider = $2",
    )
    .bind(&id)
    .bind(&late)
    .bind(ExecState::Verified.code())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE jobs SET allocation_held = TRUE WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE job_users SET spent = spent - $2 WHERE id = $1")
        .bind(&carol_id)
        .bind(amount)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
    net.restart_requestor().await;

    let job = all_paid(&net, &id).await;
    agora_tests::wait_for(30, "the late invoice to be charged to the user", || async {
        (spent(&net.requestor, &shop, &carol_id).await == amounts(&job)).then_some(())
    })
    .await;
    // Once: later sweeps leave it as it is.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(spent(&net.requestor, &shop, &carol_id).await, amounts(&job), "{job:#}");
    assert_conserved(&net, requestor_before, &before, &[&job]).await;
}

/// A job once every one of its three providers is marked paid.
async fn all_paid(net: &Devnet, id: &str) -> Value {
    agora_tests::wait_for(240, "every verified provider to be paid", || async {
        let (_, job) = get(&net.requestor, &format!("/jobs/{id}")).await;
        (executions(&job, "paid").len() == 3).then_some(job)
    })
    .await
}

/// What an end user has spent, as its service reads it.
async fn spent(node: &NodeProcess, service: &str, user: &str) -> Decimal {
    let (_, user) = get_as(node, service, &format!("/jobs/users/{user}")).await;
    user["spent"].as_str().unwrap().parse().unwrap()
}

/// What a job's executions were paid, in all.
fn amounts(job: &Value) -> Decimal {
    job["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "paid")
        .map(|e| e["amount"].as_str().unwrap().parse::<Decimal>().unwrap())
        .sum()
}
