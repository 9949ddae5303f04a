//! Money that hostile peers cannot bend, on real nodes, Postgres and anvil: a provider that
//! overcharges is paid only what the requestor can justify, extreme numbers in offers and demands
//! panic no task, and every scenario ends with the tokens conserved on chain.

use super::agent::{agree_by_hand, terminated};
use super::jobs::{Devnet, Mode, executions, said};
use agora_tests::flow::{get, net_id, node_address, post, put_blob};
use agora_tests::{Anvil, NodeProcess, TestPg, module, wait_for};
use alloy_primitives::{Address, U256};
use rust_decimal::Decimal;
use serde_json::{Value, json};

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
    // No invoice is accepted here, so no money may move.
    // Funding deploys the dev token, so that balances can be read.
    let out = r.cli(&["payment", "fund", "--json"], None);
    assert!(out.status.success(), "fund: {}", String::from_utf8_lossy(&out.stderr));
    let dev = agora_payment::Network::dev(rpc.clone());
    let balance = |node: &NodeProcess| {
        let (rpc, token, address) =
            (agora_payment::chain::Rpc::new(rpc.clone()), dev.token, node_address(node));
        async move { agora_payment::chain::dev::token_balance(&rpc, token, address).await.unwrap() }
    };
    let (r_before, p_before) = (balance(&r).await, balance(&p).await);
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
    assert_eq!((balance(&r).await, balance(&p).await), (r_before, p_before), "no money moved");
}

/// A provider withdraws its invoice just before the requestor rejects it: the rejection counts
/// as done, since the outcome is the one the requestor wanted.
#[tokio::test]
async fn rejecting_a_withdrawn_invoice_counts_as_done() {
    use super::payment::{Market, issue, wait_status};
    let m = Market::start(Anvil::start().await).await;
    let before = (m.balance(&m.requestor).await, m.balance(&m.provider).await);
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
    let after = (m.balance(&m.requestor).await, m.balance(&m.provider).await);
    assert_eq!(after, before, "nothing was accepted, so no money moved");
}

/// A modified payer claims that the transfer which paid one invoice paid another too, giving the
/// transaction's hash in capitals: the provider counts one transfer once, and the second invoice
/// stays unpaid.
#[tokio::test]
async fn one_transfer_settles_one_payment_whatever_the_case_of_its_hash() {
    use super::payment::{Market, PLATFORM, allocate, invoice_paid, issue, wait_status};
    use super::payment_input::speak_to;
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
    let (requestor_before, gone_before) = (m.balance(&m.requestor).await, m.balance(&m.provider).await);
    // Read by address: the node is stopped below.
    let gone = node_address(&m.provider);
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
    // The one accepted invoice moved its amount, from the requestor to the provider that was
    // there; the rejected notes of the one that went away moved nothing.
    let two = agora_payment::to_token_units("2".parse().unwrap(), 18).unwrap();
    assert_eq!(m.balance(&other).await - before, two);
    assert_eq!(requestor_before - m.balance(&m.requestor).await, two);
    let gone_after = agora_payment::chain::dev::token_balance(&m.rpc(), m.dev.token, gone).await.unwrap();
    assert_eq!(gone_after, gone_before);
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
    let (requestor_before, provider_before) = (m.balance(&m.requestor).await, m.balance(&m.provider).await);
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
    assert_eq!(m.balance(&m.provider).await - provider_before, tokens("3"));
    assert_eq!(requestor_before - m.balance(&m.requestor).await, tokens("3"));
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
