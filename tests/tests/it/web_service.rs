//! The jobs API for web services, on real nodes, real Postgres and anvil: a service's end users
//! with their own keys, caps and rate limits; retried submissions; results downloads; signed
//! webhooks; resumable event streams; and two requestor nodes sharing one job queue.

use super::jobs::{Devnet, Mode};
use agora_tests::flow::{get, post};
use agora_tests::{NodeProcess, free_port, wait_for};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One REST call with `key`: the status, the headers and the body (JSON, or its text).
pub(super) async fn call(
    node: &NodeProcess,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().request(method, node.url(path)).bearer_auth(key);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("the node answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("a body");
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub(super) async fn get_as(node: &NodeProcess, key: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = call(node, key, reqwest::Method::GET, path, None, &[]).await;
    (status, body)
}

/// A job on one provider without a verifier: the quickest there is.
pub(super) fn quick(net: &Devnet, budget: &str) -> Value {
    json!({"module": net.package, "entry_point": "hello", "concurrency": 1, "verifier": "none",
           "budget": budget, "timeout": 30})
}

pub(super) async fn service_key(node: &NodeProcess, name: &str) -> String {
    let (status, created) = post(node, "/admin/v1/app-keys", json!({"name": name})).await;
    assert_eq!(status, 201, "{created}");
    created["key"].as_str().unwrap().to_string()
}

pub(super) async fn create_user(node: &NodeProcess, service: &str, body: Value) -> (String, String) {
    let (status, _, user) = call(node, service, reqwest::Method::POST, "/jobs/users", Some(body), &[]).await;
    assert_eq!(status, 201, "{user}");
    (user["id"].as_str().unwrap().to_string(), user["key"].as_str().unwrap().to_string())
}

pub(super) async fn submit_as(node: &NodeProcess, key: &str, spec: Value) -> (u16, Value) {
    let (status, _, body) = call(node, key, reqwest::Method::POST, "/jobs", Some(spec), &[]).await;
    (status, body)
}

async fn ended(node: &NodeProcess, id: &str) -> Value {
    wait_for(180, &format!("job {id} to end"), || async {
        let (_, job) = get(node, &format!("/jobs/{id}")).await;
        (job["stateCode"].as_i64().unwrap() >= 6).then_some(job)
    })
    .await
}

fn ids(listing: &Value) -> BTreeSet<String> {
    listing["jobs"].as_array().unwrap().iter().map(|j| j["jobId"].as_str().unwrap().to_string()).collect()
}

/// Two end users of one service: each sees, downloads and cancels only its own jobs (another's
/// answers 404); a retried submission returns the first job; a cap holds under 20 concurrent
/// submissions; a rate limit answers 429.
#[tokio::test]
async fn end_users_see_only_their_own_jobs_and_spend_within_their_caps() {
    let net = Devnet::start(&[Mode::Honest, Mode::Honest]).await;
    let r = &net.requestor;
    let shop = service_key(r, "shop").await;
    let (alice_id, alice) = create_user(r, &shop, json!({"name": "alice", "capPerJob": "1"})).await;
    let (bob_id, bob) = create_user(r, &shop, json!({"name": "bob", "submissionsPerMinute": 3})).await;

    // A retried submission returns the first job; the same key on another spec is refused.
    let spec = quick(&net, "1");
    let key = [("Idempotency-Key", "order-17")];
    let (status, _, first) = call(r, &alice, reqwest::Method::POST, "/jobs", Some(spec.clone()), &key).await;
    assert_eq!(status, 201, "{first}");
    let (status, headers, again) =
        call(r, &alice, reqwest::Method::POST, "/jobs", Some(spec.clone()), &key).await;
    assert_eq!((status, &again), (200, &first), "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, _, other) =
        call(r, &alice, reqwest::Method::POST, "/jobs", Some(quick(&net, "0.5")), &key).await;
    assert_eq!(status, 409, "{other}");
    assert!(other["message"].as_str().unwrap().contains("different spec"), "{other}");
    let alices = first["jobId"].as_str().unwrap().to_string();
    let (status, over) = submit_as(r, &alice, quick(&net, "2")).await;
    assert_eq!(status, 402, "{over}");
    assert!(over["message"].as_str().unwrap().contains("at most 1"), "{over}");

    // Bob's jobs, up to his rate limit; the fourth in a minute waits.
    let mut bobs = BTreeSet::new();
    for _ in 0..3 {
        let (status, created) = submit_as(r, &bob, quick(&net, "0.1")).await;
        assert_eq!(status, 201, "{created}");
        bobs.insert(created["jobId"].as_str().unwrap().to_string());
    }
    let (status, headers, limited) =
        call(r, &bob, reqwest::Method::POST, "/jobs", Some(quick(&net, "0.1")), &[]).await;
    assert_eq!(status, 429, "{limited}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");

    // Each sees only its own.
    let (_, listing) = get_as(r, &alice, "/jobs").await;
    assert_eq!(ids(&listing), BTreeSet::from([alices.clone()]));
    let (_, listing) = get_as(r, &bob, "/jobs").await;
    assert_eq!(ids(&listing), bobs);
    let (_, listing) = get_as(r, &shop, &format!("/jobs?user={bob_id}")).await;
    assert_eq!(ids(&listing), bobs);
    let (_, listing) = get_as(r, &shop, "/jobs?limit=2").await;
    assert_eq!(listing["jobs"].as_array().unwrap().len(), 2, "{listing}");
    let cursor = listing["nextCursor"].as_str().unwrap();
    let (_, rest) = get_as(r, &shop, &format!("/jobs?limit=10&cursor={cursor}")).await;
    let mut paged = ids(&listing);
    paged.extend(ids(&rest));
    assert_eq!(paged.len(), 4, "pages overlap or miss: {listing} {rest}");
    assert!(rest["nextCursor"].is_null(), "{rest}");
    for path in ["", "/events", "/results", "/webhooks"] {
        let (status, body) = get_as(r, &bob, &format!("/jobs/{alices}{path}")).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _, _) = call(r, &bob, reqwest::Method::DELETE, &format!("/jobs/{alices}"), None, &[]).await;
    assert_eq!(status, 404);
    let (status, _) = get_as(r, &bob, &format!("/jobs/users/{alice_id}")).await;
    assert_eq!(status, 404);
    let (status, _, _) =
        call(r, &bob, reqwest::Method::POST, "/jobs/users", Some(json!({"name": "x"})), &[]).await;
    assert_eq!(status, 403);
    let (status, _) = get_as(r, &bob, "/market-api/v1/demands").await;
    assert_eq!(status, 403);

    // Alice downloads her results as a tar stream: `stdout`, as the job has it.
    let job = ended(r, &alices).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let tar = reqwest::Client::new()
        .get(r.url(&format!("/jobs/{alices}/results")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(tar.status(), 200);
    assert_eq!(tar.headers()["content-type"], "application/x-tar");
    let tar = tar.bytes().await.unwrap();
    let name = String::from_utf8_lossy(&tar[..100]).trim_end_matches('\0').to_string();
    let size = usize::from_str_radix(String::from_utf8_lossy(&tar[124..135]).trim(), 8).unwrap();
    assert_eq!(name, "stdout");
    assert_eq!(&tar[512..512 + size], job["results"]["stdout"].as_str().unwrap().as_bytes());
    assert_eq!(tar.len(), 512 + size.div_ceil(512) * 512 + 1024);

    // A cap under 20 concurrent submissions that together would pass it: exactly what fits is
    // taken, the rest refused, and what the user holds never passes the cap.
    let (carol_id, carol) = create_user(r, &shop, json!({"name": "carol", "capTotal": "3"})).await;
    let spec = quick(&net, "0.5");
    let tries = (0..20).map(|_| submit_as(r, &carol, spec.clone()));
    let answers = futures_util::future::join_all(tries).await;
    let taken: Vec<String> =
        answers.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b["jobId"].as_str().unwrap().into()).collect();
    let refused: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 402).map(|(_, b)| b).collect();
    assert_eq!((taken.len(), refused.len()), (6, 14), "{answers:?}");
    assert!(refused[0]["message"].as_str().unwrap().contains("cap of 3"), "{:?}", refused[0]);
    let (_, user) = get_as(r, &shop, &format!("/jobs/users/{carol_id}")).await;
    assert_eq!(user["spent"], "3", "{user}");
    // Once they end, what they held comes back, less what they cost.
    let mut cost = rust_decimal::Decimal::ZERO;
    for id in &taken {
        let job = ended(r, id).await;
        for e in job["executions"].as_array().unwrap() {
            if let Some(amount) = e["amount"].as_str() {
                cost += amount.parse::<rust_decimal::Decimal>().unwrap();
            }
        }
    }
    let (_, user) = get_as(r, &shop, &format!("/jobs/users/{carol_id}")).await;
    let spent: rust_decimal::Decimal = user["spent"].as_str().unwrap().parse().unwrap();
    assert_eq!(spent, cost, "{user}");
    assert!(spent <= rust_decimal::Decimal::from(3));

    // Dropping the service's app-key stops its users' keys; a new key of the same name is
    // another service, with none of the old one's users or jobs.
    let (status, _, _) =
        call(r, &r.node.admin_token, reqwest::Method::DELETE, "/admin/v1/app-keys/shop", None, &[]).await;
    assert_eq!(status, 204);
    let (status, _) = get_as(r, &alice, "/jobs").await;
    assert_eq!(status, 401);
    let shop = service_key(r, "shop").await;
    let (_, users) = get_as(r, &shop, "/jobs/users").await;
    assert_eq!(users, json!([]));
    let (_, listing) = get_as(r, &shop, "/jobs").await;
    assert_eq!(ids(&listing), BTreeSet::new());
}

/// What a webhook receiver on loopback got: each request's headers and body, in arrival order.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Answers each POST with 200 and keeps its `Agora-Signature`, `Agora-Event-Id` and body.
async fn receive_webhooks(listener: tokio::net::TcpListener, got: Received) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let got = got.clone();
        tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            loop {
                let mut headers = std::collections::HashMap::new();
                let mut line = String::new();
                if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                loop {
                    line.clear();
                    stream.read_line(&mut line).await.unwrap();
                    let trimmed = line.trim_end();
                    if trimmed.is_empty() {
                        break;
                    }
                    let (k, v) = trimmed.split_once(':').unwrap();
                    headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
                }
                let len: usize = headers["content-length"].parse().unwrap();
                let mut body = vec![0u8; len];
                stream.read_exact(&mut body).await.unwrap();
                got.lock().unwrap().push((
                    headers["agora-signature"].clone(),
                    String::from_utf8(body.clone()).unwrap(),
                    serde_json::from_slice(&body).unwrap(),
                ));
                stream.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            }
        });
    }
}

/// A webhook receiver that is down when the job starts gets every step once it is up, in order,
/// each signed with the service's secret; a server-sent event stream cut off part-way resumes
/// from `Last-Event-ID` without gaps or repeats.
#[tokio::test]
async fn webhooks_arrive_signed_in_order_after_an_outage_and_event_streams_resume() {
    let net = Devnet::start(&[Mode::Honest]).await;
    let r = &net.requestor;
    let shop = service_key(r, "shop").await;
    let (_, dana) = create_user(r, &shop, json!({"name": "dana"})).await;
    let (_, secret) = get_as(r, &shop, "/jobs/webhook-secret").await;
    let secret = secret["secret"].as_str().unwrap().as_bytes().to_vec();
    let (status, refused) = get_as(r, &dana, "/jobs/webhook-secret").await;
    assert_eq!(status, 403, "{refused}");

    // Nothing listens at the webhook's port yet.
    let port = free_port();
    let mut spec = quick(&net, "1");
    spec["webhook"] = json!(format!("http://127.0.0.1:{port}/hooks/agora"));
    let (status, created) = submit_as(r, &dana, spec).await;
    assert_eq!(status, 201, "{created}");
    let id = created["jobId"].as_str().unwrap().to_string();
    let job = ended(r, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let (status, _) = get_as(r, &dana, &format!("/jobs/{id}/webhooks")).await;
    assert_eq!(status, 403, "deliveries are the service's to read");
    let (_, deliveries) = get_as(r, &shop, &format!("/jobs/{id}/webhooks")).await;
    let first = &deliveries[0];
    assert!(first["attempts"].as_i64().unwrap() >= 2 && first["deliveredAt"].is_null(), "{deliveries:#}");
    assert!(first["lastError"].as_str().unwrap().contains("not delivered"), "{deliveries:#}");

    // The receiver comes up: every step arrives, once, in order, signed.
    let got: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(receive_webhooks(listener, got.clone()));
    let steps: Vec<i64> =
        job["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    wait_for(90, "every step to be delivered", || async {
        (got.lock().unwrap().len() >= steps.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = got.lock().unwrap().clone();
    let delivered: Vec<i64> = got.iter().map(|(_, _, b)| b["eventId"].as_i64().unwrap()).collect();
    assert_eq!(delivered, steps);
    let states: Vec<&str> = got.iter().map(|(_, _, b)| b["state"].as_str().unwrap()).collect();
    assert_eq!(states.first(), Some(&"queued"));
    assert_eq!(states.last(), Some(&"completed"));
    for (signature, body, parsed) in &got {
        assert_eq!(parsed["jobId"], id.as_str());
        let (t, v1) = signature.strip_prefix("t=").unwrap().split_once(",v1=").unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        mac.verify_slice(&hex::decode(v1).unwrap()).expect("a valid signature");
    }
    let (_, deliveries) = get_as(r, &shop, &format!("/jobs/{id}/webhooks")).await;
    assert!(deliveries.as_array().unwrap().iter().all(|d| d["lastStatus"] == 200), "{deliveries:#}");

    // An event stream read in two parts: the second picks up after the last id the first saw.
    let stream = |last: Option<String>| {
        let mut req = reqwest::Client::new()
            .get(r.url(&format!("/jobs/{id}/events")))
            .bearer_auth(&dana)
            .header("Accept", "text/event-stream");
        if let Some(last) = last {
            req = req.header("Last-Event-ID", last);
        }
        req.send()
    };
    let mut first = stream(None).await.unwrap();
    let mut seen = Vec::new();
    let mut text = String::new();
    while seen.len() < 2 {
        text.push_str(&String::from_utf8_lossy(&first.chunk().await.unwrap().expect("more events")));
        seen = sse_ids(&text);
    }
    drop(first);
    let seen: Vec<i64> = seen.into_iter().take(2).collect();
    let rest = stream(Some(seen[1].to_string())).await.unwrap().text().await.unwrap();
    let mut all = seen;
    all.extend(sse_ids(&rest));
    assert_eq!(all, steps, "{rest}");
}

/// The `id:` lines of a server-sent event stream.
fn sse_ids(text: &str) -> Vec<i64> {
    text.lines().filter_map(|l| l.strip_prefix("id:")).map(|v| v.trim().parse().unwrap()).collect()
}

/// Two requestor nodes, each with its own identity and database, share one job queue in a third
/// database: 100 queued jobs are each run exactly once, by one of them.
#[tokio::test]
async fn two_requestor_nodes_sharing_a_queue_run_each_of_100_jobs_once() {
    let net = Devnet::start(&[Mode::Honest, Mode::Honest, Mode::Honest]).await;
    let queue = net._pg.another_database("queue").await;
    let shared = ["--jobs-database-url", queue.as_str(), "--max-jobs", "6"];
    let a = net.another_requestor("ra", &shared).await;
    let b = net.another_requestor("rb", &shared).await;
    for i in 0..100 {
        // Half through each node; either may run any of them.
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, created) = post(node, "/jobs", quick(&net, "0.1")).await;
        assert_eq!(status, 201, "{created}");
    }
    let pool = sqlx::PgPool::connect(&queue).await.unwrap();
    wait_for(600, "the 100 jobs to end", || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state < 6").fetch_one(&pool).await.unwrap();
        (left == 0).then_some(())
    })
    .await;
    let states: Vec<(i16, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state").fetch_all(&pool).await.unwrap();
    assert_eq!(states, vec![(6, 100)], "every job completed");
    // Each ran once: one budget reserved, one paid replica under one agreement.
    let twice: Vec<(String, i64)> = sqlx::query_as(
        "SELECT job_id, count(*) FROM job_events WHERE message LIKE 'reserving a budget%'
         GROUP BY job_id HAVING count(*) <> 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(twice.is_empty(), "{twice:?}");
    let replicas: Vec<(i64, i64)> =
        sqlx::query_as("SELECT count(*), count(DISTINCT agreement_id) FROM job_executions WHERE state = 7")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(replicas, vec![(100, 100)]);
    let runners: Vec<(String, i64)> =
        sqlx::query_as("SELECT runner, count(*) FROM jobs GROUP BY runner ORDER BY runner")
            .fetch_all(&pool)
            .await
            .unwrap();
    let addresses: BTreeSet<String> =
        [&a, &b].iter().map(|n| format!("{:#x}", agora_tests::flow::node_address(n))).collect();
    assert_eq!(runners.iter().map(|(r, _)| r.clone()).collect::<BTreeSet<_>>(), addresses, "{runners:?}");
}
