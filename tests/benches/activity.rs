//! Activity benchmarks, printing their figures:
//! - from `run` received to the module's `_start`, for a cached WASM module (the exe-unit path:
//!   results folder, WASI context, instantiation from the pool, the hop to the runs' threads), beside
//!   wasmtime alone in the same run: a store with an empty WASI context and the instance, with
//!   the default allocator and with the pooling one;
//! - container start overhead of the Docker exe-unit against `docker run --rm … true`, on a
//!   private dockerd;
//! - the results-hash rate over a 1 GiB folder;
//! - what fuel and epoch metering cost, on a tight loop and on call-heavy code.
//!
//! `cargo bench -p agora-tests --bench activity`. `AGORA_BENCH_SKIP_DOCKER=1` leaves out the
//! container part (it needs root and Debian's docker.io).

use agora_activity::{
    DockerUnit, ExeUnit, Metering, Package, RunSpec, WasmRuntime, WasmUnit, default_limits, results_hash,
};
use agora_tests::{BUSYBOX_IMAGE, Dockerd};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WASM_RUNS: usize = 2000;
const CONTAINER_RUNS: usize = 20;
const HASHED_BYTES: u64 = 1 << 30;

fn spec(dir: &std::path::Path, i: usize) -> RunSpec {
    let (input, results) = (dir.join("input"), dir.join(format!("runs/{i}")));
    std::fs::create_dir_all(&input).expect("input folder");
    std::fs::create_dir_all(&results).expect("results folder");
    RunSpec {
        entry_point: "hello".into(),
        args: Vec::new(),
        env: BTreeMap::new(),
        input,
        results,
        datasets: Vec::new(),
        limits: default_limits(),
    }
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e3 / samples.len() as f64;
    format!("p50 {:.3} ms, p99 {:.3} ms, mean {mean:.3} ms ({} runs)", at(0.5), at(0.99), samples.len())
}

async fn wasm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let module =
        wat::parse_file(agora_tests::workspace_root().join("tests/wasm/hello.wat")).expect("hello.wat");
    let path = dir.path().join("hello.wasm");
    std::fs::write(&path, module).expect("module file");
    let runtime = Arc::new(WasmRuntime::new().expect("wasmtime"));
    let mut unit = WasmUnit::new(runtime);
    let compile = Instant::now();
    unit.deploy(Package::File(path.clone())).await.expect("deploy");
    let compiled = compile.elapsed();
    let cached = Instant::now();
    unit.deploy(Package::File(path)).await.expect("deploy again");
    let cached = cached.elapsed();
    let mut to_start = Vec::with_capacity(WASM_RUNS);
    let mut whole = Vec::with_capacity(WASM_RUNS);
    for i in 0..WASM_RUNS {
        let spec = spec(dir.path(), i);
        let received = Instant::now();
        let outcome = unit.run(spec).await.expect("run");
        whole.push(received.elapsed());
        to_start.push(outcome.started_at.expect("started") - received);
    }
    println!(
        "wasm: deploy compiles in {:.2} ms, a cached deploy takes {:.3} ms",
        compiled.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3
    );
    println!("wasm: run received → _start, cached module, pooling allocator: {}", stats(to_start));
    println!("wasm: whole hello run (to results written): {}", stats(whole));
}

/// wasmtime alone, the floor a run's start is measured against: a store with an empty WASI
/// context, the module instantiated from its `InstancePre`, and `_start` found, with the same
/// metering as nodes compile in.
fn engine_floor(module: &[u8], pooling: bool) -> Vec<Duration> {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(true).epoch_interruption(true);
    if pooling {
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
    }
    let engine = wasmtime::Engine::new(&config).expect("engine");
    let mut linker = wasmtime::Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx: &mut wasmtime_wasi::p1::WasiP1Ctx| ctx)
        .expect("WASI");
    let module = wasmtime::Module::new(&engine, module).expect("module");
    let pre = linker.instantiate_pre(&module).expect("imports");
    (0..WASM_RUNS)
        .map(|_| {
            let started = Instant::now();
            let mut store = wasmtime::Store::new(&engine, wasmtime_wasi::WasiCtxBuilder::new().build_p1());
            store.set_fuel(u64::MAX).expect("fuel");
            store.set_epoch_deadline(u64::MAX);
            let instance = pre.instantiate(&mut store).expect("instance");
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start").expect("_start");
            let took = started.elapsed();
            start.call(&mut store, ()).expect("hello runs");
            took
        })
        .collect()
}

/// Median time of `runs` runs of a module on a runtime with the given metering.
fn timed(metering: Metering, module: &[u8], runs: usize) -> Duration {
    let runtime = WasmRuntime::with_metering(metering).expect("wasmtime");
    let (digest, _) = runtime.prepare(module).expect("module");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut samples: Vec<Duration> = (0..runs)
        .map(|i| {
            let spec = spec(dir.path(), i);
            let started = Instant::now();
            let outcome = runtime.run(&digest, &spec).expect("run");
            assert_eq!(outcome.exit_code, 0);
            started.elapsed()
        })
        .collect();
    samples.sort();
    samples[runs / 2]
}

fn metering() {
    for (name, file) in [("tight loop (300 M iterations)", "loop"), ("call-heavy (fib 32)", "calls")] {
        let module = wat::parse_file(agora_tests::workspace_root().join(format!("tests/wasm/{file}.wat")))
            .expect("module text");
        let none = timed(Metering { fuel: false, epochs: false }, &module, 5);
        let cost = |metering| {
            let took = timed(metering, &module, 5);
            format!(
                "{:.0} ms ({:+.0}%)",
                took.as_secs_f64() * 1e3,
                (took.as_secs_f64() / none.as_secs_f64() - 1.0) * 100.0
            )
        };
        println!(
            "metering, {name}: none {:.0} ms, fuel {}, epochs {}, both (what nodes run) {}",
            none.as_secs_f64() * 1e3,
            cost(Metering { fuel: true, epochs: false }),
            cost(Metering { fuel: false, epochs: true }),
            cost(Metering { fuel: true, epochs: true })
        );
    }
}

async fn docker() {
    let dockerd = Dockerd::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut unit = DockerUnit::new(dockerd.client().clone(), "activity-bench");
    unit.deploy(Package::Image(BUSYBOX_IMAGE.into())).await.expect("deploy");
    let mut ours = Vec::with_capacity(CONTAINER_RUNS);
    let mut to_start = Vec::with_capacity(CONTAINER_RUNS);
    for i in 0..CONTAINER_RUNS {
        let mut spec = spec(dir.path(), i);
        spec.entry_point = "true".into();
        let received = Instant::now();
        let outcome = unit.run(spec).await.expect("container run");
        ours.push(received.elapsed());
        to_start.push(outcome.started_at.expect("started") - received);
    }
    let mut cli = Vec::with_capacity(CONTAINER_RUNS);
    let host = format!("unix://{}", dockerd.socket().display());
    for _ in 0..CONTAINER_RUNS {
        let started = Instant::now();
        let status = std::process::Command::new("docker")
            .args(["-H", &host, "run", "--rm", "--network", "none", BUSYBOX_IMAGE, "true"])
            .status()
            .expect("docker CLI");
        assert!(status.success());
        cli.push(started.elapsed());
    }
    println!("docker: exe-unit run of `true` (create, start, wait, logs, remove): {}", stats(ours));
    println!("docker: of which run received → container started: {}", stats(to_start));
    println!("docker: `docker run --rm --network none … true`: {}", stats(cli));
}

fn hashing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = 64;
    let block = vec![0x5a_u8; (HASHED_BYTES / files) as usize];
    for i in 0..files {
        let sub = dir.path().join(format!("outputs/part{}", i % 8));
        std::fs::create_dir_all(&sub).expect("folder");
        let mut bytes = block.clone();
        bytes[..8].copy_from_slice(&i.to_le_bytes());
        std::fs::write(sub.join(format!("file{i}.bin")), bytes).expect("file");
    }
    // One warm-up pass so both runs read from the page cache.
    results_hash(dir.path()).expect("hash");
    let started = Instant::now();
    let hash = results_hash(dir.path()).expect("hash");
    let took = started.elapsed().as_secs_f64();
    println!(
        "results hash: {:.0} MB/s over {} MiB in {files} files ({took:.2} s, {hash})",
        HASHED_BYTES as f64 / 1e6 / took,
        HASHED_BYTES >> 20
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(wasm());
    // Off the async runtime: WASI's host calls start one of their own when called synchronously.
    let module =
        wat::parse_file(agora_tests::workspace_root().join("tests/wasm/hello.wat")).expect("hello.wat");
    println!("wasmtime alone, default allocator: {}", stats(engine_floor(&module, false)));
    println!("wasmtime alone, pooling allocator: {}", stats(engine_floor(&module, true)));
    if std::env::var_os("AGORA_BENCH_SKIP_DOCKER").is_none() {
        runtime.block_on(docker());
    }
    hashing();
    metering();
}
