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
pub(super) struct Devnet {
    pub(super) _pg: TestPg,
    pub(super) _root: tempfile::TempDir,
    anvil: Anvil,
    pub(super) requestor: NodeProcess,
    requestor_args: Vec<String>,
    pub(super) honest: Vec<NodeProcess>,
    pub(super) bad: Vec<NodeProcess>,
    dev: Network,
    pub(super) package: String,
}

/// How a provider of a test network behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Honest,
    /// `--dishonest alter`
    Alter,
    /// `--dishonest no-reveal`
    NoReveal,
    /// `--dishonest replay:<address of provider n>`
    ReplayOf(usize),
    /// `--dishonest overcharge`
    Overcharge,
    /// `--dishonest late-invoice`
    LateInvoice,
    /// `--dishonest alter-uploads`
    AlterUploads,
    /// `--dishonest inflate-usage`, with a debit note every second
    InflateUsage,
    /// An honest agent whose one preset has these extra settings (TOML lines).
    Preset(&'static str),
    /// An honest agent with these `[provider]` settings (TOML lines).
    Settings(&'static str),
}

impl Devnet {
    pub(super) async fn start(modes: &[Mode]) -> Self {
        Self::start_with(modes, &[]).await
    }

    /// [`Devnet::start`], with `extra` flags for the requestor.
    async fn start_with(modes: &[Mode], extra: &[&str]) -> Self {
        Self::launch(Anvil::start().await, modes, extra, None).await
    }

    /// [`Devnet::start`], with the providers' chain calls going through a proxy that counts them.
    pub(super) async fn start_counting_provider_calls(
        modes: &[Mode],
    ) -> (Self, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let anvil = Anvil::start().await;
        let upstream = anvil.rpc_url().trim_start_matches("http://").parse().unwrap();
        let (proxy, calls) = agora_tests::counting_proxy(upstream).await;
        (Self::launch(anvil, modes, &[], Some(proxy)).await, calls)
    }

    async fn launch(anvil: Anvil, modes: &[Mode], extra: &[&str], provider_rpc: Option<String>) -> Self {
        let pg = TestPg::start().await;
        let root = tempfile::tempdir().unwrap();
        let rpc = anvil.rpc_url();
        let p_rpc = provider_rpc.unwrap_or_else(|| rpc.clone());
        let mut honest = Vec::new();
        let mut bad = Vec::new();
        let mut peers = Vec::new();
        let mut addresses = Vec::new();
        // One thread a replica, so a replica's worst cost does not depend on this machine.
        let config = root.path().join("provider.toml");
        std::fs::write(
            &config,
            "[provider]\n[[provider.presets]]\nname = \"wasm\"\nruntime = \"wasmtime\"\ncpu_threads = 1\n",
        )
        .unwrap();
        let config = config.to_str().unwrap().to_string();
        for (i, mode) in modes.iter().enumerate() {
            let db = pg.another_database(&format!("p{i}")).await;
            let mut args: Vec<String> =
                ["--provider", "--config", &config, "--chain-rpc", &p_rpc].map(String::from).to_vec();
            match mode {
                Mode::Honest => {}
                Mode::Alter => args.extend(["--dishonest".into(), "alter".into()]),
                Mode::NoReveal => args.extend(["--dishonest".into(), "no-reveal".into()]),
                Mode::ReplayOf(n) => {
                    args.extend(["--dishonest".into(), format!("replay:{:#x}", addresses[*n])])
                }
                Mode::Overcharge => args.extend(["--dishonest".into(), "overcharge".into()]),
                Mode::LateInvoice => args.extend(["--dishonest".into(), "late-invoice".into()]),
                Mode::AlterUploads => args.extend(["--dishonest".into(), "alter-uploads".into()]),
                Mode::InflateUsage => {
                    let own = root.path().join(format!("provider-{i}.toml"));
                    let settings = "[provider]\ndebit_note_interval_secs = 1\n[[provider.presets]]\nname = \"wasm\"\n\
                                    runtime = \"wasmtime\"\ncpu_threads = 1\n";
                    std::fs::write(&own, settings).unwrap();
                    args[2] = own.to_str().unwrap().to_string();
                    args.extend(["--dishonest".into(), "inflate-usage".into()]);
                }
                Mode::Settings(settings) => {
                    let own = root.path().join(format!("provider-{i}.toml"));
                    let preset =
                        "[[provider.presets]]\nname = \"wasm\"\nruntime = \"wasmtime\"\ncpu_threads = 1\n";
                    std::fs::write(&own, format!("[provider]\n{settings}\n{preset}")).unwrap();
                    args[2] = own.to_str().unwrap().to_string();
                }
                Mode::Preset(extra) => {
                    let own = root.path().join(format!("provider-{i}.toml"));
                    let preset =
                        "[provider]\n[[provider.presets]]\nname = \"wasm\"\nruntime = \"wasmtime\"\n";
                    std::fs::write(&own, format!("{preset}{extra}\n")).unwrap();
                    args[2] = own.to_str().unwrap().to_string();
                }
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let node =
                NodeProcess::start(&root.path().join(format!("p{i}")), &args, &[("DATABASE_URL", &db)]).await;
            peers.push(net_id(&node).1);
            addresses.push(node_address(&node));
            if matches!(mode, Mode::Honest | Mode::Settings(_)) { honest.push(node) } else { bad.push(node) }
        }
        let mut args = vec!["--chain-rpc", rpc.as_str(), "--batch-window", "0"];
        for peer in &peers {
            args.extend(["--peer", peer.as_str()]);
        }
        args.extend(extra);
        let requestor_args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let requestor =
            NodeProcess::start(&root.path().join("r"), &args, &[("DATABASE_URL", &pg.url())]).await;
        let out = requestor.cli(&["payment", "fund", "--json"], None);
        assert!(out.status.success(), "fund: {}", String::from_utf8_lossy(&out.stderr));
        let package = put_blob(&requestor, module("hello")).await;
        Self {
            _pg: pg,
            _root: root,
            dev: Network::dev(rpc),
            anvil,
            requestor,
            requestor_args,
            honest,
            bad,
            package,
        }
    }

    /// Another requestor on the same providers and chain, with a database of its own (named
    /// `name`) and `extra` flags; funded, and holding the test module.
    pub(super) async fn another_requestor(&self, name: &str, extra: &[&str]) -> NodeProcess {
        let db = self._pg.another_database(name).await;
        let mut args: Vec<&str> = self.requestor_args.iter().map(String::as_str).collect();
        args.extend(extra);
        let node = NodeProcess::start(&self._root.path().join(name), &args, &[("DATABASE_URL", &db)]).await;
        let out = node.cli(&["payment", "fund", "--json"], None);
        assert!(out.status.success(), "fund: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(put_blob(&node, module("hello")).await, self.package);
        node
    }

    /// Kills the requestor node (SIGKILL) and starts it again on the same data and database.
    pub(super) async fn kill_and_restart_requestor(&mut self) {
        self.kill_requestor().await;
        self.restart_requestor().await;
    }

    /// Kills the requestor node (SIGKILL), and waits for it to be gone.
    pub(super) async fn kill_requestor(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.requestor.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL).unwrap();
        let _ended = self.requestor.exited_within(10).await;
    }

    /// Starts the requestor node again on the same data and database.
    pub(super) async fn restart_requestor(&mut self) {
        let args: Vec<&str> = self.requestor_args.iter().map(String::as_str).collect();
        self.requestor =
            NodeProcess::start(&self._root.path().join("r"), &args, &[("DATABASE_URL", &self._pg.url())])
                .await;
    }

    /// Submits a job; its id.
    pub(super) async fn submit(&self, providers: &[&NodeProcess], spec: Value) -> String {
        let addresses: Vec<String> = providers.iter().map(|p| format!("{:#x}", node_address(p))).collect();
        let mut body = json!({
            "module": self.package, "entry_point": "hello", "concurrency": providers.len(),
            "budget": "1", "timeout": 30, "providers": addresses,
        });
        for (key, value) in spec.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, created) = post(&self.requestor, "/jobs", body).await;
        assert_eq!(status, 201, "{created}");
        created["jobId"].as_str().unwrap().to_string()
    }

    /// Waits until a job's steps say `words`.
    async fn until_said(&self, id: &str, words: &str) {
        wait_for(120, &format!("job {id} to say {words:?}"), || async {
            let (_, job) = get(&self.requestor, &format!("/jobs/{id}")).await;
            said(&job, words).then_some(())
        })
        .await
    }

    /// Waits until a job ends; the job.
    pub(super) async fn ended(&self, id: &str) -> Value {
        wait_for(240, "the job to end", || async {
            let (_, job) = get(&self.requestor, &format!("/jobs/{id}")).await;
            (job["stateCode"].as_i64().unwrap() >= 6).then_some(job)
        })
        .await
    }

    pub(super) async fn balance(&self, node: &NodeProcess) -> U256 {
        let rpc = agora_payment::chain::Rpc::new(self.anvil.rpc_url());
        agora_payment::chain::dev::token_balance(&rpc, self.dev.token, node_address(node)).await.unwrap()
    }

    fn all(&self) -> impl Iterator<Item = &NodeProcess> {
        self.honest.iter().chain(&self.bad)
    }

    pub(super) async fn balances(&self) -> BTreeMap<Address, U256> {
        let mut out = BTreeMap::new();
        for node in self.all() {
            out.insert(node_address(node), self.balance(node).await);
        }
        out
    }

    /// Runs a job on `providers` and waits for its end; the job, and who gained tokens on chain.
    async fn job(&self, providers: &[&NodeProcess], confidence: usize) -> (Value, BTreeMap<Address, U256>) {
        self.job_with(providers, json!({"confidence": confidence})).await
    }

    /// [`Devnet::job`] with more of the spec in `spec` (concurrency is the number of providers
    /// unless `spec` says otherwise).
    async fn job_with(&self, providers: &[&NodeProcess], spec: Value) -> (Value, BTreeMap<Address, U256>) {
        let before = self.balances().await;
        let id = self.submit(providers, spec).await;
        let job = self.ended(&id).await;
        let after = self.balances().await;
        let gained =
            after.iter().filter(|(a, v)| *v > &before[*a]).map(|(a, v)| (*a, *v - before[a])).collect();
        (job, gained)
    }
}

pub(super) fn executions(job: &Value, state: &str) -> Vec<Address> {
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
    use Mode::*;
    let net = Devnet::start(&[Honest, Honest, Honest, Alter, Alter]).await;
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
    assert_eq!(job["results"]["checked"], true, "{job:#}");
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

    // A tie resolved by an added replica: the job names h0 and b0 first, so they tie; h2 is added
    // and agrees with h0, and those two are paid.
    let (job, gained) = net.job_with(&[&h[0], &b[0], &h[2]], json!({"concurrency": 2, "min_bids": 3})).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert!(said(&job, "no verdict yet (a tie); adding a replica"), "{job:#}");
    assert_eq!(
        sorted(gained.keys().copied().collect()),
        sorted(vec![addr(&h[0]), addr(&h[2])]),
        "{gained:?}"
    );
    assert_eq!(executions(&job, "rejected"), vec![addr(&b[0])], "{job:#}");

    // 3 nodes, 1 bad: the two that agree are paid; the third is rejected, with the reason.
    let (job, gained) = net.job(&[&h[0], &h[1], &b[1]], 0).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let mut paid = executions(&job, "paid");
    paid.sort();
    let mut honest = vec![addr(&h[0]), addr(&h[1])];
    honest.sort();
    assert_eq!(paid, honest, "{job:#}");
    assert_eq!(gained.keys().copied().collect::<Vec<_>>(), honest, "{gained:?}");
    let rejected = &job["executions"].as_array().unwrap().iter().find(|e| e["state"] == "rejected").unwrap();
    assert_eq!(rejected["provider"].as_str().unwrap().parse::<Address>().unwrap(), addr(&b[1]));
    assert!(rejected["reason"].as_str().unwrap().starts_with("verification failed"), "{rejected}");
    // The job's steps as server-sent events: the stream of a finished job ends after its steps.
    let id = job["jobId"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .get(net.requestor.url(&format!("/jobs/{id}/events")))
        .bearer_auth(&net.requestor.node.admin_token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stream =
        tokio::time::timeout(std::time::Duration::from_secs(30), resp.text()).await.expect("the stream ends");
    let stream = stream.unwrap();
    assert!(stream.contains("event: job") && stream.contains("2 accepted, 1 rejected"), "{stream}");
    // The provider sees its invoice rejected, with the reason.
    let (_, invoices) = get(&b[1], "/payment-api/v1/invoices").await;
    let last = invoices.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "REJECTED", "{invoices:#}");
}

fn sorted(mut addresses: Vec<Address>) -> Vec<Address> {
    addresses.sort();
    addresses
}

pub(super) fn said(job: &Value, words: &str) -> bool {
    job["events"].as_array().unwrap().iter().any(|e| e["message"].as_str().unwrap().contains(words))
}

/// Commit and reveal: a provider that replays another's commitment, and one that lets its reveal
/// deadline pass, are never paid. Replicas are added while a verdict is still possible, within the
/// budget; bids and deadlines are kept.
#[tokio::test]
async fn replays_and_missed_reveals_are_never_paid_and_replicas_are_added_within_the_budget() {
    use Mode::*;
    let net = Devnet::start(&[Honest, Honest, Honest, ReplayOf(0), NoReveal]).await;
    let (h, b) = (&net.honest, &net.bad);
    let (replayer, silent) = (&b[0], &b[1]);
    let addr = |n: &NodeProcess| node_address(n);

    // A copy of h0's commitment: the copier cannot open it, so it fails as a replay; the two
    // honest results are verified and paid.
    let (job, gained) = net.job(&[&h[0], &h[1], replayer], 0).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(sorted(gained.keys().copied().collect()), sorted(vec![addr(&h[0]), addr(&h[1])]), "{job:#}");
    let copied = job["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["provider"] == format!("{:#x}", addr(replayer)));
    let copied = copied.expect("the replayer ran");
    assert!(copied["reason"].as_str().unwrap().contains("copies another provider's"), "{copied}");

    // A winner that lets the reveal deadline pass (5 s here) is not paid; the others are.
    let (job, gained) = net.job_with(&[&h[0], &h[1], silent], json!({"timeout": 5})).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(sorted(gained.keys().copied().collect()), sorted(vec![addr(&h[0]), addr(&h[1])]), "{job:#}");
    let missed = job["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["provider"] == format!("{:#x}", addr(silent)));
    assert!(missed.unwrap()["reason"].as_str().unwrap().contains("reveal deadline"), "{job:#}");

    // Outputs come back and are checked against the verified hash before they are published;
    // `agora job results` writes them out.
    let input = put_blob(&net.requestor, b"to be copied\n".to_vec()).await;
    let cat = put_blob(&net.requestor, module("cat")).await;
    let spec = json!({"module": cat, "entry_point": "cat", "inputs": [{"src": input, "dst": "in.txt"}],
                      "outputs": [{"name": "copy", "path": "out.txt"}]});
    let (job, _) = net.job_with(&[&h[0], &h[1]], spec).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["results"]["checked"], true, "{job:#}");
    let out = net._root.path().join("results");
    let cli =
        net.requestor.cli(&["job", "results", job["jobId"].as_str().unwrap(), out.to_str().unwrap()], None);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(std::fs::read_to_string(out.join("copy")).unwrap(), "to be copied\n");

    // A spec in YAML, submitted with the CLI, its module a local file beside it, uploaded on the
    // way; a bare number or boolean is read as the text it is written as.
    let yaml = net._root.path().join("job.yaml");
    std::fs::copy(
        agora_tests::workspace_root().join("tests/wasm/hello.wasm"),
        net._root.path().join("hello.wasm"),
    )
    .unwrap();
    std::fs::write(
        &yaml,
        format!(
            "module: hello.wasm\nentry_point: hello\nconcurrency: 2\nbudget: 1\ntimeout: 30\nargs: [1, yes]\nproviders:\n  - \"{:#x}\"\n  - \"{:#x}\"\n",
            addr(&h[0]),
            addr(&h[1])
        ),
    )
    .unwrap();
    let cli = net.requestor.cli(&["job", "submit", yaml.to_str().unwrap(), "--wait", "--json"], None);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let job: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["results"]["stdout"], "hello from wasm\n");
    // A mistake in the spec is named, and nothing is submitted.
    std::fs::write(&yaml, "module: blob:sha256:00\nbudget: \"1\"\ncolour: red\n").unwrap();
    let cli = net.requestor.cli(&["job", "submit", yaml.to_str().unwrap()], None);
    assert!(!cli.status.success());
    assert!(
        String::from_utf8_lossy(&cli.stderr).contains("colour"),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );

    // Confidence 3 from 2 replicas cannot be met: a third is added, and all three are paid.
    let (job, gained) =
        net.job_with(&[&h[0], &h[1], &h[2]], json!({"concurrency": 2, "confidence": 3})).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert!(said(&job, "adding a replica"), "{job:#}");
    assert_eq!(gained.len(), 3, "{gained:?}");

    // With no provider left to add, the job fails cleanly and pays nobody.
    let (job, gained) = net.job_with(&[&h[0], &h[1]], json!({"concurrency": 2, "confidence": 3})).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(said(&job, "no provider left to add"), "{job:#}");
    assert!(gained.is_empty(), "{gained:?}");

    // The budget cap holds, added replicas included: at T = 5 s a replica may cost up to 0.004
    // (10 s to its commit deadline × 0.0001, 10 s × 1 thread × 0.0002, and 0.001 to start), so
    // 0.010 pays for two, not a third.
    let (job, gained) = net
        .job_with(
            &[&h[0], &h[1], &h[2]],
            json!({"concurrency": 2, "confidence": 3, "timeout": 5, "budget": "0.010"}),
        )
        .await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(said(&job, "the budget cannot pay for another replica"), "{job:#}");
    assert_eq!(job["executions"].as_array().unwrap().len(), 2, "{job:#}");
    assert!(gained.is_empty(), "{gained:?}");

    // min_bids: one provider bids where two are wanted; the job fails at its timeout.
    let (job, gained) = net.job_with(&[&h[0]], json!({"min_bids": 2, "timeout": 3})).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["message"].as_str().unwrap().contains("min_bids is 2"), "{job:#}");
    assert!(job["executions"].as_array().unwrap().is_empty() && gained.is_empty(), "{job:#}");

    // A run that never ends: the job times out at its commit deadline (2 × 3 s) and pays nobody.
    let spin = put_blob(&net.requestor, module("spin")).await;
    let (job, gained) =
        net.job_with(&[&h[0], &h[1]], json!({"module": spin, "entry_point": "spin", "timeout": 3})).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(
        job["executions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["reason"].as_str().unwrap().contains("commit deadline")),
        "{job:#}"
    );
    assert!(gained.is_empty(), "{gained:?}");
}

/// A cancel stops a running job's activities and ends its agreements, paying nothing; a requestor
/// killed with a job running and another queued resumes both after its restart, paying each
/// verified provider once; a provider killed mid-run does not stall the job.
#[tokio::test]
async fn cancels_restarts_and_killed_providers_leave_nothing_hanging_or_paid_twice() {
    use Mode::*;
    let mut net = Devnet::start_with(&[Honest, Honest, Honest], &["--max-jobs", "1"]).await;
    let count = put_blob(&net.requestor, module("count")).await;
    let counting = json!({"module": count, "entry_point": "count"});

    // Cancel mid-run: the activities end, the agreements are terminated on both sides, and
    // nothing is paid (no debit note was accepted).
    let before = net.balances().await;
    let all: Vec<&NodeProcess> = net.honest.iter().collect();
    let id = net.submit(&all, counting.clone()).await;
    net.until_said(&id, "running on").await;
    let (status, body) =
        agora_tests::flow::call(&net.requestor, reqwest::Method::DELETE, &format!("/jobs/{id}"), None).await;
    assert_eq!(status, 204, "{body}");
    let job = net.ended(&id).await;
    assert_eq!(job["state"], "cancelled", "{job:#}");
    for e in job["executions"].as_array().unwrap() {
        let agreement = e["agreementId"].as_str().unwrap();
        let provider =
            net.honest.iter().find(|p| format!("{:#x}", node_address(p)) == e["provider"]).unwrap();
        wait_for(30, "the provider to see its agreement terminated", || async {
            let (_, a) = get(provider, &format!("/market-api/v1/agreements/{agreement}")).await;
            (a["state"] == "Terminated").then_some(())
        })
        .await;
        if let Some(activity) = e["activityId"].as_str() {
            let (_, state) =
                get(&net.requestor, &format!("/activity-api/v1/activity/{activity}/state")).await;
            assert_eq!(state["state"][0], "Terminated", "{state}");
        }
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(net.balances().await, before, "a cancelled job pays nothing");

    // A requestor killed with one job running and one queued (one job at a time here) resumes
    // both after its restart, and pays each verified provider once.
    let before = net.balances().await;
    let pair: Vec<Address> = net.honest[..2].iter().map(node_address).collect();
    let (running, queued) = {
        let nodes: Vec<&NodeProcess> = net.honest[..2].iter().collect();
        (net.submit(&nodes, counting.clone()).await, net.submit(&nodes, json!({})).await)
    };
    net.until_said(&running, "running on").await;
    let (_, q) = get(&net.requestor, &format!("/jobs/{queued}")).await;
    assert_eq!(q["state"], "queued", "{q:#}");
    net.kill_and_restart_requestor().await;
    let (a, b) = (net.ended(&running).await, net.ended(&queued).await);
    assert_eq!(a["state"], "completed", "{a:#}");
    assert_eq!(b["state"], "completed", "{b:#}");
    assert!(said(&a, "restarted"), "{a:#}");
    assert_eq!(a["results"]["stdout"], "counted\n");
    let after = net.balances().await;
    for &address in &pair {
        let owed: U256 = [&a, &b]
            .iter()
            .flat_map(|job| job["executions"].as_array().unwrap().iter())
            .filter(|e| e["provider"] == format!("{address:#x}") && e["state"] == "paid")
            .map(|e| {
                agora_payment::to_token_units(e["amount"].as_str().unwrap().parse().unwrap(), 18).unwrap()
            })
            .sum();
        assert_eq!(after[&address] - before[&address], owed, "paid once for each verified run");
    }

    // A provider killed mid-run: the other two agree and the job completes without waiting on it.
    let all: Vec<&NodeProcess> = net.honest.iter().collect();
    let id = net.submit(&all, counting).await;
    net.until_said(&id, "running on").await;
    let victim = node_address(&net.honest[2]);
    let pid = nix::unistd::Pid::from_raw(net.honest[2].pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL).unwrap();
    let job = net.ended(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let paid = executions(&job, "paid");
    assert_eq!(paid.len(), 2, "{job:#}");
    assert!(!paid.contains(&victim), "{job:#}");
}
