//! The WASM exe-unit: WASI preview 1 modules on wasmtime, deterministic by construction.
//!
//! What makes a run reproducible on any node: the wall clock starts at a fixed instant and both
//! clocks advance by a fixed step per reading; random bytes come from a seed derived from the
//! run itself; there are no sockets; NaNs are canonicalised and relaxed SIMD is deterministic;
//! environment variables are passed sorted. Limits come from the agreement: fuel (a
//! deterministic budget of work), an epoch deadline (wall-clock time) and a memory cap.
//! Compiled modules are cached by the SHA-256 of their bytes.
//!
//! A run started with [`WasmRuntime::spawn`] is a future on the runtime's own threads, one per
//! core. A module that computes holds one of them, and gives it up at every epoch tick; a module
//! that waits (a sleep) holds none.

use crate::run_output::LazyFile;
use crate::unit::{ExeError, Limits, RunOutcome, RunSpec, Usage};
use crate::wasm_sources::{SeededStream, SteppingClock};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// How often the epoch advances: the resolution of the time limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The most elements a table may grow to.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;
struct State {
    wasi: WasiP1Ctx,
    limiter: MemoryCap,
}

/// Caps linear memory, and remembers that the cap was hit so the error can say so.
struct MemoryCap {
    max: usize,
    hit: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = Some(desired);
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The wasmtime engine, its compiled-module cache and the epoch ticker. One per node.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<State>,
    cache: Mutex<HashMap<[u8; 32], InstancePre<State>>>,
    metering: Metering,
    /// The most linear memory a run can have: the size of the pool's memory slots (see
    /// [`memory_slot`]).
    memory_slot: usize,
    ticker: Ticker,
    /// The threads runs go on (see the module's documentation). Always there until the runtime
    /// is dropped, which lets it go without waiting for runs in flight.
    executor: Option<tokio::runtime::Runtime>,
}

/// The thread that advances the engine's epoch, and what tells it to.
struct Ticker {
    runs: Arc<Runs>,
    thread: std::thread::Thread,
}

#[derive(Default)]
struct Runs {
    /// Runs going now: the ticker is parked while there are none.
    going: AtomicUsize,
    /// The runtime is gone: the ticker ends.
    closed: AtomicBool,
}

impl Ticker {
    /// Keeps the epoch advancing until the returned guard is dropped.
    fn hold(&self) -> Ticking<'_> {
        if self.runs.going.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Ticking(self)
    }
}

struct Ticking<'a>(&'a Ticker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.runs.going.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        self.ticker.runs.closed.store(true, Ordering::Release);
        self.ticker.thread.unpark();
        // Dropped from async code as well: a runtime that waited for its threads there would
        // panic.
        if let Some(executor) = self.executor.take() {
            executor.shutdown_background();
        }
    }
}

/// Instances the pool holds at once: a node runs at most [`crate::MAX_CONCURRENT_BATCHES`]
/// batches, each one run at a time, and this leaves room for runs outside batches.
const POOLED_INSTANCES: u32 = 64;

/// The pool's memory slot: what this machine's offers give a run (`golem.inf.mem.gib` is the
/// machine's memory unless a preset says otherwise), at most the 4 GiB a 32-bit module can
/// address, and never less than a run gets by default. Capped so that a node's pool reserves at
/// most 64 × 4 GiB of address space, however large the machine.
fn memory_slot() -> usize {
    const ADDRESSABLE: usize = 4 << 30;
    let total = crate::unit::memory_total().and_then(|bytes| usize::try_from(bytes).ok());
    let page = 64 << 10;
    total.unwrap_or(ADDRESSABLE).min(ADDRESSABLE).max(default_limits().memory_bytes).div_ceil(page) * page
}

/// What the engine compiles into modules to stop them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    /// Fuel: a deterministic budget and counter of work.
    pub fuel: bool,
    /// Epoch interruption: the wall-clock deadline.
    pub epochs: bool,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.cache.lock().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("WasmRuntime").field("cached_modules", &cached).finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// The runtime nodes use: fuel and epochs both on.
    pub fn new() -> Result<Self, ExeError> {
        Self::with_metering(Metering { fuel: true, epochs: true })
    }

    /// A runtime with only some of the metering compiled in, to measure what each costs. With
    /// fuel off, a run's fuel limit and counter do nothing; with epochs off, neither does its
    /// time limit.
    pub fn with_metering(metering: Metering) -> Result<Self, ExeError> {
        // Instances come from a pool of slots made once: a run's instance then costs a few
        // microseconds instead of fresh mappings. A run's memory is at most a slot (see
        // `memory_slot`). Tables may grow as far as the run's limiter lets them. A module with
        // more than 16 memories or tables, or instance data over 8 MiB, is refused when it is
        // compiled, before any run.
        let memory_slot = memory_slot();
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(POOLED_INSTANCES)
            .total_stacks(POOLED_INSTANCES)
            .total_memories(POOLED_INSTANCES)
            .total_tables(POOLED_INSTANCES * 4)
            .max_memories_per_module(16)
            .max_tables_per_module(16)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_core_instance_size(8 << 20)
            .max_memory_size(memory_slot);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .consume_fuel(metering.fuel)
            .epoch_interruption(metering.epochs)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true);
        // Threads are not compiled in (wasmtime's `threads` feature is off): no shared memory.
        let engine = Engine::new(&config).map_err(|e| ExeError::Engine(format!("wasmtime: {e}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(|e| ExeError::Engine(format!("WASI: {e}")))?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let executor = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("wasm-run")
            .enable_all()
            .build()
            .map_err(|e| ExeError::Engine(format!("the runs' threads: {e}")))?;
        // The ticker holds the engine weakly and ends once the runtime is gone. It ticks only
        // while runs are going: otherwise it is parked, and costs nothing.
        let weak = engine.weak();
        let runs = Arc::new(Runs::default());
        let counted = runs.clone();
        let ticker = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    if counted.closed.load(Ordering::Acquire) {
                        break;
                    }
                    if counted.going.load(Ordering::Acquire) == 0 {
                        drop(engine);
                        std::thread::park();
                        continue;
                    }
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| ExeError::Engine(format!("epoch ticker: {e}")))?;
        let ticker = Ticker { runs, thread: ticker.thread().clone() };
        Ok(Self {
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
            metering,
            memory_slot,
            ticker,
            executor: Some(executor),
        })
    }

    /// Compiles `bytes` (a `.wasm` module) unless a module with the same SHA-256 is cached.
    /// Returns the digest and whether it was compiled now.
    pub fn prepare(&self, bytes: &[u8]) -> Result<([u8; 32], bool), ExeError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if self.cache.lock().expect("module cache").contains_key(&digest) {
            return Ok((digest, false));
        }
        let module = Module::new(&self.engine, bytes)
            .map_err(|e| ExeError::BadPackage(format!("not a WASM module this node can run: {e:#}")))?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| {
            ExeError::BadPackage(format!("the module needs imports beyond WASI preview 1: {e:#}"))
        })?;
        self.cache.lock().expect("module cache").insert(digest, pre);
        Ok((digest, true))
    }

    fn executor(&self) -> &tokio::runtime::Runtime {
        self.executor.as_ref().expect("the runs' threads are there until the runtime is dropped")
    }

    /// Runs a prepared module's `_start` on the calling thread, blocking it until the run ends;
    /// for code that is not async (async code calls [`WasmRuntime::spawn`]). The results folder
    /// gets `stdout`, `stderr` and `outputs/`.
    ///
    /// # Panics
    ///
    /// Called from async code (a tokio runtime's thread), as tokio's `block_on` does.
    pub fn run(&self, module: &[u8; 32], spec: &RunSpec) -> Result<RunOutcome, ExeError> {
        self.executor().block_on(self.execute(module, spec))
    }

    /// Starts a run on the runtime's threads. Dropping the returned [`Running`] stops it at its
    /// next yield: within an epoch tick if it computes, at once if it waits. (A runtime without
    /// epochs, [`Metering`], has no yield while a module computes: that run goes on to its end.)
    pub fn spawn(self: &Arc<Self>, module: [u8; 32], spec: RunSpec) -> Running {
        let this = self.clone();
        Running(self.executor().spawn(async move { this.execute(&module, &spec).await }))
    }

    /// A run, and the CPU time its threads spent on it.
    async fn execute(&self, module: &[u8; 32], spec: &RunSpec) -> Result<RunOutcome, ExeError> {
        let (outcome, cpu) =
            Metered { inner: Box::pin(self.execute_unmetered(module, spec)), cpu: Duration::ZERO }.await;
        outcome.map(|mut outcome| {
            outcome.usage.cpu_sec = cpu.as_secs_f64();
            outcome
        })
    }

    async fn execute_unmetered(&self, module: &[u8; 32], spec: &RunSpec) -> Result<RunOutcome, ExeError> {
        let started = Instant::now();
        let pre = self
            .cache
            .lock()
            .expect("module cache")
            .get(module)
            .cloned()
            .ok_or_else(|| ExeError::NotDeployed("no module is deployed in this activity".into()))?;
        let outputs = spec.results.join("outputs");
        std::fs::create_dir_all(&outputs).map_err(|e| ExeError::Io(format!("{}: {e}", outputs.display())))?;
        let stdout = LazyFile::new(spec.results.join("stdout"));
        let stderr = LazyFile::new(spec.results.join("stderr"));

        let seed = spec.seed();
        let clock = SteppingClock::default();
        let mut args = vec![spec.entry_point.clone()];
        args.extend(spec.args.iter().cloned());
        let env: Vec<(&String, &String)> = spec.env.iter().collect();
        let mut wasi = WasiCtxBuilder::new();
        wasi.args(&args)
            .envs(&env)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(clock.clone())
            .monotonic_clock(clock)
            .secure_random(SeededStream::new(seed, "secure"))
            .insecure_random(SeededStream::new(seed, "insecure"))
            .insecure_random_seed(u128::from_le_bytes(seed[..16].try_into().expect("16 bytes")))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let opened = preopen(&mut wasi, &spec.input, "/input", FsPerms::ReadOnly)
            .and_then(|()| preopen(&mut wasi, &outputs, "/output", FsPerms::ReadWrite))
            .and_then(|()| {
                spec.datasets.iter().try_for_each(|(host, name)| {
                    preopen(&mut wasi, host, &format!("/datasets/{name}"), FsPerms::ReadOnly)
                })
            });
        if let Err(e) = opened {
            // A run that cannot start leaves its (empty) output files, as one that starts does.
            LazyFile::finish_all(&[&stdout, &stderr]).map_err(ExeError::Io)?;
            return Err(e);
        }
        let limits = &spec.limits;
        let max = limits.memory_bytes.min(self.memory_slot);
        let mut store =
            Store::new(&self.engine, State { wasi: wasi.build_p1(), limiter: MemoryCap { max, hit: None } });
        store.limiter(|s| &mut s.limiter);
        let fuel = limits.fuel.unwrap_or(u64::MAX);
        if self.metering.fuel {
            store.set_fuel(fuel).map_err(|e| ExeError::Engine(e.to_string()))?;
        }
        let _ticking = self.metering.epochs.then(|| self.ticker.hold());
        let deadline = tokio::time::Instant::now() + limits.time;
        if self.metering.epochs {
            // Checked at every tick the module computes through: past the time limit it is
            // interrupted, else it gives its thread to the other runs for a moment.
            let deadline = deadline.into_std();
            store.epoch_deadline_callback(move |_| {
                if Instant::now() >= deadline {
                    return Err(Trap::Interrupt.into());
                }
                Ok(UpdateDeadline::Yield(1))
            });
            store.set_epoch_deadline(1);
        }

        let mut started_at = None;
        let going = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            started_at = Some(Instant::now());
            start.call_async(&mut store, ()).await
        };
        // A module waiting in a host call (a sleep) computes through no tick: the limit ends
        // the wait itself.
        let outcome = if self.metering.epochs {
            tokio::time::timeout_at(deadline, going).await.unwrap_or_else(|_| Err(Trap::Interrupt.into()))
        } else {
            going.await
        };
        // The results folder has both files whether or not the module wrote to them.
        LazyFile::finish_all(&[&stdout, &stderr]).map_err(ExeError::Io)?;
        let fuel_used = if self.metering.fuel { fuel - store.get_fuel().unwrap_or(0) } else { 0 };
        let usage = Usage {
            duration_sec: started.elapsed().as_secs_f64(),
            // Counted by `execute`, over every thread the run went on.
            cpu_sec: 0.0,
            fuel: Some(fuel_used),
        };
        let exit_code = match outcome {
            Ok(()) => 0,
            Err(e) => {
                if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    exit.0
                } else if let Some(desired) = store.data().limiter.hit {
                    return Err(ExeError::Limit(format!(
                        "the module asked for {} MiB of memory; the limit is {} MiB",
                        desired >> 20,
                        max >> 20
                    )));
                } else if let Some(trap) = e.downcast_ref::<Trap>() {
                    return Err(match trap {
                        Trap::OutOfFuel => ExeError::Limit(format!(
                            "the module used its whole fuel budget of {fuel} and was stopped"
                        )),
                        Trap::Interrupt => ExeError::Limit(format!(
                            "the module ran past its time limit of {:.1} s and was stopped",
                            limits.time.as_secs_f64()
                        )),
                        other => ExeError::Failed(format!("the module trapped: {other}")),
                    });
                } else {
                    return Err(ExeError::Failed(format!("the module failed: {e:#}")));
                }
            }
        };
        Ok(RunOutcome { exit_code, usage, started_at })
    }

    /// Modules compiled and kept.
    pub fn cached(&self) -> usize {
        self.cache.lock().expect("module cache").len()
    }
}

/// A run being made on the runtime's threads: await it for its outcome; dropping it stops the
/// run.
#[derive(Debug)]
pub struct Running(tokio::task::JoinHandle<Result<RunOutcome, ExeError>>);

impl std::future::Future for Running {
    type Output = Result<RunOutcome, ExeError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|joined| joined.unwrap_or_else(|e| Err(ExeError::Engine(format!("the run's task: {e}")))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A future, and the CPU time of the threads it was polled on, while they polled it.
struct Metered<F> {
    inner: std::pin::Pin<Box<F>>,
    cpu: Duration,
}

impl<F: std::future::Future> std::future::Future for Metered<F> {
    type Output = (F::Output, Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let before = thread_cpu();
        let polled = self.inner.as_mut().poll(cx);
        self.cpu += thread_cpu().saturating_sub(before);
        let cpu = self.cpu;
        polled.map(|output| (output, cpu))
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

fn preopen(wasi: &mut WasiCtxBuilder, host: &Path, guest: &str, perms: FsPerms) -> Result<(), ExeError> {
    wasi.preopened_dir(host, guest, perms)
        .map(|_| ())
        .map_err(|e| ExeError::Io(format!("cannot open {} as {guest}: {e}", host.display())))
}

/// Limits a run gets when the agreement says nothing.
pub fn default_limits() -> Limits {
    Limits {
        time: Duration::from_secs(60),
        memory_bytes: 256 << 20,
        fuel: None,
        pids: 64,
        cpus: 1.0,
        network: false,
    }
}
