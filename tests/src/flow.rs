//! Driving nodes through their REST API: calls, and the whole negotiation that ends in an
//! Approved agreement between a requestor and a provider.

use crate::{NodeProcess, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

/// One REST call with the node's admin token: the status and the body (JSON, or the text as a
/// JSON string).
pub async fn call(
    node: &NodeProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, node.url(path)).bearer_auth(&node.node.admin_token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("the node answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn get(node: &NodeProcess, path: &str) -> (u16, Value) {
    call(node, reqwest::Method::GET, path, None).await
}

pub async fn post(node: &NodeProcess, path: &str, body: Value) -> (u16, Value) {
    call(node, reqwest::Method::POST, path, Some(body)).await
}

/// The node's peer id and its first listen address with `/p2p/<id>`.
pub fn net_id(node: &NodeProcess) -> (String, String) {
    let out = node.cli(&["net", "status", "--json"], None);
    let status: Value = serde_json::from_slice(&out.stdout).expect("net status JSON");
    let peer = status["peer_id"].as_str().expect("peer_id").to_string();
    let addr = format!("{}/p2p/{peer}", status["listen"][0].as_str().expect("a listen address"));
    (peer, addr)
}

/// The node's default identity's address.
pub fn node_address(node: &NodeProcess) -> agora_identity::Address {
    let out = node.cli(&["id", "show", "--json"], None);
    let id: Value = serde_json::from_slice(&out.stdout).expect("id show JSON");
    id["address"].as_str().expect("an address").parse().expect("a valid address")
}

/// Uploads bytes to the node's blob store; returns `blob:sha256:<hex>`.
pub async fn put_blob(node: &NodeProcess, bytes: Vec<u8>) -> String {
    let resp = reqwest::Client::new()
        .post(node.url("/blobs"))
        .bearer_auth(&node.node.admin_token)
        .body(bytes)
        .send()
        .await
        .expect("the node answers");
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = resp.json().await.expect("JSON");
    body["url"].as_str().expect("url").to_string()
}

/// Creates an activity under an Approved agreement; returns its id.
pub async fn create_activity(r: &NodeProcess, agreement: &str) -> String {
    let (status, created) = post(r, "/activity-api/v1/activity", json!({"agreementId": agreement})).await;
    assert_eq!(status, 201, "{created}");
    created["activityId"].as_str().expect("activityId").to_string()
}

/// Sends a batch and waits (up to 90 s) until it is finished; returns every command's result.
pub async fn batch(r: &NodeProcess, activity: &str, script: Value) -> Vec<Value> {
    let (status, batch) =
        post(r, &format!("/activity-api/v1/activity/{activity}/exec"), json!({"text": script.to_string()}))
            .await;
    assert_eq!(status, 200, "{batch}");
    let batch = batch.as_str().expect("batch id").to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (status, results) =
            get(r, &format!("/activity-api/v1/activity/{activity}/exec/{batch}?timeout=10")).await;
        assert_eq!(status, 200, "{results}");
        let results = results.as_array().expect("results").clone();
        if results.last().is_some_and(|last| last["isBatchFinished"] == true) {
            return results;
        }
        assert!(tokio::time::Instant::now() < deadline, "batch {batch} did not finish: {results:?}");
    }
}

/// A counter from the node's `/metrics` (the sum of its samples), 0 when it is not there.
pub async fn metric(node: &NodeProcess, name: &str) -> u64 {
    let (status, text) = get(node, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.as_str()
        .expect("the metrics as text")
        .lines()
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits for the first event of a subscription matching `pick`.
async fn event(node: &NodeProcess, path: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let (status, events) = get(node, &format!("{path}?timeout=2&maxEvents=10")).await;
        assert_eq!(status, 200, "{events}");
        if let Some(found) = events.as_array().expect("events").iter().find(|e| pick(e)) {
            return found.clone();
        }
    }
    panic!("no matching event on {path} within 60 s");
}

/// Runs the market from offer to Approved agreement: the provider offers `offer` (plus a
/// unique name), the requestor demands it with `demand` properties, both counter once, the
/// requestor confirms and the provider approves. Returns the agreement id.
pub async fn agree(requestor: &NodeProcess, provider: &NodeProcess, offer: Value, demand: Value) -> String {
    agree_with(requestor, provider, offer, demand, json!({})).await
}

/// [`agree`], with `added` properties in the requestor's counter-proposal only (not in its
/// demand), as a requestor adds its chosen payment platform while negotiating.
pub async fn agree_with(
    requestor: &NodeProcess,
    provider: &NodeProcess,
    mut offer: Value,
    mut demand: Value,
    added: Value,
) -> String {
    static ROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name =
        format!("offer-{}-{}", std::process::id(), ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    offer["golem.node.id.name"] = json!(name);
    demand["golem.srv.comp.expiration"] = json!(1_900_000_000_000_u64);
    let offer_base = json!({"properties": offer, "constraints": "()"});
    let demand_base = json!({"properties": demand, "constraints": format!("(golem.node.id.name={name})")});
    let (status, offer_id) = post(provider, "/market-api/v1/offers", offer_base.clone()).await;
    assert_eq!(status, 201, "{offer_id}");
    let offer_id = offer_id.as_str().expect("offer id").to_string();
    let (status, demand_id) = post(requestor, "/market-api/v1/demands", demand_base.clone()).await;
    assert_eq!(status, 201, "{demand_id}");
    let demand_id = demand_id.as_str().expect("demand id").to_string();
    let demand_events = format!("/market-api/v1/demands/{demand_id}/events");
    let offer_events = format!("/market-api/v1/offers/{offer_id}/events");

    let initial = event(requestor, &demand_events, |e| e["proposal"]["state"] == "Initial").await;
    let initial = initial["proposal"]["proposalId"].as_str().expect("proposal id").to_string();
    let path = format!("/market-api/v1/demands/{demand_id}/proposals/{initial}");
    let mut counter = demand_base;
    for (key, value) in added.as_object().expect("added properties are an object") {
        counter["properties"][key] = value.clone();
    }
    let (status, r_draft) = post(requestor, &path, counter).await;
    assert_eq!(status, 201, "{r_draft}");
    let r_draft = r_draft.as_str().expect("draft id").to_string();
    event(provider, &offer_events, |e| e["proposal"]["proposalId"] == r_draft.as_str()).await;
    let (status, p_draft) =
        post(provider, &format!("/market-api/v1/offers/{offer_id}/proposals/{r_draft}"), offer_base).await;
    assert_eq!(status, 201, "{p_draft}");
    let p_draft = p_draft.as_str().expect("draft id").to_string();
    event(requestor, &demand_events, |e| e["proposal"]["proposalId"] == p_draft.as_str()).await;

    let valid_to = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let (status, agreement) =
        post(requestor, "/market-api/v1/agreements", json!({"proposalId": p_draft, "validTo": valid_to}))
            .await;
    assert_eq!(status, 201, "{agreement}");
    let agreement = agreement.as_str().expect("agreement id").to_string();
    let (status, body) =
        post(requestor, &format!("/market-api/v1/agreements/{agreement}/confirm"), json!(null)).await;
    assert_eq!(status, 204, "{body}");
    event(provider, &offer_events, |e| e["agreement"]["agreementId"] == agreement.as_str()).await;
    let (status, body) =
        post(provider, &format!("/market-api/v1/agreements/{agreement}/approve"), json!(null)).await;
    assert_eq!(status, 200, "{body}");
    let approved = wait_for(30, "the approval to reach the requestor", || async {
        let (_, seen) = get(requestor, &format!("/market-api/v1/agreements/{agreement}")).await;
        (seen["state"] == "Approved").then_some(())
    })
    .await;
    let () = approved;
    agreement
}
