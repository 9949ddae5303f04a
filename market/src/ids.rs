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

/// Whether a JSON value holds a NUL character (in a string or a key), which PostgreSQL cannot
/// store in text or JSONB.
fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Refuses properties or constraints the database cannot store, before it is asked to.
pub(crate) fn storable(properties: &serde_json::Value, constraints: &str) -> Result<(), String> {
    if has_nul(properties) || constraints.contains('\0') {
        return Err("properties and constraints cannot hold a NUL character (\\u0000)".into());
    }
    Ok(())
}
