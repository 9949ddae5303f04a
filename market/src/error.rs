/// Errors of the market, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something malformed: fix the input.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    /// It existed, and is over (unsubscribed, expired, rejected).
    #[error("{0}")]
    Gone(String),
    /// Not allowed in the current state.
    #[error("{0}")]
    Conflict(String),
    /// A peer sent something that does not hold up (a forged id, a wrong owner).
    #[error("refused from the network: {0}")]
    Refused(String),
    /// The other node could not be reached; try again.
    #[error("the other node did not answer: {0}")]
    Unreachable(String),
    /// A stored row that does not read back: a bug, or a database changed by hand.
    #[error("stored market data is inconsistent: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
