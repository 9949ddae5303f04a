//! A provider stopped while a batch runs: it ends within its shutdown deadline, removes the
//! batch's container, and leaves no task running.

use agora_tests::flow::{agree, net_id, post};
use agora_tests::{BUSYBOX_IMAGE, Dockerd, NodeProcess, TestPg, wait_for};
use serde_json::json;
use std::collections::HashMap;
use std::time::Instant;

/// Containers (running or not) labelled as `owner`'s.
async fn containers_of(dockerd: &Dockerd, owner: &str) -> Vec<String> {
    let filters =
        HashMap::from([("label".to_string(), vec![format!("{}={owner}", agora_activity::OWNER_LABEL)])]);
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let found = dockerd.client().list_containers(Some(options)).await.unwrap();
    found.into_iter().filter_map(|c| c.id).collect()
}

/// A provider and a requestor with a batch sent: the provider's node, the requestor's, the
/// activity and the batch. (The database and the folder live as long as the returned guards.)
struct Running {
    p: NodeProcess,
    r: NodeProcess,
    activity: String,
    batch: String,
    root: tempfile::TempDir,
    _pg: TestPg,
}

/// What the demand deploys.
enum Package {
    /// An image the provider's engine has.
    Image(String),
    /// A WASM module, uploaded to the requestor's node as a blob.
    Module(Vec<u8>),
}

async fn running(
    provider_args: &[&str],
    offer: serde_json::Value,
    package: Package,
    run: serde_json::Value,
) -> Running {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let requestor_db = pg.another_database("r").await;
    let p = NodeProcess::start(&root.path().join("p"), provider_args, &[("DATABASE_URL", pg.url().as_str())])
        .await;
    let (_, p_addr) = net_id(&p);
    let r =
        NodeProcess::start(&root.path().join("r"), &["--peer", &p_addr], &[("DATABASE_URL", &requestor_db)])
            .await;
    let package = match package {
        Package::Module(bytes) => agora_tests::flow::put_blob(&r, bytes).await,
        Package::Image(image) => format!("docker:{image}"),
    };
    let agreement = agree(&r, &p, offer, json!({"golem.srv.comp.task_package": package})).await;
    let (status, created) = post(&r, "/activity-api/v1/activity", json!({"agreementId": agreement})).await;
    assert_eq!(status, 201, "{created}");
    let activity = created["activityId"].as_str().unwrap().to_string();
    let script = json!([{"deploy": {}}, {"start": {}}, {"run": run}]);
    let path = format!("/activity-api/v1/activity/{activity}/exec");
    let (status, batch) = post(&r, &path, json!({"text": script.to_string()})).await;
    assert_eq!(status, 200, "{batch}");
    let batch = batch.as_str().unwrap().to_string();
    Running { p, r, activity, batch, root, _pg: pg }
}

#[tokio::test]
async fn a_provider_with_a_batch_running_stops_on_sigterm_within_its_deadline_and_leaves_no_container() {
    let dockerd = Dockerd::start().await;
    let socket = dockerd.socket().display().to_string();
    let offer =
        json!({"golem.runtime.name": "docker", "golem.inf.mem.gib": 0.125, "agora.limits.time_sec": 300});
    let sleep = json!({"entry_point": "sleep", "args": ["300"]});
    let package = Package::Image(BUSYBOX_IMAGE.into());
    let Running { mut p, r, activity, batch, root, _pg } =
        running(&["--docker-socket", &socket], offer, package, sleep).await;
    let owner = root.path().join("p/activities").display().to_string();
    wait_for(60, "the batch's container to run", || {
        let (dockerd, owner) = (&dockerd, owner.clone());
        async move { (!containers_of(dockerd, &owner).await.is_empty()).then_some(()) }
    })
    .await;

    // Two long polls are open as the provider stops: the requestor's on the batch's results
    // (forwarded to the provider), and one on the provider's own API.
    let results_poll = tokio::spawn({
        let path = format!("/activity-api/v1/activity/{activity}/exec/{batch}?timeout=50&commandIndex=2");
        let url = r.url(&path);
        let token = r.node.admin_token.clone();
        async move {
            let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    });
    let (_, offers) = agora_tests::flow::get(&p, "/market-api/v1/offers").await;
    let offer_id = offers[0]["offerId"].as_str().unwrap().to_string();
    let events_poll = tokio::spawn({
        let url = p.url(&format!("/market-api/v1/offers/{offer_id}/events?timeout=60"));
        let token = p.node.admin_token.clone();
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let stopping = Instant::now();
    let code = p.stop();
    let took = stopping.elapsed();
    println!("the provider stopped in {took:?} with a batch running");
    assert_eq!(code, Some(0), "{}", p.log());
    assert!(
        took < agora::node::SHUTDOWN_DEADLINE,
        "stopping took {took:?}, over the deadline of {:?}: {}",
        agora::node::SHUTDOWN_DEADLINE,
        p.log()
    );
    assert_eq!(containers_of(&dockerd, &owner).await, Vec::<String>::new(), "no container is left");
    let log = p.log();
    assert!(log.contains("all tasks finished"), "no task is left running: {log}");
    assert!(!log.contains("abandoned"), "{log}");
    // The polls were answered, not left hanging: the batch ended with the activity.
    let (status, results) = results_poll.await.unwrap();
    assert_eq!(status, 200, "{results}");
    let last = results.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["isBatchFinished"], true, "{results}");
    assert_eq!(last["message"], "the activity ended: the provider node is stopping", "{results}");
    assert_eq!(events_poll.await.unwrap().unwrap(), 503, "the provider's own long poll ends as it stops");
    // The requestor finds the provider gone.
    let (status, state) =
        agora_tests::flow::get(&r, &format!("/activity-api/v1/activity/{activity}/state")).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["state"], json!(["Unresponsive", null]), "{state}");
}

/// A module that never ends, with a time limit far off: stopping the provider stops it at once
/// (its thread would otherwise hold the process until the limit).
#[tokio::test]
async fn a_provider_running_a_wasm_module_stops_on_sigterm_without_waiting_for_its_time_limit() {
    let module = agora_tests::workspace_root().join("tests/wasm/spin.wat");
    let offer = json!({"golem.runtime.name": "wasmtime", "agora.limits.time_sec": 300});
    let spin = json!({"entry_point": "spin"});
    // Bound, not `..`: the database and the folders must outlive the test's body.
    let Running { mut p, r, activity, batch, root: _root, _pg } =
        running(&[], offer, Package::Module(wat::parse_file(&module).unwrap()), spin).await;
    let results = format!("/activity-api/v1/activity/{activity}/exec/{batch}?timeout=0");
    wait_for(60, "the module to start spinning", || {
        let (r, results) = (&r, results.clone());
        async move {
            let (_, found) = agora_tests::flow::get(r, &results).await;
            // deploy and start have finished: run is under way.
            (found.as_array().is_some_and(|a| a.len() == 2)).then_some(())
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let stopping = Instant::now();
    let code = p.stop();
    let took = stopping.elapsed();
    println!("the provider stopped in {took:?} with a module spinning");
    assert_eq!(code, Some(0), "{}", p.log());
    assert!(took < agora::node::SHUTDOWN_DEADLINE, "stopping took {took:?}: {}", p.log());
    assert!(p.log().contains("all tasks finished"), "{}", p.log());
}
