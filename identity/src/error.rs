use alloy_primitives::Address;

/// Errors of the identity crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no identity {0}")]
    UnknownIdentity(String),
    #[error("identity {0} is locked; unlock it first (`agora id unlock {0}`)")]
    Locked(Address),
    #[error("a password must not be empty")]
    BadPassword,
    #[error("wrong password for identity {0}")]
    WrongPassword(Address),
    #[error("an identity with alias '{0}' already exists")]
    AliasTaken(String),
    #[error("an app-key named '{0}' already exists")]
    AppKeyExists(String),
    #[error("no app-key named '{0}'")]
    UnknownAppKey(String),
    #[error("invalid name '{0}': use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error("invalid address '{0}': expected 0x followed by 40 hex digits")]
    BadAddress(String),
    #[error("invalid signature: {0}")]
    BadSignature(String),
    #[error("signature is by {found}, expected {expected}")]
    WrongSigner { expected: Address, found: Address },
    #[error("cannot encrypt or decrypt: {0}")]
    Seal(String),
    #[error("invalid peer id: {0}")]
    BadPeerId(String),
    #[error("JSON value cannot be made canonical: {0}")]
    Json(#[from] serde_json::Error),
    #[error("keystore {path}: {message}")]
    Keystore { path: String, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
