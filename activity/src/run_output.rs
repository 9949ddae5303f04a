//! A run's stdout and stderr files, made when the module first writes to them or when the run
//! ends: a run starts without creating files, and its results folder has both either way (unless the run was stopped, and its results with it).

use bytes::Bytes;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The most a module is offered to write at once; a larger write is taken in turns.
const WRITE_BUDGET: usize = 64 * 1024;

/// One output file of a run. Clones write to the same file.
#[derive(Clone)]
pub(crate) struct LazyFile(Arc<Inner>);

struct Inner {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl LazyFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self(Arc::new(Inner { path, file: Mutex::new(None) }))
    }

    fn with_file<T>(&self, act: impl FnOnce(&mut File) -> io::Result<T>) -> io::Result<T> {
        let mut slot = self.0.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = match &mut *slot {
            Some(file) => file,
            empty => empty.insert(File::create(&self.0.path)?),
        };
        act(file)
    }

    /// Makes each file, empty, that the module never wrote to.
    pub(crate) fn finish_all(files: &[&Self]) -> Result<(), String> {
        files.iter().try_for_each(|file| {
            file.with_file(|_| Ok(())).map_err(|e| format!("{}: {e}", file.0.path.display()))
        })
    }
}

impl IsTerminal for LazyFile {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LazyFile {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LazyFile {
    /// Always ready: a write goes straight to the file.
    async fn ready(&mut self) {}
}

impl OutputStream for LazyFile {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.with_file(|file| file.write_all(&bytes))
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::Error::new(e)))
    }

    /// Writes are not buffered: each is in the file when it returns.
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for LazyFile {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(self.with_file(|file| file.write_all(buf)).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
