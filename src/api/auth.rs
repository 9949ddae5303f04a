use super::{ApiError, AppState};
use agora_identity::AppKey;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

/// Who made a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A holder of an app-key, acting as the key's identity.
    AppKey(AppKey),
    /// The local operator, through the admin token in `node.json`.
    Admin,
    /// One of a web service's end users: it reaches `/jobs` only, and only its own jobs.
    EndUser(agora_agents::EndUser),
}

impl Caller {
    /// Who it is to the job runner.
    pub fn principal(&self) -> agora_agents::Principal {
        match self {
            Self::AppKey(key) => agora_agents::Principal::Service(service_of(key)),
            Self::Admin => agora_agents::Principal::Admin,
            Self::EndUser(user) => agora_agents::Principal::User(user.clone()),
        }
    }

    /// Whose what the caller makes (a subscription, an allocation) is, and so who sees and moves
    /// its money: [`agora_agreement::ADMIN_PRINCIPAL`] for the admin token, the service for an
    /// app-key.
    pub fn owner(&self) -> String {
        self.principal().owner()
    }

    /// What of the node's money the caller sees: the admin all of it, others their `owner`'s.
    pub fn scope<'a>(&self, owner: &'a str) -> agora_payment::Scope<'a> {
        match self {
            Self::Admin => agora_payment::Scope::All,
            _ => agora_payment::Scope::Of(owner),
        }
    }
}

/// Compares secrets in time independent of where they differ, by comparing their hashes.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// Resolves the bearer token to a [`Caller`], or answers 401.
pub async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        state.metrics.auth_failure();
        return Err(ApiError::Unauthorized(
            "missing app-key: send `Authorization: Bearer <app-key>` (create one with `agora app-key create NAME`)".into(),
        ));
    };
    let caller = if same_secret(token, &state.admin_token) {
        Caller::Admin
    } else {
        match state.identities.store().authenticate(token).await? {
            Some(key) => Caller::AppKey(key),
            None => match end_user(&state, token).await? {
                Some(user) => Caller::EndUser(user),
                None => {
                    state.metrics.auth_failure();
                    return Err(ApiError::Unauthorized("unknown app-key".into()));
                }
            },
        }
    };
    let path = req.uri().path();
    if matches!(caller, Caller::EndUser(_)) && !(path == "/jobs" || path.starts_with("/jobs/")) {
        return Err(ApiError::Forbidden("an end user's key reaches only /jobs".into()));
    }
    if req.uri().path().starts_with("/admin/") && !matches!(caller, Caller::Admin) {
        return Err(ApiError::Forbidden("management endpoints take the node's admin token".into()));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// A service as its end users' rows name it: the app-key's name and when it was made, so a
/// key dropped and made again under the same name is another service, with none of the old
/// one's users or jobs.
fn service_of(key: &AppKey) -> String {
    format!("{}@{}", key.name, key.created_at.timestamp_micros())
}

/// The end user a key belongs to, while its service still exists: dropping a service's app-key
/// stops its end users' keys too.
async fn end_user(state: &AppState, token: &str) -> Result<Option<agora_agents::EndUser>, ApiError> {
    let Some(jobs) = &state.jobs else { return Ok(None) };
    let Some(user) = jobs.authenticate(token).await? else { return Ok(None) };
    let alive = match user.service.strip_prefix("app-key:") {
        None => user.service == agora_agents::Principal::Admin.owner(),
        Some(service) => match service.rsplit_once('@') {
            None => false,
            Some((name, _)) => {
                state.identities.store().app_key(name).await?.is_some_and(|key| service_of(&key) == service)
            }
        },
    };
    Ok(alive.then_some(user))
}
