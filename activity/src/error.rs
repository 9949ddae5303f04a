//! Errors of activities, by what the caller can do about them. The REST layer maps each to a
//! status; between nodes a refusal travels as a [`Refusal`] kind and a message.

use crate::unit::ExeError;
use crate::wire::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input: fix it.
    #[error("{0}")]
    BadInput(String),
    /// Not the caller's to do (another requestor's activity, a folder outside the allowed ones).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Not in the current state (an agreement not Approved, an activity hosted here).
    #[error("{0}")]
    Conflict(String),
    /// It existed, and is over (a terminated activity).
    #[error("{0}")]
    Gone(String),
    /// At a documented limit: try again shortly.
    #[error("{0}")]
    Busy(String),
    /// Over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The node's disk has no room for it.
    #[error("{0}")]
    NoSpace(String),
    /// The other node did not answer; it may be down or unreachable.
    #[error("the other node did not answer: {0}")]
    Unreachable(String),
    /// The other node failed or answered outside the protocol.
    #[error("the other node: {0}")]
    Remote(String),
    /// Reading the node's agreements failed.
    #[error("agreements: {0}")]
    Agreements(String),
    #[error(transparent)]
    Exe(#[from] ExeError),
    #[error("{0}")]
    Io(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The refusal kind another node is told.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::BadInput(_) => Refusal::BadInput,
            Self::Forbidden(_) => Refusal::Forbidden,
            Self::NotFound(_) => Refusal::NotFound,
            Self::Conflict(_) => Refusal::Conflict,
            Self::Gone(_) => Refusal::Gone,
            Self::Busy(_) => Refusal::Busy,
            Self::TooLarge(_) => Refusal::BadInput,
            Self::NoSpace(_) => Refusal::Unavailable,
            Self::Unreachable(_) | Self::Remote(_) => Refusal::Unavailable,
            Self::Agreements(_) | Self::Exe(_) | Self::Io(_) | Self::Db(_) => Refusal::Internal,
        }
    }

    /// What another node is told: the message, except for this node's own failures, which are
    /// logged here and said only to have happened.
    pub fn public_message(&self) -> String {
        match self.refusal() {
            Refusal::Internal => {
                tracing::error!(error = %self, "an activity request failed");
                "the provider's node failed to handle this; its log has the details".into()
            }
            _ => self.to_string(),
        }
    }

    /// What the requestor reads in a command's result: the error itself (a package that does not
    /// deploy, the run's limits, a failed run, a missing output), except this node's own
    /// failures (its engine, its disk), which are logged here.
    pub fn for_requestor(&self) -> String {
        match self {
            Self::Exe(ExeError::Engine(_) | ExeError::Io(_)) => self.public_message(),
            Self::Exe(e) => e.to_string(),
            _ => self.public_message(),
        }
    }

    /// The error another node's refusal means here.
    pub fn from_refusal(refusal: Refusal, message: String) -> Self {
        match refusal {
            Refusal::BadInput => Self::BadInput(message),
            Refusal::Forbidden => Self::Forbidden(message),
            Refusal::NotFound => Self::NotFound(message),
            Refusal::Conflict => Self::Conflict(message),
            Refusal::Gone => Self::Gone(message),
            Refusal::Busy => Self::Busy(message),
            Refusal::Unavailable | Refusal::Internal => Self::Remote(message),
        }
    }
}
