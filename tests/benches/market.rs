//! Market benchmarks on loopback, printing their figures:
//! - how long until the offers of 100 provider nodes are all visible to one requestor;
//! - with those 100 nodes up and idle, one provider publishing a new offer 20 times: publish →
//!   the requestor's `ProposalEvent`, p50 and p99;
//! - proposal → approved agreement latency, p50 and p99;
//! - agreements per second with many negotiations at once.
//!
//! Every node is a real libp2p swarm with its own Postgres database (one throwaway cluster), and
//! the agora node's own market loop; they share one process. `cargo bench -p agora-tests --bench market`.

use agora_agreement::AgreementState;
use agora_identity::Identity;
use agora_market::api::{DemandOfferBase, Event};
use agora_market::{Market, ProposalState};
use agora_net::{NetConfig, NetHandle};
use agora_tests::TestPg;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The provider nodes, unless `AGORA_BENCH_PROVIDERS` says otherwise.
const DEFAULT_PROVIDERS: usize = 100;

const SEQUENTIAL_AGREEMENTS: usize = 100;
const CONCURRENT_AGREEMENTS: usize = 100;

struct Node {
    market: Market,
    net: NetHandle,
    addr: String,
}

async fn node(pg: &TestPg, db: &str, peers: Vec<String>, shutdown: &CancellationToken) -> Node {
    let url = pg.another_database(db).await;
    let size = if db == "requestor" { 16 } else { 3 };
    let pool = PgPoolOptions::new().max_connections(size).connect(&url).await.expect("connect");
    agora::node::MIGRATOR.run(&pool).await.expect("migrate");
    let identity = Identity::random();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
        peers: peers.iter().map(|p| p.parse().expect("peer multiaddr")).collect(),
        ..Default::default()
    };
    let (net, _task) =
        agora_net::start(identity.libp2p_keypair(), config, shutdown.clone()).await.expect("network");
    let market = Market::new(pool, identity).with_courier(Arc::new(net.clone()));
    let tasks = tokio_util::task::TaskTracker::new();
    agora_market::serve(market.clone(), net.clone(), shutdown.clone(), tasks).await.expect("market served");
    let status = net.status().await.expect("status");
    let addr = format!("{}/p2p/{}", status.listen[0], status.peer_id);
    Node { market, net, addr }
}

fn offer(i: usize) -> DemandOfferBase {
    DemandOfferBase {
        properties: json!({"golem.runtime.name": "wasmtime", "golem.node.id.name": format!("p{i}"), "golem.inf.mem.gib": 8}),
        constraints: "()".into(),
    }
}

/// Tries at a counter-proposal the requestor could not take (busy), 100 ms apart.
const COUNTER_TRIES: u32 = 20;

/// The provider's agent: counters every proposal once and approves every agreement.
fn provider_agent(market: Market, offer_id: String, shutdown: CancellationToken) {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            let Ok(events) = market.collect_offer_events(&offer_id, Duration::from_secs(5), 50).await else {
                continue;
            };
            for event in events {
                match event {
                    Event::Proposal { proposal, .. } if proposal.state == ProposalState::Draft => {
                        let base = DemandOfferBase {
                            properties: proposal.properties.clone(),
                            constraints: "()".into(),
                        };
                        // A requestor at its limit of requests at once says so: try again shortly.
                        for attempt in 1..=COUNTER_TRIES {
                            match market.counter_proposal(&offer_id, &proposal.proposal_id, &base, true).await
                            {
                                Ok(_) => break,
                                Err(agora_market::Error::Unreachable(_)) if attempt < COUNTER_TRIES => {
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                                Err(e) => {
                                    eprintln!("provider counter failed: {e}");
                                    break;
                                }
                            }
                        }
                    }
                    Event::Agreement { agreement, .. } => {
                        if let Err(e) = market.approve_agreement(&agreement.agreement_id).await {
                            eprintln!("approve failed: {e}");
                        }
                    }
                    _ => {}
                }
            }
        }
    });
}

async fn next_proposal(market: &Market, demand: &str, state: ProposalState) -> String {
    loop {
        for event in market.collect_demand_events(demand, Duration::from_secs(10), 10).await.expect("events")
        {
            if let Event::Proposal { proposal, .. } = event
                && proposal.state == state
            {
                return proposal.proposal_id;
            }
        }
    }
}

/// One negotiation with provider `i`: returns the time from the requestor's counter-proposal to
/// the approved agreement.
async fn negotiate(requestor: &Market, i: usize) -> Duration {
    let base = DemandOfferBase {
        properties: json!({"golem.srv.comp.expiration": 1_900_000_000_000_u64, "bench.round": rand_round()}),
        constraints: format!("(golem.node.id.name=p{i})"),
    };
    let demand = requestor.subscribe_demand(&base, agora_agreement::ADMIN_PRINCIPAL).await.expect("demand");
    let initial = next_proposal(requestor, &demand, ProposalState::Initial).await;
    let start = Instant::now();
    requestor.counter_proposal(&demand, &initial, &base, false).await.expect("counter");
    let draft = next_proposal(requestor, &demand, ProposalState::Draft).await;
    let agreement = requestor
        .create_agreement(&draft, chrono::Utc::now() + chrono::Duration::minutes(10))
        .await
        .expect("agreement");
    requestor.confirm_agreement(&agreement).await.expect("confirm");
    let outcome = requestor.wait_for_approval(&agreement, Duration::from_secs(30)).await.expect("wait");
    assert_eq!(outcome, Some(AgreementState::Approved));
    let took = start.elapsed();
    requestor.unsubscribe_demand(&demand).await.expect("unsubscribe");
    took
}

/// Single offers in the idle network: one provider publishes a new offer, one at a time, and the
/// requestor's demand for them is told of each by a `ProposalEvent`. Prints publish → event, p50
/// and p99.
async fn single_offer_latency(requestor: &Market, provider: &Market, nodes: usize) {
    const ROUNDS: usize = 20;
    let watching =
        DemandOfferBase { properties: json!({}), constraints: "(golem.node.id.name=fresh-*)".into() };
    let demand =
        requestor.subscribe_demand(&watching, agora_agreement::ADMIN_PRINCIPAL).await.expect("demand");
    let mut latencies = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let name = format!("fresh-{round}");
        let offer = DemandOfferBase {
            properties: json!({"golem.runtime.name": "wasmtime", "golem.node.id.name": name}),
            constraints: "()".into(),
        };
        let published = Instant::now();
        let offer_id =
            provider.subscribe_offer(&offer, agora_agreement::ADMIN_PRINCIPAL).await.expect("offer");
        let arrived = 'wait: loop {
            assert!(published.elapsed() < Duration::from_secs(120), "offer {name} not proposed in 120 s");
            for event in
                requestor.collect_demand_events(&demand, Duration::from_secs(5), 10).await.expect("events")
            {
                if let Event::Proposal { proposal, .. } = event
                    && proposal.properties["golem.node.id.name"] == name
                {
                    break 'wait published.elapsed();
                }
            }
        };
        latencies.push(arrived);
        provider.unsubscribe_offer(&offer_id).await.expect("withdraw");
        // Apart in time, as offers are: each one meets an idle network.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    requestor.unsubscribe_demand(&demand).await.expect("unsubscribe");
    latencies.sort();
    println!(
        "single offer, {nodes} providers idle: publish → ProposalEvent, {ROUNDS} offers one at a time: p50 {:.1} ms, p99 {:.1} ms (of {ROUNDS}, the slowest), max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().expect("latencies").as_secs_f64() * 1e3
    );
}

/// Demand ids commit to their content and millisecond timestamp; a counter keeps them apart.
fn rand_round() -> u64 {
    static ROUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

/// This process's CPU time so far (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat format") + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // In USER_HZ ticks, which Linux fixes at 100 per second for user space.
    ticks / 100.0
}

fn providers() -> usize {
    std::env::var("AGORA_BENCH_PROVIDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_PROVIDERS)
}

fn main() {
    // RUST_LOG=agora=debug shows what the nodes do.
    let _no_other_subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    #[allow(non_snake_case)]
    let PROVIDERS = providers();
    runtime.block_on(async {
        let pg = TestPg::start().await;
        let shutdown = CancellationToken::new();
        let requestor = node(&pg, "requestor", Vec::new(), &shutdown).await;
        // The requestor is looking for offers before the providers start: it has joined the
        // offers topic, and each provider learns so as it connects.
        let watching = DemandOfferBase { properties: json!({}), constraints: "(golem.runtime.name=wasmtime)".into() };
        let watch = requestor.market.subscribe_demand(&watching, agora_agreement::ADMIN_PRINCIPAL).await.expect("demand");

        let setup = Instant::now();
        let mut providers = Vec::with_capacity(PROVIDERS);
        for i in 0..PROVIDERS {
            let provider = node(&pg, &format!("provider_{i}"), vec![requestor.addr.clone()], &shutdown).await;
            providers.push(provider);
        }
        println!("setup: {PROVIDERS} provider nodes up in {:.2} s", setup.elapsed().as_secs_f64());

        let published = Instant::now();
        // Every provider publishes at once, as separate nodes would.
        let publishing: Vec<_> = providers
            .iter()
            .enumerate()
            .map(|(i, provider)| {
                let market = provider.market.clone();
                // The market announces the offer as it subscribes it.
                tokio::spawn(async move { market.subscribe_offer(&offer(i), agora_agreement::ADMIN_PRINCIPAL).await.expect("offer") })
            })
            .collect();
        let mut offer_ids = Vec::with_capacity(PROVIDERS);
        for task in publishing {
            offer_ids.push(task.await.expect("publishing task"));
        }
        let publishing = published.elapsed();
        // Time until half, nine tenths and all of the offers are visible; gives up after 120 s and
        // says how many arrived.
        let mut marks: Vec<(usize, Option<Duration>)> =
            vec![(PROVIDERS / 2, None), (PROVIDERS * 9 / 10, None), (PROVIDERS, None)];
        let mut seen = 0;
        while published.elapsed() < Duration::from_secs(120) && marks.iter().any(|(_, t)| t.is_none()) {
            seen = requestor.market.remote_offers().await.expect("offers").len();
            for (count, at) in &mut marks {
                if at.is_none() && seen >= *count {
                    *at = Some(published.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let shown: Vec<String> = marks
            .iter()
            .map(|(count, at)| match at {
                Some(t) => format!("{count} offers after {:.0} ms", t.as_secs_f64() * 1e3),
                None => format!("{count} offers not reached in 120 s"),
            })
            .collect();
        println!(
            "offer propagation ({PROVIDERS} providers, publishing took {:.0} ms): {}; {seen} of {PROVIDERS} visible at the end",
            publishing.as_secs_f64() * 1e3,
            shown.join(", ")
        );
        let visible: Vec<usize> = {
            let names: Vec<String> = requestor
                .market
                .remote_offers()
                .await
                .expect("offers")
                .iter()
                .filter_map(|o| o.properties["golem.node.id.name"].as_str().map(str::to_string))
                .collect();
            (0..PROVIDERS).filter(|i| names.contains(&format!("p{i}"))).collect()
        };
        requestor.market.unsubscribe_demand(&watch).await.expect("unsubscribe");
        // What the idle network costs: all nodes announcing and keeping their connections.
        let (cpu_before, idle) = (cpu_seconds(), Instant::now());
        let peers = requestor.net.status().await.expect("status").peers.len();
        let provider_peers = providers[0].net.status().await.expect("status").peers.len();
        println!("connections: requestor {peers}, provider 0 {provider_peers}");
        tokio::time::sleep(Duration::from_secs(10)).await;
        println!(
            "idle: {} nodes use {:.0}% of one core (process CPU time over {:.0} s, Postgres not counted)",
            PROVIDERS + 1,
            (cpu_seconds() - cpu_before) / idle.elapsed().as_secs_f64() * 100.0,
            idle.elapsed().as_secs_f64()
        );
        single_offer_latency(&requestor.market, &providers[PROVIDERS / 2].market, PROVIDERS).await;
        for (provider, id) in providers.iter().zip(offer_ids) {
            provider_agent(provider.market.clone(), id, shutdown.clone());
        }

        let mut latencies = Vec::with_capacity(SEQUENTIAL_AGREEMENTS);
        for round in 0..SEQUENTIAL_AGREEMENTS {
            latencies.push(negotiate(&requestor.market, visible[round % visible.len()]).await);
        }
        latencies.sort();
        println!(
            "proposal → approved agreement, {SEQUENTIAL_AGREEMENTS} one after another: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().expect("latencies").as_secs_f64() * 1e3
        );

        let start = Instant::now();
        let mut tasks = Vec::with_capacity(CONCURRENT_AGREEMENTS);
        for i in 0..CONCURRENT_AGREEMENTS {
            let market = requestor.market.clone();
            let provider = visible[i % visible.len()];
            tasks.push(tokio::spawn(async move { negotiate(&market, provider).await }));
        }
        for task in tasks {
            task.await.expect("negotiation task");
        }
        let elapsed = start.elapsed();
        println!(
            "throughput: {CONCURRENT_AGREEMENTS} negotiations at once, {:.1} agreements per second ({:.2} s in all)",
            CONCURRENT_AGREEMENTS as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        shutdown.cancel();
    });
}
