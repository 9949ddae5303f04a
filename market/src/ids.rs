//! Ids derived from content, and the timestamps they commit to.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sha2::{Digest, Sha256};

/// An id derived from its parts: hex SHA-256 of them, separated.
pub(crate) fn derived_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

pub(crate) fn now_millis() -> DateTime<Utc> {
    // Ids commit to millisecond timestamps; storing the same precision keeps them checkable.
    Utc::now().duration_trunc(Duration::milliseconds(1)).unwrap_or_else(|_| Utc::now())
}

/// The longest id the market takes from a caller or a peer.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` can name a subscription, proposal or agreement: 1 to [`MAX_ID_LEN`] ASCII
/// letters, digits, `-` or `_`. Checked before the database sees it (which refuses a NUL byte
/// with an error of its own).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
