//! An agreement holds the negotiated terms: what the requestor added in its counter-proposal is
//! in the agreement on both nodes and under both signatures, and both sides carry a timestamp.

use agora_agreement::AgreementBody;
use agora_market::api::AgreementView;
use agora_tests::flow::{agree_with, get, net_id, node_address};
use agora_tests::{NodeProcess, TestPg};
use serde_json::{Value, json};

#[tokio::test]
async fn a_property_added_in_negotiation_is_in_the_agreement_on_both_nodes_and_under_both_signatures() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let provider_db = pg.another_database("provider").await;
    let p = NodeProcess::start(&root.path().join("p"), &[], &[("DATABASE_URL", provider_db.as_str())]).await;
    let (_, p_addr) = net_id(&p);
    let r = NodeProcess::start(
        &root.path().join("r"),
        &["--peer", &p_addr],
        &[("DATABASE_URL", pg.url().as_str())],
    )
    .await;

    let offer = json!({"golem.runtime.name": "wasmtime", "golem.com.payment.platform.erc20-dev-tglm.address":
                       "0x2222222222222222222222222222222222222222"});
    let added = json!({"golem.com.payment.chosen-platform": "erc20-dev-tglm"});
    let id = agree_with(&r, &p, offer, json!({"golem.srv.comp.task_package": "blob:sha256:00"}), added).await;

    let (status, on_requestor) = get(&r, &format!("/market-api/v1/agreements/{id}")).await;
    assert_eq!(status, 200, "{on_requestor}");
    let (status, on_provider) = get(&p, &format!("/market-api/v1/agreements/{id}")).await;
    assert_eq!(status, 200, "{on_provider}");
    for (node, seen) in [("requestor", &on_requestor), ("provider", &on_provider)] {
        assert_eq!(
            seen["demand"]["properties"]["golem.com.payment.chosen-platform"], "erc20-dev-tglm",
            "the {node}'s agreement has the requestor's negotiated property: {seen}"
        );
        for side in ["demand", "offer"] {
            let stamp = seen[side]["timestamp"].as_str().unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
                "{node}: {side} has a timestamp: {seen}"
            );
        }
        assert_eq!(seen["state"], "Approved");
    }
    assert_eq!(on_requestor["role"], "requestor");
    assert_eq!(on_provider["role"], "provider");
    // The two nodes hold the same terms, signed by both parties.
    let body = |seen: &Value| {
        let view: AgreementView = serde_json::from_value(seen.clone()).unwrap();
        AgreementBody {
            agreement_id: view.agreement_id,
            demand: view.demand,
            offer: view.offer,
            valid_to: view.valid_to,
            timestamp: view.timestamp,
        }
    };
    let terms = body(&on_requestor);
    assert_eq!(terms, body(&on_provider));
    assert_ne!(
        terms.demand.proposal_id, terms.demand.demand_id,
        "the demand side is the requestor's proposal"
    );
    for seen in [&on_requestor, &on_provider] {
        let proposed = seen["proposedSignature"].as_str().unwrap();
        let approved = seen["approvedSignature"].as_str().unwrap();
        agora_identity::verify_json(&terms, proposed, node_address(&r))
            .expect("the requestor signed these terms");
        agora_identity::verify_json(&terms, approved, node_address(&p))
            .expect("the provider signed these terms");
    }
    // And it is listed.
    let (status, listed) = get(&r, "/market-api/v1/agreements").await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
