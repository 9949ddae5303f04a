-- Jobs a requestor submitted to its node, run by the node's job runner: rows, so that a restart
-- finds them.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    spec JSONB NOT NULL,
    -- 0 queued, 1 finding providers, 2 negotiating, 3 running, 4 verifying, 5 paying,
    -- 6 completed, 7 failed, 8 cancelled.
    state SMALLINT NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 8),
    allocation_id TEXT,
    demand_id TEXT,
    -- The verified result: its h1: digest, the winners' stdout, and the outputs as blob URLs.
    results JSONB,
    message TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE state < 6;

-- One replica of a job on one provider.
CREATE TABLE job_executions (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    agreement_id TEXT,
    activity_id TEXT,
    -- 0 chosen, 1 agreed, 2 running, 3 committed, 4 verified, 5 lost, 6 failed, 7 paid,
    -- 8 rejected.
    state SMALLINT NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 8),
    commitment JSONB,
    digest TEXT,
    -- Why it lost or failed.
    reason TEXT,
    invoice_id TEXT,
    amount NUMERIC(78, 18),
    tx_hash TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, provider)
);

-- What a job did, step by step, as `agora job run` shows it and `/jobs/{id}/events` streams it.
CREATE TABLE job_events (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    state SMALLINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Each provider's record with this requestor: +1 per verified run, x2/3 per failed one.
CREATE TABLE reputation (
    provider TEXT PRIMARY KEY,
    score DOUBLE PRECISION NOT NULL DEFAULT 0,
    verified BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE jobs IS 'owned by agora-agents';
COMMENT ON TABLE job_executions IS 'owned by agora-agents';
COMMENT ON TABLE job_events IS 'owned by agora-agents';
COMMENT ON TABLE reputation IS 'owned by agora-agents';
