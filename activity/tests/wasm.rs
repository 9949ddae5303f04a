//! The WASM exe-unit on wasmtime: the test modules in `tests/wasm/` (WAT, compiled here).

use agora_activity::{ExeError, RunSpec, WasmRuntime, default_limits, results_hash};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn module(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/wasm").join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Run {
    _dir: tempfile::TempDir,
    spec: RunSpec,
}

fn spec(input: &[(&str, &str)], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (input_dir, results) = (dir.path().join("input"), dir.path().join("results"));
    std::fs::create_dir_all(&input_dir).unwrap();
    std::fs::create_dir_all(&results).unwrap();
    for (name, text) in input {
        std::fs::write(input_dir.join(name), text).unwrap();
    }
    let spec = RunSpec {
        entry_point: "main".into(),
        args: Vec::new(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        input: input_dir,
        results,
        datasets: Vec::new(),
        limits: default_limits(),
    };
    Run { _dir: dir, spec }
}

fn run(runtime: &WasmRuntime, name: &str, spec: &RunSpec) -> Result<(i32, String, String), ExeError> {
    let (digest, _) = runtime.prepare(&module(name))?;
    let outcome = runtime.run(&digest, spec)?;
    let read = |file: &str| std::fs::read_to_string(spec.results.join(file)).unwrap_or_default();
    Ok((outcome.exit_code, read("stdout"), read("stderr")))
}

#[test]
fn hello_cat_env_and_exit_codes() {
    let runtime = WasmRuntime::new().unwrap();
    let hello = spec(&[], &[]);
    assert_eq!(run(&runtime, "hello", &hello.spec).unwrap(), (0, "hello from wasm\n".into(), String::new()));

    let cat = spec(&[("in.txt", "a line\nanother\n")], &[]);
    assert_eq!(run(&runtime, "cat", &cat.spec).unwrap().1, "a line\nanother\n");
    let copied = std::fs::read_to_string(cat.spec.results.join("outputs/out.txt")).unwrap();
    assert_eq!(copied, "a line\nanother\n");
    let missing = spec(&[], &[]);
    assert_eq!(run(&runtime, "cat", &missing.spec).unwrap().0, 2, "no input file: the module's own exit 2");

    let env = spec(&[], &[("ZETA", "last"), ("ALPHA", "first"), ("MIDDLE", "x=y")]);
    assert_eq!(run(&runtime, "env", &env.spec).unwrap().1, "ALPHA=first\nMIDDLE=x=y\nZETA=last\n");

    let exit = spec(&[], &[]);
    assert_eq!(run(&runtime, "exit", &exit.spec).unwrap(), (3, String::new(), "failing on purpose\n".into()));
}

#[test]
fn clocks_and_random_bytes_are_the_same_on_two_runtimes() {
    let (first, second) = (WasmRuntime::new().unwrap(), WasmRuntime::new().unwrap());
    let (a, b) = (spec(&[], &[("SEED", "1")]), spec(&[], &[("SEED", "1")]));
    run(&first, "entropy", &a.spec).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    run(&second, "entropy", &b.spec).unwrap();
    let (out_a, out_b) = (
        std::fs::read(a.spec.results.join("stdout")).unwrap(),
        std::fs::read(b.spec.results.join("stdout")).unwrap(),
    );
    assert_eq!(out_a.len(), 48);
    assert_eq!(out_a, out_b);
    assert_eq!(results_hash(&a.spec.results).unwrap(), results_hash(&b.spec.results).unwrap());
    // The random bytes are not all zero, and another run (other arguments) draws others.
    assert!(out_a[16..].iter().any(|&b| b != 0));
    let c = spec(&[], &[("SEED", "2")]);
    run(&first, "entropy", &c.spec).unwrap();
    assert_ne!(std::fs::read(c.spec.results.join("stdout")).unwrap()[16..], out_a[16..]);
}

#[test]
fn limits_stop_runaway_modules_with_a_clear_error() {
    let runtime = WasmRuntime::new().unwrap();
    let mut spin = spec(&[], &[]);
    spin.spec.limits.time = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let error = run(&runtime, "spin", &spin.spec).unwrap_err();
    assert!(matches!(&error, ExeError::Limit(m) if m.contains("time limit of 0.3 s")), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped near the limit");

    let mut fuel = spec(&[], &[]);
    fuel.spec.limits.fuel = Some(1_000_000);
    let error = run(&runtime, "spin", &fuel.spec).unwrap_err();
    assert!(matches!(&error, ExeError::Limit(m) if m.contains("fuel budget of 1000000")), "{error}");

    let mut grow = spec(&[], &[]);
    grow.spec.limits.memory_bytes = 64 << 20;
    let error = run(&runtime, "grow", &grow.spec).unwrap_err();
    assert!(matches!(&error, ExeError::Limit(m) if m.contains("the limit is 64 MiB")), "{error}");
}

#[test]
fn a_module_is_compiled_once_and_garbage_is_refused() {
    let runtime = WasmRuntime::new().unwrap();
    assert!(runtime.prepare(&module("hello")).unwrap().1, "compiled the first time");
    assert!(!runtime.prepare(&module("hello")).unwrap().1, "found in the cache the second time");
    assert_eq!(runtime.cached(), 1);
    let error = runtime.prepare(b"not wasm at all").unwrap_err();
    assert!(matches!(&error, ExeError::BadPackage(m) if m.contains("not a WASM module")), "{error}");
}

#[test]
fn both_output_files_are_in_the_results_folder_whether_or_not_the_module_wrote_to_them() {
    let runtime = WasmRuntime::new().unwrap();
    // hello writes stdout only, exit stderr only: each leaves the other empty, not missing.
    for (name, written, empty) in [("hello", "stdout", "stderr"), ("exit", "stderr", "stdout")] {
        let run = spec(&[], &[]);
        let (digest, _) = runtime.prepare(&module(name)).unwrap();
        runtime.run(&digest, &run.spec).unwrap();
        let written = std::fs::metadata(run.spec.results.join(written)).unwrap();
        assert!(written.len() > 0, "{name}: what it wrote is there");
        let empty = std::fs::metadata(run.spec.results.join(empty)).unwrap();
        assert_eq!(empty.len(), 0, "{name}: the other file is there, empty");
    }
}

#[test]
fn a_module_waiting_in_a_sleep_is_stopped_at_its_time_limit() {
    let runtime = WasmRuntime::new().unwrap();
    let mut sleep = spec(&[], &[]);
    sleep.spec.limits.time = Duration::from_millis(500);
    let started = Instant::now();
    let error = run(&runtime, "sleep", &sleep.spec).unwrap_err();
    assert!(matches!(&error, ExeError::Limit(m) if m.contains("time limit of 0.5 s")), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped near the limit, not after its 60 s sleep");
}

/// Threads of this process (nextest runs each test in a process of its own).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn runs_waiting_in_a_sleep_hold_no_thread_and_others_run_meanwhile() {
    const SLEEPERS: usize = 16;
    let runtime = Arc::new(WasmRuntime::new().unwrap());
    let (sleep, _) = runtime.prepare(&module("sleep")).unwrap();
    let (hello, _) = runtime.prepare(&module("hello")).unwrap();
    let driver = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    driver.block_on(async {
        let first = spec(&[], &[]);
        runtime.spawn(hello, first.spec.clone()).await.unwrap();
        let before = threads();
        let sleepers: Vec<_> = (0..SLEEPERS)
            .map(|_| {
                let run = spec(&[], &[]);
                (runtime.spawn(sleep, run.spec.clone()), run)
            })
            .collect();
        // Every sleeper has started and is waiting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = threads();
        let other = spec(&[], &[]);
        let outcome = runtime.spawn(hello, other.spec.clone()).await.unwrap();
        assert_eq!(outcome.exit_code, 0);
        assert!(outcome.usage.cpu_sec > 0.0, "its CPU time is counted: {:?}", outcome.usage);
        assert_eq!(std::fs::read_to_string(other.spec.results.join("stdout")).unwrap(), "hello from wasm\n");
        assert!(
            during <= before,
            "{SLEEPERS} sleeping runs took threads: {before} threads before them, {during} while they slept"
        );
        drop(sleepers);
    });
}
