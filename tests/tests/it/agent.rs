//! The provider agent under agreements made by hand on real nodes, Postgres and anvil: debit
//! notes at the agreed interval, idle agreements ended, and no more bids for a requestor that
//! leaves its notes unaccepted.

use super::jobs::executions;
use agora_tests::flow::{get, net_id, node_address, post, put_blob};
use agora_tests::{Anvil, NodeProcess, TestPg, module, wait_for};
use serde_json::{Value, json};

/// Waits for the first event of a subscription matching `pick`.
async fn event_where(node: &NodeProcess, path: &str, pick: impl Fn(&Value) -> bool) -> Value {
    wait_for(60, &format!("an event on {path}"), || async {
        let (_, events) = get(node, &format!("{path}?timeout=1&maxEvents=20")).await;
        events.as_array().and_then(|e| e.iter().find(|e| pick(e)).cloned())
    })
    .await
}

/// Waits for an agreement's event of `kind` (e.g. `AgreementTerminatedEvent`); the event, with
/// its reason.
async fn agreement_event(node: &NodeProcess, agreement: &str, kind: &str) -> Value {
    wait_for(60, &format!("agreement {agreement} to have a {kind}"), || async {
        let (_, events) = get(node, "/market-api/v1/agreementEvents?timeout=1&maxEvents=100").await;
        events
            .as_array()
            .and_then(|e| e.iter().find(|e| e["agreementId"] == agreement && e["eventType"] == kind).cloned())
    })
    .await
}

pub(super) async fn terminated(node: &NodeProcess, agreement: &str) -> Value {
    agreement_event(node, agreement, "AgreementTerminatedEvent").await
}

/// A requestor driving the market by hand against a provider agent: its demand, its counter,
/// the agent's counter, the agreement signed, and the agent's answer. Returns the agreement id
/// and its state once answered (`Approved` or `Rejected`).
pub(super) async fn agree_by_hand(r: &NodeProcess, properties: Value) -> (String, String) {
    let base = json!({"properties": properties, "constraints": "(golem.runtime.name=wasmtime)"});
    let (status, demand) = post(r, "/market-api/v1/demands", base.clone()).await;
    assert_eq!(status, 201, "{demand}");
    let events = format!("/market-api/v1/demands/{}/events", demand.as_str().unwrap());
    let initial = event_where(r, &events, |e| e["proposal"]["state"] == "Initial").await;
    let path = format!(
        "/market-api/v1/demands/{}/proposals/{}",
        demand.as_str().unwrap(),
        initial["proposal"]["proposalId"].as_str().unwrap()
    );
    let (status, draft) = post(r, &path, base).await;
    assert_eq!(status, 201, "{draft}");
    let answer = event_where(r, &events, |e| e["proposal"]["prevProposalId"] == draft).await;
    let valid_to = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let body = json!({"proposalId": answer["proposal"]["proposalId"], "validTo": valid_to});
    let (status, agreement) = post(r, "/market-api/v1/agreements", body).await;
    assert_eq!(status, 201, "{agreement}");
    let agreement = agreement.as_str().unwrap().to_string();
    let (status, body) =
        post(r, &format!("/market-api/v1/agreements/{agreement}/confirm"), json!(null)).await;
    assert_eq!(status, 204, "{body}");
    let state = wait_for(30, "the agent to answer", || async {
        let (_, a) = get(r, &format!("/market-api/v1/agreements/{agreement}")).await;
        let state = a["state"].as_str().unwrap_or_default().to_string();
        (state == "Approved" || state == "Rejected").then_some(state)
    })
    .await;
    (agreement, state)
}

/// The provider agent at work: debit notes at the agreed interval, accepted by the job runner
/// while its replica works; no more agreements than its capacity; an agreement with nothing
/// running ended as idle; and when debit notes
/// go unaccepted past the agreed timeout, the agreement ended and no more bids for that requestor.
#[tokio::test]
async fn the_provider_agent_sends_debit_notes_ends_idle_agreements_and_stops_for_a_requestor_that_does_not_accept_them()
 {
    let anvil = Anvil::start().await;
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let rpc = anvil.rpc_url();
    let config = root.path().join("provider.toml");
    std::fs::write(
        &config,
        "[provider]\nmax_agreements = 1\ndebit_note_interval_secs = 1\ndebit_note_accept_timeout_secs = 3\n\
         idle_agreement_secs = 5\n\n\
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
    let out = r.cli(&["payment", "fund", "--json"], None);
    assert!(out.status.success(), "fund: {}", String::from_utf8_lossy(&out.stderr));
    let count = put_blob(&r, module("count")).await;

    // A job without a verifier on the one provider: its debit notes come every second while it
    // counts, the runner accepts them, and the job is paid its invoice.
    let spec = json!({"module": count, "entry_point": "count", "concurrency": 1, "verifier": "none",
                      "budget": "1", "timeout": 60});
    let (status, created) = post(&r, "/jobs", spec).await;
    assert_eq!(status, 201, "{created}");
    let id = created["jobId"].as_str().unwrap();
    let job = wait_for(120, "the job to end", || async {
        let (_, job) = get(&r, &format!("/jobs/{id}")).await;
        (job["stateCode"].as_i64().unwrap() >= 6).then_some(job)
    })
    .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let (_, notes) = get(&p, "/payment-api/v1/debitNotes").await;
    let notes = notes.as_array().unwrap();
    assert!(!notes.is_empty(), "no debit note was sent");
    // Accepted while it worked, then settled by the paid invoice; one sent as the run ended may
    // still be waiting, covered by the invoice all the same.
    assert!(notes.iter().any(|n| n["status"] == "SETTLED"), "{notes:#?}");
    assert!(notes.iter().all(|n| n["status"] != "REJECTED"), "{notes:#?}");
    assert_eq!(executions(&job, "paid"), vec![node_address(&p)], "{job:#}");

    // An agreement under which nothing runs is ended as idle.
    let me = format!("{:#x}", node_address(&r));
    let properties = json!({
        "golem.srv.comp.expiration": 1_900_000_000_000_u64, "golem.srv.comp.task_package": count,
        "golem.com.payment.chosen-platform": "erc20-dev-tglm",
        "golem.com.payment.platform.erc20-dev-tglm.address": me,
    });
    let (idle, state) = agree_by_hand(&r, properties.clone()).await;
    assert_eq!(state, "Approved");
    // One agreement at a time here: a second one is rejected while it runs, with the reason.
    let (second, state) = agree_by_hand(&r, properties.clone()).await;
    assert_eq!(state, "Rejected");
    let rejected = agreement_event(&r, &second, "AgreementRejectedEvent").await;
    assert!(rejected["reason"].to_string().contains("at capacity"), "{rejected:#}");
    let ended = terminated(&r, &idle).await;
    assert!(ended["reason"].to_string().contains("idle"), "{ended:#}");

    // A requestor that runs work and leaves the debit notes unaccepted: past the 3 s accept
    // timeout the agent ends the agreement, and bids for that requestor no more.
    let (agreement, _) = agree_by_hand(&r, properties).await;
    let activity = agora_tests::flow::create_activity(&r, &agreement).await;
    agora_tests::flow::batch(
        &r,
        &activity,
        json!([{"deploy": {}}, {"start": {}}, {"run": {"entry_point": "count"}}]),
    )
    .await;
    let ended = terminated(&r, &agreement).await;
    assert!(ended["reason"].to_string().contains("debit notes unaccepted"), "{ended:#}");
    let spec = json!({"module": count, "concurrency": 1, "verifier": "none", "budget": "1", "timeout": 3});
    let (_, created) = post(&r, "/jobs", spec).await;
    let id = created["jobId"].as_str().unwrap();
    let job = wait_for(60, "the job to end", || async {
        let (_, job) = get(&r, &format!("/jobs/{id}")).await;
        (job["stateCode"].as_i64().unwrap() >= 6).then_some(job)
    })
    .await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let declined = job["executions"][0]["reason"].as_str().unwrap();
    assert!(declined.contains("declined") && declined.contains("debit notes unaccepted"), "{job:#}");
}
