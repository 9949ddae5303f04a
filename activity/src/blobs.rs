//! Content-addressed blobs: files named by their SHA-256, served to peers in pieces and checked
//! on receipt. A requestor's inputs reach providers this way, and outputs come back.

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The largest piece one request carries.
pub const CHUNK: u64 = 512 * 1024;
/// The largest blob a node takes in unless its settings say otherwise (`max_blob_bytes`).
pub const DEFAULT_MAX_BLOB: u64 = 4 << 30;
/// The largest blob a node fetches from another.
pub const MAX_BLOB: u64 = DEFAULT_MAX_BLOB;
/// Free space a node keeps on the blobs' disk beyond what an upload needs.
pub const DISK_RESERVE: u64 = 64 << 20;

/// A folder of blobs, each named by its lowercase hex SHA-256.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// `blob:sha256:<hex>` → the hex, checked.
pub fn parse_blob_url(url: &str) -> Option<String> {
    let hex = url.strip_prefix("blob:sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

impl BlobStore {
    /// Opens (or makes) the folder, and removes what a fetch cut short by a crash left: any
    /// file not named by a hash.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let named_by_hash =
                name.to_str().is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
            if !named_by_hash {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Self { dir })
    }

    /// Where a blob is, if this node has it.
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        let path = self.dir.join(sha256.to_ascii_lowercase());
        (valid && path.is_file()).then_some(path)
    }

    /// Stores bytes; returns their hex SHA-256.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let hex = hex::encode(Sha256::digest(bytes));
        if self.path(&hex).is_none() {
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.write_all(bytes)?;
            tmp.persist(self.dir.join(&hex)).map_err(|e| e.error)?;
        }
        Ok(hex)
    }

    /// Stores a copy of a file; returns its hex SHA-256.
    pub fn put_file(&self, path: &Path) -> std::io::Result<String> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
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
        tmp.persist(self.dir.join(&hex)).map_err(|e| e.error)?;
        Ok(hex)
    }

    /// Takes a blob in as it arrives: written to a temporary file while it is hashed, then named
    /// by its digest. It is never held whole in memory. Refused before anything is written when
    /// `declared` (its announced length) is over `max` or over the disk's free space, and
    /// refused as soon as what arrives goes over `max`. A stream that breaks off (the client
    /// gone) leaves nothing behind.
    pub async fn receive<S, B, E>(
        &self,
        mut stream: S,
        declared: Option<u64>,
        max: u64,
    ) -> crate::Result<String>
    where
        S: futures_util::Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        use crate::Error;
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let too_large =
            || Error::TooLarge(format!("a blob is at most {max} bytes on this node (max_blob_bytes)"));
        if let Some(declared) = declared {
            if declared > max {
                return Err(too_large());
            }
            let free = self.free_space()?;
            if declared.saturating_add(DISK_RESERVE) > free {
                return Err(Error::NoSpace(format!(
                    "a blob of {declared} bytes does not fit: the node's blob disk has {free} bytes free, and keeps {DISK_RESERVE} in reserve"
                )));
            }
        }
        let io = |e: std::io::Error| Error::Io(format!("storing a blob: {e}"));
        // Removed when dropped, whatever ends the upload; only a whole, hashed blob is renamed.
        let tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
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
        drop(file);
        let hex = hex::encode(hasher.finalize());
        tmp.persist(self.dir.join(&hex)).map_err(|e| io(e.error))?;
        Ok(hex)
    }

    /// Bytes free on the blobs' disk, for an unprivileged writer.
    fn free_space(&self) -> crate::Result<u64> {
        let stat = nix::sys::statvfs::statvfs(&self.dir)
            .map_err(|e| crate::Error::Io(format!("the blob disk's free space: {e}")))?;
        Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
    }

    /// A piece of a blob and the blob's whole size.
    pub fn read(&self, sha256: &str, offset: u64, len: u64) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        let Some(path) = self.path(sha256) else { return Ok(None) };
        let mut file = std::fs::File::open(path)?;
        let total = file.metadata()?.len();
        file.seek(SeekFrom::Start(offset.min(total)))?;
        let mut data = Vec::new();
        file.take(len.min(CHUNK)).read_to_end(&mut data)?;
        Ok(Some((data, total)))
    }

    /// Fetches a blob from a peer unless this node has it, and keeps it only if its content
    /// hashes to its name. Pieces are asked for [`PIECES_IN_FLIGHT`] at a time and written in
    /// order as they come; a piece the peer does not deliver (it is unreachable, restarting or
    /// busy) is asked for again, for up to [`RESUME_WITHIN`], so the fetch carries on from where
    /// it was and only that piece is sent again.
    pub async fn fetch(&self, sha256: &str, source: &dyn BlobSource) -> crate::Result<PathBuf> {
        use crate::Error;
        use futures_util::StreamExt;
        if let Some(path) = self.path(sha256) {
            return Ok(path);
        }
        let io = |e: std::io::Error| Error::Io(format!("blob {sha256}: {e}"));
        let (first, total) = piece_again(source, sha256, 0).await?;
        if total > MAX_BLOB {
            return Err(Error::BadInput(format!(
                "blob {sha256} is {total} bytes; the most a node takes is {MAX_BLOB}"
            )));
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut take = |data: &[u8], offset: &mut u64| -> crate::Result<()> {
            let expected = CHUNK.min(total - *offset);
            if data.len() as u64 != expected {
                return Err(Error::Remote(format!(
                    "blob {sha256}: the piece at {offset} has {} bytes, not {expected}",
                    data.len()
                )));
            }
            hasher.update(data);
            tmp.write_all(data).map_err(io)?;
            *offset += expected;
            Ok(())
        };
        if total > 0 {
            take(&first, &mut offset)?;
        }
        let rest = (offset..total).step_by(CHUNK as usize);
        let mut pieces = futures_util::stream::iter(rest)
            .map(|at| piece_again(source, sha256, at))
            .buffered(PIECES_IN_FLIGHT);
        while let Some(piece) = pieces.next().await {
            let (data, _) = piece?;
            take(&data, &mut offset)?;
        }
        let got = hex::encode(hasher.finalize());
        if got != sha256.to_ascii_lowercase() {
            return Err(Error::Remote(format!(
                "blob {sha256} arrived with content hashing to {got}; dropped"
            )));
        }
        let path = self.dir.join(&got);
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(path)
    }
}

/// Pieces of one blob asked for at once, at most.
pub const PIECES_IN_FLIGHT: usize = 8;
/// How long a fetch keeps asking for a piece the other node does not deliver.
pub const RESUME_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// One piece, asked for again while the other node is unreachable or busy (with a growing
/// pause, up to [`RESUME_WITHIN`]); any other refusal ends the fetch.
async fn piece_again(source: &dyn BlobSource, sha256: &str, offset: u64) -> crate::Result<(Vec<u8>, u64)> {
    use crate::Error;
    let deadline = tokio::time::Instant::now() + RESUME_WITHIN;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match source.piece(sha256.to_string(), offset, CHUNK).await {
            Err(Error::Unreachable(e) | Error::Busy(e)) if tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(sha256, offset, error = %e, "a blob piece did not arrive; asking again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            answer => return answer,
        }
    }
}

/// Where blob pieces come from: another node, over the network.
pub trait BlobSource: Send + Sync {
    /// `(data, total size)` of the piece at `offset`.
    fn piece(&self, sha256: String, offset: u64, len: u64) -> BoxFuture<'_, crate::Result<(Vec<u8>, u64)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The piece of `data` at `offset`, at most `len` long.
    fn slice(data: &[u8], offset: u64, len: u64) -> Vec<u8> {
        let start = (offset as usize).min(data.len());
        data[start..(start + len as usize).min(data.len())].to_vec()
    }

    /// Serves pieces of `data`, counting the requests.
    struct Source {
        data: Vec<u8>,
        asked: std::sync::atomic::AtomicUsize,
    }

    impl BlobSource for Source {
        fn piece(
            &self,
            _sha256: String,
            offset: u64,
            len: u64,
        ) -> BoxFuture<'_, crate::Result<(Vec<u8>, u64)>> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let piece = slice(&self.data, offset, len);
            let total = self.data.len() as u64;
            Box::pin(async move { Ok((piece, total)) })
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn a_blob_arrives_in_pieces_and_is_kept_only_if_it_hashes_to_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let data: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
        let hex = hex::encode(Sha256::digest(&data));
        let source = Source { data: data.clone(), asked: Default::default() };
        let path = block_on(store.fetch(&hex, &source)).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(
            source.asked.load(std::sync::atomic::Ordering::Relaxed),
            3,
            "three pieces of at most 512 KiB"
        );
        // Now local: not asked again.
        block_on(store.fetch(&hex, &source)).unwrap();
        assert_eq!(source.asked.load(std::sync::atomic::Ordering::Relaxed), 3);

        let other = hex::encode(Sha256::digest(b"what was asked for"));
        let liar = Source { data: b"something else".to_vec(), asked: Default::default() };
        let error = block_on(store.fetch(&other, &liar)).unwrap_err().to_string();
        assert!(error.contains("arrived with content hashing to"), "{error}");
        assert!(store.path(&other).is_none(), "nothing kept");
        assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1, "no temporary file left");

        // A fetch cut short by a crash leaves a temporary file; opening the store removes it.
        std::fs::write(dir.path().join("blobs/.tmpAbC123"), b"half a blob").unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        assert!(store.path(&hex).is_some(), "whole blobs stay");
        assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1);
    }

    /// Serves pieces of `data`, refusing as unreachable while `down` says so, and counting the
    /// bytes it sends and the most pieces asked for at once.
    struct Flaky {
        data: Vec<u8>,
        down: std::sync::atomic::AtomicBool,
        sent: std::sync::atomic::AtomicU64,
        asking: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    impl BlobSource for Flaky {
        fn piece(
            &self,
            _sha256: String,
            offset: u64,
            len: u64,
        ) -> BoxFuture<'_, crate::Result<(Vec<u8>, u64)>> {
            use std::sync::atomic::Ordering::SeqCst;
            Box::pin(async move {
                let now = self.asking.fetch_add(1, SeqCst) + 1;
                self.most.fetch_max(now, SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                self.asking.fetch_sub(1, SeqCst);
                if self.down.load(SeqCst) {
                    return Err(crate::Error::Unreachable("the connection was cut".into()));
                }
                let piece = slice(&self.data, offset, len);
                // The node goes down once it has sent half the blob.
                let sent = self.sent.fetch_add(piece.len() as u64, SeqCst) + piece.len() as u64;
                if sent >= self.data.len() as u64 / 2 && sent < self.data.len() as u64 / 2 + CHUNK {
                    self.down.store(true, SeqCst);
                }
                Ok((piece, self.data.len() as u64))
            })
        }
    }

    #[test]
    fn a_fetch_cut_off_midway_carries_on_and_asks_only_for_what_it_lacks() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let data: Vec<u8> =
            (0..20 * CHUNK as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        let hex = hex::encode(Sha256::digest(&data));
        let source = std::sync::Arc::new(Flaky {
            data: data.clone(),
            down: Default::default(),
            sent: Default::default(),
            asking: Default::default(),
            most: Default::default(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let path = runtime.block_on(async {
            let back_up = {
                let source = source.clone();
                tokio::spawn(async move {
                    // Down for a while, as a restarting node is, then back.
                    while !source.down.load(SeqCst) {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    source.down.store(false, SeqCst);
                })
            };
            let path = store.fetch(&hex, source.as_ref()).await.unwrap();
            back_up.await.unwrap();
            path
        });
        assert_eq!(std::fs::read(path).unwrap(), data);
        let sent = source.sent.load(SeqCst);
        assert!(sent < 2 * data.len() as u64, "{sent} bytes sent for a blob of {}", data.len());
        assert!(sent >= data.len() as u64);
        let most = source.most.load(SeqCst);
        assert!(most <= PIECES_IN_FLIGHT && most > 1, "{most} pieces asked for at once");
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
