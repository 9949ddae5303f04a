//! Bad payment input between two real nodes: refused with a message naming what is wrong, and
//! nothing changed.

use super::payment::*;
use agora_payment::{PaymentRequest, PaymentResponse, wire::Message};
use agora_tests::flow::{get, node_address, post};
use agora_tests::{Anvil, wait_for};
use serde_json::{Value, json};

#[tokio::test]
async fn bad_payment_input_is_refused_with_a_message_and_changes_nothing() {
    let m = Market::start(Anvil::start().await).await;
    let (r, p) = (&m.requestor, &m.provider);
    let refused = |status: u16, body: &Value, want: &str| {
        assert!((400..500).contains(&status), "{status}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "wanted {want:?} in: {body}");
    };

    // Allocations: a negative or non-numeric amount, an unknown platform.
    for (total, want) in [("-1", "negative"), ("ten", "not an amount"), ("0x10", "not an amount")] {
        let (status, body) = post(r, "/payment-api/v1/allocations", json!({"totalAmount": total})).await;
        refused(status, &body, want);
    }
    let (status, body) = post(
        r,
        "/payment-api/v1/allocations",
        json!({"totalAmount": "1", "paymentPlatform": "erc20-nowhere-glm"}),
    )
    .await;
    refused(status, &body, "unknown payment platform erc20-nowhere-glm");
    let (_, allocations) = get(r, "/payment-api/v1/allocations").await;
    assert_eq!(allocations, json!([]), "nothing was allocated");

    // An invoice below the debit notes already issued; a negative debit note.
    let agreement = m.agreement().await;
    let a1 = activity(r, &agreement).await;
    let note = json!({"agreementId": agreement, "activityId": a1, "totalAmountDue": "2"});
    let note = issue(p, "debitNotes", note).await;
    let (status, body) =
        post(p, "/payment-api/v1/invoices", json!({"agreementId": agreement, "amount": "1.5"})).await;
    refused(status, &body, "below the 2 the agreement's debit notes already asked");
    let (status, body) = post(
        p,
        "/payment-api/v1/debitNotes",
        json!({"agreementId": agreement, "activityId": a1, "totalAmountDue": "-3"}),
    )
    .await;
    refused(status, &body, "negative");
    // A total the agreement's pricing does not make of the usage.
    let (status, body) = post(
        p,
        "/payment-api/v1/debitNotes",
        json!({"agreementId": agreement, "activityId": a1, "totalAmountDue": "9", "usageCounterVector": [4, 4, 0]}),
    )
    .await;
    refused(status, &body, "pricing makes of this usage, 3");

    // Accepting more than the allocation has left.
    let small = allocate(r, "1").await;
    let invoice = issue(p, "invoices", json!({"agreementId": agreement, "amount": "2"})).await;
    wait_status(r, "invoices", &invoice, "RECEIVED", 30).await;
    let (status, body) = accept(r, "invoices", &invoice, "2", &small).await;
    refused(status, &body, "has 1 left");
    let (status, body) = accept(r, "invoices", &invoice, "abc", &small).await;
    refused(status, &body, "not an amount");
    wait_status(r, "invoices", &invoice, "RECEIVED", 1).await;
    let (_, a) = get(r, &format!("/payment-api/v1/allocations/{small}")).await;
    assert_eq!(a["spentAmount"], "0", "{a}");

    // Twenty acceptances racing for one allocation's last part: it never goes over.
    let shared = allocate(r, "3").await;
    let mut invoices = Vec::new();
    for _ in 0..20 {
        let a = m.agreement().await;
        let i = issue(p, "invoices", json!({"agreementId": a, "amount": "1"})).await;
        wait_status(r, "invoices", &i, "RECEIVED", 30).await;
        invoices.push(i);
    }
    let racing = invoices.iter().map(|i| accept(r, "invoices", i, "1", &shared));
    let answers = futures_util::future::join_all(racing).await;
    let won = answers.iter().filter(|(s, _)| *s == 200).count();
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        refused(*status, body, "left");
    }
    assert_eq!(won, 3, "{answers:?}");
    let (_, a) = get(r, &format!("/payment-api/v1/allocations/{shared}")).await;
    assert_eq!((a["spentAmount"].as_str(), a["remainingAmount"].as_str()), (Some("3"), Some("0")), "{a}");

    // Accepting an invoice twice.
    let winner = &invoices[answers.iter().position(|(s, _)| *s == 200).unwrap()];
    let (status, body) = accept(r, "invoices", winner, "1", &shared).await;
    refused(status, &body, "already accepted");
    let (_, a) = get(r, &format!("/payment-api/v1/allocations/{shared}")).await;
    assert_eq!(a["spentAmount"], "3");

    // A payment message signed by someone other than the agreement's payer: the provider
    // refuses it, and its debit note stays as it was.
    wait_status(p, "debitNotes", &note, "RECEIVED", 30).await;
    let impostor = agora_identity::Identity::random();
    let message = Message::Accepted {
        kind: agora_payment::model::Kind::DebitNote,
        document_id: note.clone(),
        total_amount_accepted: "2".into(),
    };
    let signature = agora_identity::sign_json(&impostor, &message).unwrap();
    let answer = speak_to(&impostor, &m.provider_p2p, PaymentRequest { message, signature }).await;
    match answer {
        PaymentResponse::Error { message, retry: false } => {
            assert!(message.contains("signature"), "{message}")
        }
        other => panic!("the provider took a forged acceptance: {other:?}"),
    }
    wait_status(p, "debitNotes", &note, "RECEIVED", 1).await;
    let (_, events) = get(p, "/payment-api/v1/debitNoteEvents?timeout=0").await;
    assert!(!events.to_string().contains("DebitNoteAcceptedEvent"), "{events}");

    // A payment claimed by someone who is not the agreement's payer, for a real-looking
    // transaction: refused, and nothing is recorded.
    let payment = agora_payment::model::Payment {
        payment_id: "forged-payment".into(),
        payer_id: format!("{:#x}", impostor.address()),
        payee_id: format!("{:#x}", node_address(p)),
        payer_addr: format!("{:#x}", impostor.address()),
        payee_addr: format!("{:#x}", node_address(p)),
        payment_platform: PLATFORM.into(),
        amount: "2".parse().unwrap(),
        timestamp: chrono::Utc::now(),
        agreement_payments: vec![],
        activity_payments: vec![agora_payment::model::Share {
            agreement_id: Some(agreement.clone()),
            activity_id: Some("a1".into()),
            amount: "2".parse().unwrap(),
            allocation_id: None,
            document_id: note.clone(),
            document_kind: agora_payment::model::Kind::DebitNote,
        }],
        details: format!("{:#x}", alloy_primitives::B256::repeat_byte(7)),
    };
    let message = Message::Paid { payment };
    let signature = agora_identity::sign_json(&impostor, &message).unwrap();
    match speak_to(&impostor, &m.provider_p2p, PaymentRequest { message, signature }).await {
        PaymentResponse::Error { message, retry: false } => {
            assert!(message.contains("not the payer"), "{message}")
        }
        other => panic!("the provider took a forged payment: {other:?}"),
    }
    let (_, payments) = get(p, "/payment-api/v1/payments").await;
    assert_eq!(payments, json!([]));

    // An invoice not sent yet is withdrawn, and another can take its place; an accepted one
    // cannot be withdrawn.
    let fresh = m.agreement().await;
    let (status, draft) =
        post(p, "/payment-api/v1/invoices", json!({"agreementId": fresh, "amount": "1"})).await;
    assert_eq!(status, 201, "{draft}");
    let draft = draft["invoiceId"].as_str().unwrap().to_string();
    let (status, body) = post(p, &format!("/payment-api/v1/invoices/{draft}/cancel"), json!(null)).await;
    assert_eq!(status, 200, "{body}");
    wait_status(p, "invoices", &draft, "CANCELLED", 1).await;
    issue(p, "invoices", json!({"agreementId": fresh, "amount": "1"})).await;
    wait_status(p, "invoices", winner, "SETTLED", 60).await;
    let (status, body) = post(p, &format!("/payment-api/v1/invoices/{winner}/cancel"), json!(null)).await;
    refused(status, &body, "already accepted");
}

/// Sends one payment request to `peer_addr` from a node of `identity`'s, on loopback.
pub(super) async fn speak_to(
    identity: &agora_identity::Identity,
    peer_addr: &str,
    request: PaymentRequest,
) -> PaymentResponse {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = agora_net::NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers: vec![peer_addr.parse().unwrap()],
        ..Default::default()
    };
    let (net, _task) = agora_net::start(identity.libp2p_keypair(), config, shutdown.clone()).await.unwrap();
    let peer = peer_addr.rsplit('/').next().unwrap().to_string();
    let answer = wait_for(20, "the provider to answer", || {
        let (net, peer, request) = (net.clone(), peer.clone(), request.clone());
        async move {
            net.request_typed::<_, PaymentResponse>(agora_net::Channel::Payment, &peer, &request).await.ok()
        }
    })
    .await;
    shutdown.cancel();
    answer
}
