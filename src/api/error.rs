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
            E::Db(e) => Self::Internal(format!("database: {e}")),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(format!("database: {e}"))
    }
}

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
        response
    }
}
