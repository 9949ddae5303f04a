//! Jobs, replicas and steps as the API shows them.

use crate::job::{ExecState, JobState};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

/// A job as `GET /jobs` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: String,
    /// `admin`, `app-key:<name>` or `user:<id>`.
    pub owner: String,
    pub state: String,
    pub state_code: i16,
    /// The spec as submitted.
    #[schema(value_type = crate::JobSpec)]
    pub spec: Value,
    pub allocation_id: Option<String>,
    /// The verified result: its `h1:` digest, the stdout, and the outputs as blob names.
    #[schema(value_type = Option<Object>)]
    pub results: Option<Value>,
    /// How it ended.
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A job as `GET /jobs/{id}` shows it: with its replicas and its steps.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    pub executions: Vec<ExecutionView>,
    pub events: Vec<JobEvent>,
}

/// One replica of a job on one provider.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    pub provider: String,
    pub agreement_id: Option<String>,
    pub activity_id: Option<String>,
    pub state: String,
    pub state_code: i16,
    /// Its sealed commitment (and, once revealed, the hash).
    #[schema(value_type = Option<Object>)]
    pub commitment: Option<Value>,
    /// Why it lost or failed.
    pub reason: Option<String>,
    pub invoice_id: Option<String>,
    pub amount: Option<String>,
    pub tx_hash: Option<String>,
}

/// One step of a job: `GET /jobs/{id}/events`, a server-sent event's data, a webhook's body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    /// Increasing: give the last one seen as `after` (or `Last-Event-ID`) to resume.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub state: String,
    pub state_code: i16,
    pub message: String,
}

impl JobView {
    pub(super) fn of(row: &PgRow) -> Self {
        let state = JobState::from_code(row.get("state")).expect("the table checks the state");
        Self {
            job_id: row.get("id"),
            owner: row.get("owner"),
            state: state.label().into(),
            state_code: state.code(),
            spec: row.get("spec"),
            allocation_id: row.get("allocation_id"),
            results: row.get("results"),
            message: row.get("message"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }

    pub fn state(&self) -> JobState {
        JobState::from_code(self.state_code).expect("made from a state")
    }
}

impl ExecutionView {
    pub(super) fn of(row: &PgRow) -> Self {
        let state = ExecState::from_code(row.get("state")).expect("the table checks the state");
        Self {
            provider: row.get("provider"),
            agreement_id: row.get("agreement_id"),
            activity_id: row.get("activity_id"),
            state: state.label().into(),
            state_code: state.code(),
            commitment: row.get("commitment"),
            reason: row.get("reason"),
            invoice_id: row.get("invoice_id"),
            amount: row.get::<Option<Decimal>, _>("amount").map(|a| a.normalize().to_string()),
            tx_hash: row.get("tx_hash"),
        }
    }
}

impl JobEvent {
    pub(super) fn of(row: &PgRow) -> Self {
        let state = JobState::from_code(row.get("state")).expect("the table checks the state");
        Self {
            id: row.get("id"),
            at: row.get("at"),
            state: state.label().into(),
            state_code: state.code(),
            message: row.get("message"),
        }
    }
}
