//! Blobs between nodes, on the `/agora/blob/1` stream protocol.
//!
//! The fetcher opens a stream and asks for a blob from an offset ([`BlobAsk`]); the source
//! answers with a [`BlobHead`] (the blob's whole size, or a refusal), then sends the bytes from
//! that offset to the end, raw, and closes the stream. Both messages are a 4-byte big-endian
//! length and that much JSON. One stream per fetch and no encoding, so a blob moves at the speed
//! of the connection; a fetch that breaks off asks again from where it broke
//! ([`crate::BlobStore::fetch`]).
//!
//! Blobs are inputs and outputs of agreed work: they are sent only to the other party of an
//! Approved agreement with this node, never to any peer that learns a hash.

use crate::blobs::{BlobReader, BlobSource};
use crate::wire::{BlobAsk, BlobHead};
use crate::{Activities, Error, Messenger, Result};
use agora_net::{Incoming, PeerId};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A byte stream to another node's blob protocol.
pub trait BlobPipe: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> BlobPipe for T {}

/// Blob streams sent at once; more are refused as busy, and their fetchers ask again.
pub const BLOB_STREAMS: usize = 16;
/// Blob streams whose ask is being read and checked, at once; more are dropped unread.
const BLOB_ASKS: usize = 64;
/// The largest header either side sends.
const MAX_HEAD: u32 = 4096;
/// How long the asking side has to say what it wants, and the source to answer.
const HEAD_TIMEOUT: Duration = Duration::from_secs(20);
/// How much of a blob file one read takes.
const READ_BUFFER: usize = 1 << 20;
/// How long a source waits for a fetcher to take the next piece before it leaves the stream.
const SEND_STALL: Duration = Duration::from_secs(60);

/// Writes a header: its length (4 bytes, big-endian) and its JSON.
async fn write_head<W: AsyncWrite + Unpin, T: Serialize>(pipe: &mut W, head: &T) -> std::io::Result<()> {
    let json = serde_json::to_vec(head).map_err(std::io::Error::other)?;
    pipe.write_all(&(json.len() as u32).to_be_bytes()).await?;
    pipe.write_all(&json).await?;
    pipe.flush().await
}

/// Reads a header written by [`write_head`], refusing one over [`MAX_HEAD`] bytes.
async fn read_head<R: AsyncRead + Unpin, T: DeserializeOwned>(pipe: &mut R) -> std::io::Result<T> {
    let read = async {
        let len = pipe.read_u32().await?;
        if len > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a blob stream header of {len} bytes (at most {MAX_HEAD})"),
            ));
        }
        let mut json = vec![0; len as usize];
        pipe.read_exact(&mut json).await?;
        serde_json::from_slice(&json).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no blob stream header in time"))?
}

/// Blobs from another node, over its blob protocol.
pub(crate) struct PeerBlobs {
    pub(crate) messenger: Arc<dyn Messenger>,
    pub(crate) peer: String,
}

impl BlobSource for PeerBlobs {
    fn open<'a>(&'a self, sha256: &'a str, offset: u64) -> BoxFuture<'a, Result<(u64, BlobReader)>> {
        Box::pin(async move {
            let pipe = self.messenger.open_blob(self.peer.clone()).await?;
            ask(pipe, sha256, offset).await.map_err(|e| match e {
                Error::Unreachable(e) => Error::Unreachable(format!("{}: {e}", self.peer)),
                other => other,
            })
        })
    }
}

/// Asks the node at the other end of `pipe` for a blob from `offset`: its whole size, and its
/// bytes from there as they arrive. A refusal is the error it names.
pub async fn ask<P: BlobPipe + 'static>(mut pipe: P, sha256: &str, offset: u64) -> Result<(u64, BlobReader)> {
    let broken = |e: std::io::Error| Error::Unreachable(e.to_string());
    write_head(&mut pipe, &BlobAsk { sha256: sha256.to_string(), offset }).await.map_err(broken)?;
    match read_head(&mut pipe).await.map_err(broken)? {
        BlobHead::Sending { total } => {
            let reader: BlobReader = Box::new(pipe);
            Ok((total, reader))
        }
        BlobHead::Refused { refusal, message } => Err(Error::from_refusal(refusal, message)),
    }
}

impl Activities {
    /// Sends blobs to the peers that ask, [`BLOB_STREAMS`] at a time, until `shutdown`.
    pub(crate) fn serve_blobs(&self, mut incoming: Incoming, shutdown: CancellationToken) {
        let activities = self.clone();
        let unchecked = Arc::new(Semaphore::new(BLOB_ASKS));
        self.inner.tasks.spawn(async move {
            loop {
                let (peer, mut pipe) = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = incoming.next() => match next {
                        Some(next) => next,
                        None => break,
                    },
                };
                // Too many streams not yet checked: this one is dropped (the fetcher asks again).
                let Ok(unchecked) = unchecked.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "a blob stream dropped: {BLOB_ASKS} asks are being read");
                    continue;
                };
                let (activities, shutdown) = (activities.clone(), shutdown.clone());
                activities.inner.tasks.clone().spawn(async move {
                    let _unchecked = unchecked;
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        sent = activities.send_blob(peer, &mut pipe) => if let Err(e) = sent {
                            tracing::debug!(%peer, error = %e, "a blob stream ended early");
                        },
                    }
                });
            }
        });
    }

    /// Answers one blob stream that `peer` opened: the header, then the bytes. The ask is read
    /// and checked before the stream takes one of the [`BLOB_STREAMS`] places, so a peer without
    /// an agreement cannot hold them.
    pub async fn send_blob(&self, peer: PeerId, pipe: &mut impl BlobPipe) -> std::io::Result<()> {
        let ask: BlobAsk = read_head(pipe).await?;
        let found = self.blob_for(peer, &ask).await.and_then(|found| {
            let place = self.inner.blob_places.clone().try_acquire_owned().map_err(|_| {
                Error::Busy(format!("{BLOB_STREAMS} blob streams are being sent; ask again shortly"))
            })?;
            Ok((found, place))
        });
        let ((total, file), _place) = match found {
            Ok(found) => found,
            Err(e) => {
                let refused = BlobHead::Refused {
                    refusal: e.refusal(),
                    message: self.public_paths(&e.public_message()),
                };
                write_head(pipe, &refused).await?;
                // Closed, not dropped: a dropped stream is reset, and the refusal could be lost.
                return pipe.shutdown().await;
            }
        };
        write_head(pipe, &BlobHead::Sending { total }).await?;
        self.send_file(file, pipe, self.inner.config.blob_send_rate).await?;
        pipe.shutdown().await
    }

    /// Sends `file` whole, at no more than `rate` bytes a second when there is a rate (in pieces
    /// of a tenth of a second). A fetcher that takes nothing for [`SEND_STALL`] is left.
    async fn send_file(
        &self,
        mut file: tokio::fs::File,
        pipe: &mut impl BlobPipe,
        rate: Option<u64>,
    ) -> std::io::Result<()> {
        let started = tokio::time::Instant::now();
        let piece = rate.map_or(READ_BUFFER as u64, |rate| (rate / 10).clamp(4096, READ_BUFFER as u64));
        let mut buffer = vec![0; piece as usize];
        let mut sent = 0u64;
        loop {
            let n = file.read(&mut buffer).await?;
            if n == 0 {
                return Ok(());
            }
            tokio::time::timeout(SEND_STALL, pipe.write_all(&buffer[..n])).await.map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the fetcher took nothing for {SEND_STALL:?}"),
                )
            })??;
            sent += n as u64;
            self.inner.blobs.traffic().sent.fetch_add(n as u64, Relaxed);
            if let Some(rate) = rate {
                tokio::time::sleep_until(started + Duration::from_secs_f64(sent as f64 / rate as f64)).await;
            }
        }
    }

    /// The blob `ask` names, if `peer` may have it.
    async fn blob_for(&self, peer: PeerId, ask: &BlobAsk) -> Result<(u64, tokio::fs::File)> {
        let sender = agora_identity::address_of_peer(&peer)
            .map_err(|_| Error::Forbidden("a peer without a node address".into()))?;
        if !self.inner.agreements.approved_with(sender).await? {
            return Err(Error::Forbidden(
                "blobs are served only to the other party of an agreement with this node".into(),
            ));
        }
        match self.inner.blobs.open_at(&ask.sha256, ask.offset).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(Error::NotFound(format!("no blob {} here", ask.sha256))),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                Err(Error::BadInput(format!("blob {}: {e}", ask.sha256)))
            }
            Err(e) => Err(Error::Io(format!("reading blob {}: {e}", ask.sha256))),
        }
    }
}
