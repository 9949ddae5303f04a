//! Every query of the job runner, one module per table, each beside its row type: the runner's
//! modules read as steps and call these. Each function takes any executor: the pool, or a
//! transaction the caller holds (`&mut *tx`).

pub(super) mod events;
pub(super) mod executions;
pub(super) mod jobs;
pub(super) mod reputation;
pub(super) mod users;
pub(super) mod webhooks;
