//! Content-addressed blobs: files named by their SHA-256, streamed to peers (`crate::pipe`) and
//! checked on receipt. A requestor's inputs reach providers this way, and outputs come back.

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use std::io::{Read, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// The largest blob a node takes in unless its settings say otherwise (`max_blob_bytes`).
pub const DEFAULT_MAX_BLOB: u64 = 4 << 30;
/// Free space a node keeps on the blobs' disk beyond what an upload needs.
pub const DISK_RESERVE: u64 = 64 << 20;

/// A folder of blobs, each named by its lowercase hex SHA-256.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    traffic: Arc<Traffic>,
    /// How long a fetch waits for a broken-off stream to bring something again.
    resume_within: std::time::Duration,
    /// The largest blob this node takes in, uploaded or fetched (its `max_blob_bytes`).
    max_blob: u64,
    /// One lock per blob being fetched, so that a second fetch of it waits for the first rather
    /// than fetching it again.
    fetching: Arc<FetchLocks>,
}

/// `blob:sha256:<hex>` → the hex, checked.
pub fn parse_blob_url(url: &str) -> Option<String> {
    let hex = url.strip_prefix("blob:sha256:")?;
    is_sha256_hex(hex).then(|| hex.to_ascii_lowercase())
}

/// Whether `text` is a SHA-256 in hex (either case): what names a blob.
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl BlobStore {
    /// Opens (or makes) the folder, and removes what an upload or a store cut short by a crash
    /// left: any file not named by a hash. What a fetch had received (`<hash>.part`) stays for a
    /// day, so the next fetch of that blob carries on from there.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_str().unwrap_or_default();
            let recent = || {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < KEEP_PARTIAL))
            };
            let keep =
                is_sha256_hex(name) || (name.strip_suffix(".part").is_some_and(is_sha256_hex) && recent());
            if !keep {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Self {
            dir,
            traffic: Arc::default(),
            resume_within: RESUME_WITHIN,
            max_blob: DEFAULT_MAX_BLOB,
            fetching: Arc::default(),
        })
    }

    /// The store, taking blobs of at most `max` bytes, uploaded or fetched from other nodes.
    pub fn with_max_blob(self, max: u64) -> Self {
        Self { max_blob: max, ..self }
    }

    /// A temporary file in the store, readable by all: a blob may become a run's input, read by
    /// a container's own user. Removed when dropped unless it is named.
    fn new_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new().permissions(std::fs::Permissions::from_mode(0o644)).tempfile_in(&self.dir)
    }

    /// Where a blob is, if this node has it.
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        let path = self.dir.join(sha256.to_ascii_lowercase());
        (is_sha256_hex(sha256) && path.is_file()).then_some(path)
    }

    /// Stores bytes; returns their hex SHA-256.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let hex = hex::encode(Sha256::digest(bytes));
        if self.path(&hex).is_none() {
            let mut tmp = self.new_file()?;
            tmp.write_all(bytes)?;
            tmp.as_file().sync_data()?;
            tmp.persist(self.dir.join(&hex)).map_err(|e| e.error)?;
        }
        Ok(hex)
    }

    /// Stores a copy of a file; returns its hex SHA-256.
    pub fn put_file(&self, path: &Path) -> std::io::Result<String> {
        let mut tmp = self.new_file()?;
        let mut hasher = Sha256::new();
        let mut file = std::fs::File::open(path)?;
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])?;
        }
        let hex = hex::encode(hasher.finalize());
        tmp.as_file().sync_data()?;
        tmp.persist(self.dir.join(&hex)).map_err(|e| e.error)?;
        Ok(hex)
    }

    /// Takes a blob in as it arrives: written to a temporary file while it is hashed, then named
    /// by its digest. It is never held whole in memory. Refused before anything is written when
    /// `declared` (its announced length) is over the store's maximum or over the disk's free
    /// space, and refused as soon as what arrives goes over the maximum. A stream that breaks off (the client
    /// gone) leaves nothing behind.
    pub async fn receive<S, B, E>(&self, mut stream: S, declared: Option<u64>) -> crate::Result<String>
    where
        S: futures_util::Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        use crate::Error;
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let max = self.max_blob;
        let too_large =
            || Error::TooLarge(format!("a blob is at most {max} bytes on this node (max_blob_bytes)"));
        if let Some(declared) = declared {
            if declared > max {
                return Err(too_large());
            }
            self.room_for(declared)?;
        }
        let io = |e: std::io::Error| Error::Io(format!("storing a blob: {e}"));
        // Removed when dropped, whatever ends the upload; only a whole, hashed blob is renamed.
        let tmp = self.new_file().map_err(io)?;
        let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(piece) = stream.next().await {
            let piece = piece
                .map_err(|e| Error::BadInput(format!("the upload broke off after {size} bytes: {e}")))?;
            let piece = piece.as_ref();
            size += piece.len() as u64;
            if size > max {
                return Err(too_large());
            }
            hasher.update(piece);
            file.write_all(piece).await.map_err(|e| match e.raw_os_error() {
                Some(code) if code == nix::libc::ENOSPC => {
                    Error::NoSpace(format!("the node's blob disk filled up after {size} bytes"))
                }
                _ => io(e),
            })?;
        }
        if declared.is_some_and(|d| d != size) {
            return Err(Error::BadInput(format!(
                "the upload announced {} bytes and sent {size}",
                declared.unwrap_or(0)
            )));
        }
        file.flush().await.map_err(io)?;
        // On disk before it is named: a name always means the whole content.
        file.sync_data().await.map_err(io)?;
        drop(file);
        let hex = hex::encode(hasher.finalize());
        tmp.persist(self.dir.join(&hex)).map_err(|e| io(e.error))?;
        Ok(hex)
    }

    /// Whether the blobs' disk can take `size` more bytes and keep [`DISK_RESERVE`] free.
    fn room_for(&self, size: u64) -> crate::Result<()> {
        let free = self.free_space()?;
        if size.saturating_add(DISK_RESERVE) > free {
            return Err(crate::Error::NoSpace(format!(
                "a blob of {size} bytes does not fit: the node's blob disk has {free} bytes free, and keeps {DISK_RESERVE} in reserve"
            )));
        }
        Ok(())
    }

    /// Bytes free on the blobs' disk, for an unprivileged writer.
    fn free_space(&self) -> crate::Result<u64> {
        let stat = nix::sys::statvfs::statvfs(&self.dir)
            .map_err(|e| crate::Error::Io(format!("the blob disk's free space: {e}")))?;
        Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
    }

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

    /// Serves a blob from `offset` to its end: its whole size and a reader at `offset`, or
    /// `None` when this node does not have it.
    pub async fn open_at(
        &self,
        sha256: &str,
        offset: u64,
    ) -> std::io::Result<Option<(u64, tokio::fs::File)>> {
        use tokio::io::AsyncSeekExt;
        let Some(path) = self.path(sha256) else { return Ok(None) };
        let mut file = tokio::fs::File::open(path).await?;
        let total = file.metadata().await?.len();
        if offset > total {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("offset {offset} is past the blob's end at {total}"),
            ));
        }
        file.seek(SeekFrom::Start(offset)).await?;
        Ok(Some((total, file)))
    }

    /// Bytes this node's blob streams have carried.
    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.traffic
    }
}

/// Fetch locks, one per blob being fetched.
type FetchLocks = std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

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

/// Bytes a blob store's streams carried since the node started, for its metrics.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Blob bytes that arrived from other nodes.
    pub received: AtomicU64,
    /// Blob bytes sent to other nodes.
    pub sent: AtomicU64,
    /// Times a fetch asked again, after its stream broke off or while the other node could not
    /// be reached.
    pub retries: AtomicU64,
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
        let mut piece = vec![0; size];
        let mut filled = 0;
        let mut ended = None;
        while filled < size {
            match tokio::time::timeout(STALL, reader.read(&mut piece[filled..])).await {
                Ok(Ok(0)) => {
                    ended = Some(format!("the stream ended {} bytes early", want - got - filled as u64));
                    break;
                }
                Ok(Ok(n)) => filled += n,
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
        piece.truncate(filled);
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
const KEEP_PARTIAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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

    #[test]
    fn blob_urls_are_checked() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_blob_url(&format!("blob:sha256:{hex}")), Some(hex.clone()));
        assert_eq!(parse_blob_url(&format!("blob:sha256:{}", hex.to_uppercase())), Some(hex));
        assert_eq!(parse_blob_url("blob:sha256:abc"), None);
        assert_eq!(parse_blob_url(&format!("blob:md5:{}", "ab".repeat(32))), None);
        assert_eq!(parse_blob_url(&format!("blob:sha256:{}", "zz".repeat(32))), None);
    }
}
