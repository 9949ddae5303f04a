//! No input panics a handler, gets a 5xx, or cuts the connection: a seeded fuzzer drives every
//! endpoint of a real node with hostile ids, parameters and bodies. And while the database is
//! down the API answers 503 with `Retry-After`, and recovers by itself.

use agora_tests::flow::{call, post};
use agora_tests::{NodeProcess, TestPg, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Every endpoint, as (method, path with `{}` for each id).
const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/me"),
    ("GET", "/metrics"),
    ("GET", "/net-api/v1/status"),
    ("GET", "/market-api/v1/offers"),
    ("POST", "/market-api/v1/offers"),
    ("DELETE", "/market-api/v1/offers/{}"),
    ("GET", "/market-api/v1/offers/{}/events"),
    ("GET", "/market-api/v1/offers/{}/proposals/{}"),
    ("POST", "/market-api/v1/offers/{}/proposals/{}"),
    ("POST", "/market-api/v1/offers/{}/proposals/{}/reject"),
    ("GET", "/market-api/v1/demands"),
    ("POST", "/market-api/v1/demands"),
    ("DELETE", "/market-api/v1/demands/{}"),
    ("GET", "/market-api/v1/demands/{}/events"),
    ("GET", "/market-api/v1/demands/{}/proposals/{}"),
    ("POST", "/market-api/v1/demands/{}/proposals/{}"),
    ("POST", "/market-api/v1/demands/{}/proposals/{}/reject"),
    ("GET", "/market-api/v1/agreements"),
    ("POST", "/market-api/v1/agreements"),
    ("GET", "/market-api/v1/agreements/{}"),
    ("DELETE", "/market-api/v1/agreements/{}"),
    ("POST", "/market-api/v1/agreements/{}/confirm"),
    ("POST", "/market-api/v1/agreements/{}/wait"),
    ("POST", "/market-api/v1/agreements/{}/approve"),
    ("POST", "/market-api/v1/agreements/{}/reject"),
    ("POST", "/market-api/v1/agreements/{}/terminate"),
    ("GET", "/market-api/v1/agreementEvents"),
    ("POST", "/activity-api/v1/activity"),
    ("DELETE", "/activity-api/v1/activity/{}"),
    ("POST", "/activity-api/v1/activity/{}/exec"),
    ("GET", "/activity-api/v1/activity/{}/exec/{}"),
    ("GET", "/activity-api/v1/activity/{}/state"),
    ("GET", "/activity-api/v1/activity/{}/usage"),
    ("POST", "/blobs"),
    ("GET", "/blobs/{}"),
    ("GET", "/admin/v1/app-keys"),
];

/// Ids a client might send, percent-encoded as they go in a path.
const IDS: &[&str] = &[
    "%00",
    "a%00b",
    "..%2F..%2Fetc%2Fpasswd",
    "%FF%FE",
    "%C3%BC%E2%9C%93",
    "'%20OR%201=1--",
    "-1",
    "0",
    "%20",
    "a%0Ab",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
];

/// Query strings, many of them waits that once overflowed a `Duration`.
const QUERIES: &[&str] = &[
    "",
    "?timeout=1.8446744073709552e19",
    "?timeout=1e308",
    "?timeout=-1",
    "?timeout=NaN",
    "?timeout=inf",
    "?timeout=abc",
    "?timeout=0",
    "?timeout=0.001&maxEvents=-1",
    "?maxEvents=99999999999999999999",
    "?maxEvents=0&timeout=0",
    "?commandIndex=-3&timeout=0",
    "?commandIndex=18446744073709551616",
    "?afterTimestamp=yesterday&timeout=0",
    "?afterTimestamp=9999-12-31T23:59:59Z&timeout=0",
    "?timeout=%00",
];

/// A small seeded generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[(self.next() % from.len() as u64) as usize]
    }
}

/// A hostile JSON body: shapes the endpoints expect with bad fields, and shapes they do not.
fn body(rng: &mut Rng) -> Option<Vec<u8>> {
    let nul = "\u{0}";
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"{".to_vec(),
        vec![0xff, 0xfe, 0x00],
        deep.into_bytes(),
        json!("a\u{0}b").to_string().into_bytes(),
        json!({"agreementId": nul}).to_string().into_bytes(),
        json!({"agreementId": "x".repeat(10_000)}).to_string().into_bytes(),
        json!({"proposalId": nul, "validTo": "2999-01-01T00:00:00Z"}).to_string().into_bytes(),
        json!({"proposalId": "ab", "validTo": "not a date"}).to_string().into_bytes(),
        json!({"properties": {"a": nul}, "constraints": "(a=\u{0})"}).to_string().into_bytes(),
        json!({"properties": [], "constraints": "(((((("}).to_string().into_bytes(),
        json!({"properties": {"golem.x": 1e308}, "constraints": "()"}).to_string().into_bytes(),
        json!({"text": "[{\"deploy\": {}}]"}).to_string().into_bytes(),
        json!({"text": nul}).to_string().into_bytes(),
        json!({"message": nul}).to_string().into_bytes(),
        json!({"name": nul, "role": "x"}).to_string().into_bytes(),
    ];
    let chosen = rng.pick(&bodies).clone();
    (!rng.next().is_multiple_of(5)).then_some(chosen)
}

#[tokio::test]
async fn hostile_requests_get_no_5xx_and_no_dropped_connection() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&root.path().join("n"), &[], &[("DATABASE_URL", pg.url().as_str())]).await;
    // Real ids beside the hostile ones, so handlers get past the lookup too.
    let offer = json!({"properties": {"golem.runtime.name": "wasmtime"}, "constraints": "()"});
    let (_, offer_id) = post(&node, "/market-api/v1/offers", offer.clone()).await;
    let (_, demand_id) = post(&node, "/market-api/v1/demands", offer).await;
    let real = [offer_id.as_str().unwrap().to_string(), demand_id.as_str().unwrap().to_string()];
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let seed = std::env::var("AGORA_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_a907_u64);
    let count: usize = std::env::var("AGORA_FUZZ_REQUESTS").ok().and_then(|s| s.parse().ok()).unwrap_or(4000);
    let mut rng = Rng(seed);
    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..count {
        let (method, template) = *rng.pick(ENDPOINTS);
        let mut path = String::new();
        let mut hostile_id = false;
        for (n, part) in template.split("{}").enumerate() {
            if n > 0 {
                if rng.next().is_multiple_of(3) {
                    path.push_str(rng.pick(&real[..]).as_str());
                } else {
                    hostile_id = true;
                    path.push_str(rng.pick::<&str>(IDS));
                }
            }
            path.push_str(part);
        }
        // A long poll on a real subscription (or on all agreement events) waits its whole
        // timeout, 5 s when none is given: those get only waits that end at once or are
        // refused. Hostile waits go with ids that do not exist, whose answer comes at once.
        let query = *rng.pick(QUERIES);
        let ends_at_once =
            ["timeout=0", "timeout=-", "NaN", "inf", "abc", "%00"].iter().any(|q| query.contains(q));
        let query = if !hostile_id && !ends_at_once { "?timeout=0" } else { query };
        let mut request = client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), node.url(&format!("{path}{query}")))
            .bearer_auth(&node.node.admin_token);
        if method != "GET"
            && let Some(bytes) = body(&mut rng)
        {
            request = request.header("content-type", "application/json").body(bytes);
        }
        let what = format!("#{i} (seed {seed:#x}): {method} {path}{query}");
        let response =
            request.send().await.unwrap_or_else(|e| panic!("{what}: no answer, the connection dropped: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|e| panic!("{what}: the answer was cut: {e}"));
        assert!(status < 500, "{what}: {status} {text}");
        *statuses.entry(status).or_default() += 1;
    }
    println!("{count} hostile requests in {:?}: statuses {statuses:?}", started.elapsed());
    // The node is still up and well.
    let (status, _) = call(&node, Method::GET, "/market-api/v1/offers", None).await;
    assert_eq!(status, 200);
    assert!(statuses.keys().any(|s| (400..500).contains(s)), "the fuzzer reached the handlers' checks");
}

#[tokio::test]
async fn while_the_database_is_down_the_api_answers_503_with_retry_after_and_recovers() {
    let mut pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&root.path().join("n"), &[], &[("DATABASE_URL", pg.url().as_str())]).await;
    let key = node.cli(&["app-key", "create", "script"], None);
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let get = |path: &str, token: &str| client.get(node.url(path)).bearer_auth(token).send();
    assert_eq!(get("/market-api/v1/offers", &key).await.unwrap().status(), 200);

    pg.stop();
    for (path, token) in [
        ("/health", key.as_str()),
        ("/market-api/v1/offers", key.as_str()),
        ("/market-api/v1/agreements", node.node.admin_token.as_str()),
        ("/market-api/v1/demands/abc/events?timeout=0", node.node.admin_token.as_str()),
    ] {
        let response =
            get(path, token).await.unwrap_or_else(|e| panic!("{path}: the connection dropped: {e}"));
        assert_eq!(response.status(), 503, "{path}");
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(retry.as_deref(), Some("5"), "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }

    pg.restart().await;
    wait_for(30, "the API to answer again", || {
        let request = get("/market-api/v1/offers", &key);
        async move { (request.await.ok()?.status() == 200).then_some(()) }
    })
    .await;
}
