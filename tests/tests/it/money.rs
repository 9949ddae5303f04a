//! Money that hostile peers cannot bend, on real nodes, Postgres and anvil: a provider that
//! overcharges is paid only what the requestor can justify, extreme numbers in offers and demands
//! panic no task, and every scenario ends with the tokens conserved on chain.

use super::jobs::{Devnet, Mode, agree_by_hand, executions, said, terminated};
use super::web_service::{call, create_user, get_as, quick, service_key, submit_as};
use agora_tests::flow::{get, net_id, node_address, post, put_blob};
use agora_tests::{Anvil, NodeProcess, TestPg, module, wait_for};
use alloy_primitives::{Address, U256};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// What each provider gained on chain equals what the requestor accepted for it, and the
/// requestor lost exactly their sum.
pub(super) async fn assert_conserved(
    net: &Devnet,
    requestor_before: U256,
    before: &std::collections::BTreeMap<Address, U256>,
    jobs: &[&Value],
) {
    let after = net.balances().await;
    let mut accepted: std::collections::BTreeMap<Address, U256> = std::collections::BTreeMap::new();
    for job in jobs {
        for e in job["executions"].as_array().unwrap() {
            if e["state"] == "paid" {
                let amount =
                    agora_payment::to_token_units(e["amount"].as_str().unwrap().parse().unwrap(), 18)
                        .unwrap();
                *accepted.entry(e["provider"].as_str().unwrap().parse().unwrap()).or_default() += amount;
            }
        }
    }
    let mut gains = U256::ZERO;
    for (address, was) in before {
        let gained = after[address] - *was;
        assert_eq!(
            gained,
            accepted.get(address).copied().unwrap_or_default(),
            "{address:#x} gained what was accepted for it"
        );
        gains += gained;
    }
    let lost = requestor_before - net.balance(&net.requestor).await;
    assert_eq!(lost, gains, "the requestor lost exactly what the providers gained");
}

/// A verified provider that invoices a hundred times what it ran for: the runner rejects the
/// invoice, naming what it asks and what the agreed terms give for what the requestor saw; the
/// provider's corrected invoice is then paid, and the others' too.
#[tokio::test]
async fn an_overcharging_provider_is_paid_only_what_the_requestor_can_justify() {
    use Mode::*;
    let net = Devnet::start(&[Honest, Honest, Overcharge]).await;
    let (h, greedy) = (&net.honest, &net.bad[0]);
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let id = net.submit(&[&h[0], &h[1], greedy], json!({"confidence": 0})).await;

    // The inflated invoice comes back rejected, with both figures in its reason.
    let rejected = wait_for(120, "the greedy provider's invoice to be answered", || async {
        let (_, invoices) = get(greedy, "/payment-api/v1/invoices").await;
        invoices.as_array()?.iter().find(|i| i["status"] != "ISSUED" && i["status"] != "RECEIVED").cloned()
    })
    .await;
    assert_eq!(rejected["status"], "REJECTED", "{rejected:#}");
    let asked: Decimal = rejected["amount"].as_str().unwrap().parse().unwrap();
    let (_, events) = get(greedy, "/payment-api/v1/invoiceEvents?timeout=0").await;
    let reason = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["eventType"] == "InvoiceRejectedEvent")
        .map(|e| e["rejection"]["message"].as_str().unwrap().to_string())
        .expect("a rejection event");
    assert!(reason.contains(&asked.normalize().to_string()) && reason.contains("at most"), "{reason}");

    // As its operator would, the provider withdraws it and invoices what its run cost.
    let invoice = rejected["invoiceId"].as_str().unwrap();
    let (status, body) =
        post(greedy, &format!("/payment-api/v1/invoices/{invoice}/cancel"), json!(null)).await;
    assert_eq!(status, 200, "{body}");
    let fair = (asked / Decimal::from(100)).normalize().to_string();
    let agreement = rejected["agreementId"].as_str().unwrap();
    let (status, corrected) =
        post(greedy, "/payment-api/v1/invoices", json!({"agreementId": agreement, "amount": fair})).await;
    assert_eq!(status, 201, "{corrected}");
    let corrected = corrected["invoiceId"].as_str().unwrap().to_string();
    let (status, body) =
        post(greedy, &format!("/payment-api/v1/invoices/{corrected}/send"), json!(null)).await;
    assert_eq!(status, 200, "{body}");

    let job = net.ended(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(executions(&job, "paid").len(), 3, "{job:#}");
    assert!(said(&job, "rejected invoice"), "{job:#}");
    let greedy_row = job["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["provider"] == format!("{:#x}", node_address(greedy)))
        .unwrap();
    assert_eq!(
        greedy_row["amount"].as_str().unwrap().parse::<Decimal>().unwrap(),
        fair.parse::<Decimal>().unwrap()
    );
    assert_conserved(&net, requestor_before, &before, &[&job]).await;
}

/// An offer of 10^28 CPU threads would overflow the worst case of its replica: the runner leaves
/// that provider out with the reason and runs on the others, and the job ends.
#[tokio::test]
async fn extreme_numbers_in_an_offer_panic_no_job() {
    use Mode::*;
    let net =
        Devnet::start(&[Honest, Honest, Preset("cpu_threads = 1e28"), Preset("cpu_threads = -4")]).await;
    let (h, huge, negative) = (&net.honest, &net.bad[0], &net.bad[1]);
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let id = net.submit(&[huge, negative, &h[0], &h[1]], json!({"concurrency": 2, "min_bids": 4})).await;
    let job = wait_for(120, "the job to end", || async {
        let (_, job) = get(&net.requestor, &format!("/jobs/{id}")).await;
        (job["stateCode"].as_i64().unwrap() >= 6).then_some(job)
    })
    .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let mut paid = executions(&job, "paid");
    paid.sort();
    let mut honest: Vec<Address> = h.iter().map(node_address).collect();
    honest.sort();
    assert_eq!(paid, honest, "{job:#}");
    assert!(said(&job, "golem.inf.cpu.threads"), "the step names the offer's fault: {job:#}");
    assert_conserved(&net, requestor_before, &before, &[&job]).await;
}

/// A demand that asks for a debit-note accept timeout of 10^16 s: the provider agent's rounds go
/// on (debit notes, idle agreements ended), since no number from a demand can panic them.
#[tokio::test]
async fn a_demands_extreme_durations_do_not_stop_the_provider_agent() {
    let anvil = Anvil::start().await;
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let rpc = anvil.rpc_url();
    let config = root.path().join("provider.toml");
    std::fs::write(
        &config,
        "[provider]\nmax_agreements = 4\ndebit_note_interval_secs = 1\nidle_agreement_secs = 5\n\n\
         [[provider.presets]]\nname = \"wasm\"\nruntime = \"wasmtime\"\n",
    )
    .unwrap();
    let p_db = pg.another_database("p").await;
    let p = NodeProcess::start(
        &root.path().join("p"),
        &["--provider", "--config", config.to_str().unwrap(), "--chain-rpc", &rpc],
        &[("DATABASE_URL", &p_db)],
    )
    .await;
    let (_, p_addr) = net_id(&p);
    let r = NodeProcess::start(
        &root.path().join("r"),
        &["--chain-rpc", &rpc, "--batch-window", "0", "--peer", &p_addr],
        &[("DATABASE_URL", &pg.url())],
    )
    .await;
    let count = put_blob(&r, module("count")).await;
    let me = format!("{:#x}", node_address(&r));
    let mut properties = json!({
        "golem.srv.comp.expiration": 1_900_000_000_000_u64, "golem.srv.comp.task_package": count,
        "golem.com.payment.chosen-platform": "erc20-dev-tglm",
        "golem.com.payment.platform.erc20-dev-tglm.address": me,
        "golem.com.payment.debit-notes.accept-timeout?": 1e16,
    });
    // Work runs, and its debit notes go unaccepted: the agent weighs them against the timeout.
    let (agreement, state) = agree_by_hand(&r, properties.clone()).await;
    assert_eq!(state, "Approved");
    let activity = agora_tests::flow::create_activity(&r, &agreement).await;
    agora_tests::flow::batch(
        &r,
        &activity,
        json!([{"deploy": {}}, {"start": {}}, {"run": {"entry_point": "count"}}]),
    )
    .await;
    wait_for(30, "a debit note", || async {
        let (_, notes) = get(&p, "/payment-api/v1/debitNotes").await;
        (!notes.as_array()?.is_empty()).then_some(())
    })
    .await;
    // Its rounds still run: an agreement left idle is ended as idle.
    properties["golem.com.payment.debit-notes.accept-timeout?"] = json!(-1);
    let (idle, state) = agree_by_hand(&r, properties).await;
    assert_eq!(state, "Approved");
    let ended = terminated(&r, &idle).await;
    assert!(ended["reason"].to_string().contains("idle"), "{ended:#}");
    assert!(!p.log().contains("panicked"), "{}", p.log());
}

/// A provider withdraws its invoice just before the requestor rejects it: the rejection counts
/// as done, since the outcome is the one the requestor wanted.
#[tokio::test]
async fn rejecting_a_withdrawn_invoice_counts_as_done() {
    use super::payment::{Market, issue, wait_status};
    let m = Market::start(Anvil::start().await).await;
    let agreement = m.agreement().await;
    let invoice = issue(&m.provider, "invoices", json!({"agreementId": agreement, "amount": "1"})).await;
    wait_status(&m.requestor, "invoices", &invoice, "RECEIVED", 30).await;
    let (status, body) =
        post(&m.provider, &format!("/payment-api/v1/invoices/{invoice}/cancel"), json!(null)).await;
    assert_eq!(status, 200, "{body}");
    wait_status(&m.requestor, "invoices", &invoice, "CANCELLED", 10).await;
    let rejection = json!({"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0", "message": "lost"});
    let (status, body) =
        post(&m.requestor, &format!("/payment-api/v1/invoices/{invoice}/reject"), rejection.clone()).await;
    assert_eq!(status, 200, "{body}");
    wait_status(&m.requestor, "invoices", &invoice, "CANCELLED", 1).await;
    // Rejecting twice is done twice.
    let (status, body) =
        post(&m.requestor, &format!("/payment-api/v1/invoices/{invoice}/reject"), rejection).await;
    assert_eq!(status, 200, "{body}");
}

/// A modified payer claims that the transfer which paid one invoice paid another too, giving the
/// transaction's hash in capitals: the provider counts one transfer once, and the second invoice
/// stays unpaid.
#[tokio::test]
async fn one_transfer_settles_one_payment_whatever_the_case_of_its_hash() {
    use super::payment::{Market, PLATFORM, allocate, invoice_paid, issue, speak_to, wait_status};
    use agora_payment::model::{Kind, Payment, Share};
    use agora_payment::wire::Message;
    use agora_payment::{PaymentRequest, PaymentResponse};
    let m = Market::start(Anvil::start().await).await;
    let (r, p) = (&m.requestor, &m.provider);
    let requestor_before = m.balance(r).await;
    let provider_before = m.balance(p).await;
    let allocation = allocate(r, "10").await;
    let first = m.agreement().await;
    invoice_paid(&m, &first, "1", &allocation).await;
    let (_, payments) = get(p, "/payment-api/v1/payments").await;
    let real = payments[0].clone();
    let tx = real["details"].as_str().unwrap().to_string();

    let second = m.agreement().await;
    let invoice = issue(p, "invoices", json!({"agreementId": second, "amount": "1"})).await;
    wait_status(r, "invoices", &invoice, "RECEIVED", 30).await;
    let payer = agora_identity::Keystore::open(r.data_dir().join("keystore"))
        .unwrap()
        .load(node_address(r), "")
        .unwrap();
    let send = |message: Message| {
        let signature = agora_identity::sign_json(&payer, &message).unwrap();
        speak_to(&payer, &m.provider_p2p, PaymentRequest { message, signature })
    };
    // Its acceptance of the second invoice is real (signed by the payer)...
    let accepted = send(Message::Accepted {
        kind: Kind::Invoice,
        document_id: invoice.clone(),
        total_amount_accepted: "1".into(),
    })
    .await;
    assert_eq!(accepted, PaymentResponse::Ack);
    wait_status(p, "invoices", &invoice, "ACCEPTED", 10).await;
    // ...and its payment names the first one's transfer, in capitals and as it was.
    let claims = [format!("0x{}", tx.trim_start_matches("0x").to_uppercase()), tx.clone()];
    for (n, details) in claims.into_iter().enumerate() {
        let payment = Payment {
            payment_id: format!("claimed-again-{n}"),
            payer_id: format!("{:#x}", node_address(r)),
            payee_id: format!("{:#x}", node_address(p)),
            payer_addr: format!("{:#x}", node_address(r)),
            payee_addr: format!("{:#x}", node_address(p)),
            payment_platform: PLATFORM.into(),
            amount: "1".parse().unwrap(),
            timestamp: chrono::Utc::now(),
            agreement_payments: vec![Share {
                agreement_id: Some(second.clone()),
                activity_id: None,
                amount: "1".parse().unwrap(),
                allocation_id: None,
                document_id: invoice.clone(),
                document_kind: Kind::Invoice,
            }],
            activity_payments: vec![],
            details,
        };
        let _answer = send(Message::Paid { payment }).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    wait_status(p, "invoices", &invoice, "ACCEPTED", 1).await;
    let (_, payments) = get(p, "/payment-api/v1/payments").await;
    assert_eq!(payments.as_array().unwrap().len(), 1, "{payments:#}");
    // On chain, the one invoice the payer really paid moved its amount.
    let one = agora_payment::to_token_units("1".parse().unwrap(), 18).unwrap();
    assert_eq!(m.balance(p).await - provider_before, one);
    assert_eq!(requestor_before - m.balance(r).await, one);
}

/// 110 messages wait for a provider that went away: another provider's acceptance and payment
/// are still delivered, since each peer's messages wait only for that peer.
#[tokio::test]
async fn one_peers_backlog_does_not_hold_up_another() {
    use super::payment::{Market, PLATFORM, accept, allocate, issue, wait_status};
    let mut m = Market::start(Anvil::start().await).await;
    let agreement = m.agreement().await;
    let activity = super::payment::activity(&m.requestor, &agreement).await;
    let mut notes = Vec::new();
    for _ in 0..110 {
        let note = json!({"agreementId": agreement, "activityId": activity, "totalAmountDue": "0.01"});
        notes.push(issue(&m.provider, "debitNotes", note).await);
    }
    m.provider.stop();
    let rejection = json!({"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"});
    for note in &notes {
        let (status, body) =
            post(&m.requestor, &format!("/payment-api/v1/debitNotes/{note}/reject"), rejection.clone()).await;
        assert_eq!(status, 200, "{body}");
    }

    let db = m.pg.another_database("other").await;
    let (_, r_p2p) = net_id(&m.requestor);
    let other = NodeProcess::start(
        &m.root.path().join("other"),
        &["--chain-rpc", &m.anvil.rpc_url(), "--batch-window", "1", "--peer", &r_p2p],
        &[("DATABASE_URL", db.as_str())],
    )
    .await;
    let offer = json!({
        "golem.runtime.name": "wasmtime",
        "golem.com.pricing.model": "linear",
        "golem.com.usage.vector": ["golem.usage.duration_sec"],
        "golem.com.pricing.model.linear.coeffs": [0.25, 0],
    });
    let added = json!({"golem.com.payment.chosen-platform": PLATFORM});
    let agreement = agora_tests::flow::agree_with(&m.requestor, &other, offer, json!({}), added).await;
    let before = m.balance(&other).await;
    let allocation = allocate(&m.requestor, "5").await;
    let invoice = issue(&other, "invoices", json!({"agreementId": agreement, "amount": "2"})).await;
    let (status, body) = accept(&m.requestor, "invoices", &invoice, "2", &allocation).await;
    assert_eq!(status, 200, "{body}");
    wait_status(&other, "invoices", &invoice, "SETTLED", 60).await;
    assert_eq!(
        m.balance(&other).await - before,
        agora_payment::to_token_units("2".parse().unwrap(), 18).unwrap()
    );
}

/// A payee no transfer can reach (the zero address) is refused when its invoice is accepted, and
/// an order to it that is already waiting (accepted before that check) fails with the chain's
/// reason without stopping the other payees' payments.
#[tokio::test]
async fn a_payee_the_chain_refuses_stops_no_other_payment() {
    use super::payment::{Market, PLATFORM, accept, allocate, issue, wait_status};
    let m = Market::start(Anvil::start().await).await;
    let (r, p) = (&m.requestor, &m.provider);
    let requestor_before = m.balance(r).await;
    let provider_before = m.balance(p).await;
    let allocation = allocate(r, "10").await;
    let zero = format!("{:#x}", Address::ZERO);
    let offer = json!({
        "golem.runtime.name": "wasmtime",
        "golem.com.pricing.model": "linear",
        "golem.com.usage.vector": ["golem.usage.duration_sec"],
        "golem.com.pricing.model.linear.coeffs": [0.25, 0],
        format!("golem.com.payment.platform.{PLATFORM}.address"): zero,
    });
    let added = json!({"golem.com.payment.chosen-platform": PLATFORM});
    let bad = agora_tests::flow::agree_with(r, p, offer, json!({}), added).await;
    let invoice = issue(p, "invoices", json!({"agreementId": bad, "amount": "1"})).await;
    wait_status(r, "invoices", &invoice, "RECEIVED", 30).await;
    let (status, body) = accept(r, "invoices", &invoice, "1", &allocation).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("zero address"), "{body}");

    // An order to it waits already, from before the check: the batch that holds it cannot be
    // estimated, so the driver finds it, fails it, and pays the good one in the next batch.
    let pool = sqlx::PgPool::connect(&m.pg.url()).await.unwrap();
    let me = format!("{:#x}", node_address(r));
    sqlx::query(
        "INSERT INTO payment_orders (platform, payer_addr, payee_addr, payee_id, payee_peer, amount, agreement_id,
             document_kind, document_id, allocation_id)
         VALUES ($1, $2, $3, $3, 'nobody', 1, $4, 'invoice', $5, $6)",
    )
    .bind(PLATFORM)
    .bind(&me)
    .bind(&zero)
    .bind(&bad)
    .bind(&invoice)
    .bind(&allocation)
    .execute(&pool)
    .await
    .unwrap();
    let good = m.agreement().await;
    let paid = issue(p, "invoices", json!({"agreementId": good, "amount": "2"})).await;
    wait_status(r, "invoices", &paid, "RECEIVED", 30).await;
    let (status, body) = accept(r, "invoices", &paid, "2", &allocation).await;
    assert_eq!(status, 200, "{body}");
    wait_status(p, "invoices", &paid, "SETTLED", 60).await;
    let failure: Option<String> =
        sqlx::query_scalar("SELECT failure FROM payment_orders WHERE payee_addr = $1")
            .bind(&zero)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        failure.is_some_and(|f| !f.is_empty()),
        "the order to the zero address failed with the chain's reason"
    );
    let two = agora_payment::to_token_units("2".parse().unwrap(), 18).unwrap();
    assert_eq!(m.balance(p).await - provider_before, two);
    assert_eq!(requestor_before - m.balance(r).await, two);
}

/// A payer killed right after it broadcast a payment, before it wrote down that it had: after
/// its restart the transaction, stuck in the pool, is still found and replaced with a higher
/// fee, and the invoice is paid once.
#[tokio::test]
async fn a_payment_broadcast_just_before_a_crash_is_still_fee_bumped() {
    use super::payment::{Market, accept, allocate, invoice_paid, issue, tokens, wait_status};
    let mut m = Market::start(Anvil::start().await).await;
    let allocation = allocate(&m.requestor, "100").await;
    let first = m.agreement().await;
    invoice_paid(&m, &first, "1", &allocation).await;
    let settings = "chain_id = 31337\nstuck_after_secs = 2";
    m.restart_requestor_configured_with(settings, &[("AGORA_TEST_KILL_AT", "broadcast")]).await;

    m.rpc().dev_call("evm_setAutomine", json!([false])).await.unwrap();
    let agreement = m.agreement().await;
    let invoice = issue(&m.provider, "invoices", json!({"agreementId": agreement, "amount": "2"})).await;
    let (status, body) = accept(&m.requestor, "invoices", &invoice, "2", &allocation).await;
    assert_eq!(status, 200, "{body}");
    assert!(m.requestor.exited_within(30).await.is_some(), "the payer killed itself after the broadcast");
    m.restart_requestor_configured_with(settings, &[]).await;
    wait_for(30, "the stuck transaction to be replaced", || async {
        m.requestor.log().contains("a stuck transaction is replaced with a higher fee").then_some(())
    })
    .await;
    m.rpc().dev_call("evm_mine", json!([])).await.unwrap();
    m.rpc().dev_call("evm_setAutomine", json!([true])).await.unwrap();
    wait_status(&m.provider, "invoices", &invoice, "SETTLED", 60).await;
    assert_eq!(m.transfers_to_provider().await, vec![tokens("1"), tokens("2")], "paid once");
}

/// A cancel that comes while the winners reveal (after the decision) is refused, as it is once
/// the verdict is recorded: the winners are paid, and the job completes.
#[tokio::test]
async fn a_cancel_during_the_reveal_is_refused_and_the_winners_are_paid() {
    use Mode::*;
    let net = Devnet::start(&[Honest, Honest, NoReveal]).await;
    let (h, silent) = (&net.honest, &net.bad[0]);
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let id = net.submit(&[&h[0], &h[1], silent], json!({"timeout": 5})).await;
    wait_for(120, "the decision", || async {
        let (_, job) = get(&net.requestor, &format!("/jobs/{id}")).await;
        said(&job, "asking them to reveal").then_some(())
    })
    .await;
    let (status, body) =
        agora_tests::flow::call(&net.requestor, reqwest::Method::DELETE, &format!("/jobs/{id}"), None).await;
    assert_eq!(status, 409, "{body}");
    let job = net.ended(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(executions(&job, "paid").len(), 2, "{job:#}");
    assert_conserved(&net, requestor_before, &before, &[&job]).await;
}

/// The hostile-peer harness: a node of its own floods a requestor and a provider with ten
/// thousand messages signed with their peers' keys (as a dishonest node would sign them): debit
/// notes past any reasonable count, invoices for agreements never made, extreme numbers, payment
/// notices for transactions that do not exist, acceptances of documents that do not exist, and
/// commit and market requests for nothing. Afterwards neither node panicked, their memory and rows
/// stayed within the stated bounds, and an honest invoice is paid exactly.
#[tokio::test]
async fn ten_thousand_hostile_messages_leave_both_nodes_bounded_and_pay_honest_work_exactly() {
    use super::payment::{Market, PLATFORM, accept, allocate, issue, wait_status};
    use agora_payment::model::{Document, Kind, Payment, Rejection, RejectionReason, Share};
    use agora_payment::{PaymentRequest, wire::Message};
    let m = Market::start(Anvil::start().await).await;
    let (r, p) = (&m.requestor, &m.provider);
    let requestor_before = m.balance(r).await;
    let provider_before = m.balance(p).await;
    let agreement = m.agreement().await;
    // The flood's notes name a real activity of the agreement, so they meet the bound on
    // documents, not the check of their activity.
    let activity = super::payment::activity(r, &agreement).await;
    let key = |node: &NodeProcess| {
        agora_identity::Keystore::open(node.data_dir().join("keystore"))
            .unwrap()
            .load(node_address(node), "")
            .unwrap()
    };
    let (payer, payee) = (key(r), key(p));
    let (r_addr, p_addr) = (format!("{:#x}", node_address(r)), format!("{:#x}", node_address(p)));
    let (_, r_p2p) = net_id(r);
    let peer = |addr: &str| addr.rsplit('/').next().unwrap().to_string();
    let (r_peer, p_peer) = (peer(&r_p2p), peer(&m.provider_p2p));

    // The hostile node: a transport identity of its own; what it says is signed with the keys.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = agora_net::NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers: vec![r_p2p.parse().unwrap(), m.provider_p2p.parse().unwrap()],
        ..Default::default()
    };
    let keypair = agora_identity::Identity::random().libp2p_keypair();
    let (net, _task) = agora_net::start(keypair, config, shutdown.clone()).await.unwrap();
    let signed = |signer: &agora_identity::Identity, message: Message| {
        let signature = agora_identity::sign_json(signer, &message).unwrap();
        serde_json::to_value(PaymentRequest { message, signature }).unwrap()
    };
    let note = |id: String, agreement: &str, activity: String, usage: Option<Value>| Document {
        id,
        kind: Kind::DebitNote,
        agreement_id: agreement.to_string(),
        activity_id: Some(activity),
        activity_ids: None,
        issuer_id: p_addr.clone(),
        recipient_id: r_addr.clone(),
        payee_addr: p_addr.clone(),
        payer_addr: r_addr.clone(),
        payment_platform: PLATFORM.into(),
        previous_id: None,
        amount: "0.001".parse().unwrap(),
        usage_counter_vector: usage,
        payment_due_date: None,
        timestamp: chrono::Utc::now(),
    };
    use agora_net::Channel::{Market as M, Payment as Pay, Verify};
    let mut messages: Vec<(agora_net::Channel, String, Value)> = Vec::new();
    for i in 0..3000 {
        let d = note(format!("flood-note-{i}"), &agreement, activity.clone(), None);
        messages.push((Pay, r_peer.clone(), signed(&payee, Message::Document { document: d })));
    }
    for i in 0..2000 {
        let mut d = note(format!("flood-stranger-{i}"), &format!("never-made-{i}"), "a".into(), None);
        d.kind = Kind::Invoice;
        messages.push((Pay, r_peer.clone(), signed(&payee, Message::Document { document: d })));
    }
    for i in 0..2000 {
        let usage = json!([1e308, -1, 0.5]);
        let mut d = note(format!("flood-extreme-{i}"), &agreement, format!("x{i}"), Some(usage));
        d.amount = rust_decimal::Decimal::MAX;
        messages.push((Pay, r_peer.clone(), signed(&payee, Message::Document { document: d })));
    }
    for i in 0..150u8 {
        let payment = Payment {
            payment_id: format!("flood-paid-{i}"),
            payer_id: r_addr.clone(),
            payee_id: p_addr.clone(),
            payer_addr: r_addr.clone(),
            payee_addr: p_addr.clone(),
            payment_platform: PLATFORM.into(),
            amount: "1".parse().unwrap(),
            timestamp: chrono::Utc::now(),
            agreement_payments: vec![Share {
                agreement_id: Some(agreement.clone()),
                activity_id: None,
                amount: "1".parse().unwrap(),
                allocation_id: None,
                document_id: format!("flood-note-{i}"),
                document_kind: Kind::DebitNote,
            }],
            activity_payments: vec![],
            details: format!("{:#x}", alloy_primitives::B256::repeat_byte(i)),
        };
        messages.push((Pay, p_peer.clone(), signed(&payer, Message::Paid { payment })));
    }
    for i in 0..1850 {
        let message = if i % 2 == 0 {
            Message::Accepted {
                kind: Kind::Invoice,
                document_id: format!("nothing-{i}"),
                total_amount_accepted: "79228162514264337593543950335".into(),
            }
        } else {
            let rejection = Rejection {
                rejection_reason: RejectionReason::IncorrectAmount,
                total_amount_accepted: "-1".into(),
                message: Some("\u{0}".repeat(100)),
            };
            Message::Rejected { kind: Kind::DebitNote, document_id: format!("nothing-{i}"), rejection }
        };
        messages.push((Pay, p_peer.clone(), signed(&payer, message)));
    }
    for i in 0..500 {
        // `/agora/verify/1`'s commit request, as agents' `VerifyRequest::Commit` writes it.
        let commit =
            json!({"type": "commit", "activity_id": format!("nothing-{i}"), "job_id": "x".repeat(200)});
        messages.push((Verify, p_peer.clone(), commit));
    }
    for i in 0..480 {
        let get = agora_market::MarketRequest::GetOffer { offer_id: format!("{i:064x}") };
        messages.push((M, p_peer.clone(), serde_json::to_value(get).unwrap()));
    }
    for i in 0..20 {
        let ids: Vec<String> = (0..256).map(|n| format!("{:064x}", i * 1000 + n)).collect();
        let announce = agora_market::MarketRequest::Announce {
            announcement: agora_market::Announcement::Offered { offer_ids: ids },
        };
        messages.push((M, r_peer.clone(), serde_json::to_value(announce).unwrap()));
    }
    assert_eq!(messages.len(), 10_000);

    wait_for(30, "the hostile node to reach both nodes", || {
        let net = net.clone();
        let (r_peer, p_peer) = (r_peer.clone(), p_peer.clone());
        async move {
            let probe =
                serde_json::to_value(agora_market::MarketRequest::GetOffer { offer_id: "0".into() }).unwrap();
            let a: Result<Value, _> = net.request_typed(M, &r_peer, &probe).await;
            let b: Result<Value, _> = net.request_typed(M, &p_peer, &probe).await;
            (a.is_ok() && b.is_ok()).then_some(())
        }
    })
    .await;
    let memory_before = (agora_tests::data::rss(r.pid()).unwrap(), agora_tests::data::rss(p.pid()).unwrap());
    let started = std::time::Instant::now();
    // Paced under the nodes' limit of 200 requests a second from one peer, so the messages reach
    // the handlers rather than being refused at the door: 15 at once, every 100 ms.
    let (mut handled, mut refused) = (0usize, 0usize);
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(100));
    for chunk in messages.chunks(15) {
        pace.tick().await;
        let answers = futures_util::future::join_all(
            chunk.iter().map(|(channel, to, body)| net.request_typed::<_, Value>(*channel, to, body)),
        )
        .await;
        for answer in answers {
            match answer {
                Ok(_) => handled += 1,
                Err(e) if e.to_string().contains("refused the request") => refused += 1,
                Err(e) => panic!("a hostile message went unanswered: {e}"),
            }
        }
    }
    let memory_after = (agora_tests::data::rss(r.pid()).unwrap(), agora_tests::data::rss(p.pid()).unwrap());
    println!(
        "10000 hostile messages in {:?}: {handled} handled, {refused} refused at the door; resident memory: \
         requestor {} → {} MiB, provider {} → {} MiB",
        started.elapsed(),
        memory_before.0 >> 20,
        memory_after.0 >> 20,
        memory_before.1 >> 20,
        memory_after.1 >> 20
    );
    shutdown.cancel();
    // The provider here runs no agent, so its 500 commit requests are refused as unserved.
    assert!(handled >= 9_000, "{handled} of 10000 reached the handlers");
    for (before, after) in [(memory_before.0, memory_after.0), (memory_before.1, memory_after.1)] {
        assert!(after < before + (200 << 20), "resident memory grew from {before} to {after} bytes");
    }

    // Rows: the requestor holds at most 2000 documents of the flooded agreement, and none of
    // agreements it never made; the provider at most 100 payment notices waiting to be checked.
    let r_db = sqlx::PgPool::connect(&m.pg.url()).await.unwrap();
    let url = m.pg.url();
    let p_db = sqlx::PgPool::connect(&format!("{}/provider", &url[..url.rfind('/').unwrap()])).await.unwrap();
    let documents: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payment_documents").fetch_one(&r_db).await.unwrap();
    assert!(documents <= 2000, "{documents} documents on the requestor");
    let notices: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE side = 'payee'")
        .fetch_one(&p_db)
        .await
        .unwrap();
    assert!(notices <= 100, "{notices} payment notices on the provider");
    for node in [r, p] {
        assert!(!node.log().contains("panicked"), "{}", node.log());
    }

    // Honest work on the same nodes is paid exactly: on chain, and settled on the payer's side.
    let allocation = allocate(r, "10").await;
    let fresh = m.agreement().await;
    let invoice = issue(p, "invoices", json!({"agreementId": fresh, "amount": "2"})).await;
    wait_status(r, "invoices", &invoice, "RECEIVED", 30).await;
    let (status, body) = accept(r, "invoices", &invoice, "2", &allocation).await;
    assert_eq!(status, 200, "{body}");
    wait_status(r, "invoices", &invoice, "SETTLED", 60).await;
    let two = agora_payment::to_token_units("2".parse().unwrap(), 18).unwrap();
    assert_eq!(m.balance(p).await - provider_before, two);
    assert_eq!(requestor_before - m.balance(r).await, two);
}

/// A verified provider whose invoice comes after the runner's wait of 60 s: the job ends saying
/// so, its allocation holds, and the invoice is accepted and paid when it comes.
#[tokio::test]
async fn a_verified_providers_late_invoice_is_still_paid_while_the_allocation_holds() {
    use Mode::*;
    let net = Devnet::start(&[Honest, Honest, LateInvoice]).await;
    let (h, late) = (&net.honest, &net.bad[0]);
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let id = net.submit(&[&h[0], &h[1], late], json!({"confidence": 0})).await;
    let job = net.ended(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert!(job["message"].as_str().unwrap().contains("sent no invoice within 60 s"), "{job:#}");
    let late_address = format!("{:#x}", node_address(late));
    let job = wait_for(120, "the late invoice to be paid", || async {
        let (_, job) = get(&net.requestor, &format!("/jobs/{id}")).await;
        let paid = job["executions"]
            .as_array()?
            .iter()
            .any(|e| e["provider"] == late_address && e["state"] == "paid");
        paid.then_some(job)
    })
    .await;
    assert_eq!(executions(&job, "paid").len(), 3, "{job:#}");
    let allocation = job["allocationId"].as_str().map(str::to_string);
    if let Some(allocation) = allocation {
        wait_for(30, "the allocation to be released", || async {
            let (status, _) = get(&net.requestor, &format!("/payment-api/v1/allocations/{allocation}")).await;
            (status == 404 || status == 410).then_some(())
        })
        .await;
    }
    assert_conserved(&net, requestor_before, &before, &[&job]).await;
}

/// A winner that commits to its run's true result and then uploads changed outputs: what came
/// back of its outputs does not hash to the verified digest, even fetched again, so it is not
/// paid, with the reason; the winners whose outputs match are, and the job's results are theirs.
#[tokio::test]
async fn a_winner_whose_outputs_come_back_changed_is_not_paid() {
    use Mode::*;
    let net = Devnet::start(&[Honest, Honest, AlterUploads]).await;
    let (h, cheat) = (&net.honest, &net.bad[0]);
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let input = put_blob(&net.requestor, b"to be copied\n".to_vec()).await;
    let cat = put_blob(&net.requestor, module("cat")).await;
    let spec = json!({"module": cat, "entry_point": "cat", "confidence": 0,
                      "inputs": [{"src": input, "dst": "in.txt"}],
                      "outputs": [{"name": "copy", "path": "out.txt"}]});
    let id = net.submit(&[&h[0], &h[1], cheat], spec).await;
    let job = net.ended(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let mut paid = executions(&job, "paid");
    paid.sort();
    let mut honest: Vec<Address> = h.iter().map(node_address).collect();
    honest.sort();
    assert_eq!(paid, honest, "{job:#}");
    let row = job["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["provider"] == format!("{:#x}", node_address(cheat)))
        .unwrap();
    assert!(row["reason"].as_str().unwrap().contains("outputs"), "{row}");
    assert_eq!(job["results"]["checked"], true, "{job:#}");
    assert_conserved(&net, requestor_before, &before, &[&job]).await;
}

/// A provider whose debit notes report a hundred times its usage: the runner rejects those notes,
/// naming the counter and its bound from the time it saw the run take, rather than accepting them
/// as the provider working; the job still completes on the honest providers.
#[tokio::test]
async fn debit_notes_that_report_more_usage_than_the_run_allows_are_rejected() {
    use Mode::*;
    let net = Devnet::start(&[Honest, Honest, InflateUsage]).await;
    let (h, inflating) = (&net.honest, &net.bad[0]);
    let requestor_before = net.balance(&net.requestor).await;
    let before = net.balances().await;
    let count = put_blob(&net.requestor, module("count")).await;
    let spec = json!({"module": count, "entry_point": "count", "confidence": 0});
    let id = net.submit(&[&h[0], &h[1], inflating], spec).await;
    let job = net.ended(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let (_, notes) = get(inflating, "/payment-api/v1/debitNotes").await;
    let notes = notes.as_array().unwrap();
    assert!(!notes.is_empty(), "the provider sent debit notes");
    assert!(notes.iter().all(|n| n["status"] != "ACCEPTED" && n["status"] != "SETTLED"), "{notes:#?}");
    let (_, events) = get(inflating, "/payment-api/v1/debitNoteEvents?timeout=0").await;
    let rejected = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["eventType"] == "DebitNoteRejectedEvent")
        .unwrap_or_else(|| panic!("no debit note was rejected: {events:#}"));
    let reason = rejected["rejection"]["message"].as_str().unwrap();
    assert!(reason.contains("golem.usage.duration_sec") && reason.contains("at most"), "{reason}");
    assert_conserved(&net, requestor_before, &before, &[&job]).await;
}

/// The agreements a job's executions ran under.
fn agreements_of(job: &Value) -> BTreeSet<String> {
    job["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["agreementId"].as_str())
        .map(String::from)
        .collect()
}

/// The values of `key` in a listing.
fn listed(listing: &Value, key: &str) -> BTreeSet<String> {
    listing.as_array().unwrap().iter().filter_map(|d| d[key].as_str()).map(String::from).collect()
}

/// Two services on one node, each with a job: each sees only the allocations, debit notes,
/// invoices, payments and events of its own money, and reading, accepting, rejecting, amending or
/// releasing the other's answers 404. An end user's key reaches none of the payment API; the
/// node's admin sees everything.
#[tokio::test]
async fn each_service_sees_and_acts_on_only_its_own_money() {
    use reqwest::Method;
    let net = Devnet::start(&[Mode::Honest]).await;
    let r = &net.requestor;
    let requestor_before = net.balance(r).await;
    let before = net.balances().await;
    let shop = service_key(r, "shop").await;
    let mall = service_key(r, "mall").await;
    let (_, alice) = create_user(r, &shop, json!({"name": "alice"})).await;
    let mut jobs = Vec::new();
    for key in [&shop, &mall] {
        let (status, created) = submit_as(r, key, quick(&net, "1")).await;
        assert_eq!(status, 201, "{created}");
        jobs.push(net.ended(created["jobId"].as_str().unwrap()).await);
    }
    for job in &jobs {
        assert_eq!(job["state"], "completed", "{job:#}");
    }
    let (shops, malls) = (agreements_of(&jobs[0]), agreements_of(&jobs[1]));
    assert!(shops.is_disjoint(&malls) && !shops.is_empty() && !malls.is_empty());

    // The admin sees both services' invoices and, once the chain has them, both payments.
    let (_, all) = get(r, "/payment-api/v1/invoices").await;
    assert!(listed(&all, "agreementId").is_superset(&shops.union(&malls).cloned().collect()), "{all:#}");
    wait_for(60, "both services' payments", || async {
        let (_, payments) = get(r, "/payment-api/v1/payments").await;
        let paid: BTreeSet<String> = payments
            .as_array()?
            .iter()
            .flat_map(|p| p["agreementPayments"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s["agreementId"].as_str().map(String::from))
            .collect();
        paid.is_superset(&shops.union(&malls).cloned().collect()).then_some(())
    })
    .await;

    // Each service sees its own documents, payments and events, and none of the other's.
    let mut invoices = Vec::new();
    for (key, own) in [(&shop, &shops), (&mall, &malls)] {
        let (status, listing) = get_as(r, key, "/payment-api/v1/invoices").await;
        assert_eq!(status, 200, "{listing}");
        assert_eq!(&listed(&listing, "agreementId"), own, "{listing:#}");
        let ids = listed(&listing, "invoiceId");
        let (_, events) = get_as(r, key, "/payment-api/v1/invoiceEvents?timeout=0").await;
        assert!(
            !events.as_array().unwrap().is_empty() && listed(&events, "invoiceId").is_subset(&ids),
            "{events:#}"
        );
        let (_, notes) = get_as(r, key, "/payment-api/v1/debitNotes").await;
        assert!(listed(&notes, "agreementId").is_subset(own), "{notes:#}");
        let (_, payments) = get_as(r, key, "/payment-api/v1/payments").await;
        let shares: Vec<Value> = payments
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["agreementPayments"].as_array().cloned().unwrap_or_default())
            .collect();
        assert!(!shares.is_empty(), "{payments:#}");
        assert!(shares.iter().all(|s| own.contains(s["agreementId"].as_str().unwrap())), "{payments:#}");
        for p in payments.as_array().unwrap() {
            let (status, one) =
                get_as(r, key, &format!("/payment-api/v1/payments/{}", p["paymentId"].as_str().unwrap()))
                    .await;
            assert_eq!(status, 200, "{one}");
        }
        invoices.push(ids.into_iter().next().unwrap());
    }
    let (_, mall_payments) = get_as(r, &mall, "/payment-api/v1/payments").await;
    let (_, shop_payments) = get_as(r, &shop, "/payment-api/v1/payments").await;
    let shop_payment_ids = listed(&shop_payments, "paymentId");
    for id in listed(&mall_payments, "paymentId").difference(&shop_payment_ids) {
        let (status, body) = get_as(r, &shop, &format!("/payment-api/v1/payments/{id}")).await;
        assert_eq!(status, 404, "{body}");
    }

    // Acting on the other's invoice: 404, whatever the act.
    let malls_invoice = &invoices[1];
    let acts = [
        (Method::GET, format!("/payment-api/v1/invoices/{malls_invoice}"), None),
        (
            Method::POST,
            format!("/payment-api/v1/invoices/{malls_invoice}/accept"),
            Some(json!({"totalAmountAccepted": "0.001", "allocationId": "none"})),
        ),
        (
            Method::POST,
            format!("/payment-api/v1/invoices/{malls_invoice}/reject"),
            Some(json!({"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"})),
        ),
    ];
    for (method, path, body) in acts {
        let (status, _, answer) = call(r, &shop, method, &path, body, &[]).await;
        assert_eq!(status, 404, "{path}: {answer}");
    }

    // An allocation of the mall's: the shop neither sees, amends nor releases it.
    let (status, _, made) =
        call(r, &mall, Method::POST, "/payment-api/v1/allocations", Some(json!({"totalAmount": "0.5"})), &[])
            .await;
    assert_eq!(status, 201, "{made}");
    let allocation = made["allocationId"].as_str().unwrap();
    let path = format!("/payment-api/v1/allocations/{allocation}");
    let (_, listing) = get_as(r, &shop, "/payment-api/v1/allocations").await;
    assert!(!listed(&listing, "allocationId").contains(allocation), "{listing:#}");
    for (method, body) in
        [(Method::GET, None), (Method::PUT, Some(json!({"totalAmount": "0.6"}))), (Method::DELETE, None)]
    {
        let (status, _, answer) = call(r, &shop, method.clone(), &path, body, &[]).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (status, _, answer) = call(
        r,
        &shop,
        Method::GET,
        &format!("/payment-api/v1/demandDecorations?allocationIds={allocation}"),
        None,
        &[],
    )
    .await;
    assert!(status == 400 || status == 404, "{answer}");
    let (status, kept) = get_as(r, &mall, &path).await;
    assert_eq!((status, kept["totalAmount"].as_str()), (200, Some("0.5")), "{kept}");
    let (status, _) = get(r, &path).await;
    assert_eq!(status, 200, "the admin sees every allocation");
    let (status, _, _) = call(r, &mall, Method::DELETE, &path, None, &[]).await;
    assert_eq!(status, 200);

    // An end user's key reaches none of it.
    for path in ["/payment-api/v1/invoices", "/payment-api/v1/allocations", "/payment-api/v1/payments"] {
        let (status, _) = get_as(r, &alice, path).await;
        assert_eq!(status, 403, "{path}");
    }
    assert_conserved(&net, requestor_before, &before, &[&jobs[0], &jobs[1]]).await;
}

/// A debit note is of one activity of its agreement: the provider's node will not issue one that
/// names another agreement's activity or none, and the requestor refuses such a note from a
/// provider that signs it anyway. No money moves for them.
#[tokio::test]
async fn a_debit_note_must_name_an_activity_of_its_agreement() {
    use super::payment::{Market, PLATFORM, activity, issue, wait_status};
    use agora_payment::model::{Document, Kind};
    use agora_payment::{PaymentRequest, PaymentResponse, wire::Message};
    let m = Market::start(Anvil::start().await).await;
    let (r, p) = (&m.requestor, &m.provider);
    let (requestor_before, provider_before) = (m.balance(r).await, m.balance(p).await);
    let (first, second) = (m.agreement().await, m.agreement().await);
    let (mine, other) = (activity(r, &first).await, activity(r, &second).await);

    // The provider's own node: another agreement's activity, or one that does not exist, is 400.
    for named in [other.as_str(), "no-such-activity"] {
        let note = json!({"agreementId": first, "activityId": named, "totalAmountDue": "0.01"});
        let (status, body) = post(p, "/payment-api/v1/debitNotes", note).await;
        assert_eq!(status, 400, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(named) && message.contains(&first), "{message}");
    }
    let note = json!({"agreementId": first, "activityId": mine, "totalAmountDue": "0.01"});
    let honest = issue(p, "debitNotes", note).await;
    wait_status(r, "debitNotes", &honest, "RECEIVED", 30).await;

    // A provider that signs such a note anyway, sent straight to the requestor.
    let payee = agora_identity::Keystore::open(p.data_dir().join("keystore"))
        .unwrap()
        .load(node_address(p), "")
        .unwrap();
    let (r_addr, p_addr) = (format!("{:#x}", node_address(r)), format!("{:#x}", node_address(p)));
    let (_, r_p2p) = net_id(r);
    let r_peer = r_p2p.rsplit('/').next().unwrap().to_string();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = agora_net::NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers: vec![r_p2p.parse().unwrap()],
        ..Default::default()
    };
    let keypair = agora_identity::Identity::random().libp2p_keypair();
    let (net, _task) = agora_net::start(keypair, config, shutdown.clone()).await.unwrap();
    for (id, named) in [("crafted-other", other.as_str()), ("crafted-none", "no-such-activity")] {
        let document = Document {
            id: id.into(),
            kind: Kind::DebitNote,
            agreement_id: first.clone(),
            activity_id: Some(named.into()),
            activity_ids: None,
            issuer_id: p_addr.clone(),
            recipient_id: r_addr.clone(),
            payee_addr: p_addr.clone(),
            payer_addr: r_addr.clone(),
            payment_platform: PLATFORM.into(),
            previous_id: None,
            amount: "0.01".parse().unwrap(),
            usage_counter_vector: None,
            payment_due_date: None,
            timestamp: chrono::Utc::now(),
        };
        let message = Message::Document { document };
        let signature = agora_identity::sign_json(&payee, &message).unwrap();
        let request = PaymentRequest { message, signature };
        let answer = wait_for(30, "the requestor to answer the crafted note", || {
            let (net, r_peer, request) = (net.clone(), r_peer.clone(), request.clone());
            async move {
                net.request_typed::<_, PaymentResponse>(agora_net::Channel::Payment, &r_peer, &request)
                    .await
                    .ok()
            }
        })
        .await;
        match answer {
            PaymentResponse::Error { message, retry: false } => {
                assert!(message.contains(named) && message.contains(&first), "{message}")
            }
            other => panic!("a debit note of activity {named} on agreement {first} was taken: {other:?}"),
        }
        let (status, body) = get(r, &format!("/payment-api/v1/debitNotes/{id}")).await;
        assert_eq!(status, 404, "{body}");
    }
    shutdown.cancel();
    assert_eq!((m.balance(r).await, m.balance(p).await), (requestor_before, provider_before));
}
