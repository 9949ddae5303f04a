//! Golem's Python SDK driving agora: yapapi 0.13.1 and its REST client ya-aioclient 0.6.4, from
//! PyPI, in `tests/yapapi/.venv` (made by `scripts/setup`). The script `tests/yapapi/tasks.py` is
//! a plain yapapi script: only its payload class and its environment are agora's. It runs on a
//! requestor node and two provider agents, on Postgres and anvil, with `gftp` the agora binary.

use super::jobs::{Devnet, Mode};
use agora_tests::flow::{get, node_address, post};
use agora_tests::{agora_bin, module, serve_http, wait_for, workspace_root};
use alloy_primitives::U256;
use serde_json::{Value, json};
use sha3::Digest;
use std::collections::BTreeMap;

const TASKS: usize = 3;

#[tokio::test]
async fn yapapi_runs_wasm_tasks_with_files_and_its_invoices_are_paid_on_chain() {
    let python = workspace_root().join("tests/yapapi/.venv/bin/python");
    assert!(python.is_file(), "{} is missing: scripts/setup installs yapapi there", python.display());
    let net = Devnet::start(&[Mode::Honest, Mode::Honest]).await;
    let before = net.balances().await;

    // The module copies /input/in.txt to stdout and to /output/out.txt. It is served over HTTP
    // and named the way Golem names packages: hash:sha3:<SHA3-224>:<url>.
    let cat = module("cat");
    let sha3 = hex::encode(sha3::Sha3_224::digest(&cat));
    let package = format!("hash:sha3:{sha3}:http://{}/cat.wasm", serve_http(cat).await);

    let key = net.requestor.cli(&["app-key", "create", "yapapi"], None);
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();
    // yapapi starts `gftp server` from the PATH.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(agora_bin(), bin.path().join("gftp")).unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let work = tempfile::tempdir().unwrap();

    let script = workspace_root().join("tests/yapapi/tasks.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .args([package.as_str(), work.path().to_str().unwrap(), &TASKS.to_string()])
        .env("PATH", path)
        .env("YAGNA_API_URL", net.requestor.url(""))
        .env("YAGNA_APPKEY", &key)
        .env("YAGNA_PAYMENT_NETWORK", "dev")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(360), run)
        .await
        .expect("the yapapi script to end within 6 minutes")
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "yapapi failed: {}\n{stdout}\n{stderr}", out.status);
    // What the script printed, and yapapi's log, for whoever reads the test's output.
    eprintln!("{stdout}\n{stderr}");
    assert!(stderr.contains("Accepted invoice from"), "yapapi accepted no invoice:\n{stderr}");
    for i in 0..TASKS {
        let line = format!("task{i}: stdout='input of task {i}\\n' file='input of task {i}\\n'");
        assert!(stdout.lines().any(|l| l == line), "no {line:?} in:\n{stdout}\n{stderr}");
    }

    // Every invoice yapapi accepted is paid on chain, and each provider gained what its invoices
    // say.
    let invoices = wait_for(120, "every invoice to be settled", || async {
        let (_, invoices) = get(&net.requestor, "/payment-api/v1/invoices").await;
        let all = invoices.as_array().cloned().unwrap_or_default();
        (!all.is_empty() && all.iter().all(|i| i["status"] == "SETTLED")).then_some(all)
    })
    .await;
    let mut invoiced: BTreeMap<String, U256> = BTreeMap::new();
    for invoice in &invoices {
        let amount = invoice["amount"].as_str().unwrap().parse().unwrap();
        *invoiced.entry(invoice["issuerId"].as_str().unwrap().to_string()).or_default() +=
            agora_payment::to_token_units(amount, 18).unwrap();
    }
    let after = net.balances().await;
    for provider in &net.honest {
        let address = node_address(provider);
        let gained = after[&address] - before[&address];
        let owed = invoiced.get(&format!("{address:#x}")).copied().unwrap_or_default();
        assert_eq!(gained, owed, "{address:#x}: {invoices:#?}");
    }
    assert!(invoiced.values().any(|v| *v > U256::ZERO), "nothing was paid: {invoices:#?}");
    let payments: Value = get(&net.requestor, "/payment-api/v1/payments").await.1;
    assert!(!payments.as_array().unwrap().is_empty(), "{payments:#}");
}

/// What ya-aioclient requires of both debit notes and invoices.
const DOCUMENT: [&str; 8] = [
    "issuerId",
    "recipientId",
    "payeeAddr",
    "payerAddr",
    "paymentPlatform",
    "timestamp",
    "agreementId",
    "status",
];

/// Fails unless every field of `fields` is in `value` and not null: ya-aioclient's models raise
/// on a missing or null required field.
fn require(what: &str, value: &Value, fields: &[&str]) {
    for field in fields {
        assert!(!value[field].is_null(), "{what}: ya-aioclient requires {field:?}: {value:#}");
    }
}

/// Polls `path` (a long poll, as yapapi calls it) until `found` picks something from an answer,
/// for up to 90 s.
async fn poll<T>(
    node: &agora_tests::NodeProcess,
    path: &str,
    what: &str,
    mut found: impl FnMut(&Value) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let (status, body) = get(node, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        if let Some(picked) = found(&body) {
            return picked;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {what} within 90 s; the last answer: {body:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Each call yapapi 0.13.1 makes in a run, in its order, with the bodies it sends, against a
/// requestor node and a provider agent; each answer is checked for what yapapi and ya-aioclient
/// read from it. This pins the compatibility in the Rust suite, beside the Python run above.
#[tokio::test]
async fn every_call_yapapi_makes_is_answered_as_yapapi_reads_it() {
    use agora_tests::flow::call;
    use reqwest::Method;
    let mut net = Devnet::start(&[Mode::Honest]).await;
    let r = &net.requestor;
    let provider = format!("{:#x}", node_address(&net.honest[0]));
    let started = chrono::Utc::now().to_rfc3339();

    // GET /me: the identity, compared as a string with payerAddr later.
    let (status, me) = get(r, "/me").await;
    assert_eq!(status, 200);
    let me = me["identity"].as_str().unwrap().to_string();
    assert_eq!(me, format!("{:#x}", node_address(r)), "lower-case hex");

    // The allocation, as yapapi fills it: empty strings where it has nothing to say.
    let now = chrono::Utc::now();
    let (status, allocation) = post(
        r,
        "/payment-api/v1/allocations",
        json!({
            "allocationId": "", "address": me, "paymentPlatform": "erc20-dev-tglm", "totalAmount": "1",
            "spentAmount": "", "remainingAmount": "", "timestamp": now.to_rfc3339(),
            "timeout": (now + chrono::Duration::days(3650)).to_rfc3339(), "makeDeposit": false,
        }),
    )
    .await;
    assert_eq!(status, 201, "{allocation}");
    require(
        "Allocation",
        &allocation,
        &["allocationId", "totalAmount", "spentAmount", "remainingAmount", "timestamp", "makeDeposit"],
    );
    let allocation_id = allocation["allocationId"].as_str().unwrap().to_string();
    // Another network than the node's is refused, naming the one it has.
    let (status, refused) = post(
        r,
        "/payment-api/v1/allocations",
        json!({"address": me, "paymentPlatform": "erc20-holesky-tglm", "totalAmount": "1", "makeDeposit": false,
               "timestamp": now.to_rfc3339()}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("erc20-dev-tglm"), "{refused}");

    let (status, decorations) =
        get(r, &format!("/payment-api/v1/demandDecorations?allocationIds={allocation_id}")).await;
    assert_eq!(status, 200, "{decorations}");
    let mut properties = serde_json::Map::new();
    for p in decorations["properties"].as_array().unwrap() {
        properties.insert(p["key"].as_str().unwrap().to_string(), p["value"].clone());
    }
    let mut constraints: Vec<String> = vec!["(golem.node.debug.subnet=public)".into()];
    constraints
        .extend(decorations["constraints"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()));
    constraints.extend(["(golem.com.pricing.model=linear)".into(), "(golem.runtime.name=wasmtime)".into()]);

    // The payment event polls yapapi runs all along, by afterTimestamp alone.
    for kind in ["invoiceEvents", "debitNoteEvents"] {
        let (status, events) =
            get(r, &format!("/payment-api/v1/{kind}?afterTimestamp={}", url_encode(&started))).await;
        assert_eq!(status, 200, "{kind}: {events}");
        assert!(events.is_array(), "{events}");
    }

    // The demand, as yapapi's builder makes it.
    let expiration = (chrono::Utc::now() + chrono::Duration::minutes(15)).timestamp_millis();
    properties.insert("golem.srv.comp.expiration".into(), json!(expiration));
    properties.insert("golem.srv.caps.multi-activity".into(), json!(true));
    properties.insert("golem.node.debug.subnet".into(), json!("public"));
    // The module copies /input/in.txt to stdout and to /output/out.txt.
    let package = agora_tests::flow::put_blob(r, module("cat")).await;
    properties.insert("golem.srv.comp.task_package".into(), json!(package));
    let constraint = format!("(&{})", constraints.join("\n\t"));
    let (status, demand) =
        post(r, "/market-api/v1/demands", json!({"properties": properties, "constraints": constraint})).await;
    assert_eq!(status, 201, "{demand}");
    let demand = demand.as_str().expect("a bare demand id").to_string();
    let events = format!("/market-api/v1/demands/{demand}/events?timeout=5&maxEvents=10");

    // The provider's offer arrives; yapapi scores it on its linear pricing.
    let initial = poll(r, &events, "the provider's offer", |events| {
        events.as_array()?.iter().find(|e| e["eventType"] == "ProposalEvent").cloned()
    })
    .await;
    require("ProposalEvent", &initial, &["eventDate", "proposal"]);
    let proposal = &initial["proposal"];
    require(
        "Proposal",
        proposal,
        &["proposalId", "issuerId", "properties", "constraints", "state", "timestamp"],
    );
    assert_eq!(proposal["state"], "Initial");
    let offer = &proposal["properties"];
    assert_eq!(offer["golem.com.scheme"], "payu");
    assert_eq!(offer["golem.com.pricing.model"], "linear");
    let vector = offer["golem.com.usage.vector"].as_array().unwrap().clone();
    let coeffs = offer["golem.com.pricing.model.linear.coeffs"].as_array().unwrap();
    assert_eq!(coeffs.len(), vector.len() + 1, "{offer:#}");
    assert!(coeffs.iter().all(Value::is_f64), "yapapi reads the coefficients as floats: {offer:#}");
    assert!(offer["golem.com.payment.platform.erc20-dev-tglm.address"].is_string(), "{offer:#}");
    assert_eq!(offer["golem.srv.caps.multi-activity"], true);

    // The counter-proposal with the chosen platform; the provider's agent answers with a draft.
    let mut countered = properties.clone();
    countered.insert("golem.com.payment.chosen-platform".into(), json!("erc20-dev-tglm"));
    countered.insert("golem.com.payment.debit-notes.accept-timeout?".into(), json!(120));
    let path =
        format!("/market-api/v1/demands/{demand}/proposals/{}", proposal["proposalId"].as_str().unwrap());
    let (status, ours) = post(r, &path, json!({"properties": countered, "constraints": constraint})).await;
    assert_eq!(status, 201, "{ours}");
    assert!(ours.is_string(), "a bare proposal id: {ours}");
    let draft = poll(r, &events, "the provider's draft", |events| {
        events.as_array()?.iter().find(|e| e["proposal"]["state"] == "Draft").cloned()
    })
    .await;
    let draft_id = draft["proposal"]["proposalId"].as_str().unwrap().to_string();

    // The agreement: created, read, confirmed, waited for (204 once approved).
    let valid_to = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, agreement) =
        post(r, "/market-api/v1/agreements", json!({"proposalId": draft_id, "validTo": valid_to})).await;
    assert_eq!(status, 201, "{agreement}");
    let agreement = agreement.as_str().expect("a bare agreement id").to_string();
    let (status, view) = get(r, &format!("/market-api/v1/agreements/{agreement}")).await;
    assert_eq!(status, 200);
    require("Agreement", &view, &["agreementId", "demand", "offer", "validTo", "state", "timestamp"]);
    require(
        "Demand",
        &view["demand"],
        &["properties", "constraints", "demandId", "requestorId", "timestamp"],
    );
    require("Offer", &view["offer"], &["properties", "constraints", "offerId", "providerId", "timestamp"]);
    assert_eq!(view["offer"]["providerId"], provider.as_str());
    let (status, _) = post(r, &format!("/market-api/v1/agreements/{agreement}/confirm"), json!(null)).await;
    assert!((200..300).contains(&status), "confirm: {status}");
    let (status, waited) =
        post(r, &format!("/market-api/v1/agreements/{agreement}/wait?timeout=15"), json!(null)).await;
    assert_eq!(status, 204, "{waited}");

    // The activity: a bare agreement id in, a bare activity id out.
    let (status, activity) = post(r, "/activity-api/v1/activity", json!(agreement)).await;
    assert_eq!(status, 201, "{activity}");
    let activity = activity.as_str().expect("a bare activity id").to_string();

    // Batches as yapapi sends them: the implicit deploy and start, then the work with gftp
    // transfers (the input published as a blob of the node, the output to a destination).
    let exec = |script: Value| {
        let path = format!("/activity-api/v1/activity/{activity}/exec");
        async move {
            let (status, batch) = post(r, &path, json!({"text": script.to_string()})).await;
            assert_eq!(status, 200, "{batch}");
            batch.as_str().expect("a bare batch id").to_string()
        }
    };
    let results = |batch: String, commands: usize| {
        let path = format!("/activity-api/v1/activity/{activity}/exec/{batch}?timeout=5");
        async move {
            poll(r, &path, "the batch's results", |results| {
                let results = results.as_array()?;
                for (i, result) in results.iter().enumerate() {
                    require("ExeScriptCommandResult", result, &["index", "eventDate", "result"]);
                    assert_eq!(result["index"], i, "cumulative, in order: {results:#?}");
                }
                (results.len() == commands).then(|| results.clone())
            })
            .await
        }
    };
    let ready = results(exec(json!([{"deploy": {}}, {"start": {"args": []}}])).await, 2).await;
    assert!(ready.iter().all(|r| r["result"] == "Ok"), "{ready:#?}");

    let input = agora_tests::flow::put_blob(r, b"handed over by gftp\n".to_vec()).await;
    let published = format!("gftp://{me}/{}", input.strip_prefix("blob:sha256:").unwrap());
    // The node names the file an output lands in, in its own outputs folder.
    let (status, destination) = post(r, "/blobs/destinations", json!(null)).await;
    assert_eq!(status, 201, "{destination}");
    let received = destination["url"].as_str().unwrap().to_string();
    assert!(received.starts_with(&format!("gftp://{me}/")), "{received}");
    let landing = std::path::PathBuf::from(destination["file"].as_str().unwrap());
    assert!(landing.starts_with(r.data_dir().join("outputs")), "{destination}");
    // A gftp:// target the node did not hand out is refused before anything runs.
    let made_up =
        json!([{"transfer": {"from": "container:/output/out.txt", "to": format!("gftp://{me}/made-up")}}]);
    let path = format!("/activity-api/v1/activity/{activity}/exec");
    let (status, refused) = post(r, &path, json!({"text": made_up.to_string()})).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("not a destination this node handed out"),
        "{refused}"
    );
    let capture = json!({"stdout": {"stream": {}}, "stderr": {"stream": {}}});
    let batch = exec(json!([
        {"transfer": {"from": published, "to": "container:/input/in.txt"}},
        {"run": {"entry_point": "cat", "args": [], "capture": capture}},
        {"transfer": {"from": "container:/output/out.txt", "to": received}},
    ]))
    .await;
    // Polled without commandIndex; the output is in its file when the last result is there.
    let done = results(batch.clone(), 3).await;
    assert!(done.iter().all(|r| r["result"] == "Ok"), "{done:#?}");
    assert_eq!(done[1]["stdout"], "handed over by gftp\n");
    assert_eq!(done[2]["isBatchFinished"], true);
    assert_eq!(std::fs::read(&landing).unwrap(), b"handed over by gftp\n");

    // Usage, zipped by yapapi with the offer's vector and coefficients.
    let (status, usage) = get(r, &format!("/activity-api/v1/activity/{activity}/usage")).await;
    assert_eq!(status, 200);
    assert_eq!(usage["currentUsage"].as_array().unwrap().len(), vector.len(), "{usage}");
    assert!(usage["timestamp"].is_i64(), "{usage}");
    let (status, state) = get(r, &format!("/activity-api/v1/activity/{activity}/state")).await;
    assert_eq!(status, 200);
    assert_eq!(state["state"][0], "Ready", "{state}");

    // The end: the activity destroyed, the agreement terminated with Golem's reason.
    let (status, _) = call(r, Method::DELETE, &format!("/activity-api/v1/activity/{activity}"), None).await;
    assert!((200..300).contains(&status));
    let reason = json!({"message": "Work finished", "golem.requestor.code": "Success"});
    let (status, ended) = post(r, &format!("/market-api/v1/agreements/{agreement}/terminate"), reason).await;
    assert!((200..300).contains(&status), "{ended}");

    // The invoice arrives as an event; yapapi reads it, checks whom it is for, and accepts it all.
    let invoice_events = format!("/payment-api/v1/invoiceEvents?afterTimestamp={}", url_encode(&started));
    let event = poll(r, &invoice_events, "the invoice", |events| {
        events.as_array()?.iter().find(|e| e["eventType"] == "InvoiceReceivedEvent").cloned()
    })
    .await;
    require("InvoiceEvent", &event, &["eventType", "eventDate", "invoiceId"]);
    let (status, invoice) =
        get(r, &format!("/payment-api/v1/invoices/{}", event["invoiceId"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    require("Invoice", &invoice, &DOCUMENT);
    require("Invoice", &invoice, &["invoiceId", "amount", "paymentDueDate"]);
    assert_eq!(invoice["payerAddr"], me.as_str(), "yapapi finds its allocation by payerAddr");
    assert_eq!(invoice["paymentPlatform"], "erc20-dev-tglm");
    let path = format!("/payment-api/v1/invoices/{}/accept", event["invoiceId"].as_str().unwrap());
    let (status, accepted) =
        post(r, &path, json!({"totalAmountAccepted": invoice["amount"], "allocationId": allocation_id}))
            .await;
    assert!((200..300).contains(&status), "{accepted}");
    let debit_notes = format!("/payment-api/v1/debitNoteEvents?afterTimestamp={}", url_encode(&started));
    let (_, notes) = get(r, &debit_notes).await;
    for note in notes.as_array().unwrap() {
        require("DebitNoteEvent", note, &["eventType", "eventDate", "debitNoteId"]);
        let (_, note) =
            get(r, &format!("/payment-api/v1/debitNotes/{}", note["debitNoteId"].as_str().unwrap())).await;
        require("DebitNote", &note, &DOCUMENT);
        require("DebitNote", &note, &["debitNoteId", "activityId", "totalAmountDue"]);
        assert!(
            note["paymentDueDate"].is_null(),
            "yapapi ends an agreement on a payable debit note: {note:#}"
        );
    }

    // After an agreement ends, its provider is proposed to the demand again: yapapi negotiates a
    // retried task's new agreement from a fresh proposal, never from the one it used.
    let again = poll(r, &events, "the provider proposed again", |events| {
        events.as_array()?.iter().find(|e| e["proposal"]["state"] == "Initial").cloned()
    })
    .await;
    let again_id = again["proposal"]["proposalId"].as_str().unwrap();
    assert_ne!(again_id, proposal["proposalId"].as_str().unwrap());
    assert_eq!(again["proposal"]["issuerId"], provider.as_str());
    let path = format!("/market-api/v1/demands/{demand}/proposals/{again_id}");
    let (status, ours) = post(r, &path, json!({"properties": countered, "constraints": constraint})).await;
    assert_eq!(status, 201, "{ours}");
    let draft = poll(r, &events, "the provider's second draft", |events| {
        events.as_array()?.iter().find(|e| e["proposal"]["state"] == "Draft").cloned()
    })
    .await;
    let (status, second) = post(
        r,
        "/market-api/v1/agreements",
        json!({"proposalId": draft["proposal"]["proposalId"], "validTo": valid_to}),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    let second = second.as_str().unwrap().to_string();
    let (status, _) = post(r, &format!("/market-api/v1/agreements/{second}/confirm"), json!(null)).await;
    assert!((200..300).contains(&status), "confirm: {status}");
    let (status, waited) =
        post(r, &format!("/market-api/v1/agreements/{second}/wait?timeout=15"), json!(null)).await;
    assert_eq!(status, 204, "a second agreement with the same provider: {waited}");
    let (status, ended) =
        post(r, &format!("/market-api/v1/agreements/{second}/terminate"), json!({"message": "done"})).await;
    assert!((200..300).contains(&status), "{ended}");

    // Shutting down: the demand and the allocation go.
    let (status, _) = call(r, Method::DELETE, &format!("/market-api/v1/demands/{demand}"), None).await;
    assert!((200..300).contains(&status));
    let (status, _) =
        call(r, Method::DELETE, &format!("/payment-api/v1/allocations/{allocation_id}"), None).await;
    assert!((200..300).contains(&status));

    // A poll the provider's node cannot answer is 504, which yapapi polls again after; any other
    // error would end its batch.
    let poll_path = format!("/activity-api/v1/activity/{activity}/exec/{batch}?timeout=5");
    let mut provider_node = net.honest.remove(0);
    provider_node.stop();
    let (status, unanswered) = get(&net.requestor, &poll_path).await;
    assert_eq!(status, 504, "{unanswered}");
}

fn url_encode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
