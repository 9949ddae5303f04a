//! The job queue in Postgres: submissions (retried ones answered with the first job, end users'
//! budgets counted against their caps), the queue every requestor node sharing the database
//! takes jobs from with `FOR UPDATE SKIP LOCKED`, cancels from any of them, and listings.

use super::users::Principal;
use super::{JobView, Jobs, new_id};
use super::{VERDICT, store};
use crate::job::{JobSpec, JobState};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

/// How often a node looks for queued jobs when none was queued through it.
const QUEUE_POLL: Duration = Duration::from_millis(500);

/// A job id's length: 16 random bytes in hex.
const JOB_ID_LEN: usize = 32;

/// The longest `Idempotency-Key` kept.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// What `POST /jobs` made of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub id: String,
    /// A retry with the same `Idempotency-Key`: the first submission's job.
    pub replayed: bool,
}

/// Which jobs a listing shows, newest first, and from where.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs in these states; any state when empty.
    pub states: Vec<JobState>,
    /// Only this end user's jobs.
    pub user: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// At most this many (1 to [`MAX_PAGE`]).
    pub limit: usize,
    /// Where the previous page ended ([`JobPage::next_cursor`]).
    pub cursor: Option<String>,
}

/// The most jobs one page lists.
pub const MAX_PAGE: usize = 500;

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Set when there are more: give it as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// One file of a job's verified results, as a download carries it.
#[derive(Debug, Clone)]
pub struct ResultFile {
    /// Where it goes in the results folder: `stdout`, or `outputs/<path>`.
    pub path: String,
    pub content: ResultContent,
}

#[derive(Debug, Clone)]
pub enum ResultContent {
    Text(String),
    /// A blob of this node's store.
    File(PathBuf),
}

fn cursor_of(created_at: DateTime<Utc>, id: &str) -> String {
    hex::encode(format!("{}.{id}", created_at.timestamp_micros()))
}

fn parse_cursor(cursor: &str) -> Result<(DateTime<Utc>, String)> {
    let bad =
        || Error::BadInput(format!("cursor {cursor:?}: not one this node gave; start again without it"));
    let text = String::from_utf8(hex::decode(cursor).map_err(|_| bad())?).map_err(|_| bad())?;
    let (micros, id) = text.split_once('.').ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((at, id.to_string()))
}

impl Jobs {
    /// Checks and queues a job for `who`; any node sharing the database may run it. A retried
    /// submission (same `idempotency_key`, same spec) answers with the first job; an end user's
    /// budget is counted against its cap in the same transaction.
    pub async fn submit(
        &self,
        who: &Principal,
        spec: JobSpec,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted> {
        let budget = spec.check().map_err(Error::BadInput)?;
        if let Some(key) = idempotency_key
            && (key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY
                || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        {
            return Err(Error::BadInput(format!(
                "Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            )));
        }
        let body = serde_json::to_value(&spec).expect("a spec is JSON");
        let hash = Sha256::digest(body.to_string().as_bytes()).to_vec();
        let owner = who.owner();
        let mut tx = self.inner.pool.begin().await?;
        // One user's submissions take turns from here: the retry check and the cap see every
        // earlier one.
        let locked = match who {
            Principal::User(user) => Some(self.lock_user(&mut tx, user).await?),
            _ => None,
        };
        if let Some(key) = idempotency_key
            && let Some(first) = self.first_submission(&mut tx, &owner, key, &hash).await?
        {
            return Ok(first);
        }
        let reserved = match &locked {
            Some(user) => {
                self.charge(&mut tx, user, budget).await?;
                budget
            }
            None => Decimal::ZERO,
        };
        let id = new_id();
        let job = store::jobs::NewJob {
            id: &id,
            spec: body,
            owner: &owner,
            idempotency_key,
            request_hash: &hash,
            reserved,
        };
        if !store::jobs::insert(&mut *tx, job).await? {
            // The same key, committed by a concurrent request after the check above.
            drop(tx);
            let mut conn = self.inner.pool.acquire().await?;
            let key = idempotency_key.expect("only a keyed insert conflicts");
            return self
                .first_submission(&mut conn, &owner, key, &hash)
                .await?
                .ok_or_else(|| Error::Conflict("the job with this Idempotency-Key is gone".into()));
        }
        let hooked = self.step(&mut tx, &id, JobState::Queued, "queued").await?;
        tx.commit().await?;
        self.recorded(&id, JobState::Queued, "queued", hooked);
        self.inner.queued.notify_one();
        Ok(Submitted { id, replayed: false })
    }

    async fn first_submission(
        &self,
        conn: &mut sqlx::PgConnection,
        owner: &str,
        key: &str,
        hash: &[u8],
    ) -> Result<Option<Submitted>> {
        match store::jobs::by_idempotency_key(conn, owner, key).await? {
            None => Ok(None),
            Some((id, Some(first))) if first == hash => Ok(Some(Submitted { id, replayed: true })),
            Some((id, _)) => Err(Error::Conflict(format!(
                "Idempotency-Key {key:?} was used for job {id}, with a different spec; use a new key for a new job"
            ))),
        }
    }

    /// After a restart: this node's unfinished jobs start again where they can (see
    /// [`Jobs::run`]). Jobs still queued are taken by [`Jobs::serve`], here or on another node.
    pub async fn recover(&self) -> Result<()> {
        // Jobs started before the queue existed belong to the node whose database this is.
        if !self.inner.shared_queue {
            store::jobs::adopt_local(&self.inner.pool, &self.inner.node).await?;
        }
        let rows = store::jobs::of_runner(&self.inner.pool, &self.inner.node).await?;
        self.start_rows(rows).await
    }

    async fn start_rows(&self, rows: Vec<store::jobs::Started>) -> Result<()> {
        for (id, spec) in rows {
            match serde_json::from_value::<JobSpec>(spec) {
                Ok(spec) => self.start(id, spec),
                Err(e) => {
                    self.clean_up(&id).await;
                    self.finish(&id, JobState::Failed, &format!("its stored spec no longer reads: {e}"))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Takes queued jobs, as many as this node has free slots for, and starts them; stops the
    /// jobs it runs whose cancel was asked on any node.
    pub(super) fn serve_queue(&self) {
        let jobs = self.clone();
        self.inner.tasks.spawn(async move {
            loop {
                if let Err(e) = jobs.take_queued().await {
                    tracing::warn!(error = %e, "taking jobs from the queue");
                }
                if let Err(e) = jobs.stop_cancelled().await {
                    tracing::warn!(error = %e, "reading cancels");
                }
                tokio::select! {
                    () = jobs.inner.shutdown.cancelled() => return,
                    () = jobs.inner.queued.notified() => {}
                    () = tokio::time::sleep(QUEUE_POLL) => {}
                }
            }
        });
    }

    async fn take_queued(&self) -> Result<()> {
        let running = self.inner.running.lock().expect("running").len();
        let free = self.inner.max_running.saturating_sub(running);
        if free == 0 {
            return Ok(());
        }
        let free = i64::try_from(free).unwrap_or(i64::MAX);
        let rows = store::jobs::take_queued(&self.inner.pool, &self.inner.node, free).await?;
        self.start_rows(rows).await
    }

    /// Stops the jobs this node runs whose cancel was asked, as long as they have no verdict (as
    /// [`Jobs::cancel`] checks on the node that was asked).
    async fn stop_cancelled(&self) -> Result<()> {
        let ids = store::jobs::cancelled_of_runner(
            &self.inner.pool,
            &self.inner.node,
            JobState::Paying.code(),
            VERDICT,
        )
        .await?;
        let running = self.inner.running.lock().expect("running");
        for id in ids {
            if let Some(stop) = running.get(&id) {
                stop.cancel();
            }
        }
        Ok(())
    }

    /// Cancels a job that is not finished: its activities stop and its agreements end. A job
    /// another node runs is stopped by that node, within a second.
    pub async fn cancel(&self, id: &str) -> Result<()> {
        let state = self.state(id).await?;
        if state.is_final() {
            return Err(Error::Conflict(format!("job {id} is already {}", state.label())));
        }
        let verdict = store::executions::any_in(&self.inner.pool, id, VERDICT).await?;
        if state == JobState::Paying || verdict {
            return Err(Error::Conflict(format!(
                "job {id} has its verdict and is paying its verified providers; it ends when they are paid"
            )));
        }
        // Against the runner's decision, in one statement: once the job is decided (its winners
        // asked to reveal, or its one replica to be paid) a cancel is refused, and a cancel
        // recorded first keeps the runner from deciding.
        if !store::jobs::request_cancel(&self.inner.pool, id).await? {
            return Err(Error::Conflict(format!(
                "job {id} has decided whom to pay and is paying its verified providers; it ends when they are paid"
            )));
        }
        let stop =
            self.inner.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned();
        if let Some(stop) = stop {
            stop.cancel();
            return Ok(());
        }
        // Still queued: whoever takes it first, a runner or this cancel, has it. A runner that
        // took it (this node's, about to start it, or another's) stops it when it sees the cancel.
        if store::jobs::take_queued_one(&self.inner.pool, id, &self.inner.node).await? {
            self.finish(id, JobState::Cancelled, "cancelled by the requestor").await?;
        }
        Ok(())
    }

    /// The job a full id or a unique prefix of one names (as `agora job list` shows them),
    /// among the jobs `who` may see: another's job is not found.
    pub async fn resolve(&self, who: &Principal, id: &str) -> Result<String> {
        if id.is_empty() || id.len() > JOB_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(format!("no job {id}")));
        }
        // A whole id is looked up by its key; a start of one, by pattern.
        let whole = id.len() == JOB_ID_LEN;
        let found =
            store::jobs::matching_ids(&self.inner.pool, &id.to_ascii_lowercase(), whole, who.scope()).await?;
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NotFound(format!("no job {id}"))),
            _ => {
                Err(Error::BadInput(format!("{id} is the start of more than one job's id; give more of it")))
            }
        }
    }

    /// The jobs `who` may see that pass `filter`, newest first, a page at a time.
    pub async fn list(&self, who: &Principal, filter: &JobFilter) -> Result<JobPage> {
        if !(1..=MAX_PAGE).contains(&filter.limit) {
            return Err(Error::BadInput(format!("limit {}: 1 to {MAX_PAGE}", filter.limit)));
        }
        let after = filter.cursor.as_deref().map(parse_cursor).transpose()?;
        let states: Option<Vec<i16>> =
            (!filter.states.is_empty()).then(|| filter.states.iter().map(|s| s.code()).collect());
        let listing = store::jobs::Listing {
            scope: who.scope(),
            states,
            user: filter.user.as_deref(),
            created_after: filter.created_after,
            created_before: filter.created_before,
            after,
            limit: i64::try_from(filter.limit + 1).unwrap_or(i64::MAX),
        };
        let mut rows = store::jobs::list(&self.inner.pool, listing).await?;
        let more = rows.len() > filter.limit;
        rows.truncate(filter.limit);
        let next_cursor = more.then(|| rows.last()).flatten().map(|(_, at, id)| cursor_of(*at, id));
        Ok(JobPage { jobs: rows.into_iter().map(|(job, _, _)| job).collect(), next_cursor })
    }

    /// A finished job's results (verified, unless it has no verifier), file by file: its stdout,
    /// and its outputs from this node's blobs.
    pub async fn results(&self, id: &str) -> Result<Vec<ResultFile>> {
        let (state, spec, results) = store::jobs::results(&self.inner.pool, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
        let state = JobState::from_code(state).expect("the table checks the state");
        let Some(results) = results else {
            return Err(Error::Conflict(format!(
                "job {id} has no verified results; it is {}",
                state.label()
            )));
        };
        let spec: JobSpec = serde_json::from_value(spec)
            .map_err(|e| Error::Conflict(format!("job {id}'s stored spec no longer reads: {e}")))?;
        let mut files = vec![ResultFile {
            path: "stdout".into(),
            content: ResultContent::Text(results["stdout"].as_str().unwrap_or_default().to_string()),
        }];
        for output in &spec.outputs {
            let Some(blob) = results["outputs"][&output.name].as_str() else { continue };
            let sha = blob.strip_prefix("blob:sha256:").unwrap_or(blob);
            let path = self.inner.activities.blobs().path(sha).ok_or_else(|| {
                Error::NotFound(format!(
                    "output {} of job {id} is not on this node: ask the node that ran the job",
                    output.name
                ))
            })?;
            files.push(ResultFile {
                path: format!("outputs/{}", output.path),
                content: ResultContent::File(path),
            });
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_make() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let cursor = cursor_of(at, "abc");
        assert_eq!(parse_cursor(&cursor).unwrap(), (at, "abc".to_string()));
        for bad in ["", "zz", &hex::encode("no-dot"), &hex::encode("x.abc")] {
            assert!(matches!(parse_cursor(bad), Err(Error::BadInput(_))), "{bad:?}");
        }
    }
}
