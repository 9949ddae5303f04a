//! Verified jobs on real nodes, real Postgres and anvil: provider agents that offer, negotiate,
//! run, commit, reveal and invoice by themselves; a requestor's job runner that pays only the
//! verified majority, on chain. Bacalhau's verifier matrix, case by case.

use agora_payment::Network;
use agora_tests::flow::{get, net_id, node_address, post, put_blob};
use agora_tests::{Anvil, NodeProcess, TestPg, module, wait_for};
use alloy_primitives::{Address, U256};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A requestor and five providers, the last two dishonest (they alter their output alike).
struct Devnet {
    _pg: TestPg,
    _root: tempfile::TempDir,
    anvil: Anvil,
    requestor: NodeProcess,
    honest: Vec<NodeProcess>,
    bad: Vec<NodeProcess>,
    dev: Network,
    package: String,
}

impl Devnet {
    async fn start() -> Self {
        let anvil = Anvil::start().await;
        let pg = TestPg::start().await;
        let root = tempfile::tempdir().unwrap();
        let rpc = anvil.rpc_url();
        let mut honest = Vec::new();
        let mut bad = Vec::new();
        let mut peers = Vec::new();
        for i in 0..5 {
            let db = pg.another_database(&format!("p{i}")).await;
            let mut args = vec!["--provider", "--chain-rpc", rpc.as_str()];
            if i >= 3 {
                args.extend(["--dishonest", "alter"]);
            }
            let node =
                NodeProcess::start(&root.path().join(format!("p{i}")), &args, &[("DATABASE_URL", &db)]).await;
            peers.push(net_id(&node).1);
            if i >= 3 { bad.push(node) } else { honest.push(node) }
        }
        let mut args = vec!["--chain-rpc", rpc.as_str(), "--batch-window", "0"];
        for peer in &peers {
            args.extend(["--peer", peer.as_str()]);
        }
        let requestor =
            NodeProcess::start(&root.path().join("r"), &args, &[("DATABASE_URL", &pg.url())]).await;
        let out = requestor.cli(&["payment", "fund", "--json"], None);
        assert!(out.status.success(), "fund: {}", String::from_utf8_lossy(&out.stderr));
        let package = put_blob(&requestor, module("hello")).await;
        Self { _pg: pg, _root: root, dev: Network::dev(rpc), anvil, requestor, honest, bad, package }
    }

    async fn balance(&self, node: &NodeProcess) -> U256 {
        let rpc = agora_payment::chain::Rpc::new(self.anvil.rpc_url());
        agora_payment::chain::dev::token_balance(&rpc, self.dev.token, node_address(node)).await.unwrap()
    }

    fn all(&self) -> impl Iterator<Item = &NodeProcess> {
        self.honest.iter().chain(&self.bad)
    }

    async fn balances(&self) -> BTreeMap<Address, U256> {
        let mut out = BTreeMap::new();
        for node in self.all() {
            out.insert(node_address(node), self.balance(node).await);
        }
        out
    }

    /// Runs a job on `providers` and waits for its end; the job, and who gained tokens on chain.
    async fn job(&self, providers: &[&NodeProcess], confidence: usize) -> (Value, BTreeMap<Address, U256>) {
        let before = self.balances().await;
        let addresses: Vec<String> = providers.iter().map(|p| format!("{:#x}", node_address(p))).collect();
        let spec = json!({
            "module": self.package, "entry_point": "hello", "concurrency": providers.len(),
            "confidence": confidence, "budget": "1", "timeout": 30, "providers": addresses,
        });
        let (status, created) = post(&self.requestor, "/jobs", spec).await;
        assert_eq!(status, 201, "{created}");
        let id = created["jobId"].as_str().unwrap().to_string();
        let job = wait_for(240, "the job to end", || async {
            let (_, job) = get(&self.requestor, &format!("/jobs/{id}")).await;
            (job["stateCode"].as_i64().unwrap() >= 6).then_some(job)
        })
        .await;
        let after = self.balances().await;
        let gained =
            after.iter().filter(|(a, v)| *v > &before[*a]).map(|(a, v)| (*a, *v - before[a])).collect();
        (job, gained)
    }
}

fn executions(job: &Value, state: &str) -> Vec<Address> {
    job["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == state)
        .map(|e| e["provider"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Each case of Bacalhau's verifier matrix, with the payments it makes on chain. The cases run
/// in an order where no dishonest provider is known to be bad before the last (reputation would
/// leave it out otherwise).
#[tokio::test]
async fn verifier_matrix_pays_only_the_verified_majority() {
    let net = Devnet::start().await;
    let (h, b) = (&net.honest, &net.bad);
    let addr = |n: &NodeProcess| node_address(n);

    // 1 node, 0 bad: a single result is never verified; nobody is paid.
    let (job, gained) = net.job(&[&h[0]], 0).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["message"].as_str().unwrap().contains("fewer than two"), "{job:#}");
    assert!(gained.is_empty(), "{gained:?}");
    assert_eq!(executions(&job, "rejected"), vec![addr(&h[0])], "{job:#}");

    // 3 nodes, 0 bad: all three are paid, each its invoice, on chain.
    let (job, gained) = net.job(&[&h[0], &h[1], &h[2]], 0).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(gained.len(), 3, "{gained:?}\n{job:#}");
    for e in job["executions"].as_array().unwrap() {
        assert_eq!(e["state"], "paid", "{job:#}");
        let paid = agora_payment::to_token_units(e["amount"].as_str().unwrap().parse().unwrap(), 18).unwrap();
        assert_eq!(gained[&e["provider"].as_str().unwrap().parse::<Address>().unwrap()], paid);
        assert!(e["txHash"].as_str().unwrap().starts_with("0x"), "{e}");
    }
    assert_eq!(job["results"]["stdout"], "hello from wasm\n", "{job:#}");
    assert!(job["results"]["digest"].as_str().unwrap().starts_with("h1:"));

    // 2 nodes, 1 bad: a tie verifies nobody; nobody is paid.
    let (job, gained) = net.job(&[&h[0], &b[0]], 0).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["message"].as_str().unwrap().contains("tie"), "{job:#}");
    assert!(gained.is_empty(), "{gained:?}");

    // 5 nodes, 2 bad (alike), confidence 4: the largest group has 3; nobody is paid.
    let (job, gained) = net.job(&[&h[0], &h[1], &h[2], &b[0], &b[1]], 4).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["message"].as_str().unwrap().contains("confidence not met"), "{job:#}");
    assert!(gained.is_empty(), "{gained:?}");
    assert_eq!(executions(&job, "rejected").len(), 5, "{job:#}");

    // 3 nodes, 1 bad: the two that agree are paid; the third is rejected, with the reason.
    let (job, gained) = net.job(&[&h[0], &h[1], &b[0]], 0).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let mut paid = executions(&job, "paid");
    paid.sort();
    let mut honest = vec![addr(&h[0]), addr(&h[1])];
    honest.sort();
    assert_eq!(paid, honest, "{job:#}");
    assert_eq!(gained.keys().copied().collect::<Vec<_>>(), honest, "{gained:?}");
    let rejected = &job["executions"].as_array().unwrap().iter().find(|e| e["state"] == "rejected").unwrap();
    assert_eq!(rejected["provider"].as_str().unwrap().parse::<Address>().unwrap(), addr(&b[0]));
    assert!(rejected["reason"].as_str().unwrap().starts_with("verification failed"), "{rejected}");
    // The provider sees its invoice rejected, with the reason.
    let (_, invoices) = get(&b[0], "/payment-api/v1/invoices").await;
    let last = invoices.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "REJECTED", "{invoices:#}");
}
