//! Hostile peers against real nodes, Postgres and anvil: ten thousand crafted messages leave
//! both nodes bounded and honest work paid exactly; a debit note must name an activity of its
//! agreement.

use super::agent::agree_by_hand;
use super::payment::PLATFORM;
use agora_payment::model::{Document, Kind};
use agora_tests::flow::{get, net_id, node_address, post, put_blob};
use agora_tests::{Anvil, NodeProcess, TestPg, module, wait_for};
use serde_json::{Value, json};

/// The hostile-peer harness: a node of its own floods a requestor and a provider agent with ten
/// thousand messages signed with their peers' keys (as a dishonest node would sign them): debit
/// notes past any reasonable count and replays of them, invoices for agreements never made,
/// extreme numbers, payment notices for transactions that do not exist, acceptances of documents
/// that do not exist, commits for runs that never were, and market requests for nothing or for
/// another's agreement. Afterwards neither node panicked, their memory, rows and chain calls
/// stayed within the stated bounds, the real agreement stands, and an honest job on the same
/// nodes is paid exactly.
#[tokio::test]
async fn ten_thousand_hostile_messages_leave_both_nodes_bounded_and_pay_honest_work_exactly() {
    use super::jobs::{Devnet, Mode, executions};
    use super::money::assert_conserved;
    use agora_payment::model::{Payment, Rejection, RejectionReason, Share};
    use agora_payment::{PaymentRequest, wire::Message};
    use std::sync::atomic::Ordering;
    // Agreements left idle stay up for the flood's minute.
    let idle = Mode::Settings("idle_agreement_secs = 600");
    let (dev, chain_calls) = Devnet::start_counting_provider_calls(&[idle, idle]).await;
    let r = &dev.requestor;
    let requestor_before = dev.balance(r).await;
    let before = dev.balances().await;
    let properties = json!({
        "golem.srv.comp.expiration": 1_900_000_000_000_u64, "golem.srv.comp.task_package": dev.package,
        "golem.com.payment.chosen-platform": PLATFORM,
        "golem.com.payment.platform.erc20-dev-tglm.address": format!("{:#x}", node_address(r)),
    });
    let (agreement, state) = agree_by_hand(r, properties).await;
    assert_eq!(state, "Approved");
    let (_, terms) = get(r, &format!("/market-api/v1/agreements/{agreement}")).await;
    let provider = terms["offer"]["providerId"].as_str().unwrap().to_string();
    let index = dev.honest.iter().position(|n| format!("{:#x}", node_address(n)) == provider).unwrap();
    let p = &dev.honest[index];
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
    let (_, p_p2p) = net_id(p);
    let peer = |addr: &str| addr.rsplit('/').next().unwrap().to_string();
    let (r_peer, p_peer) = (peer(&r_p2p), peer(&p_p2p));

    // The hostile node: a transport identity of its own; what it says is signed with the keys.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = agora_net::NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers: vec![r_p2p.parse().unwrap(), p_p2p.parse().unwrap()],
        ..Default::default()
    };
    let keypair = agora_identity::Identity::random().libp2p_keypair();
    let (net, _task) = agora_net::start(keypair, config, shutdown.clone()).await.unwrap();
    let signed = |signer: &agora_identity::Identity, message: Message| {
        let signature = agora_identity::sign_json(signer, &message).unwrap();
        serde_json::to_value(PaymentRequest { message, signature }).unwrap()
    };
    let note = |id: String, agreement: &str, activity: String, usage: Option<Value>| {
        let mut d = debit_note(id, agreement, activity, (&p_addr, &r_addr), "0.001");
        d.usage_counter_vector = usage;
        d
    };
    use agora_net::Channel::{Market as M, Payment as Pay, Verify};
    let mut messages: Vec<(agora_net::Channel, String, Value)> = Vec::new();
    for i in 0..2500 {
        let d = note(format!("flood-note-{i}"), &agreement, activity.clone(), None);
        messages.push((Pay, r_peer.clone(), signed(&payee, Message::Document { document: d })));
    }
    // Replays: the same signed notes again, word for word.
    for i in 0..500 {
        let replay = messages[i % 50].clone();
        messages.push(replay);
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
    for i in 0..280 {
        let get = agora_market::MarketRequest::GetOffer { offer_id: format!("{i:064x}") };
        messages.push((M, p_peer.clone(), serde_json::to_value(get).unwrap()));
    }
    // Another's agreement: approved again with a made-up signature, and ended by a stranger.
    for i in 0..200 {
        let (to, request) = if i % 2 == 0 {
            let signature = format!("0x{}", "ab".repeat(65));
            (
                r_peer.clone(),
                agora_market::MarketRequest::ApproveAgreement { agreement_id: agreement.clone(), signature },
            )
        } else {
            let reason = Some(json!({"message": "x".repeat(1000)}));
            (
                p_peer.clone(),
                agora_market::MarketRequest::TerminateAgreement { agreement_id: agreement.clone(), reason },
            )
        };
        messages.push((M, to, serde_json::to_value(request).unwrap()));
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
    // The providers' chain calls at rest, for ten seconds, against those during the flood.
    let idle_calls = chain_calls.load(Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let per_second_at_rest = (chain_calls.load(Ordering::Relaxed) - idle_calls) as f64 / 10.0;
    let calls_before = chain_calls.load(Ordering::Relaxed);
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
        for ((channel, _, _), answer) in chunk.iter().zip(answers) {
            match answer {
                Ok(_) => handled += 1,
                Err(e) if e.to_string().contains("refused the request") => {
                    // The provider agent serves the commits: they reach its handler.
                    assert!(*channel != Verify, "a commit was refused at the door: {e}");
                    refused += 1;
                }
                Err(e) => panic!("a hostile message went unanswered: {e}"),
            }
        }
    }
    let memory_after = (agora_tests::data::rss(r.pid()).unwrap(), agora_tests::data::rss(p.pid()).unwrap());
    let took = started.elapsed();
    let calls = chain_calls.load(Ordering::Relaxed) - calls_before;
    // The bound: the calls at rest, and for each of the at most 100 notices waiting to be found,
    // a look (chain id, receipt, block: three calls at most) after 1, 2, 4 … 60 s.
    let mut looks = 0u64;
    let (mut waited, mut wait) = (0u64, 1u64);
    while waited <= took.as_secs() {
        looks += 1;
        waited += wait;
        wait = (wait * 2).min(60);
    }
    let bound = per_second_at_rest * took.as_secs_f64() * 1.5 + 20.0 + (100 * looks * 3) as f64;
    println!(
        "10000 hostile messages in {took:?}: {handled} handled, {refused} refused at the door; resident memory: \
         requestor {} → {} MiB, provider {} → {} MiB; the providers' chain calls: {calls} during the flood \
         ({per_second_at_rest:.1}/s at rest; bound {bound:.0})",
        memory_before.0 >> 20,
        memory_after.0 >> 20,
        memory_before.1 >> 20,
        memory_after.1 >> 20
    );
    shutdown.cancel();
    assert!(handled >= 9_000, "{handled} of 10000 reached the handlers");
    assert!((calls as f64) <= bound, "{calls} chain calls during the flood; the bound is {bound:.0}");
    for (before, after) in [(memory_before.0, memory_after.0), (memory_before.1, memory_after.1)] {
        assert!(after < before + (200 << 20), "resident memory grew from {before} to {after} bytes");
    }

    // Rows: the requestor holds at most 2000 documents of the flooded agreement, and none of
    // agreements it never made; the provider at most 100 payment notices waiting to be checked.
    let r_db = sqlx::PgPool::connect(&dev._pg.url()).await.unwrap();
    let url = dev._pg.url();
    let p_db = sqlx::PgPool::connect(&format!("{}/p{index}", &url[..url.rfind('/').unwrap()])).await.unwrap();
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

    // The real agreement stands on both sides: nobody but its parties can end it.
    for node in [r, p] {
        let (_, seen) = get(node, &format!("/market-api/v1/agreements/{agreement}")).await;
        assert_eq!(seen["state"], "Approved", "{seen:#}");
    }

    // Honest work on the same nodes is paid exactly, and money is conserved on chain: the
    // flood's documents moved nothing.
    let id = dev.submit(&[&dev.honest[0], &dev.honest[1]], json!({})).await;
    let job = dev.ended(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(executions(&job, "paid").len(), 2, "{job:#}");
    assert_conserved(&dev, requestor_before, &before, &[&job]).await;
}

/// A debit note is of one activity of its agreement: the provider's node will not issue one that
/// names another agreement's activity or none, and the requestor refuses such a note from a
/// provider that signs it anyway. No money moves for them.
#[tokio::test]
async fn a_debit_note_must_name_an_activity_of_its_agreement() {
    use super::payment::{Market, activity, issue, wait_status};
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
        let document = debit_note(id.into(), &first, named.into(), (&p_addr, &r_addr), "0.01");
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

/// A debit note of `activity` under `agreement`, from the provider to the requestor (`parties`,
/// their addresses), asking `amount`, with no usage.
fn debit_note(
    id: String,
    agreement: &str,
    activity: String,
    parties: (&str, &str),
    amount: &str,
) -> Document {
    let (provider, requestor) = parties;
    Document {
        id,
        kind: Kind::DebitNote,
        agreement_id: agreement.to_string(),
        activity_id: Some(activity),
        activity_ids: None,
        issuer_id: provider.to_string(),
        recipient_id: requestor.to_string(),
        payee_addr: provider.to_string(),
        payer_addr: requestor.to_string(),
        payment_platform: PLATFORM.into(),
        previous_id: None,
        amount: amount.parse().unwrap(),
        usage_counter_vector: None,
        payment_due_date: None,
        timestamp: chrono::Utc::now(),
    }
}

/// A requestor that asks for a debit note every second and answers none, on two agreements with
/// one provider at once: the provider stops issuing at its backlog for that requestor, 32 notes
/// in all, not 32 an agreement.
#[tokio::test]
async fn a_requestor_that_answers_no_debit_notes_gets_one_bounded_backlog_whatever_its_agreements() {
    let anvil = Anvil::start().await;
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let rpc = anvil.rpc_url();
    let config = root.path().join("provider.toml");
    std::fs::write(
        &config,
        "[provider]\nmax_agreements = 4\ndebit_note_interval_secs = 1\ndebit_note_accept_timeout_secs = 600\n\n\
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
    // A run of 60 s on each agreement, without a CPU kept busy.
    let sleep = put_blob(&r, module("sleep")).await;
    let properties = json!({
        "golem.srv.comp.expiration": 1_900_000_000_000_u64, "golem.srv.comp.task_package": sleep,
        "golem.com.payment.chosen-platform": "erc20-dev-tglm",
        "golem.com.payment.platform.erc20-dev-tglm.address": format!("{:#x}", node_address(&r)),
        "golem.com.payment.debit-notes.interval-sec?": 1,
        "golem.com.payment.debit-notes.accept-timeout?": 600,
    });
    for _ in 0..2 {
        let (agreement, state) = agree_by_hand(&r, properties.clone()).await;
        assert_eq!(state, "Approved");
        let activity = agora_tests::flow::create_activity(&r, &agreement).await;
        let script = json!([{"deploy": {}}, {"start": {}}, {"run": {"entry_point": "sleep"}}]);
        let (status, batch) = post(
            &r,
            &format!("/activity-api/v1/activity/{activity}/exec"),
            json!({"text": script.to_string()}),
        )
        .await;
        assert_eq!(status, 200, "{batch}");
    }
    let notes = || async {
        let (status, notes) = get(&p, "/payment-api/v1/debitNotes").await;
        assert_eq!(status, 200, "{notes}");
        notes.as_array().unwrap().len()
    };
    wait_for(50, "the provider's backlog for the requestor to fill", || async {
        (notes().await >= 32).then_some(())
    })
    .await;
    // Two more notes a second would come if the backlog were counted per agreement.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(notes().await, 32, "one backlog for the requestor, whatever its agreements");
    assert!(!p.log().contains("panicked"), "{}", p.log());
    assert_eq!(
        (balance(&r).await, balance(&p).await),
        (r_before, p_before),
        "nothing accepted, nothing moved"
    );
}
