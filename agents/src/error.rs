//! The agents' errors, by what the caller can do about them.

/// What went wrong for an agent or a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job spec or a request is wrong: the message says what and where.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    /// It cannot happen in the job's state (a finished job cancelled, say).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this, whatever it asks (an end user creating users, say).
    #[error("{0}")]
    Forbidden(String),
    /// The job's budget would pass its owner's spending cap.
    #[error("{0}")]
    OverBudget(String),
    /// Its owner submitted as many jobs as it may this minute.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    #[error("market: {0}")]
    Market(#[from] agora_market::Error),
    #[error("activity: {0}")]
    Activity(#[from] agora_activity::Error),
    #[error("payment: {0}")]
    Payment(#[from] agora_payment::Error),
    #[error("network: {0}")]
    Net(#[from] agora_net::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A fault of this node's own (a task that panicked): the message says where.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caught panic said, for the job or round it ended.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
