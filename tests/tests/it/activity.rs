//! Activities on real provider nodes: WASM modules on wasmtime and containers on a private
//! dockerd, driven through the requestor's `/activity-api/v1`.

use agora_tests::flow::{agree, batch, call, create_activity, get, net_id, post, put_blob};
use agora_tests::{BUSYBOX_IMAGE, Dockerd, NodeProcess, TestPg, TlsServer, serve_http};
use serde_json::{Value, json};
use std::path::PathBuf;

use agora_tests::module;

fn run(entry_point: &str, args: &[&str]) -> Value {
    json!({"run": {"entry_point": entry_point, "args": args}})
}

fn wasm_offer() -> Value {
    // 64 MiB of memory and 2 s per run.
    json!({"golem.runtime.name": "wasmtime", "golem.inf.mem.gib": 0.0625, "agora.limits.time_sec": 2})
}

/// Deploys `name` under a new agreement with `provider` and runs it once with `run_body`.
async fn run_module(
    r: &NodeProcess,
    provider: &NodeProcess,
    name: &str,
    run_body: Value,
) -> (String, Vec<Value>) {
    let package = put_blob(r, module(name)).await;
    let agreement = agree(r, provider, wasm_offer(), json!({"golem.srv.comp.task_package": package})).await;
    let activity = create_activity(r, &agreement).await;
    let results = batch(r, &activity, json!([{"deploy": {}}, {"start": {}}, {"run": run_body}])).await;
    (activity, results)
}

#[tokio::test]
async fn wasm_activities_on_provider_nodes() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let urls = [pg.url(), pg.another_database("p2").await, pg.another_database("r").await];
    let db = |i: usize| [("DATABASE_URL", urls[i].as_str())];
    // An HTTPS server whose certificate authority p1 is given in its settings, and p2 is not.
    let tls = TlsServer::start(b"over tls\n").await;
    let ca = root.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let p1 = NodeProcess::start(&root.path().join("p1"), &["--ca-cert", ca.to_str().unwrap()], &db(0)).await;
    let (_, p1_addr) = net_id(&p1);
    let p2 = NodeProcess::start(&root.path().join("p2"), &["--peer", &p1_addr], &db(1)).await;
    let r = NodeProcess::start(&root.path().join("r"), &["--peer", &p1_addr], &db(2)).await;

    // Hello world: deploy, start, run; the state and the usage counters follow.
    let (hello, results) = run_module(&r, &p1, "hello", json!({"entry_point": "hello", "args": []})).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:?}");
    assert_eq!(results[2]["stdout"], "hello from wasm\n");
    assert_eq!(results[2]["exitCode"], 0);
    assert!(results[2]["resultsHash"].as_str().unwrap().starts_with("h1:"));
    let (_, state) = get(&r, &format!("/activity-api/v1/activity/{hello}/state")).await;
    assert_eq!(state["state"], json!(["Ready", null]));
    let (_, usage) = get(&r, &format!("/activity-api/v1/activity/{hello}/usage")).await;
    let counters: Vec<f64> =
        usage["currentUsage"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(counters[0] > 0.0 && counters[2] > 0.0, "duration and fuel are counted: {usage}");
    // The same from a script, with the CLI.
    let script_file = root.path().join("hello.json");
    std::fs::write(&script_file, json!([run("hello", &[])]).to_string()).unwrap();
    let out = r.cli(&["activity", "exec", &hello, script_file.to_str().unwrap(), "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["stdout"], "hello from wasm\n");
    assert_eq!(listed[0]["resultsHash"], results[2]["resultsHash"], "the same run, the same hash");
    let out = r.cli(&["activity", "exec", &hello, script_file.to_str().unwrap()], None);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("RESULTS HASH") && shown.contains("hello from wasm"), "{shown}");
    std::fs::write(&script_file, "[{\"run\": {}}]").unwrap();
    let out = r.cli(&["activity", "exec", &hello, script_file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing field `entry_point`"));
    let out = r.cli(&["activity", "state", &hello, "--json"], None);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["state"][0], "Ready");
    let file = root.path().join("blob.txt");
    std::fs::write(&file, "round trip\n").unwrap();
    let out = r.cli(&["blob", "put", file.to_str().unwrap()], None);
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(url.starts_with("blob:sha256:"), "{url}");
    let out = r.cli(&["blob", "get", &url], None);
    assert_eq!(out.stdout, b"round trip\n");

    // The same results as server-sent events, one per command as it finishes.
    let script = json!([run("hello", &[]), run("hello", &[])]).to_string();
    let (_, batch_id) =
        post(&r, &format!("/activity-api/v1/activity/{hello}/exec"), json!({"text": script})).await;
    let stream = reqwest::Client::new()
        .get(r.url(&format!("/activity-api/v1/activity/{hello}/exec/{}", batch_id.as_str().unwrap())))
        .bearer_auth(&r.node.admin_token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let text = stream.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(text.matches("event: runtime").count(), 2, "{text}");
    assert_eq!(events[1]["index"], 1);
    // Golem's SDKs read `return_code` (yagna's spelling); ya-client's spec says `returnCode`.
    assert_eq!(events[1]["kind"]["finished"]["return_code"], 0);
    assert_eq!(events[1]["kind"]["finished"]["returnCode"], 0);
    assert_eq!(events[1]["result"]["stdout"], "hello from wasm\n");

    // cat: the input comes from the requestor's blob store, the output goes back to it.
    let package = put_blob(&r, module("cat")).await;
    let agreement = agree(&r, &p1, wasm_offer(), json!({"golem.srv.comp.task_package": package})).await;
    let activity = create_activity(&r, &agreement).await;
    let input = put_blob(&r, b"first line\nsecond line\n".to_vec()).await;
    let results = batch(
        &r,
        &activity,
        json!([{"deploy": {}}, {"start": {}},
               {"transfer": {"from": input, "to": "container:/input/in.txt"}},
               {"run": {"entry_point": "cat", "args": []}},
               {"transfer": {"from": "container:/output/out.txt", "to": "blob:"}}]),
    )
    .await;
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:?}");
    assert_eq!(results[3]["stdout"], "first line\nsecond line\n");
    let output = results[4]["blob"].as_str().unwrap().strip_prefix("blob:sha256:").unwrap().to_string();
    let fetched = reqwest::Client::new()
        .get(r.url(&format!("/blobs/{output}")))
        .bearer_auth(&r.node.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(fetched.bytes().await.unwrap(), "first line\nsecond line\n".as_bytes());

    // https: from a server whose certificate authority the provider was given, and from one whose
    // it was not (the error names the certificate problem).
    let from_tls = json!([{"transfer": {"from": tls.url("/notes.txt"), "to": "container:/input/in.txt"}},
                          {"run": {"entry_point": "cat", "args": []}}]);
    let results = batch(&r, &activity, from_tls.clone()).await;
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:?}");
    assert_eq!(results[1]["stdout"], "over tls\n");
    let with_p2 = agree(&r, &p2, wasm_offer(), json!({"golem.srv.comp.task_package": package})).await;
    // A bare agreement id, as Golem's SDKs send it, is answered with a bare activity id.
    let (status, created) = post(&r, "/activity-api/v1/activity", json!(with_p2)).await;
    assert_eq!(status, 201, "{created}");
    let untrusting = created.as_str().expect("a bare id, as Golem answers a bare id").to_string();
    let results = batch(&r, &untrusting, json!([{"deploy": {}}, {"start": {}}])).await;
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:?}");
    let results = batch(&r, &untrusting, from_tls).await;
    assert_eq!(results[0]["result"], "Error", "{results:?}");
    let message = results[0]["message"].as_str().unwrap();
    assert!(message.contains("certificate") && message.contains("UnknownIssuer"), "{message}");

    // Environment variables arrive sorted by name; a non-zero exit code is an Error result.
    let (_, results) =
        run_module(&r, &p1, "env", json!({"entry_point": "env", "env": {"ZETA": "z", "ALPHA": "a"}})).await;
    assert_eq!(results[2]["stdout"], "ALPHA=a\nZETA=z\n");
    let (_, results) = run_module(&r, &p1, "exit", json!({"entry_point": "exit"})).await;
    assert_eq!(results[2]["result"], "Error");
    assert_eq!(results[2]["exitCode"], 3);
    assert_eq!(results[2]["stderr"], "failing on purpose\n");
    assert_eq!(results[2]["message"], "exited with code 3");

    // Determinism: clocks and random bytes, run on two providers, hash the same.
    let (_, on_p1) = run_module(&r, &p1, "entropy", json!({"entry_point": "entropy"})).await;
    let (on_p2_activity, on_p2) = run_module(&r, &p2, "entropy", json!({"entry_point": "entropy"})).await;
    assert_eq!(on_p1[2]["result"], "Ok", "{on_p1:?}");
    assert_eq!(on_p1[2]["resultsHash"], on_p2[2]["resultsHash"]);

    // Limits: a loop stops at the time limit, a memory bomb at the memory limit.
    let started = std::time::Instant::now();
    let (_, spin) = run_module(&r, &p1, "spin", json!({"entry_point": "spin"})).await;
    assert_eq!(spin[2]["result"], "Error");
    assert!(spin[2]["message"].as_str().unwrap().contains("time limit of 2.0 s"), "{spin:?}");
    assert!(started.elapsed().as_secs() < 60);
    let (_, grow) = run_module(&r, &p1, "grow", json!({"entry_point": "grow"})).await;
    assert!(grow[2]["message"].as_str().unwrap().contains("the limit is 64 MiB"), "{grow:?}");

    // Bad input: each a 4xx with a message.
    let exec = format!("/activity-api/v1/activity/{activity}/exec");
    let (status, body) = post(&r, &exec, json!({"text": "[{\"deploy\": "})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("not valid JSON"), "{body}");
    let (status, body) = post(&r, &exec, json!({"text": "[{\"explode\": {}}]"})).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("unknown command \"explode\""), "{body}");
    let script =
        json!([{"transfer": {"from": "file:///etc/passwd", "to": "container:/input/p"}}]).to_string();
    let (status, body) = post(&r, &exec, json!({"text": script})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("outside the folders this provider allows"), "{body}");
    let (status, body) = post(&p1, "/activity-api/v1/activity", json!(agreement)).await;
    assert_eq!(status, 403, "the provider is not the agreement's requestor: {body}");
    let (status, body) =
        post(&r, "/activity-api/v1/activity", json!({"agreementId": "no-such-agreement"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = get(&r, "/activity-api/v1/activity/no-such-activity/state").await;
    assert_eq!(status, 404);

    // Terminating the agreement terminates its activities.
    let (status, body) =
        post(&r, &format!("/market-api/v1/agreements/{agreement}/terminate"), json!({"message": "done"}))
            .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    agora_tests::wait_for(30, "the activity to end with its agreement", || async {
        let (_, state) = get(&r, &format!("/activity-api/v1/activity/{activity}/state")).await;
        (state["state"][0] == "Terminated").then_some(())
    })
    .await;
    let (status, body) = post(&r, &exec, json!({"text": "[{\"start\": {}}]"})).await;
    assert_eq!(status, 410, "{body}");

    // A provider whose node is gone leaves its activities Unresponsive.
    let mut p2 = p2;
    assert_eq!(p2.stop(), Some(0));
    let (status, state) = get(&r, &format!("/activity-api/v1/activity/{on_p2_activity}/state")).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["state"], json!(["Unresponsive", null]), "{state}");
}

#[tokio::test]
async fn docker_activities_on_a_provider_node() {
    let dockerd = Dockerd::start().await;
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("data.csv"), "name,qty\napple,3\nbanana,5\ncherry,7\n").unwrap();
    let dataset = root.path().join("reference");
    std::fs::create_dir_all(&dataset).unwrap();
    std::fs::write(dataset.join("ref.txt"), "reference data\n").unwrap();
    let digest = agora_activity::folder_sha256(&dataset).unwrap();
    let config = root.path().join("provider.toml");
    std::fs::write(
        &config,
        format!(
            "[[datasets]]\nname = \"reference\"\npath = \"{}\"\nsha256 = \"{digest}\"\n",
            dataset.display()
        ),
    )
    .unwrap();
    let urls = [pg.url(), pg.another_database("r").await];
    let socket = dockerd.socket().display().to_string();
    // What a provider that was killed mid-run leaves: a container with its label. The node
    // removes it when it starts again.
    let owner = root.path().join("p/activities").display().to_string();
    let leftover = bollard::models::ContainerCreateBody {
        image: Some(BUSYBOX_IMAGE.into()),
        cmd: Some(vec!["sleep".into(), "600".into()]),
        labels: Some(std::collections::HashMap::from([(agora_activity::OWNER_LABEL.to_string(), owner)])),
        ..Default::default()
    };
    let stale = root.path().join("p/activities/stale-activity");
    std::fs::create_dir_all(stale.join("input")).unwrap();
    std::fs::write(stale.join("input/data.csv"), "left by a killed node\n").unwrap();
    let leftover = dockerd.client().create_container(None, leftover).await.unwrap().id;
    dockerd.client().start_container(&leftover, None).await.unwrap();
    let p = NodeProcess::start(
        &root.path().join("p"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--docker-socket",
            &socket,
            "--transfer-dir",
            shared.to_str().unwrap(),
        ],
        &[("DATABASE_URL", urls[0].as_str())],
    )
    .await;
    let (_, p_addr) = net_id(&p);
    let r = NodeProcess::start(
        &root.path().join("r"),
        &["--peer", &p_addr],
        &[("DATABASE_URL", urls[1].as_str())],
    )
    .await;
    let inspected = dockerd.client().inspect_container(&leftover, None).await;
    assert!(inspected.is_err(), "the leftover container is removed at start: {inspected:?}");
    assert!(!stale.exists(), "and the activity folder it left");

    let offer =
        json!({"golem.runtime.name": "docker", "golem.inf.mem.gib": 0.125, "agora.limits.time_sec": 5});
    let package = format!("docker:{BUSYBOX_IMAGE}");
    let agreement = agree(&r, &p, offer.clone(), json!({"golem.srv.comp.task_package": package})).await;
    let (_, offers) = get(&p, "/market-api/v1/offers").await;
    assert_eq!(offers[0]["properties"]["agora.datasets"], json!([format!("sha256:{digest}")]), "{offers}");
    let vector = json!(["golem.usage.duration_sec", "golem.usage.cpu_sec", "agora.usage.fuel"]);
    assert_eq!(offers[0]["properties"]["golem.com.usage.vector"], vector, "{offers}");
    let activity = create_activity(&r, &agreement).await;
    let data = format!("file://{}", shared.join("data.csv").display());
    let web = format!("http://{}/notes.txt", serve_http(b"fetched over http\n".to_vec()).await);
    let csv_doubled =
        "sed 1d /input/data.csv | while IFS=, read name qty; do echo \"$name,$((qty * 2))\"; done";
    let results = batch(
        &r,
        &activity,
        json!([
            {"deploy": {}}, {"start": {}},
            {"transfer": {"from": data, "to": "container:/input/data.csv"}},
            run("cat", &["/input/data.csv"]),
            run("sh", &["-c", "grep an /input/data.csv > /output/grep.txt && cat /output/grep.txt"]),
            run("sed", &["s/,/;/g", "/input/data.csv"]),
            run("sh", &["-c", csv_doubled]),
            {"run": {"entry_point": "env", "env": {"B_VAR": "2", "A_VAR": "1"}}},
            run("ls", &["/sys/class/net"]),
            run("grep", &["CapEff", "/proc/self/status"]),
            {"run": {"entry_point": "cat", "args": ["/datasets/reference/ref.txt"], "datasets": ["reference"]}},
            {"transfer": {"from": web, "to": "container:/input/notes.txt"}},
            run("cat", &["/input/notes.txt"]),
        ]),
    )
    .await;
    assert!(results.iter().all(|r| r["result"] == "Ok"), "{results:#?}");
    assert_eq!(results[3]["stdout"], "name,qty\napple,3\nbanana,5\ncherry,7\n");
    assert_eq!(results[4]["stdout"], "banana,5\n");
    assert_eq!(results[5]["stdout"], "name;qty\napple;3\nbanana;5\ncherry;7\n");
    assert_eq!(results[6]["stdout"], "apple,6\nbanana,10\ncherry,14\n");
    let env = results[7]["stdout"].as_str().unwrap();
    assert!(env.contains("A_VAR=1\n") && env.contains("B_VAR=2\n"), "{env}");
    assert_eq!(results[8]["stdout"], "lo\n", "no network but loopback");
    assert_eq!(results[9]["stdout"], "CapEff:\t0000000000000000\n", "every capability dropped");
    assert_eq!(results[10]["stdout"], "reference data\n");
    assert_eq!(results[12]["stdout"], "fetched over http\n");

    // Golem's hash URLs: the download is checked against the digest as it streams, and one that
    // does not match is dropped with the reason.
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(b"fetched over http\n"));
    let checked = format!("hash:sha256:{digest}:{web}");
    let wrong = format!("hash:sha256:{}:{web}", "0".repeat(64));
    let results = batch(
        &r,
        &activity,
        json!([
            {"transfer": {"from": checked, "to": "container:/input/checked.txt"}},
            run("cat", &["/input/checked.txt"]),
            {"transfer": {"from": wrong, "to": "container:/input/wrong.txt"}},
        ]),
    )
    .await;
    assert_eq!(results[1]["stdout"], "fetched over http\n", "{results:#?}");
    assert_eq!(results[2]["result"], "Error", "{results:#?}");
    let why = results[2]["message"].as_str().unwrap();
    assert!(why.contains(&format!("hashes to {digest}, not the Sha256 digest")), "{why}");
    let results = batch(&r, &activity, json!([run("ls", &["/input"])])).await;
    assert!(!results[0]["stdout"].as_str().unwrap().contains("wrong.txt"), "nothing kept: {results:#?}");

    let results = batch(&r, &activity, json!([run("sh", &["-c", "echo oops >&2; exit 3"])])).await;
    assert_eq!((results[0]["result"].as_str(), results[0]["exitCode"].as_i64()), (Some("Error"), Some(3)));
    assert_eq!(results[0]["stderr"], "oops\n");
    // A memory bomb: a shell string doubling until the 128 MiB limit stops it.
    let results =
        batch(&r, &activity, json!([run("sh", &["-c", "x=0123456789; while true; do x=$x$x; done"])])).await;
    assert!(
        results[0]["message"].as_str().unwrap().contains("went over its memory limit of 128 MiB"),
        "{results:?}"
    );
    let started = std::time::Instant::now();
    let results = batch(&r, &activity, json!([run("sleep", &["60"])])).await;
    assert!(results[0]["message"].as_str().unwrap().contains("time limit of 5.0 s"), "{results:?}");
    assert!(started.elapsed().as_secs() < 30);

    // A missing image is a clear error at deploy.
    let missing =
        agree(&r, &p, offer.clone(), json!({"golem.srv.comp.task_package": "docker:not-here:1"})).await;
    let other = create_activity(&r, &missing).await;
    let results = batch(&r, &other, json!([{"deploy": {}}, run("true", &[])])).await;
    assert_eq!(results.len(), 1);
    assert!(
        results[0]["message"].as_str().unwrap().contains("image not-here:1 is not on this provider's engine")
    );

    // An image can also come as a tarball the requestor transfers in (`docker save` format).
    let tarball = root.path().join("busybox.tar");
    let saved = std::process::Command::new("docker")
        .args(["-H", &format!("unix://{socket}"), "save", "-o", tarball.to_str().unwrap(), BUSYBOX_IMAGE])
        .status()
        .unwrap();
    assert!(saved.success());
    let package = put_blob(&r, std::fs::read(&tarball).unwrap()).await;
    let from_tarball = agree(&r, &p, offer, json!({"golem.srv.comp.task_package": package})).await;
    let loaded = create_activity(&r, &from_tarball).await;
    let results = batch(&r, &loaded, json!([{"deploy": {}}, run("echo", &["loaded"])])).await;
    assert_eq!(results[1]["stdout"], "loaded\n", "{results:?}");

    // Destroying an activity while its container runs stops and removes the container, and
    // leaves no folder behind.
    let containers = || async {
        let options = bollard::query_parameters::ListContainersOptions { all: true, ..Default::default() };
        dockerd.client().list_containers(Some(options)).await.unwrap()
    };
    let script = json!([run("sleep", &["60"])]).to_string();
    let (status, _) =
        post(&r, &format!("/activity-api/v1/activity/{activity}/exec"), json!({"text": script})).await;
    assert_eq!(status, 200);
    agora_tests::wait_for(30, "the container to start", || async {
        (!containers().await.is_empty()).then_some(())
    })
    .await;
    let (status, _) =
        call(&r, reqwest::Method::DELETE, &format!("/activity-api/v1/activity/{activity}"), None).await;
    assert_eq!(status, 200);
    agora_tests::wait_for(20, "no container left", || async { containers().await.is_empty().then_some(()) })
        .await;
    let folder: PathBuf = root.path().join("p/activities").join(&activity);
    assert!(!folder.exists(), "{} is left", folder.display());
}

/// Never called: the in-process host below answers before it would need another node.
#[derive(Debug)]
struct Nowhere;

impl agora_activity::Messenger for Nowhere {
    fn send(
        &self,
        peer: String,
        _request: agora_activity::wire::ActivityRequest,
    ) -> futures_util::future::BoxFuture<
        'static,
        agora_activity::Result<agora_activity::wire::ActivityResponse>,
    > {
        Box::pin(async move {
            Err(agora_activity::Error::Unreachable(format!("no network here (asked for {peer})")))
        })
    }

    fn open_blob(
        &self,
        peer: String,
    ) -> futures_util::future::BoxFuture<'static, agora_activity::Result<Box<dyn agora_activity::BlobPipe>>>
    {
        Box::pin(async move {
            Err(agora_activity::Error::Unreachable(format!("no network here (asked for {peer})")))
        })
    }
}

/// The node's agreements, as activities learn of them: here one Approved agreement, held in
/// memory (the node answers from its market).
#[derive(Debug)]
struct OneAgreement(agora_agreement::Agreement);

impl agora_activity::Agreements for OneAgreement {
    fn agreement(
        &self,
        id: &str,
    ) -> futures_util::future::BoxFuture<'_, agora_activity::Result<Option<agora_agreement::Agreement>>> {
        let found = (self.0.id == id).then(|| self.0.clone());
        Box::pin(async move { Ok(found) })
    }

    fn approved_with(
        &self,
        party: agora_identity::Address,
    ) -> futures_util::future::BoxFuture<'_, agora_activity::Result<bool>> {
        let a = &self.0;
        let yes = a.state == agora_agreement::AgreementState::Approved
            && (a.requestor == party || a.provider == party);
        Box::pin(async move { Ok(yes) })
    }
}

#[tokio::test]
async fn only_the_agreements_requestor_may_create_or_drive_its_activities() {
    use agora_activity::wire::{ActivityRequest, ActivityResponse, Refusal};
    let pg = TestPg::start().await;
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    agora::node::MIGRATOR.run(&pool).await.unwrap();
    let (requestor, stranger) = (agora_identity::Identity::random(), agora_identity::Identity::random());
    let now = chrono::Utc::now();
    let agreement = agora_agreement::Agreement {
        id: "a1".into(),
        role: agora_agreement::Role::Provider,
        state: agora_agreement::AgreementState::Approved,
        requestor: requestor.address(),
        provider: agora_identity::Address::ZERO,
        peer_id: "peer".into(),
        demand: agora_agreement::DemandTerms {
            constraints: "()".into(),
            demand_id: "d1".into(),
            properties: json!({"golem.srv.comp.task_package": "blob:sha256:00"}),
            proposal_id: "p1".into(),
            requestor_id: format!("{:#x}", requestor.address()),
            timestamp: now,
        },
        offer: agora_agreement::OfferTerms {
            constraints: "()".into(),
            offer_id: "o1".into(),
            properties: json!({"golem.runtime.name": "wasmtime"}),
            proposal_id: "p2".into(),
            provider_id: format!("{:#x}", agora_identity::Address::ZERO),
            timestamp: now,
        },
        valid_to: now + chrono::Duration::hours(1),
        timestamp: now,
        proposed_signature: None,
        approved_signature: None,
        approved_date: None,
        reason: None,
    };
    let work = tempfile::tempdir().unwrap();
    let host = agora_activity::HostConfig { work_dir: work.path().join("activities"), ..Default::default() };
    let blobs = agora_activity::BlobStore::open(work.path().join("blobs")).unwrap();
    let activities = agora_activity::Activities::new(
        pool.clone(),
        host,
        blobs,
        std::sync::Arc::new(Nowhere),
        std::sync::Arc::new(OneAgreement(agreement)),
        tokio_util::task::TaskTracker::new(),
    )
    .unwrap();

    let create = || ActivityRequest::Create { agreement_id: "a1".into() };
    let refused = activities.handle("peer", Some(stranger.address()), create()).await;
    assert!(
        matches!(&refused, ActivityResponse::Error { refusal: Refusal::Forbidden, message } if message.contains("not yours")),
        "{refused:?}"
    );
    let folders = std::fs::read_dir(work.path().join("activities")).unwrap().count();
    assert_eq!(folders, 0, "a refused create leaves no folder");
    let ActivityResponse::Created { activity_id } =
        activities.handle("peer", Some(requestor.address()), create()).await
    else {
        panic!("the requestor creates an activity");
    };
    let exec = ActivityRequest::Exec { activity_id: activity_id.clone(), script: "[{\"start\": {}}]".into() };
    let refused = activities.handle("peer", Some(stranger.address()), exec).await;
    assert!(matches!(&refused, ActivityResponse::Error { refusal: Refusal::Forbidden, .. }), "{refused:?}");
    let state = ActivityRequest::State { activity_id };
    let mine = activities.handle("peer", Some(requestor.address()), state).await;
    assert!(matches!(&mine, ActivityResponse::State { state } if state.state.0 == "Initialized"), "{mine:?}");

    // Blobs go only to the other party of an agreement.
    let hex = activities.blobs().put(b"an output").unwrap();
    let get = |who: &agora_identity::Identity| {
        let (activities, hex, peer) = (activities.clone(), hex.clone(), who.peer_id());
        async move {
            let (mut source, fetcher) = tokio::io::duplex(64 * 1024);
            let sending = tokio::spawn(async move { activities.send_blob(peer, &mut source).await });
            let answer = agora_activity::pipe::ask(fetcher, &hex, 0).await;
            sending.await.unwrap().unwrap();
            answer
        }
    };
    let refused = get(&stranger).await.err().expect("a stranger gets no blob");
    assert!(
        matches!(&refused, agora_activity::Error::Forbidden(m) if m.contains("other party")),
        "{refused:?}"
    );
    let (total, mut reader) = get(&requestor).await.unwrap();
    let mut served = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut served).await.unwrap();
    assert_eq!((total, served.as_slice()), (9, b"an output".as_slice()));
}

/// The demo deploys `tests/wasm/hello.wasm`; it must be what `hello.wat` compiles to.
/// `AGORA_WRITE_WASM=1` rewrites the committed modules from their text.
#[test]
fn committed_modules_match_their_text() {
    let committed = agora_tests::workspace_root().join("tests/wasm/hello.wasm");
    let built = module("hello");
    if std::env::var_os("AGORA_WRITE_WASM").is_some() {
        std::fs::write(&committed, &built).unwrap();
    }
    let on_disk = std::fs::read(&committed).unwrap_or_else(|e| panic!("{}: {e}", committed.display()));
    assert_eq!(on_disk, built, "{} is not what hello.wat compiles to", committed.display());
}
