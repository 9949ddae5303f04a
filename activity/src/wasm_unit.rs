//! [`WasmRuntime`] as an [`ExeUnit`]: deploy compiles (or finds in the cache), run runs on a
//! blocking thread.

use crate::unit::{ExeError, ExeUnit, Package, RunOutcome, RunSpec};
use crate::wasm::WasmRuntime;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One activity's WASM exe-unit: the shared runtime and the deployed module's digest.
#[derive(Debug, Clone)]
pub struct WasmUnit {
    runtime: Arc<WasmRuntime>,
    module: Option<[u8; 32]>,
}

impl WasmUnit {
    pub fn new(runtime: Arc<WasmRuntime>) -> Self {
        Self { runtime, module: None }
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl ExeUnit for WasmUnit {
    fn runtime(&self) -> &'static str {
        "wasmtime"
    }

    fn deploy(&mut self, package: Package) -> BoxFuture<'_, Result<(), ExeError>> {
        Box::pin(async move {
            let Package::File(path) = package else {
                return Err(ExeError::BadPackage(
                    "a WASM activity deploys a .wasm module, not an image".into(),
                ));
            };
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| ExeError::Io(format!("module {}: {e}", path.display())))?;
            let runtime = self.runtime.clone();
            let (digest, _compiled) = tokio::task::spawn_blocking(move || runtime.prepare(&bytes))
                .await
                .map_err(|e| ExeError::Engine(format!("compiling: {e}")))??;
            self.module = Some(digest);
            Ok(())
        })
    }

    fn run(&self, spec: RunSpec) -> BoxFuture<'_, Result<RunOutcome, ExeError>> {
        Box::pin(async move {
            let module =
                self.module.ok_or_else(|| ExeError::NotDeployed("deploy a module before run".into()))?;
            let runtime = self.runtime.clone();
            // Dropping this future (the batch stopped) stops the module on its thread too.
            let stop = StopOnDrop(Arc::default());
            let flag = stop.0.clone();
            tokio::task::spawn_blocking(move || runtime.run_until(&module, &spec, &flag))
                .await
                .map_err(|e| ExeError::Engine(format!("the run's thread: {e}")))?
        })
    }

    fn terminate(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.module = None;
        })
    }
}
