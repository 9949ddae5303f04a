//! The market across nodes: offers travel from providers to a requestor, demands match them.

use agora_tests::flow::{call, net_id};
use agora_tests::{NodeProcess, TestPg, wait_for};
use serde_json::{Value, json};

fn address(node: &NodeProcess) -> String {
    let out = node.cli(&["id", "show", "--json"], None);
    let id: Value = serde_json::from_slice(&out.stdout).unwrap();
    id["address"].as_str().unwrap().to_ascii_lowercase()
}

fn offer(runtime: &str, mem: u32) -> Value {
    json!({
        "properties": {"golem": {"runtime": {"name": runtime}, "inf": {"mem": {"gib": mem}}},
                       "golem.srv.caps.multi-activity": true},
        "constraints": "(golem.srv.comp.expiration>0)"
    })
}

fn demand(constraints: &str) -> Value {
    json!({"properties": {"golem.srv.comp.expiration": 1_900_000_000_000_u64}, "constraints": constraints})
}

/// Collects the proposals a demand receives within `secs` seconds.
async fn proposals(node: &NodeProcess, demand_id: &str, secs: u64) -> Vec<Value> {
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        let path = format!("/market-api/v1/demands/{demand_id}/events?timeout=1&maxEvents=10");
        let (status, events) = call(node, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{events}");
        for event in events.as_array().unwrap() {
            assert_eq!(event["eventType"], "ProposalEvent");
            found.push(event["proposal"].clone());
        }
    }
    found
}

#[tokio::test]
async fn offers_reach_the_requestor_and_a_demand_matches_only_what_it_asks_for() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let urls = [pg.url(), pg.another_database("provider_two").await, pg.another_database("requestor").await];
    let db = |i: usize| [("DATABASE_URL", urls[i].as_str())];

    let p1 = NodeProcess::start(&root.path().join("p1"), &[], &db(0)).await;
    let (_, p1_addr) = net_id(&p1);
    let p2 = NodeProcess::start(&root.path().join("p2"), &["--peer", &p1_addr], &db(1)).await;
    let r = NodeProcess::start(&root.path().join("r"), &["--peer", &p1_addr], &db(2)).await;
    let (p1_id, p2_id) = (address(&p1), address(&p2));

    let (status, wasm_offer) =
        call(&p1, reqwest::Method::POST, "/market-api/v1/offers", Some(offer("wasmtime", 8))).await;
    assert_eq!(status, 201, "{wasm_offer}");
    let (status, _) =
        call(&p2, reqwest::Method::POST, "/market-api/v1/offers", Some(offer("docker", 4))).await;
    assert_eq!(status, 201);
    let (_, listed) = call(&p1, reqwest::Method::GET, "/market-api/v1/offers", None).await;
    assert_eq!(listed[0]["offerId"], wasm_offer);
    assert_eq!(listed[0]["providerId"], p1_id.as_str());

    // Both offers reach the requestor: a demand open to any runtime sees both providers.
    let (status, any) =
        call(&r, reqwest::Method::POST, "/market-api/v1/demands", Some(demand("(golem.inf.mem.gib>=1)")))
            .await;
    assert_eq!(status, 201, "{any}");
    let any = any.as_str().unwrap().to_string();
    let seen = wait_for(60, "both offers to reach the requestor", || {
        let r = &r;
        let any = any.clone();
        async move {
            let found = proposals(r, &any, 1).await;
            (!found.is_empty()).then_some(found)
        }
    })
    .await;
    let mut issuers: Vec<String> = seen.iter().map(|p| p["issuerId"].as_str().unwrap().to_string()).collect();
    if issuers.len() < 2 {
        issuers
            .extend(proposals(&r, &any, 8).await.iter().map(|p| p["issuerId"].as_str().unwrap().to_string()));
    }
    issuers.sort();
    let mut expected = vec![p1_id.clone(), p2_id.clone()];
    expected.sort();
    assert_eq!(issuers, expected);

    // A demand for wasmtime with 8 GiB matches the first provider and not the second.
    let (_, wasm) = call(
        &r,
        reqwest::Method::POST,
        "/market-api/v1/demands",
        Some(demand("(&(golem.runtime.name=wasmtime)(golem.inf.mem.gib>=8))")),
    )
    .await;
    let wasm = wasm.as_str().unwrap().to_string();
    let matched = proposals(&r, &wasm, 2).await;
    assert_eq!(matched.len(), 1, "{matched:?}");
    let proposal = &matched[0];
    assert_eq!(proposal["issuerId"], p1_id.as_str());
    assert_eq!(proposal["state"], "Initial");
    assert_eq!(proposal["properties"]["golem.runtime.name"], "wasmtime");
    let path =
        format!("/market-api/v1/demands/{wasm}/proposals/{}", proposal["proposalId"].as_str().unwrap());
    let (status, again) = call(&r, reqwest::Method::GET, &path, None).await;
    assert_eq!((status, &again["proposalId"]), (200, &proposal["proposalId"]));

    // Negotiation: the requestor counters, the provider counters back, and the requestor makes an
    // agreement of the provider's counter-proposal.
    let initial_id = proposal["proposalId"].as_str().unwrap().to_string();
    let offer_id = wasm_offer.as_str().unwrap().to_string();
    let counter = demand("(&(golem.runtime.name=wasmtime)(golem.inf.mem.gib>=8))");
    let (status, r_draft) = call(
        &r,
        reqwest::Method::POST,
        &format!("/market-api/v1/demands/{wasm}/proposals/{initial_id}"),
        Some(counter),
    )
    .await;
    assert_eq!(status, 201, "{r_draft}");
    let r_draft = r_draft.as_str().unwrap().to_string();
    let (_, events) =
        call(&p1, reqwest::Method::GET, &format!("/market-api/v1/offers/{offer_id}/events?timeout=10"), None)
            .await;
    assert_eq!(events[0]["eventType"], "ProposalEvent", "{events}");
    assert_eq!(events[0]["proposal"]["proposalId"], r_draft.as_str());
    assert_eq!(events[0]["proposal"]["prevProposalId"], initial_id.as_str());
    assert_eq!(events[0]["proposal"]["state"], "Draft");
    let (status, p_draft) = call(
        &p1,
        reqwest::Method::POST,
        &format!("/market-api/v1/offers/{offer_id}/proposals/{r_draft}"),
        Some(offer("wasmtime", 8)),
    )
    .await;
    assert_eq!(status, 201, "{p_draft}");
    let p_draft = p_draft.as_str().unwrap().to_string();
    let (_, events) =
        call(&r, reqwest::Method::GET, &format!("/market-api/v1/demands/{wasm}/events?timeout=10"), None)
            .await;
    assert_eq!(events[0]["proposal"]["proposalId"], p_draft.as_str(), "{events}");
    assert_eq!(events[0]["proposal"]["issuerId"], p1_id.as_str());
    assert_eq!(events[0]["proposal"]["prevProposalId"], r_draft.as_str());

    let valid_to = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let (status, agreement) = call(
        &r,
        reqwest::Method::POST,
        "/market-api/v1/agreements",
        Some(json!({"proposalId": p_draft, "validTo": valid_to})),
    )
    .await;
    assert_eq!(status, 201, "{agreement}");
    let agreement = agreement.as_str().unwrap().to_string();
    let (status, body) =
        call(&r, reqwest::Method::POST, &format!("/market-api/v1/agreements/{agreement}/confirm"), None)
            .await;
    assert_eq!(status, 204, "{body}");
    let (_, events) =
        call(&p1, reqwest::Method::GET, &format!("/market-api/v1/offers/{offer_id}/events?timeout=10"), None)
            .await;
    assert_eq!(events[0]["eventType"], "AgreementEvent", "{events}");
    assert_eq!(events[0]["agreement"]["agreementId"], agreement.as_str());
    assert_eq!(events[0]["agreement"]["state"], "Pending");

    // The requestor restarts between confirm and approve; the approval still reaches it.
    let mut r = r;
    assert_eq!(r.stop(), Some(0));
    let (status, approved) =
        call(&p1, reqwest::Method::POST, &format!("/market-api/v1/agreements/{agreement}/approve"), None)
            .await;
    assert_eq!((status, approved.as_str()), (200, Some("Approved")));
    let (status, again) =
        call(&p1, reqwest::Method::POST, &format!("/market-api/v1/agreements/{agreement}/approve"), None)
            .await;
    assert_eq!(status, 409, "a double approve is a conflict: {again}");
    let r = NodeProcess::start(&root.path().join("r"), &["--peer", &p1_addr], &db(2)).await;
    let (status, outcome) = call(
        &r,
        reqwest::Method::POST,
        &format!("/market-api/v1/agreements/{agreement}/wait?timeout=60"),
        None,
    )
    .await;
    // Golem's answer: 204 once approved, with no body (its SDKs read the status alone).
    assert_eq!(status, 204, "{outcome}");
    let (_, seen) =
        call(&r, reqwest::Method::GET, &format!("/market-api/v1/agreements/{agreement}"), None).await;
    assert_eq!(seen["state"], "Approved");
    assert!(seen["proposedSignature"].as_str().is_some_and(|s| s.len() == 132), "{seen}");
    assert!(seen["approvedSignature"].as_str().is_some_and(|s| s.len() == 132), "{seen}");

    // Terminated with a reason, which the provider receives.
    let (status, _) = call(
        &r,
        reqwest::Method::POST,
        &format!("/market-api/v1/agreements/{agreement}/terminate"),
        Some(json!({"message": "work done"})),
    )
    .await;
    assert_eq!(status, 204);
    let reason = wait_for(30, "the termination to reach the provider", || {
        let p1 = &p1;
        let agreement = agreement.clone();
        async move {
            let (_, events) =
                call(p1, reqwest::Method::GET, "/market-api/v1/agreementEvents?timeout=1", None).await;
            events
                .as_array()
                .unwrap()
                .iter()
                .find(|e| {
                    e["agreementId"] == agreement.as_str() && e["eventType"] == "AgreementTerminatedEvent"
                })
                .map(|e| e["reason"].clone())
        }
    })
    .await;
    assert_eq!(reason["message"], "work done");
    let (_, requestor_events) =
        call(&r, reqwest::Method::GET, "/market-api/v1/agreementEvents?timeout=0", None).await;
    let kinds: Vec<&str> =
        requestor_events.as_array().unwrap().iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["AgreementApprovedEvent", "AgreementTerminatedEvent"],
        "no event lost across the restart"
    );

    // An unsubscribed offer stops matching.
    let (status, _) = call(
        &p1,
        reqwest::Method::DELETE,
        &format!("/market-api/v1/offers/{}", wasm_offer.as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &p1,
        reqwest::Method::DELETE,
        &format!("/market-api/v1/offers/{}", wasm_offer.as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 410, "a second unsubscribe is Gone");
    // The events of an unsubscribed demand are not found, as in Golem (its SDKs subscribe again
    // on 404 only).
    let (status, _) =
        call(&r, reqwest::Method::DELETE, &format!("/market-api/v1/demands/{wasm}"), None).await;
    assert_eq!(status, 204);
    let (status, gone) =
        call(&r, reqwest::Method::GET, &format!("/market-api/v1/demands/{wasm}/events?timeout=0"), None)
            .await;
    assert_eq!(status, 404, "{gone}");
    wait_for(30, "the unsubscription to reach the requestor", || {
        let r = &r;
        async move {
            // Demand ids commit to their timestamp, so each round places a new demand.
            let (_, id) = call(
                r,
                reqwest::Method::POST,
                "/market-api/v1/demands",
                Some(demand("(golem.runtime.name=wasmtime)")),
            )
            .await;
            proposals(r, id.as_str().unwrap(), 1).await.is_empty().then_some(())
        }
    })
    .await;

    // The same from the command line.
    let file = root.path().join("offer.json");
    std::fs::write(&file, offer("docker", 16).to_string()).unwrap();
    let out = p1.cli(&["market", "subscribe-offer", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli_offer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let listed: Value =
        serde_json::from_slice(&p1.cli(&["market", "offers", "--json"], None).stdout).unwrap();
    assert!(listed.as_array().unwrap().iter().any(|o| o["offerId"] == cli_offer.as_str()), "{listed}");
    let table = String::from_utf8(p1.cli(&["market", "offers"], None).stdout).unwrap();
    assert!(table.starts_with("OFFER") && table.contains("docker"), "{table}");
    let agreements: Value =
        serde_json::from_slice(&r.cli(&["market", "agreements", "--json"], None).stdout).unwrap();
    assert_eq!(agreements[0]["state"], "Terminated");
    assert_eq!(agreements[0]["role"], "requestor");
    let table = String::from_utf8(p1.cli(&["market", "agreements"], None).stdout).unwrap();
    assert!(table.contains("provider") && table.contains("Terminated"), "{table}");
    std::fs::write(&file, "{\"properties\": {}, \"constraints\": \"(a=\"}").unwrap();
    let bad = r.cli(&["market", "subscribe-demand", file.to_str().unwrap()], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("line 1, column"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Bad input: a malformed constraint names line and column; an unknown subscription is 404.
    let (status, err) =
        call(&r, reqwest::Method::POST, "/market-api/v1/demands", Some(demand("(&(a=1)(b<=)"))).await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("line 1, column 13"), "{err}");
    let (status, err) =
        call(&r, reqwest::Method::GET, "/market-api/v1/demands/nope/events?timeout=0", None).await;
    assert_eq!(status, 404, "{err}");
    let (status, _) =
        call(&r, reqwest::Method::POST, "/market-api/v1/demands", Some(json!({"properties": {}}))).await;
    assert_eq!(status, 400);
}
