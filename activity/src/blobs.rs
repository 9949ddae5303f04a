//! Content-addressed blobs: files named by their SHA-256, served to peers in pieces and checked
//! on receipt. A requestor's inputs reach providers this way, and outputs come back.

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The largest piece one request carries.
pub const CHUNK: u64 = 512 * 1024;
/// The largest blob a node takes in.
pub const MAX_BLOB: u64 = 1 << 30;

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

    /// Fetches a blob from a peer unless this node has it, piece by piece, and keeps it only if
    /// its content hashes to its name.
    pub async fn fetch(&self, sha256: &str, source: &dyn BlobSource) -> crate::Result<PathBuf> {
        use crate::Error;
        if let Some(path) = self.path(sha256) {
            return Ok(path);
        }
        let io = |e: std::io::Error| Error::Io(format!("blob {sha256}: {e}"));
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut offset = 0;
        loop {
            let (data, total) = source.piece(sha256.to_string(), offset, CHUNK).await?;
            if total > MAX_BLOB {
                return Err(Error::BadInput(format!(
                    "blob {sha256} is {total} bytes; the most a node takes is {MAX_BLOB}"
                )));
            }
            hasher.update(&data);
            tmp.write_all(&data).map_err(io)?;
            offset += data.len() as u64;
            if offset >= total {
                break;
            }
            if data.is_empty() {
                return Err(Error::Remote(format!(
                    "blob {sha256} ended early, at {offset} of {total} bytes"
                )));
            }
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

/// Where blob pieces come from: another node, over the network.
pub trait BlobSource: Send + Sync {
    /// `(data, total size)` of the piece at `offset`.
    fn piece(&self, sha256: String, offset: u64, len: u64) -> BoxFuture<'_, crate::Result<(Vec<u8>, u64)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let start = (offset as usize).min(self.data.len());
            let end = (start + len as usize).min(self.data.len());
            let piece = self.data[start..end].to_vec();
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
