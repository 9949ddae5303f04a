//! Large test data, and what a process holds in memory while it moves.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Writes `len` bytes to `path`: a pseudo-random MiB, repeated with each copy's first eight bytes
/// numbered, so no two MiB are alike. Returns the hex SHA-256 of the whole and of the first
/// `head` bytes.
pub fn pattern_file(path: &Path, len: u64, head: u64) -> (String, String) {
    const BLOCK: usize = 1 << 20;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let block: Vec<u8> = (0..BLOCK / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let mut file = std::io::BufWriter::with_capacity(BLOCK, std::fs::File::create(path).expect("create"));
    let (mut whole, mut first) = (Sha256::new(), Sha256::new());
    let mut piece = block.clone();
    let mut at = 0u64;
    for number in 0u64.. {
        if at >= len {
            break;
        }
        piece[..8].copy_from_slice(
            &(number ^ u64::from_le_bytes(block[..8].try_into().expect("8 bytes"))).to_le_bytes(),
        );
        let take = (len - at).min(BLOCK as u64) as usize;
        let bytes = &piece[..take];
        whole.update(bytes);
        if at < head {
            first.update(&bytes[..(head - at).min(take as u64) as usize]);
        }
        file.write_all(bytes).expect("write");
        at += take as u64;
    }
    file.flush().expect("flush");
    (hex::encode(whole.finalize()), hex::encode(first.finalize()))
}

/// The hex SHA-256 of a file.
pub fn file_sha256(path: &Path) -> String {
    let mut hasher = Sha256::new();
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, file), &mut hasher).expect("read");
    hex::encode(hasher.finalize())
}

/// A process's resident memory, in bytes (`VmRSS`).
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim();
    kib.parse::<u64>().ok().map(|k| k * 1024)
}

/// Samples a process's resident memory every 20 ms from when it is made until [`RssWatch::stop`].
#[derive(Debug)]
pub struct RssWatch {
    pid: u32,
    baseline: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    pub fn start(pid: u32) -> Self {
        let baseline = rss(pid).unwrap_or_else(|| panic!("no process {pid}"));
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(now) = rss(pid) {
                        peak.fetch_max(now, Ordering::Relaxed);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        });
        Self { pid, baseline, peak, stop, thread: Some(thread) }
    }

    /// `(baseline, peak)` in bytes.
    pub fn stop(mut self) -> (u64, u64) {
        if let Some(now) = rss(self.pid) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (self.baseline, self.peak.load(Ordering::Relaxed))
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
