//! Inbound requests reach the one part that serves their protocol, within its handler cap; a
//! request nobody serves is refused with a reason the sender sees, and logged. Gossip reaches the
//! nodes that joined its topic, from any node. Two networks in this process, on loopback.

use agora_net::{Channel, Gossip, MARKET_HANDLERS, NetConfig, NetHandle};
use agora_tests::wait_for;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_util::sync::CancellationToken;

async fn start(shutdown: &CancellationToken, peers: Vec<String>) -> NetHandle {
    let key = agora_identity::Identity::random().libp2p_keypair();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        ..Default::default()
    };
    let (net, _task) = agora_net::start(key, config, shutdown.clone()).await.unwrap();
    net
}

/// A server and a client connected to it.
async fn pair(shutdown: &CancellationToken) -> (NetHandle, NetHandle) {
    let server = start(shutdown, Vec::new()).await;
    let status = server.status().await.unwrap();
    let addr = format!("{}/p2p/{}", status.listen[0], status.peer_id);
    let client = start(shutdown, vec![addr]).await;
    let server_id = status.peer_id.clone();
    wait_for(20, "the client to connect", || {
        let (client, server_id) = (client.clone(), server_id.clone());
        async move { client.status().await.unwrap().peers.contains(&server_id).then_some(()) }
    })
    .await;
    (server, client)
}

/// What the node logs, kept for the test to read.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// A current-thread runtime: the network tasks run on this thread, under its log subscriber.
#[tokio::test]
async fn a_request_on_a_protocol_nobody_serves_gets_an_error_reply_and_a_log_line() {
    use tracing_subscriber::util::SubscriberInitExt;
    let log = Log::default();
    let writer = log.clone();
    let _logging = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish()
        .set_default();
    let shutdown = CancellationToken::new();
    let (server, client) = pair(&shutdown).await;
    let _market = server.serve(Channel::Market).await.unwrap();

    let answer = client.request_on(Channel::Activity, server.peer_id(), json!({"type": "state"})).await;
    match answer {
        Err(agora_net::Error::Refused { message, .. }) => {
            assert_eq!(message, "this node does not serve /agora/activity/3")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let text = log.text();
    assert!(
        text.contains("a request on a protocol this node does not serve")
            && text.contains("protocol=/agora/activity/3"),
        "the server logs it: {text}"
    );
    // A protocol is served by one part only.
    assert!(matches!(server.serve(Channel::Market).await, Err(agora_net::Error::Route(_))));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_protocols_requests_reach_only_its_own_handler() {
    let shutdown = CancellationToken::new();
    let (server, client) = pair(&shutdown).await;
    let mut served = std::collections::BTreeMap::new();
    for channel in agora_net::CHANNELS {
        served.insert(*channel, server.serve(*channel).await.unwrap());
    }
    for channel in agora_net::CHANNELS.iter().copied() {
        let body = json!({"to": channel.name()});
        let asking = tokio::spawn({
            let (client, peer, body) = (client.clone(), server.peer_id(), body.clone());
            async move { client.request_on(channel, peer, body).await }
        });
        let mine = served.get_mut(&channel).unwrap();
        let request = tokio::time::timeout(Duration::from_secs(10), mine.recv()).await.unwrap().unwrap();
        assert_eq!(request.body, body);
        assert_eq!(request.from, client.peer_id());
        request.answer(json!({"type": "ack", "from": channel.name()}));
        assert_eq!(asking.await.unwrap().unwrap(), json!({"type": "ack", "from": channel.name()}));
        for (other, requests) in served.iter_mut().filter(|(c, _)| **c != channel) {
            assert!(
                matches!(requests.try_recv(), Err(TryRecvError::Empty)),
                "{channel} reached {other}'s handler"
            );
        }
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_requests_from_one_peer_never_run_more_handlers_than_the_cap() {
    let shutdown = CancellationToken::new();
    let (server, client) = pair(&shutdown).await;
    let mut requests = server.serve(Channel::Market).await.unwrap();
    let (running, most, handled) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    tokio::spawn({
        let (running, most, handled) = (running.clone(), most.clone(), handled.clone());
        async move {
            while let Some(request) = requests.recv().await {
                let (running, most, handled) = (running.clone(), most.clone(), handled.clone());
                tokio::spawn(async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Slow enough that the cap is reached while requests keep coming.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    handled.fetch_add(1, Ordering::SeqCst);
                    request.answer(json!({"type": "ack"}));
                });
            }
        }
    });
    let asks = (0..500).map(|i| {
        let (client, peer) = (client.clone(), server.peer_id());
        tokio::spawn(async move { client.request_on(Channel::Market, peer, json!({"n": i})).await })
    });
    let outcomes: Vec<Result<Value, agora_net::Error>> =
        futures_util::future::join_all(asks).await.into_iter().map(|joined| joined.unwrap()).collect();
    let (mut answered, mut busy, mut rate_limited) = (0, 0, 0);
    for outcome in &outcomes {
        match outcome {
            Ok(answer) => {
                assert_eq!(answer, &json!({"type": "ack"}));
                answered += 1;
            }
            Err(agora_net::Error::Refused { message, .. }) if message.starts_with("busy: ") => busy += 1,
            Err(agora_net::Error::Refused { message, .. }) if message.starts_with("rate limited: ") => {
                rate_limited += 1
            }
            Err(other) => panic!("neither answered nor refused with a reason: {other}"),
        }
    }
    let most = most.load(Ordering::SeqCst);
    println!(
        "500 requests: {answered} answered, {busy} busy, {rate_limited} rate limited; at most {most} handlers at once (cap {MARKET_HANDLERS})"
    );
    assert_eq!(answered + busy + rate_limited, 500);
    assert_eq!(answered, handled.load(Ordering::SeqCst));
    assert!(most <= MARKET_HANDLERS, "{most} handlers ran at once, over the cap of {MARKET_HANDLERS}");
    assert!(answered > 0 && busy > 0, "the cap was reached and requests within it were answered");
    shutdown.cancel();
}

/// The next thing a followed topic brings, within 20 s.
async fn next(topic: &mut tokio::sync::mpsc::Receiver<Gossip>) -> Gossip {
    tokio::time::timeout(Duration::from_secs(20), topic.recv()).await.expect("gossip within 20 s").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_the_nodes_that_joined_its_topic_and_a_node_that_has_not_still_publishes() {
    const TOPIC: &str = "agora-test-topic";
    let shutdown = CancellationToken::new();
    let (server, client) = pair(&shutdown).await;
    let (mut at_server, mut at_client) =
        (server.follow(TOPIC).await.unwrap(), client.follow(TOPIC).await.unwrap());

    // The client joins; the server, which has not, sees it join.
    client.join(TOPIC).await.unwrap();
    assert_eq!(next(&mut at_server).await, Gossip::Joined { peer: client.peer_id() });
    // A node that has not joined publishes to the peers that have.
    server.publish(TOPIC, b"from the server".to_vec()).await.unwrap();
    let from_server = Gossip::Message { from: server.peer_id(), data: b"from the server".to_vec() };
    assert_eq!(next(&mut at_client).await, from_server);
    // Published while the server has not joined: it never hears this one.
    client.publish(TOPIC, b"before".to_vec()).await.unwrap();
    server.join(TOPIC).await.unwrap();
    server.join(TOPIC).await.unwrap();
    assert_eq!(next(&mut at_client).await, Gossip::Joined { peer: server.peer_id() });
    client.publish(TOPIC, b"after".to_vec()).await.unwrap();
    let after = Gossip::Message { from: client.peer_id(), data: b"after".to_vec() };
    assert_eq!(next(&mut at_server).await, after, "the first message heard is the one after joining");
    shutdown.cancel();
}
