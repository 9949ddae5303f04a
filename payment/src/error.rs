/// What can go wrong in payments, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong: a bad amount, an allocation too small, a document in the wrong state.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what already happened (accepting an accepted invoice).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    /// The other node did not acknowledge in time; the message stays queued.
    #[error("{0}")]
    NotAcknowledged(String),
    /// The other node or the chain cannot be reached now.
    #[error("{0}")]
    Unreachable(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Stored data that does not read back.
    #[error("stored payment data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
