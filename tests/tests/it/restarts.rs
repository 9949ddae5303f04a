//! A requestor node that crashes over and over while its jobs run, on real nodes, Postgres and
//! anvil: each job completes once the node stays up, each verified provider is paid once, and
//! the tokens are conserved on chain.

use super::jobs::{Devnet, Mode, executions, said};
use super::money::assert_conserved;
use agora_tests::flow::{get, node_address, put_blob};
use agora_tests::{NodeProcess, module};
use alloy_primitives::Address;
use serde_json::json;
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
