//! Fetching a blob from another node: one stream, resumed where it broke (across restarts
//! too, from `<hash>.part`), written and hashed on a thread of its own, named only when whole.

use super::BlobStore;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

impl BlobStore {
    /// Fetches a blob from another node unless this node has it, and keeps it only if its
    /// content hashes to its name. The bytes arrive as one stream, written to a temporary file
    /// while they are hashed (on a thread of their own, so the network side keeps reading). A
    /// stream that breaks off (the other node restarts, the connection drops, it is busy) is
    /// opened again from the last byte written, for as long as one arrives within
    /// [`RESUME_WITHIN`], so only what had not arrived is sent again.
    ///
    /// Fetches of the same blob run one at a time: a second waits for the first, then finds the
    /// blob here (or, if the first failed, tries itself).
    pub async fn fetch(&self, sha256: &str, source: &dyn BlobSource) -> crate::Result<PathBuf> {
        if let Some(path) = self.path(sha256) {
            return Ok(path);
        }
        let want = sha256.to_ascii_lowercase();
        let turn = FetchTurn::take(&self.fetching, &want);
        let only_fetch = turn.lock.clone().lock_owned().await;
        match self.path(&want) {
            Some(path) => Ok(path),
            None => self.fetch_now(&want, source, only_fetch).await,
        }
    }

    /// Fetches a blob while holding its lock (`only_fetch`); the writer holds it until its last
    /// byte is written, even when the fetch itself is dropped.
    async fn fetch_now(
        &self,
        want: &str,
        source: &dyn BlobSource,
        only_fetch: tokio::sync::OwnedMutexGuard<()>,
    ) -> crate::Result<PathBuf> {
        use crate::Error;
        let io = |e: std::io::Error| Error::Io(format!("blob {want}: {e}"));
        // What arrives goes to `<hash>.part`, kept if the fetch gives up waiting (or the node
        // stops) and carried on from by the next fetch; only a whole, checked blob is named.
        let part = self.dir.join(format!("{want}.part"));
        let (file, hasher, mut at) = tokio::task::spawn_blocking({
            let part = part.clone();
            move || open_partial(&part)
        })
        .await
        .map_err(|e| Error::Io(format!("blob {want}: {e}")))?
        .map_err(io)?;
        if at > 0 {
            tracing::info!(sha256 = %want, at, "carrying on with a blob fetch cut short earlier");
        }
        let (pieces, written) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let writer = tokio::task::spawn_blocking(move || {
            let written = write_hashed(file, hasher, written);
            drop(only_fetch);
            written
        });
        let mut total = None;
        let mut quiet_since = tokio::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(100);
        let fetched = loop {
            let cut = match source.open(want, at).await {
                Ok((size, mut reader)) => {
                    match total {
                        None if size > self.max_blob => {
                            break Err(Error::TooLarge(format!(
                                "blob {want} is {size} bytes; this node takes at most {} (max_blob_bytes)",
                                self.max_blob
                            )));
                        }
                        None if at > size => {
                            break Err(Error::Remote(format!(
                                "blob {want} is said to be {size} bytes, and {at} had arrived before"
                            )));
                        }
                        None => {
                            if let Err(e) = self.room_for(size - at) {
                                break Err(e);
                            }
                        }
                        Some(before) if before != size => {
                            break Err(Error::Remote(format!(
                                "blob {want} was {before} bytes and is now said to be {size}"
                            )));
                        }
                        Some(_) => {}
                    }
                    total = Some(size);
                    let (got, ended) =
                        read_pieces(&mut reader, size - at, &pieces, &self.traffic.received).await;
                    at += got;
                    if got > 0 {
                        quiet_since = tokio::time::Instant::now();
                        pause = std::time::Duration::from_millis(100);
                    }
                    match ended {
                        Ended::Whole => break Ok(()),
                        Ended::Cut(e) => Error::Unreachable(e),
                        Ended::WriterGone => {
                            break Err(Error::Io(format!("blob {want}: the writer stopped")));
                        }
                    }
                }
                Err(e @ (Error::Unreachable(_) | Error::Busy(_))) => e,
                Err(e) => break Err(e),
            };
            if quiet_since.elapsed() + pause > self.resume_within {
                break Err(Error::Unreachable(format!(
                    "blob {want}: nothing arrived for {:?} after {at} bytes: {cut}",
                    self.resume_within
                )));
            }
            tracing::info!(sha256 = %want, at, error = %cut, "a blob stream broke off; asking again");
            self.traffic.retries.fetch_add(1, Relaxed);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
        };
        drop(pieces);
        let digest = writer.await.map_err(|e| Error::Io(format!("blob {want}: {e}")))?;
        // What arrived is kept only when the other node may yet deliver the rest.
        let drop_partial = || {
            let _never_made = std::fs::remove_file(&part);
        };
        let got = match (fetched, digest) {
            // The writer's own error is the cause when it stopped.
            (_, Err(e)) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                drop_partial();
                return Err(Error::NoSpace(format!("blob {want}: the blob disk filled up after {at} bytes")));
            }
            (_, Err(e)) => {
                drop_partial();
                return Err(io(e));
            }
            (Err(e @ (Error::Unreachable(_) | Error::Busy(_))), Ok(_)) => return Err(e),
            (Err(e), Ok(_)) => {
                drop_partial();
                return Err(e);
            }
            (Ok(()), Ok(got)) => got,
        };
        if got != want {
            drop_partial();
            return Err(Error::Remote(format!("blob {want} arrived with content hashing to {got}; dropped")));
        }
        let path = self.dir.join(&got);
        std::fs::rename(&part, &path).map_err(io)?;
        Ok(path)
    }
}

/// Fetch locks, one per blob being fetched.
pub(super) type FetchLocks = std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// One fetch's hold on its blob's lock. However the fetch ends (done, failed, or dropped), the
/// last one out removes the lock from the map, so the map holds only blobs being fetched.
struct FetchTurn<'a> {
    lock: Arc<tokio::sync::Mutex<()>>,
    locks: &'a FetchLocks,
    sha256: &'a str,
}

impl<'a> FetchTurn<'a> {
    fn take(locks: &'a FetchLocks, sha256: &'a str) -> Self {
        let lock = locks.lock().expect("fetch locks").entry(sha256.to_string()).or_default().clone();
        Self { lock, locks, sha256 }
    }
}

impl Drop for FetchTurn<'_> {
    fn drop(&mut self) {
        // A poisoned map (a panic while it was held) is left as it is.
        let Ok(mut locks) = self.locks.lock() else { return };
        // Only the map and this turn hold the lock, and the map's lock is held: nobody else can
        // take it now.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(self.sha256);
        }
    }
}

/// How much of a blob one write carries: reads fill a buffer this large before it is handed to
/// the writer.
pub const PIECE: usize = 1 << 20;
/// How long a fetch waits for a blob stream to bring something (or to open again) before it
/// gives up.
pub const RESUME_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a blob stream may stay silent before it counts as broken off.
const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// How reading a blob stream ended.
enum Ended {
    /// Everything asked for arrived.
    Whole,
    /// The stream broke off early (the reason).
    Cut(String),
    /// The writer stopped (its error is its own to tell).
    WriterGone,
}

/// Reads up to `want` bytes into [`PIECE`]-sized buffers and hands each to the writer, counting
/// them in `received`. Returns the bytes read and how it ended; what arrived before a break is
/// kept.
async fn read_pieces(
    reader: &mut BlobReader,
    want: u64,
    pieces: &tokio::sync::mpsc::Sender<Vec<u8>>,
    received: &AtomicU64,
) -> (u64, Ended) {
    use tokio::io::AsyncReadExt;
    let mut got = 0u64;
    while got < want {
        let size = (want - got).min(PIECE as u64) as usize;
        // Read into spare capacity: a GiB fetched is not a GiB of zeroes written first.
        let mut piece = Vec::with_capacity(size);
        let mut ended = None;
        while piece.len() < size {
            match tokio::time::timeout(STALL, reader.read_buf(&mut piece)).await {
                Ok(Ok(0)) => {
                    ended = Some(format!("the stream ended {} bytes early", want - got - piece.len() as u64));
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    ended = Some(e.to_string());
                    break;
                }
                Err(_) => {
                    ended = Some(format!("nothing arrived for {STALL:?}"));
                    break;
                }
            }
        }
        let filled = piece.len();
        got += filled as u64;
        received.fetch_add(filled as u64, Relaxed);
        if filled > 0 && pieces.send(piece).await.is_err() {
            return (got, Ended::WriterGone);
        }
        if let Some(reason) = ended {
            return (got, Ended::Cut(reason));
        }
    }
    (got, Ended::Whole)
}

/// How long what a fetch had received is kept for the next fetch of that blob.
pub(super) const KEEP_PARTIAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Opens what an earlier fetch of a blob received (or a new, empty file), hashed again so the
/// hash carries on from its end: the file at its end, the hash so far, and its length.
fn open_partial(path: &Path) -> std::io::Result<(std::fs::File, Sha256, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).mode(0o644).open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; PIECE];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((file, hasher, length));
        }
        hasher.update(&buffer[..n]);
        length += n as u64;
    }
}

/// Writes pieces to `file` in order as they come, hashing them after what `hasher` has seen; the
/// hex digest of all of it.
fn write_hashed(
    mut file: std::fs::File,
    mut hasher: Sha256,
    mut pieces: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<String> {
    while let Some(piece) = pieces.blocking_recv() {
        hasher.update(&piece);
        file.write_all(&piece)?;
    }
    // On disk before it is named: a name always means the whole content.
    file.sync_data()?;
    Ok(hex::encode(hasher.finalize()))
}

/// A blob's bytes as they arrive.
pub type BlobReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Where blobs come from: another node, over the network.
pub trait BlobSource: Send + Sync {
    /// The blob's whole size, and its bytes from `offset` to its end.
    fn open<'a>(&'a self, sha256: &'a str, offset: u64) -> BoxFuture<'a, crate::Result<(u64, BlobReader)>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    /// A reader that gives `data`, then fails as a dropped connection does.
    struct BreaksOff(std::io::Cursor<Vec<u8>>);

    impl tokio::io::AsyncRead for BreaksOff {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let before = buf.filled().len();
            let inner = std::pin::Pin::new(&mut self.0);
            match inner.poll_read(cx, buf) {
                std::task::Poll::Ready(Ok(())) if buf.filled().len() == before => std::task::Poll::Ready(
                    Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the connection was cut")),
                ),
                other => other,
            }
        }
    }

    /// Serves `data`; the first stream breaks off at `cut` bytes (if set), and the node is then
    /// down (refusing as unreachable) `down_for` more times. Counts the streams and bytes sent.
    struct Source {
        data: Vec<u8>,
        cut: Option<usize>,
        down_for: AtomicUsize,
        broke: AtomicBool,
        opened: AtomicUsize,
        sent: AtomicU64,
    }

    impl Source {
        fn new(data: Vec<u8>, cut: Option<usize>, down_for: usize) -> Self {
            Self {
                data,
                cut,
                down_for: AtomicUsize::new(down_for),
                broke: AtomicBool::new(false),
                opened: AtomicUsize::new(0),
                sent: AtomicU64::new(0),
            }
        }
    }

    impl BlobSource for Source {
        fn open<'a>(
            &'a self,
            _sha256: &'a str,
            offset: u64,
        ) -> BoxFuture<'a, crate::Result<(u64, BlobReader)>> {
            Box::pin(async move {
                self.opened.fetch_add(1, SeqCst);
                let total = self.data.len() as u64;
                if self.broke.load(SeqCst)
                    && self.down_for.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok()
                {
                    return Err(crate::Error::Unreachable("the node is restarting".into()));
                }
                let end = match self.cut {
                    Some(cut) if !self.broke.swap(true, SeqCst) => cut,
                    _ => self.data.len(),
                };
                let piece = self.data[offset as usize..end].to_vec();
                self.sent.fetch_add(piece.len() as u64, SeqCst);
                let reader: BlobReader = Box::new(BreaksOff(std::io::Cursor::new(piece)));
                Ok((total, reader))
            })
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
    }

    #[test]
    fn a_blob_arrives_and_is_kept_only_if_it_hashes_to_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let data = data(1_300_000);
        let hex = hex::encode(Sha256::digest(&data));
        let source = Source::new(data.clone(), None, 0);
        let path = runtime().block_on(store.fetch(&hex, &source)).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(source.opened.load(SeqCst), 1, "one stream");
        // Now local: not asked again.
        runtime().block_on(store.fetch(&hex, &source)).unwrap();
        assert_eq!(source.opened.load(SeqCst), 1);

        // A source whose content does not match the digest asked for.
        let other = hex::encode(Sha256::digest(b"what was asked for"));
        let liar = Source::new(b"something else".to_vec(), None, 0);
        let error = runtime().block_on(store.fetch(&other, &liar)).unwrap_err().to_string();
        assert!(error.contains("arrived with content hashing to"), "{error}");
        assert!(store.path(&other).is_none(), "nothing kept");
        assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1, "no temporary file left");

        // A fetch cut short by a crash leaves a temporary file; opening the store removes it.
        std::fs::write(dir.path().join("blobs/.tmpAbC123"), b"half a blob").unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        assert!(store.path(&hex).is_some(), "whole blobs stay");
        assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1);
    }

    #[test]
    fn a_stream_cut_off_midway_is_opened_again_where_it_broke_and_sends_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let data = data(5 * PIECE + 12_345);
        let hex = hex::encode(Sha256::digest(&data));
        // Cut in the middle of a piece, then down for three attempts, as a restarting node is.
        let source = Source::new(data.clone(), Some(2 * PIECE + 777), 3);
        let path = runtime().block_on(store.fetch(&hex, &source)).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(source.sent.load(SeqCst), data.len() as u64, "every byte sent once");
        assert_eq!(source.opened.load(SeqCst), 5, "the first stream, three refusals, the rest");
        assert_eq!(store.traffic().retries.load(SeqCst), 4);
        assert_eq!(store.traffic().received.load(SeqCst), data.len() as u64);
    }

    #[test]
    fn two_fetches_of_one_blob_fetch_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let data = data(3 * PIECE);
        let hex = hex::encode(Sha256::digest(&data));
        let source = Source::new(data.clone(), None, 0);
        let (first, second) = runtime()
            .block_on(async { tokio::join!(store.fetch(&hex, &source), store.fetch(&hex, &source)) });
        assert_eq!(first.unwrap(), second.unwrap());
        assert_eq!(source.opened.load(SeqCst), 1, "one stream for both");
        assert!(store.fetching.lock().unwrap().is_empty(), "no lock left behind");
    }

    #[test]
    fn a_fetch_that_gives_up_keeps_what_arrived_and_the_next_carries_on_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let data = data(3 * PIECE);
        let hex = hex::encode(Sha256::digest(&data));
        let store = BlobStore { resume_within: std::time::Duration::from_secs(1), ..store };
        let away = Source::new(data.clone(), Some(PIECE + 1), usize::MAX);
        let error = runtime().block_on(store.fetch(&hex, &away)).unwrap_err();
        assert!(matches!(error, crate::Error::Unreachable(_)), "{error}");
        assert!(error.to_string().contains(&format!("after {} bytes", PIECE + 1)), "{error}");
        let part = dir.path().join(format!("blobs/{hex}.part"));
        assert_eq!(std::fs::metadata(&part).unwrap().len(), PIECE as u64 + 1, "what arrived is kept");

        // The node restarts: the store is opened again, and the next fetch asks for the rest only.
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let back = Source::new(data.clone(), None, 0);
        let path = runtime().block_on(store.fetch(&hex, &back)).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(back.sent.load(SeqCst), data.len() as u64 - PIECE as u64 - 1, "only the rest is sent");
        assert!(!part.exists());
        assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1, "the blob alone");
    }
}
