//! What may name a subscription, proposal, agreement, activity or payment document.

/// The longest id a node takes from a caller or a peer.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` can name a subscription, proposal or agreement: 1 to [`MAX_ID_LEN`] ASCII
/// letters, digits, `-` or `_`. Checked before the database sees it (which refuses a NUL byte
/// with an error of its own).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
