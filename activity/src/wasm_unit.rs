//! [`WasmRuntime`] as an [`ExeUnit`]: deploy compiles (or finds in the cache) on a blocking
//! thread, run runs on the runtime's own threads.

use crate::unit::{ExeError, ExeUnit, Package, RunOutcome, RunSpec};
use crate::wasm::WasmRuntime;
use futures_util::future::BoxFuture;
use std::sync::Arc;

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
            // Dropping this future (the batch stopped) stops the run too.
            self.runtime.spawn(module, spec).await
        })
    }

    fn terminate(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.module = None;
        })
    }
}
