//! Matching one demand against 100 000 generated offers, both sides evaluated, on one core: the
//! plain loop of full evaluations, the index on the runtime name, and the columnar matcher.
//! `cargo bench -p agora-grammar`.
//!
//! Two corpora: offers spread over six runtimes, and offers half of which share the runtime the
//! demand asks for, where the index can skip little. For each, the bench prints the best of 20
//! runs, ns per pair and how many offers matched; Criterion then reports each again.

use agora_grammar::{DEFAULT_INDEXED, Offers, flatten, parse};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::time::Instant;

const OFFERS: usize = 100_000;

/// A small deterministic generator (xorshift64*), so every run sees the same corpus.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const RUNTIMES: &[&str] = &["wasmtime", "docker", "vm", "wasmtime", "docker", "ai-runtime"];
const PLATFORMS: &[&str] =
    &["erc20-polygon-glm", "erc20-holesky-tglm", "erc20-mainnet-glm", "zksync-mainnet-glm"];
const VENDORS: &[&str] = &["GenuineIntel", "AuthenticAMD"];
const SUBNETS: &[&str] = &["public", "public", "public", "devnet-beta"];

/// How the offers' runtimes are spread.
#[derive(Clone, Copy)]
enum Corpus {
    /// Evenly over [`RUNTIMES`].
    SixRuntimes,
    /// Every other offer runs wasmtime, the runtime the demand asks for.
    HalfShared,
}

impl Corpus {
    fn name(self) -> &'static str {
        match self {
            Corpus::SixRuntimes => "six runtimes",
            Corpus::HalfShared => "half share one runtime",
        }
    }

    fn runtime(self, g: &mut Gen, i: usize) -> &'static str {
        match self {
            Corpus::HalfShared if i.is_multiple_of(2) => "wasmtime",
            _ => g.pick(RUNTIMES),
        }
    }
}

/// An offer like a provider publishes: 30 to 40 properties, nested and dotted.
fn offer(g: &mut Gen, corpus: Corpus, i: usize) -> (Value, String) {
    let runtime = corpus.runtime(g, i);
    let mut p = Map::new();
    let mut set = |k: &str, v: Value| {
        p.insert(k.to_string(), v);
    };
    set("golem.runtime.name", json!(runtime));
    set("golem.runtime.version", json!(format!("{}.{}.{}", g.below(3), g.below(12), g.below(20))));
    set("golem.runtime.capabilities", json!(["vpn", if g.below(4) == 0 { "gpu" } else { "inet" }]));
    set("golem.inf.cpu.architecture", json!("x86_64"));
    set("golem.inf.cpu.vendor", json!(g.pick(VENDORS)));
    set("golem.inf.cpu.model", json!(format!("Stepping {} Family 6 Model {}", g.below(12), g.below(200))));
    set("golem.inf.cpu.cores", json!(1 + g.below(32)));
    set("golem.inf.cpu.threads", json!(1 + g.below(64)));
    set("golem.inf.cpu.capabilities", json!(["sse3", "avx", "avx2"]));
    set("golem.inf.mem.gib", json!(0.5 + g.below(64) as f64));
    set("golem.inf.storage.gib", json!(g.below(500) as f64 + 0.25));
    set("golem.com.pricing.model", json!("linear"));
    set(
        "golem.com.pricing.model.linear.coeffs",
        json!([g.below(100) as f64 / 1e5, g.below(100) as f64 / 1e5, 0.0]),
    );
    set("golem.com.usage.vector", json!(["golem.usage.duration_sec", "golem.usage.cpu_sec"]));
    set("golem.com.scheme", json!("payu"));
    set("golem.com.scheme.payu.debit-note.interval-sec?", json!(120));
    set("golem.com.scheme.payu.payment-timeout-sec?", json!(120));
    let platforms = 1 + g.below(2);
    for _ in 0..platforms {
        let platform = g.pick(PLATFORMS);
        set(&format!("golem.com.payment.platform.{platform}.address"), json!(format!("0x{:040x}", g.next())));
    }
    set("golem.com.payment.protocol.version", json!("3"));
    set("golem.node.id.name", json!(format!("provider-{i}")));
    set("golem.node.debug.subnet", json!(g.pick(SUBNETS)));
    set("golem.node.geo.country_code", json!(if g.below(2) == 0 { "PL" } else { "DE" }));
    set("golem.activity.caps.transfer.protocol", json!(["http", "https", "gftp"]));
    set("golem.srv.caps.multi-activity", json!(true));
    set("golem.srv.caps.payload-manifest", json!(g.below(2) == 0));
    set("golem.srv.comp.expiration", json!(1_800_000_000_000_u64 + g.below(1_000_000)));
    set("agora.provider.version", json!("0.1.0"));
    set("agora.datasets", json!([format!("sha256:{:016x}", g.next())]));
    let extra = g.below(9);
    for k in 0..extra {
        set(&format!("agora.extra.k{k}"), json!(g.below(1000)));
    }
    let constraints = "(&(golem.srv.comp.expiration>0)(golem.node.debug.subnet=*))".to_string();
    (Value::Object(p), constraints)
}

const DEMAND: &str = "(&(golem.runtime.name=wasmtime)\
    (golem.inf.mem.gib>=4)\
    (golem.inf.cpu.threads>=2)\
    (golem.inf.storage.gib>=10)\
    (golem.com.pricing.model=linear)\
    (golem.runtime.version$v>=1.0.0)\
    (golem.node.debug.subnet=public)\
    (|(golem.com.payment.platform.erc20-polygon-glm.address=*)\
      (golem.com.payment.platform.erc20-holesky-tglm.address=*)))";

fn build(corpus: Corpus) -> (Offers, agora_grammar::Side) {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut offers = Offers::new(DEFAULT_INDEXED);
    let mut props_total = 0;
    for i in 0..OFFERS {
        let (props, constraints) = offer(&mut g, corpus, i);
        let flat = flatten(&props).expect("generated properties flatten");
        props_total += flat.len();
        offers.push(&flat, &parse(&constraints).expect("generated constraint parses"));
    }
    let demand_props = flatten(&json!({
        "golem.srv.comp.expiration": 1_800_000_000_000_u64,
        "golem.node.debug.subnet": "public",
        "golem.com.payment.platform.erc20-polygon-glm.address": "0x0000000000000000000000000000000000000001",
    }))
    .expect("demand properties");
    let demand = offers.demand(&demand_props, &parse(DEMAND).expect("demand parses"));
    println!(
        "corpus, {}: {OFFERS} offers, {:.1} properties each on average",
        corpus.name(),
        props_total as f64 / OFFERS as f64
    );
    (offers, demand)
}

fn report(name: &str, offers: &Offers, run: impl Fn() -> Vec<usize>) {
    let rounds = 20;
    let mut best = f64::MAX;
    let mut found = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        found = black_box(run()).len();
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "  {name}: best of {rounds}: {:.2} ms for {} offers, {:.1} ns per pair, {found} matches",
        best * 1e3,
        offers.len(),
        best * 1e9 / offers.len() as f64
    );
}

fn bench(c: &mut Criterion) {
    for (corpus, group_name) in
        [(Corpus::SixRuntimes, "match_100k"), (Corpus::HalfShared, "match_100k_half_shared")]
    {
        let (offers, demand) = build(corpus);
        let linear = offers.match_all_linear(&demand);
        assert_eq!(offers.match_indexed(&demand), linear, "the index changes no result");
        assert_eq!(offers.match_all(&demand), linear, "the columns change no result");
        report("plain loop", &offers, || offers.match_all_linear(&demand));
        report("indexed", &offers, || offers.match_indexed(&demand));
        report("columnar", &offers, || offers.match_all(&demand));

        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(OFFERS as u64));
        group.sample_size(20).measurement_time(std::time::Duration::from_secs(8));
        group.bench_function("plain_loop", |b| b.iter(|| offers.match_all_linear(black_box(&demand))));
        group.bench_function("indexed", |b| b.iter(|| offers.match_indexed(black_box(&demand))));
        group.bench_function("columnar", |b| b.iter(|| offers.match_all(black_box(&demand))));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
