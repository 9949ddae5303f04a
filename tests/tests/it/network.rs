//! Nodes find each other over libp2p on loopback, and a swarm key keeps a private network apart.

use agora_tests::{NodeProcess, TestPg, wait_for};
use serde_json::Value;

fn json_of(out: std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status(node: &NodeProcess) -> Value {
    json_of(node.cli(&["net", "status", "--json"], None))
}

fn peers(node: &NodeProcess) -> Vec<String> {
    status(node)["peers"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
}

fn swarm_key(dir: &std::path::Path, name: &str, byte: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", format!("{byte:02x}").repeat(32)))
        .unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn nodes_connect_through_a_bootstrap_peer_and_a_swarm_key_keeps_others_out() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let (key_one, key_two) =
        (swarm_key(root.path(), "one.key", 0x11), swarm_key(root.path(), "two.key", 0x22));
    let url_a = pg.url();
    let url_b = pg.another_database("node_b").await;
    let url_c = pg.another_database("node_c").await;

    let a =
        NodeProcess::start(&root.path().join("a"), &["--swarm-key", &key_one], &[("DATABASE_URL", &url_a)])
            .await;
    let a_status = status(&a);
    let a_id = a_status["peer_id"].as_str().unwrap().to_string();
    let listen = a_status["listen"][0].as_str().unwrap().to_string();
    assert!(listen.starts_with("/ip4/127.0.0.1/tcp/"), "{listen}");
    // The peer id is the identity's: the same key names the node on chain and on the network.
    let id = json_of(a.cli(&["id", "show", "--json"], None));
    assert_eq!(id["peer_id"].as_str(), Some(a_id.as_str()));

    let bootstrap = format!("{listen}/p2p/{a_id}");
    let b = NodeProcess::start(
        &root.path().join("b"),
        &["--swarm-key", &key_one, "--peer", &bootstrap],
        &[("DATABASE_URL", &url_b)],
    )
    .await;
    let b_id = status(&b)["peer_id"].as_str().unwrap().to_string();
    wait_for(20, "a and b to see each other", || {
        let (pa, pb) = (peers(&a), peers(&b));
        let ok = pa.contains(&b_id) && pb.contains(&a_id);
        async move { ok.then_some(()) }
    })
    .await;

    let c = NodeProcess::start(
        &root.path().join("c"),
        &["--swarm-key", &key_two, "--peer", &bootstrap],
        &[("DATABASE_URL", &url_c)],
    )
    .await;
    let c_id = status(&c)["peer_id"].as_str().unwrap().to_string();
    // Give c's dial time to fail; it must never get through.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(peers(&c).is_empty(), "a node with another swarm key connected: {:?}", peers(&c));
    assert!(!peers(&a).contains(&c_id));

    let table = String::from_utf8(a.cli(&["net", "status"], None).stdout).unwrap();
    assert!(table.contains(&format!("peer id: {a_id}")) && table.contains(&b_id), "{table}");
}
