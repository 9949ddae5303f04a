-- The jobs API for web services: who submitted each job, the end users a service created (with
-- their keys, spending caps and rate limits), retried submissions, signed webhooks, and a queue
-- that several requestor nodes sharing this database take jobs from.

-- Who owns a job: `admin` (the node's admin token), `app-key:<name>` (a service's app-key) or
-- `user:<id>` (one of a service's end users). Older jobs were the operator's.
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT 'admin';
-- A retried `POST /jobs` with the same `Idempotency-Key` returns the first job; the request's
-- SHA-256 tells a retry from a different request that reuses the key.
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE jobs ADD COLUMN request_hash BYTEA;
-- What the job holds of its owner's spending cap while it runs; settled when it ends.
ALTER TABLE jobs ADD COLUMN reserved NUMERIC(78, 18) NOT NULL DEFAULT 0;
-- The node (its address) that took the job from the queue; NULL while it waits.
ALTER TABLE jobs ADD COLUMN runner TEXT;
-- Set by a cancel on any node; the runner stops the job when it sees it.
ALTER TABLE jobs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;
-- Jobs that were running before this migration belong to the node that ran them.
UPDATE jobs SET runner = 'local' WHERE state > 0;

CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_owner ON jobs (owner, created_at DESC, id DESC);
CREATE INDEX jobs_listed ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_queue ON jobs (created_at) WHERE runner IS NULL AND state = 0;

-- A service's end users. Only the SHA-256 of a key is kept. `service` is the owner text of the
-- service that created the user.
CREATE TABLE job_users (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- NULL: no cap.
    cap_total NUMERIC(78, 18) CHECK (cap_total >= 0),
    cap_per_job NUMERIC(78, 18) CHECK (cap_per_job >= 0),
    -- The budgets of the user's unfinished jobs, plus what its ended jobs cost.
    spent NUMERIC(78, 18) NOT NULL DEFAULT 0,
    submissions_per_minute INTEGER CHECK (submissions_per_minute > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (service, name)
);

-- The secret each service (or the admin) signs its webhooks with.
CREATE TABLE job_webhook_secrets (
    owner TEXT PRIMARY KEY,
    secret BYTEA NOT NULL CHECK (length(secret) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One POST of one step of a job to the job's webhook: delivered in order, retried with backoff.
CREATE TABLE job_webhook_deliveries (
    event_id BIGINT PRIMARY KEY REFERENCES job_events (id) ON DELETE CASCADE,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A node is sending it until then.
    leased_until TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    gave_up_at TIMESTAMPTZ,
    last_status SMALLINT,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX job_webhook_deliveries_due ON job_webhook_deliveries (next_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX job_webhook_deliveries_job ON job_webhook_deliveries (job_id, event_id);

COMMENT ON TABLE job_users IS 'owned by agora-agents';
COMMENT ON TABLE job_webhook_secrets IS 'owned by agora-agents';
COMMENT ON TABLE job_webhook_deliveries IS 'owned by agora-agents';
