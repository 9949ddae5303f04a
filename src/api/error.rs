use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Every error the API returns: a status and `{"message": …}`, as Golem's APIs do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    InsufficientStorage(String),
    /// Golem's `AckTimeout`: the other node did not acknowledge in time (the message stays queued).
    #[error("{0}")]
    AckTimeout(String),
    /// A job's budget would pass its owner's spending cap.
    #[error("{0}")]
    PaymentRequired(String),
    /// A rate limit: try again after the seconds given (sent as `Retry-After`).
    #[error("{0}")]
    TooManyRequests(String, u64),
    /// Logged with its cause; the caller sees only that it happened.
    #[error("{0}")]
    Internal(String),
}

impl From<agora_identity::Error> for ApiError {
    fn from(e: agora_identity::Error) -> Self {
        use agora_identity::Error as E;
        match e {
            E::UnknownIdentity(_) | E::UnknownAppKey(_) => Self::NotFound(e.to_string()),
            E::AliasTaken(_) | E::AppKeyExists(_) | E::Locked(_) => Self::Conflict(e.to_string()),
            E::WrongPassword(_) => Self::Forbidden(e.to_string()),
            E::BadName(_) | E::BadAddress(_) | E::BadPassword => Self::BadRequest(e.to_string()),
            E::Db(db) => db.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<agora_market::Error> for ApiError {
    fn from(e: agora_market::Error) -> Self {
        use agora_market::Error as E;
        match e {
            E::BadInput(m) | E::Refused(m) => Self::BadRequest(m),
            E::NotFound(m) => Self::NotFound(m),
            E::Gone(m) => Self::Gone(m),
            E::Conflict(m) => Self::Conflict(m),
            E::Unreachable(m) => Self::Unavailable(m),
            E::Db(e) => e.into(),
            E::Corrupt(m) => Self::Internal(m),
        }
    }
}

impl From<agora_activity::Error> for ApiError {
    fn from(e: agora_activity::Error) -> Self {
        use agora_activity::Error as E;
        match e {
            E::BadInput(m) => Self::BadRequest(m),
            E::Forbidden(m) => Self::Forbidden(m),
            E::NotFound(m) => Self::NotFound(m),
            E::Conflict(m) => Self::Conflict(m),
            E::Gone(m) => Self::Gone(m),
            E::Busy(m) | E::Remote(m) => Self::Unavailable(m),
            E::TooLarge(m) => Self::PayloadTooLarge(m),
            E::NoSpace(m) => Self::InsufficientStorage(m),
            e @ E::Unreachable(_) => Self::Unavailable(e.to_string()),
            E::Db(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<agora_payment::Error> for ApiError {
    fn from(e: agora_payment::Error) -> Self {
        use agora_payment::Error as E;
        match e {
            E::BadInput(m) => Self::BadRequest(m),
            E::NotFound(m) => Self::NotFound(m),
            E::Conflict(m) => Self::Conflict(m),
            E::Gone(m) => Self::Gone(m),
            E::NotAcknowledged(m) => Self::AckTimeout(m),
            E::Unreachable(m) => Self::Unavailable(m),
            E::Db(e) => e.into(),
            E::Corrupt(m) => Self::Internal(m),
        }
    }
}

impl From<agora_agents::Error> for ApiError {
    fn from(e: agora_agents::Error) -> Self {
        use agora_agents::Error as E;
        match e {
            E::BadInput(m) => Self::BadRequest(m),
            E::NotFound(m) => Self::NotFound(m),
            E::Conflict(m) => Self::Conflict(m),
            E::Forbidden(m) => Self::Forbidden(m),
            E::OverBudget(m) => Self::PaymentRequired(m),
            E::RateLimited { message, retry_after_secs } => Self::TooManyRequests(message, retry_after_secs),
            E::Market(e) => e.into(),
            E::Activity(e) => e.into(),
            E::Payment(e) => e.into(),
            E::Net(e) => Self::Unavailable(e.to_string()),
            E::Db(e) => e.into(),
            E::Internal(m) => Self::Internal(m),
        }
    }
}

/// Whether a database error means the database cannot be reached now (rather than a fault in
/// what was asked): the connection, the pool, or a server that is shutting down or starting.
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            true
        }
        sqlx::Error::Database(db) => {
            // SQLSTATE class 08 (connection exception), 57P01-57P03 (shutdown, cannot connect now).
            db.code()
                .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if unreachable(&e) {
            // The pool reconnects by itself once the database is back.
            Self::Unavailable(format!("the node's database cannot be reached ({e}); try again shortly"))
        } else {
            Self::Internal(format!("database: {e}"))
        }
    }
}

/// Seconds a client is asked to wait before it tries a 503 again.
pub const RETRY_AFTER_SECS: u32 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::AckTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            Self::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &self {
            Self::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                "internal error; the node's log has the details".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (status, axum::Json(json!({ "message": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::TooManyRequests(_, secs) = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}
