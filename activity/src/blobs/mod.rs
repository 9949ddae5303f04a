//! Content-addressed blobs: files named by their SHA-256, streamed to peers (`crate::pipe`) and
//! checked on receipt. A requestor's inputs reach providers this way, and outputs come back.

mod fetch;

pub use fetch::{BlobReader, BlobSource, PIECE, RESUME_WITHIN};
use fetch::{FetchLocks, KEEP_PARTIAL};
use sha2::{Digest, Sha256};
use std::io::{Read, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

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

#[cfg(test)]
mod tests {
    use super::*;

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
