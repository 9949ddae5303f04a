//! The payment API belongs to whoever made the money: two services and their jobs on one real
//! node, each seeing and acting on its own allocations and documents only.

use super::jobs::{Devnet, Mode};
use super::money::assert_conserved;
use super::web_service::{call, create_user, get_as, quick, service_key, submit_as};
use agora_tests::flow::get;
use agora_tests::wait_for;
use serde_json::{Value, json};
use std::collections::BTreeSet;

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
