//! Who acts on jobs, and a web service's end users: keys the service creates for the people it
//! serves, each with its own spending cap and rate limit, and sight of its own jobs only.

use super::Jobs;
use super::store::users;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use rand::RngCore;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who submits, reads or cancels a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The node's operator: every job.
    Admin,
    /// A service's app-key (its name and when it was made, `name@micros`): its own jobs and its
    /// end users'.
    Service(String),
    /// One end user of a service: its own jobs only.
    User(EndUser),
}

impl Principal {
    /// How the `owner` column names it.
    pub fn owner(&self) -> String {
        match self {
            Self::Admin => agora_agreement::ADMIN_PRINCIPAL.into(),
            Self::Service(name) => format!("app-key:{name}"),
            Self::User(user) => format!("user:{}", user.id),
        }
    }

    /// The owner whose jobs (and whose end users' jobs) it sees; `None` sees every job.
    pub(super) fn scope(&self) -> Option<String> {
        match self {
            Self::Admin => None,
            other => Some(other.owner()),
        }
    }

    /// The owner whose secret signs the webhooks of its jobs: a user's service.
    pub(super) fn signer(&self) -> String {
        match self {
            Self::User(user) => user.service.clone(),
            other => other.owner(),
        }
    }
}

/// An end user as its service sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndUser {
    pub id: String,
    pub name: String,
    /// The owner text of the service that created it.
    pub service: String,
    /// The most its jobs may hold and spend together; no cap when absent.
    pub cap_total: Option<Decimal>,
    /// The largest budget one of its jobs may have.
    pub cap_per_job: Option<Decimal>,
    /// What its unfinished jobs hold plus what its ended jobs cost.
    pub spent: Decimal,
    pub submissions_per_minute: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// What a service asks for when it creates an end user.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewEndUser {
    /// The service's name for the user: 1 to 64 letters, digits, `-`, `_` or `.`.
    pub name: String,
    pub cap_total: Option<String>,
    pub cap_per_job: Option<String>,
    pub submissions_per_minute: Option<i32>,
}

/// A new end user, with the one copy of its key there will ever be.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedEndUser {
    #[serde(flatten)]
    pub user: EndUser,
    pub key: String,
}

fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

fn cap(field: &str, text: Option<&str>) -> Result<Option<Decimal>> {
    let Some(text) = text else { return Ok(None) };
    let amount = agora_payment::model::parse_amount(field, text).map_err(Error::BadInput)?;
    if amount < Decimal::ZERO {
        return Err(Error::BadInput(format!("{field} {text}: must be 0 or more")));
    }
    Ok(Some(amount))
}

impl Jobs {
    /// Creates an end user of `service` (not itself an end user).
    pub async fn create_user(&self, service: &Principal, new: NewEndUser) -> Result<CreatedEndUser> {
        if matches!(service, Principal::User(_)) {
            return Err(Error::Forbidden("an end user's key cannot create users".into()));
        }
        let ok_name = (1..=64).contains(&new.name.len())
            && new.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok_name {
            return Err(Error::BadInput(format!(
                "name {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                new.name.chars().take(80).collect::<String>()
            )));
        }
        let cap_total = cap("capTotal", new.cap_total.as_deref())?;
        let cap_per_job = cap("capPerJob", new.cap_per_job.as_deref())?;
        if let Some(rate) = new.submissions_per_minute
            && rate < 1
        {
            return Err(Error::BadInput(format!("submissionsPerMinute {rate}: at least 1, or leave it out")));
        }
        let key = random_hex(32);
        let row = users::NewRow {
            id: &random_hex(16),
            service: &service.owner(),
            name: &new.name,
            key_hash: hash_key(&key),
            cap_total,
            cap_per_job,
            submissions_per_minute: new.submissions_per_minute,
        };
        let user = users::insert(&self.inner.pool, row).await.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::Conflict(format!("there is already a user named {}", new.name))
            }
            _ => e.into(),
        })?;
        Ok(CreatedEndUser { user, key })
    }

    /// The end users `service` created (every one, for the admin), oldest first.
    pub async fn users(&self, service: &Principal) -> Result<Vec<EndUser>> {
        users::of_service(&self.inner.pool, service.scope()).await
    }

    /// One end user, as its service (or itself) sees it; another's answers not found.
    pub async fn user(&self, who: &Principal, id: &str) -> Result<EndUser> {
        users::get(&self.inner.pool, id, who.scope())
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user {id}")))
    }

    /// Revokes an end user's key; its jobs go on and stay visible to its service.
    pub async fn drop_user(&self, service: &Principal, id: &str) -> Result<()> {
        if matches!(service, Principal::User(_)) {
            return Err(Error::Forbidden("an end user's key cannot remove users".into()));
        }
        // The key is what is revoked: its hash becomes one no key has.
        let revoked = Sha256::digest(random_hex(32)).to_vec();
        if !users::set_key_hash(&self.inner.pool, id, service.scope(), revoked).await? {
            return Err(Error::NotFound(format!("no user {id}")));
        }
        Ok(())
    }

    /// The end user a presented key belongs to, if any.
    pub async fn authenticate(&self, key: &str) -> Result<Option<EndUser>> {
        users::by_key_hash(&self.inner.pool, hash_key(key)).await
    }

    /// Locks the user's row for the rest of the submission's transaction; the row as locked. A
    /// turn is waited for briefly, so one user's burst cannot hold the pool's connections.
    pub(super) async fn lock_user(&self, tx: &mut sqlx::PgConnection, user: &EndUser) -> Result<EndUser> {
        let locked = users::lock(tx, &user.id).await;
        if let Err(sqlx::Error::Database(db)) = &locked
            && db.code().as_deref() == Some("55P03")
        {
            return Err(Error::RateLimited {
                message: format!("user {} has too many submissions waiting; try again", user.name),
                retry_after_secs: 1,
            });
        }
        locked?.ok_or_else(|| Error::NotFound(format!("no user {}", user.id)))
    }

    /// Within the submission's transaction, with the user's row locked ([`Jobs::lock_user`]) and
    /// as it was read then: the rate limit, the
    /// per-job cap and the total cap, then the budget is counted against the cap. Concurrent
    /// submissions of one user wait for each other on the lock, so together they cannot pass it.
    pub(super) async fn charge(
        &self,
        tx: &mut sqlx::PgConnection,
        now: &EndUser,
        budget: Decimal,
    ) -> Result<()> {
        if let Some(rate) = now.submissions_per_minute {
            let (recent, oldest) =
                users::submitted_last_minute(&mut *tx, &format!("user:{}", now.id)).await?;
            if recent >= i64::from(rate) {
                let wait =
                    oldest.map_or(60, |t| (t + chrono::Duration::seconds(60) - Utc::now()).num_seconds());
                return Err(Error::RateLimited {
                    message: format!(
                        "user {} may submit {rate} jobs a minute and has; try again in {}s",
                        now.name,
                        wait.max(1)
                    ),
                    retry_after_secs: wait.clamp(1, 60) as u64,
                });
            }
        }
        if let Some(per_job) = now.cap_per_job
            && budget > per_job
        {
            return Err(Error::OverBudget(format!(
                "budget {}: user {}'s jobs may have a budget of at most {per_job}",
                budget.normalize(),
                now.name
            )));
        }
        if let Some(total) = now.cap_total
            && now.spent + budget > total
        {
            return Err(Error::OverBudget(format!(
                "budget {}: user {} has {} of its cap of {total} spent or held by running jobs; {} is left",
                budget.normalize(),
                now.name,
                now.spent,
                (total - now.spent).max(Decimal::ZERO).normalize()
            )));
        }
        users::spend(&mut *tx, &now.id, budget).await
    }

    /// The secret that signs the webhooks of `owner`'s jobs (and its end users'), made on first
    /// use.
    pub async fn webhook_secret(&self, who: &Principal) -> Result<String> {
        if matches!(who, Principal::User(_)) {
            return Err(Error::Forbidden(
                "an end user's key cannot read the webhook secret; its service signs its webhooks".into(),
            ));
        }
        Ok(hex::encode(self.secret_of(&who.signer()).await?))
    }

    pub(super) async fn secret_of(&self, owner: &str) -> Result<Vec<u8>> {
        // Every delivery asks: the common case is one read.
        if let Some(secret) = users::secret(&self.inner.pool, owner).await? {
            return Ok(secret);
        }
        let mut fresh = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut fresh);
        users::keep_secret(&self.inner.pool, owner, fresh.to_vec()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_signers() {
        let user = EndUser {
            id: "ab".into(),
            name: "alice".into(),
            service: "app-key:shop".into(),
            cap_total: None,
            cap_per_job: None,
            spent: Decimal::ZERO,
            submissions_per_minute: None,
            created_at: Utc::now(),
        };
        assert_eq!(Principal::Admin.scope(), None);
        assert_eq!(Principal::Service("shop".into()).owner(), "app-key:shop");
        assert_eq!(Principal::User(user.clone()).owner(), "user:ab");
        assert_eq!(Principal::User(user).signer(), "app-key:shop");
    }
}
