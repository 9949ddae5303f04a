//! Payments on a real chain (anvil) between two real nodes: debit notes and an invoice accepted
//! and paid through the batch payer, settled on both sides only once the payee found the transfer;
//! a payer killed at each step of paying, and a chain that goes away for a minute, pay each order
//! exactly once; bad input changes nothing.

use agora_payment::Network;
use agora_payment::chain::{Rpc, TestToken};
use agora_tests::flow::{agree_with, get, net_id, node_address, post};
use agora_tests::{Anvil, NodeProcess, TestPg, wait_for};
use alloy_primitives::{Address, U256};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Two nodes on one chain: a requestor with 1000 tGLM from the faucet, and a provider.
pub(super) struct Market {
    pub(super) pg: TestPg,
    pub(super) root: tempfile::TempDir,
    pub(super) anvil: Anvil,
    pub(super) requestor: NodeProcess,
    pub(super) provider: NodeProcess,
    pub(super) provider_p2p: String,
    pub(super) dev: Network,
}

pub(super) const PLATFORM: &str = "erc20-dev-tglm";

pub(super) fn tokens(n: &str) -> U256 {
    agora_payment::to_token_units(n.parse().unwrap(), 18).unwrap()
}

/// Starts the requestor on the dev network at anvil, or with the settings file `config`.
async fn start_requestor(
    root: &Path,
    pg: &TestPg,
    chain: Chain<'_>,
    provider_p2p: &str,
    env: &[(&str, &str)],
) -> NodeProcess {
    let url = pg.url();
    let mut all = vec![("DATABASE_URL", url.as_str())];
    all.extend_from_slice(env);
    let (flag, value) = match chain {
        Chain::Dev(anvil) => ("--chain-rpc", anvil.rpc_url()),
        Chain::Config(path) => ("--config", path.display().to_string()),
    };
    NodeProcess::start(&root.join("r"), &["--peer", provider_p2p, flag, &value, "--batch-window", "1"], &all)
        .await
}

#[derive(Clone, Copy)]
enum Chain<'a> {
    Dev(&'a Anvil),
    Config(&'a Path),
}

impl Market {
    pub(super) async fn start(anvil: Anvil) -> Self {
        let pg = TestPg::start().await;
        let root = tempfile::tempdir().unwrap();
        let provider_db = pg.another_database("provider").await;
        let rpc = anvil.rpc_url();
        let provider = NodeProcess::start(
            &root.path().join("p"),
            &["--chain-rpc", &rpc, "--batch-window", "1"],
            &[("DATABASE_URL", provider_db.as_str())],
        )
        .await;
        let (_, provider_p2p) = net_id(&provider);
        let requestor = start_requestor(root.path(), &pg, Chain::Dev(&anvil), &provider_p2p, &[]).await;
        // The faucet deploys agora's contracts on the fresh chain, where the dev settings expect them.
        let out = requestor.cli(&["payment", "fund", "--json"], None);
        assert!(out.status.success(), "fund: {}", String::from_utf8_lossy(&out.stderr));
        let funded: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(funded["token"], "1000", "{funded}");
        assert_eq!(funded["platform"], PLATFORM);
        let dev = Network::dev(rpc);
        Self { pg, root, anvil, requestor, provider, provider_p2p, dev }
    }

    pub(super) fn rpc(&self) -> Rpc {
        Rpc::new(self.anvil.rpc_url())
    }

    pub(super) async fn balance(&self, node: &NodeProcess) -> U256 {
        agora_payment::chain::dev::token_balance(&self.rpc(), self.dev.token, node_address(node))
            .await
            .unwrap()
    }

    /// A new Approved agreement paid on the dev platform, priced per second of duration and CPU.
    pub(super) async fn agreement(&self) -> String {
        let offer = json!({
            "golem.runtime.name": "wasmtime",
            "golem.com.pricing.model": "linear",
            "golem.com.usage.vector": ["golem.usage.duration_sec", "golem.usage.cpu_sec", "agora.usage.fuel"],
            "golem.com.pricing.model.linear.coeffs": [0.25, 0.5, 0, 0],
        });
        // A package, so that activities can be made under it (the payment scenarios deploy none).
        let demand = json!({"golem.srv.comp.task_package": format!("blob:sha256:{}", "0".repeat(64))});
        let added = json!({"golem.com.payment.chosen-platform": PLATFORM});
        agree_with(&self.requestor, &self.provider, offer, demand, added).await
    }

    /// Restarts the requestor, with `env`.
    async fn restart_requestor(&mut self, env: &[(&str, &str)]) {
        self.requestor.stop();
        self.requestor =
            start_requestor(self.root.path(), &self.pg, Chain::Dev(&self.anvil), &self.provider_p2p, env)
                .await;
    }

    /// Restarts the requestor with the dev network's settings in a file, changed by `change`.
    async fn restart_requestor_configured(&mut self, change: &str) {
        self.restart_requestor_configured_with(change, &[]).await
    }

    /// [`Market::restart_requestor_configured`], with `env` for the new process.
    pub(super) async fn restart_requestor_configured_with(&mut self, change: &str, env: &[(&str, &str)]) {
        let config = self.root.path().join("r.toml");
        let dev = &self.dev;
        let text = format!(
            "[payment]\n[[payment.networks]]\nname = \"dev\"\nrpc_urls = [\"{}\"]\ntoken = \"{}\"\n\
             token_symbol = \"tglm\"\nbatch_contract = \"{}\"\nfaucet = true\n{change}\n",
            dev.rpc_urls[0], dev.token, dev.batch_contract
        );
        std::fs::write(&config, text).unwrap();
        self.requestor.stop();
        self.requestor =
            start_requestor(self.root.path(), &self.pg, Chain::Config(&config), &self.provider_p2p, env)
                .await;
    }

    /// Waits until the requestor's driver reports a problem of `kind`.
    async fn driver_says(&self, kind: &str) -> Value {
        wait_for(30, &format!("the driver to report {kind}"), || async {
            let (_, s) = get(&self.requestor, "/payment-api/v1/payments/status").await;
            s.as_array().unwrap().iter().find(|p| p["kind"] == kind).cloned()
        })
        .await
    }

    /// Transfers of the token from the batch payer to the provider, in the whole chain.
    pub(super) async fn transfers_to_provider(&self) -> Vec<U256> {
        let topic = |a: Address| format!("{:#x}", a.into_word());
        let filter = json!([{
            "fromBlock": "0x0", "toBlock": "latest", "address": self.dev.token,
            "topics": [format!("{:#x}", <TestToken::Transfer as alloy_sol_types::SolEvent>::SIGNATURE_HASH),
                       topic(self.dev.batch_contract), topic(node_address(&self.provider))],
        }]);
        let logs = self.rpc().dev_call("eth_getLogs", filter).await.unwrap();
        logs.as_array()
            .unwrap()
            .iter()
            .map(|l| U256::from_str_radix(l["data"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
            .collect()
    }
}

/// An activity the requestor `r` starts under `agreement`: what a debit note is of.
pub(super) async fn activity(r: &NodeProcess, agreement: &str) -> String {
    let (status, created) = post(r, "/activity-api/v1/activity", json!({"agreementId": agreement})).await;
    assert_eq!(status, 201, "{created}");
    created["activityId"].as_str().unwrap().to_string()
}

pub(super) async fn allocate(r: &NodeProcess, total: &str) -> String {
    // As Golem's SDK sends it: read-only fields as empty strings, the total with 50+ digits.
    let body = json!({"allocationId": "", "spentAmount": "", "remainingAmount": "", "totalAmount": total,
                      "paymentPlatform": PLATFORM, "makeDeposit": false});
    let (status, a) = post(r, "/payment-api/v1/allocations", body).await;
    assert_eq!(status, 201, "{a}");
    a["allocationId"].as_str().unwrap().to_string()
}

fn id_key(kind: &str) -> &'static str {
    if kind == "debitNotes" { "debitNoteId" } else { "invoiceId" }
}

/// Issues a document on the provider and sends it; its id.
pub(super) async fn issue(p: &NodeProcess, kind: &str, body: Value) -> String {
    let (status, d) = post(p, &format!("/payment-api/v1/{kind}"), body).await;
    assert_eq!(status, 201, "{d}");
    let id = d[id_key(kind)].as_str().unwrap().to_string();
    let (status, sent) = post(p, &format!("/payment-api/v1/{kind}/{id}/send"), json!(null)).await;
    assert_eq!(status, 200, "{sent}\n{}", p.log());
    id
}

pub(super) async fn accept(
    r: &NodeProcess,
    kind: &str,
    id: &str,
    amount: &str,
    allocation: &str,
) -> (u16, Value) {
    let body = json!({"totalAmountAccepted": amount, "allocationId": allocation});
    post(r, &format!("/payment-api/v1/{kind}/{id}/accept"), body).await
}

pub(super) async fn wait_status(node: &NodeProcess, kind: &str, id: &str, want: &str, secs: u64) {
    let path = format!("/payment-api/v1/{kind}/{id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, d) = get(node, &path).await;
        assert_eq!(status, 200, "{d}");
        if d["status"] == want {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{kind} {id} is not {want} after {secs} s: {d}\nthe node's log:\n{}", node.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn invoice_paid(m: &Market, agreement: &str, amount: &str, allocation: &str) -> String {
    let invoice = issue(&m.provider, "invoices", json!({"agreementId": agreement, "amount": amount})).await;
    let (status, body) = accept(&m.requestor, "invoices", &invoice, amount, allocation).await;
    assert_eq!(status, 200, "{body}");
    wait_status(&m.provider, "invoices", &invoice, "SETTLED", 60).await;
    invoice
}

#[tokio::test]
async fn accepted_debit_notes_and_invoice_are_paid_on_chain_and_settled_on_both_sides() {
    let m = Market::start(Anvil::start().await).await;
    let (r, p) = (&m.requestor, &m.provider);
    let agreement = m.agreement().await;
    let allocation = allocate(r, "10.000000000000000000000000000000000000000000000000001").await;
    let before = m.balance(r).await;
    let me = format!("{:#x}", node_address(r));
    let (status, decorations) =
        get(r, &format!("/payment-api/v1/demandDecorations?allocationIds={allocation}")).await;
    assert_eq!(status, 200, "{decorations}");
    let key = format!("golem.com.payment.platform.{PLATFORM}.address");
    assert_eq!(
        decorations,
        json!({"properties": [{"key": key, "value": me}, {"key": "golem.com.payment.protocol.version", "value": 3}],
               "constraints": [format!("({key}=*)"), "(golem.com.payment.protocol.version>1)"]})
    );
    let (_, accounts) = get(r, "/payment-api/v1/requestorAccounts").await;
    assert_eq!(accounts[0]["platform"], PLATFORM, "{accounts}");
    assert_eq!(accounts[0]["address"], me.as_str(), "{accounts}");

    // Pay-as-you-go: each debit note has a due date, so accepting it pays what it adds.
    let due = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
    let mut documents = Vec::new();
    // The first note states its total, the second leaves it to the agreement's pricing:
    // 0.25 × 1 s + 0.5 × 2 s of CPU = 1.25, then 0.25 × 2 + 0.5 × 4 = 2.5.
    // Activity 2's note is cumulative for activity 2 alone: 0.25 × 2 s = 0.5.
    let (first, second) = (activity(r, &agreement).await, activity(r, &agreement).await);
    let notes = [
        (&first, Some("1.25"), [1.0, 2.0, 3.0], "1.25"),
        (&first, None, [2.0, 4.0, 0.0], "2.5"),
        (&second, None, [2.0, 0.0, 0.0], "0.5"),
    ];
    for (activity, total, usage, due_now) in notes {
        let mut body = json!({"agreementId": agreement, "activityId": activity,
                              "paymentDueDate": due, "usageCounterVector": usage});
        if let Some(total) = total {
            body["totalAmountDue"] = json!(total);
        }
        let id = issue(p, "debitNotes", body).await;
        let (status, body) = accept(r, "debitNotes", &id, due_now, &allocation).await;
        assert_eq!(status, 200, "{body}");
        documents.push(("debitNotes", id));
    }
    // Each activity's last note is paid: 2.5 + 0.5.
    for (kind, id) in &documents {
        wait_status(p, kind, id, "SETTLED", 60).await;
    }
    assert_eq!(m.balance(p).await, tokens("3"));
    let invoice = issue(p, "invoices", json!({"agreementId": agreement, "amount": "3.75"})).await;
    let accepted_at = std::time::Instant::now();
    let (status, body) = accept(r, "invoices", &invoice, "3.75", &allocation).await;
    assert_eq!(status, 200, "{body}");
    documents.push(("invoices", invoice.clone()));
    for (kind, id) in &documents {
        for node in [r, p] {
            wait_status(node, kind, id, "SETTLED", 60).await;
        }
    }
    eprintln!("invoice accepted → settled on the provider: {:?}", accepted_at.elapsed());

    // The chain moved exactly the accepted amounts, in transfers the provider found itself.
    assert_eq!(m.balance(p).await, tokens("3.75"));
    assert_eq!(m.balance(r).await, before - tokens("3.75"));
    assert_eq!(m.transfers_to_provider().await.iter().copied().sum::<U256>(), tokens("3.75"));
    for node in [r, p] {
        let (status, payments) = get(node, "/payment-api/v1/payments").await;
        assert_eq!(status, 200, "{payments}");
        let sum: rust_decimal::Decimal = payments
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["amount"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
            .sum();
        assert_eq!(sum, "3.75".parse().unwrap(), "{payments}");
    }
    let (_, a) = get(r, &format!("/payment-api/v1/allocations/{allocation}")).await;
    assert_eq!(
        (a["totalAmount"].as_str(), a["spentAmount"].as_str(), a["remainingAmount"].as_str()),
        (Some("10"), Some("3.75"), Some("6.25")),
        "{a}"
    );

    // The requestor's invoice events, in order, each strictly after the one before, and a poll
    // after the first returns exactly the rest.
    let (status, events) = get(r, "/payment-api/v1/invoiceEvents?timeout=0&maxEvents=100").await;
    assert_eq!(status, 200, "{events}");
    let mine: Vec<&Value> =
        events.as_array().unwrap().iter().filter(|e| e["invoiceId"] == invoice.as_str()).collect();
    let types: Vec<&str> = mine.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(types, ["InvoiceReceivedEvent", "InvoiceAcceptedEvent", "InvoiceSettledEvent"], "{events}");
    let first = mine[0]["eventDate"].as_str().unwrap();
    assert_eq!(first.rsplit('.').next().unwrap().len(), "123456Z".len(), "microseconds: {first}");
    let after = url_encode(first);
    let (_, rest) = get(r, &format!("/payment-api/v1/invoiceEvents?afterTimestamp={after}&timeout=0")).await;
    let rest: Vec<&str> = rest.as_array().unwrap().iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(rest, ["InvoiceAcceptedEvent", "InvoiceSettledEvent"]);

    // The CLI shows the same.
    let out = p.cli(&["payment", "status", "--json"], None);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["received"], "3.75", "{status}");
    assert_eq!(status[0]["token"], "3.75", "{status}");
    let out = r.cli(&["payment", "invoices"], None);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("SETTLED") && table.contains("3.75"), "{table}");
}

fn url_encode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn a_payer_killed_at_each_step_of_paying_pays_each_order_exactly_once() {
    let mut m = Market::start(Anvil::start().await).await;
    let allocation = allocate(&m.requestor, "100").await;
    // The first payment also approves the batch payer; the steps below are those of a payment.
    let warm_up = m.agreement().await;
    invoice_paid(&m, &warm_up, "0.5", &allocation).await;

    let mut expected = vec![tokens("0.5")];
    for (i, point) in ["ordered", "signed", "broadcast", "mined"].into_iter().enumerate() {
        let agreement = m.agreement().await;
        let amount = format!("{}", i + 1);
        let invoice =
            issue(&m.provider, "invoices", json!({"agreementId": agreement, "amount": amount})).await;
        m.restart_requestor(&[("AGORA_TEST_KILL_AT", point)]).await;
        // Killed at "ordered", the node dies before it answers.
        let body = json!({"totalAmountAccepted": amount, "allocationId": allocation});
        let _answer = reqwest::Client::new()
            .post(m.requestor.url(&format!("/payment-api/v1/invoices/{invoice}/accept")))
            .bearer_auth(&m.requestor.node.admin_token)
            .json(&body)
            .send()
            .await;
        let status = m
            .requestor
            .exited_within(60)
            .await
            .unwrap_or_else(|| panic!("the requestor was not killed at {point}"));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed at {point}: {status}");
        m.restart_requestor(&[]).await;
        wait_status(&m.requestor, "invoices", &invoice, "SETTLED", 60).await;
        wait_status(&m.provider, "invoices", &invoice, "SETTLED", 60).await;
        expected.push(tokens(&amount));
        assert_eq!(
            m.transfers_to_provider().await,
            expected,
            "after a kill at {point}: one transfer per order"
        );
    }
    assert_eq!(m.balance(&m.provider).await, tokens("10.5"));
}

#[tokio::test]
async fn payments_wait_out_a_minute_without_the_chain_then_pay_once_and_skip_no_nonce() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut m = Market::start(Anvil::start_with_state(&state_dir.path().join("anvil.json")).await).await;
    let allocation = allocate(&m.requestor, "100").await;
    let first = m.agreement().await;
    invoice_paid(&m, &first, "1", &allocation).await;

    // The next payment is signed and sent, but not mined, when the chain goes away.
    m.rpc().dev_call("evm_setAutomine", json!([false])).await.unwrap();
    let agreement = m.agreement().await;
    let invoice = issue(&m.provider, "invoices", json!({"agreementId": agreement, "amount": "2"})).await;
    let (status, body) = accept(&m.requestor, "invoices", &invoice, "2", &allocation).await;
    assert_eq!(status, 200, "{body}");
    wait_for(30, "the payment to be signed and sent", || async {
        // The first payment signed an approval and a batch; this is the third.
        (m.requestor.log().matches("signed a payment transaction").count() == 3).then_some(())
    })
    .await;
    m.anvil.stop();
    m.driver_says("RpcError").await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    m.anvil.restart().await;
    wait_status(&m.requestor, "invoices", &invoice, "SETTLED", 60).await;
    wait_status(&m.provider, "invoices", &invoice, "SETTLED", 60).await;
    assert_eq!(m.transfers_to_provider().await, vec![tokens("1"), tokens("2")]);
    assert_eq!(m.balance(&m.provider).await, tokens("3"));

    // Every nonce of the payer's account is used once, in order: the faucet, the approval, two
    // batches.
    let payer = node_address(&m.requestor);
    let rpc = m.rpc();
    let count = rpc.nonce(payer, false).await.unwrap();
    let mut nonces = Vec::new();
    for n in 0..=rpc.block_number().await.unwrap() {
        let block = rpc.dev_call("eth_getBlockByNumber", json!([format!("{n:#x}"), true])).await.unwrap();
        for tx in block["transactions"].as_array().unwrap() {
            if tx["from"].as_str().unwrap().parse::<Address>().unwrap() == payer {
                nonces.push(
                    u64::from_str_radix(tx["nonce"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap(),
                );
            }
        }
    }
    assert_eq!(nonces, (0..count).collect::<Vec<_>>(), "the payer's transactions, by nonce");
    assert_eq!(count, 4);
}

#[tokio::test]
async fn a_stuck_payment_is_replaced_with_a_higher_fee_and_paid_once() {
    let mut m = Market::start(Anvil::start().await).await;
    let allocation = allocate(&m.requestor, "100").await;
    let first = m.agreement().await;
    invoice_paid(&m, &first, "1", &allocation).await;
    m.restart_requestor_configured("chain_id = 31337\nstuck_after_secs = 2").await;

    // The chain stops mining: the payment waits in the pool.
    m.rpc().dev_call("evm_setAutomine", json!([false])).await.unwrap();
    let agreement = m.agreement().await;
    let invoice = issue(&m.provider, "invoices", json!({"agreementId": agreement, "amount": "2"})).await;
    let (status, body) = accept(&m.requestor, "invoices", &invoice, "2", &allocation).await;
    assert_eq!(status, 200, "{body}");
    wait_for(30, "the stuck transaction to be replaced", || async {
        m.requestor.log().contains("a stuck transaction is replaced with a higher fee").then_some(())
    })
    .await;
    m.rpc().dev_call("evm_mine", json!([])).await.unwrap();
    m.rpc().dev_call("evm_setAutomine", json!([true])).await.unwrap();
    wait_status(&m.provider, "invoices", &invoice, "SETTLED", 60).await;
    assert_eq!(m.transfers_to_provider().await, vec![tokens("1"), tokens("2")], "paid once");
}

#[tokio::test]
async fn the_driver_names_what_stops_payments_and_pays_once_it_is_fixed() {
    let mut m = Market::start(Anvil::start().await).await;
    let allocation = allocate(&m.requestor, "5000").await;
    let agreement = m.agreement().await;
    // More than the faucet's 1000 tokens.
    let invoice = issue(&m.provider, "invoices", json!({"agreementId": agreement, "amount": "1500"})).await;
    let (status, body) = accept(&m.requestor, "invoices", &invoice, "1500", &allocation).await;
    assert_eq!(status, 200, "{body}");
    let short = m.driver_says("InsufficientToken").await;
    assert_eq!(short["neededTokenEst"], "1500", "{short}");
    assert_eq!(short["network"], "dev", "{short}");

    // A chain that is not the one the settings name.
    m.restart_requestor_configured("chain_id = 1").await;
    let wrong = m.driver_says("InvalidChainId").await;
    assert_eq!(wrong["chainId"], 31337, "{wrong}");

    m.restart_requestor_configured("chain_id = 31337").await;
    let out = m.requestor.cli(&["payment", "fund"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_status(&m.provider, "invoices", &invoice, "SETTLED", 60).await;
    assert_eq!(m.transfers_to_provider().await, vec![tokens("1500")]);
}

#[tokio::test]
async fn a_node_runs_its_own_dev_chain_and_finds_its_money_there_after_a_restart() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let rpc = format!("http://127.0.0.1:{}", agora_tests::free_port());
    let flags = ["--embedded-chain", "--chain-rpc", rpc.as_str()];
    let url = pg.url();
    let env = [("DATABASE_URL", url.as_str())];
    let mut node = NodeProcess::start(&root.path().join("n"), &flags, &env).await;
    let out = node.cli(&["payment", "fund", "--json"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(Rpc::new(rpc.as_str()).chain_id().await.unwrap(), agora_payment::DEV_CHAIN_ID);

    assert_eq!(node.stop(), Some(0));
    assert!(Rpc::new(rpc.as_str()).chain_id().await.is_err(), "the chain stops with the node");
    let node = NodeProcess::start(&root.path().join("n"), &flags, &env).await;
    let out = node.cli(&["payment", "status", "--json"], None);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["token"], "1000", "the chain kept its state: {status}");
}
