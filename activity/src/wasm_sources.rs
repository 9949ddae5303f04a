//! What a WASM module reads from outside itself, made the same on every node: both clocks step
//! from a fixed instant per reading, and random bytes come from the run's seed.

use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The wall clock a module sees at its first reading: 2000-01-01T00:00:00Z.
pub const FIXED_EPOCH_SECS: u64 = 946_684_800;
/// How far either clock moves per reading, so loops that wait on time still end.
pub const CLOCK_STEP: Duration = Duration::from_millis(1);
/// Bytes of the random stream before it repeats.
const RANDOM_POOL: usize = 64 * 1024;

/// Both clocks: a counter that moves one step per reading.
#[derive(Clone, Default)]
pub(crate) struct SteppingClock {
    readings: Arc<std::sync::atomic::AtomicU64>,
}

impl SteppingClock {
    fn next(&self) -> Duration {
        let n = self.readings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        CLOCK_STEP * u32::try_from(n).unwrap_or(u32::MAX)
    }
}

impl HostWallClock for SteppingClock {
    fn resolution(&self) -> Duration {
        CLOCK_STEP
    }
    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_EPOCH_SECS) + self.next()
    }
}

impl HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        CLOCK_STEP.as_nanos() as u64
    }
    fn now(&self) -> u64 {
        self.next().as_nanos() as u64
    }
}

/// A run's random bytes: SHA-256 in counter mode over its seed, [`RANDOM_POOL`] bytes that
/// repeat, each 32-byte block hashed when the module first reads into it. Most modules read none,
/// so a run does not pay for hashing the whole pool before it starts.
///
/// Words are read as WASI's deterministic source reads them: a `u32` from four bytes, high byte
/// first, and a `u64` from two such words.
pub(crate) struct SeededStream {
    domain: &'static str,
    seed: [u8; 32],
    /// Where the next byte is, within the pool.
    at: usize,
    block: [u8; 32],
}

impl SeededStream {
    pub(crate) fn new(seed: [u8; 32], domain: &'static str) -> Self {
        Self { domain, seed, at: 0, block: [0; 32] }
    }

    fn next_byte(&mut self) -> u8 {
        let at = self.at % RANDOM_POOL;
        if at.is_multiple_of(32) {
            let mut hasher = Sha256::new();
            hasher.update(self.domain.as_bytes());
            hasher.update(self.seed);
            hasher.update(((at / 32) as u64).to_le_bytes());
            self.block = hasher.finalize().into();
        }
        self.at = at + 1;
        self.block[at % 32]
    }
}

impl rand_core::TryRng for SeededStream {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from_be_bytes(std::array::from_fn(|_| self.next_byte())))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let high = self.try_next_u32()?;
        Ok((u64::from(high) << 32) + u64::from(self.try_next_u32()?))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        dest.iter_mut().for_each(|b| *b = self.next_byte());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    /// The whole pool, hashed at once: what a run's random bytes were before they were made
    /// lazily, kept to show they are the same bytes.
    fn whole_pool(seed: &[u8; 32], domain: &str) -> Vec<u8> {
        let mut pool = Vec::with_capacity(RANDOM_POOL);
        let mut counter = 0u64;
        while pool.len() < RANDOM_POOL {
            let mut hasher = Sha256::new();
            hasher.update(domain.as_bytes());
            hasher.update(seed);
            hasher.update(counter.to_le_bytes());
            pool.extend_from_slice(&hasher.finalize());
            counter += 1;
        }
        pool
    }

    #[test]
    fn the_lazy_stream_gives_the_pools_bytes_and_words() {
        let seed = [7u8; 32];
        let mut lazy = SeededStream::new(seed, "secure");
        let mut pooled = wasmtime_wasi::Deterministic::new(whole_pool(&seed, "secure"));
        // Odd sizes cross block boundaries and the pool's end, where both start over.
        let mut read = 0;
        for round in 0..300 {
            match round % 3 {
                0 => assert_eq!(lazy.next_u32(), pooled.next_u32()),
                1 => assert_eq!(lazy.next_u64(), pooled.next_u64()),
                _ => {
                    let (mut a, mut b) = (vec![0u8; 733 + round], vec![0u8; 733 + round]);
                    lazy.fill_bytes(&mut a);
                    pooled.fill_bytes(&mut b);
                    assert_eq!(a, b);
                    read += a.len();
                }
            }
        }
        assert!(read > RANDOM_POOL, "the test went round the pool");
    }
}
