//! Referees on real nodes, Postgres and anvil: the requestor runs a WASM job itself and pays
//! nobody when the winning group's result is not its own; the providers it caught lose their
//! reputation and are left out of this node's jobs from then on.

use super::jobs::{Devnet, Mode, executions, said};
use super::money::assert_conserved;
use agora_tests::NodeProcess;
use agora_tests::flow::{node_address, post};
use alloy_primitives::Address;
use serde_json::json;

/// Two fresh identities that alter their result alike outvote an honest one, two to one. A spot
/// check drawn with probability 1 runs the job on the requestor: its result is the honest one, so
/// nobody is paid and both cheats are caught. The next job names the cheats first, yet runs on the
/// two honest providers, and a local referee agrees with them: both are paid.
#[tokio::test]
async fn a_referee_pays_nobody_when_the_majority_is_wrong_and_the_caught_are_left_out() {
    use Mode::*;
    let net = Devnet::start(&[Honest, Honest, Alter, Alter]).await;
    let (h, b) = (&net.honest, &net.bad);
    let addr = |n: &NodeProcess| node_address(n);
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;

    // The spec's mistakes are named.
    for (referee, words) in [
        (json!("remote"), "referee"),
        (json!({"spotCheck": 1.5}), "spotCheck"),
        (json!({"spotCheck": -0.1}), "spotCheck"),
    ] {
        let body = json!({"module": net.package, "entry_point": "hello", "budget": "1", "referee": referee});
        let (status, answer) = post(&net.requestor, "/jobs", body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(words), "{answer}");
    }
    let docker =
        json!({"engine": "docker", "module": "docker:x@sha256:00", "budget": "1", "referee": "local"});
    let (status, answer) = post(&net.requestor, "/jobs", docker).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("referee"), "{answer}");

    let id =
        net.submit(&[&b[0], &b[1], &h[0]], json!({"confidence": 0, "referee": {"spotCheck": 1.0}})).await;
    let caught = net.ended(&id).await;
    assert_eq!(caught["state"], "failed", "{caught:#}");
    assert!(caught["message"].as_str().unwrap().contains("referee"), "{caught:#}");
    assert!(said(&caught, "spot check"), "{caught:#}");
    assert!(executions(&caught, "paid").is_empty(), "{caught:#}");
    for e in caught["executions"].as_array().unwrap() {
        assert_eq!(e["state"], "rejected", "{caught:#}");
        let reason = e["reason"].as_str().unwrap();
        let provider: Address = e["provider"].as_str().unwrap().parse().unwrap();
        if provider == addr(&h[0]) {
            assert!(reason.contains("nobody is paid"), "{reason}");
        } else {
            assert!(reason.contains("referee"), "{reason}");
        }
    }
    assert!(caught["results"].is_null(), "{caught:#}");

    let id = net.submit(&[&b[0], &b[1], &h[0], &h[1]], json!({"concurrency": 2, "referee": "local"})).await;
    let job = net.ended(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let mut paid = executions(&job, "paid");
    paid.sort();
    let mut honest = vec![addr(&h[0]), addr(&h[1])];
    honest.sort();
    assert_eq!(paid, honest, "{job:#}");
    for cheat in b {
        let who = format!("{:#x}", addr(cheat));
        assert!(
            job["executions"].as_array().unwrap().iter().all(|e| e["provider"] != who),
            "{who} ran again: {job:#}"
        );
    }
    assert!(said(&job, "contradicted by a referee"), "{job:#}");
    assert!(said(&job, "the referee agrees"), "{job:#}");
    assert_eq!(job["results"]["referee"], job["results"]["digest"], "{job:#}");
    assert_conserved(&net, requestor_before, &before, &[&caught, &job]).await;
}
