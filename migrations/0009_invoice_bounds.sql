-- Owned by agora-agents: what a replica's invoice may ask, and when a job decided whom to pay.
-- The most a replica's invoice may ask: what the agreed terms give for its run as the requestor
-- saw it, from its exec to its last result, and never more than its worst case reserved at
-- selection. Kept with the replica so a restart holds invoices to it too.
ALTER TABLE job_executions ADD COLUMN max_amount NUMERIC(78, 18);
-- When the runner sent the replica's run, by the database's clock: the usage its debit notes
-- report is held to what the time since allows.
ALTER TABLE job_executions ADD COLUMN exec_at TIMESTAMPTZ;
-- Set when the runner decides whom to pay (before the winners reveal); from then on a cancel is
-- refused, and a cancel recorded first keeps it from being set.
ALTER TABLE jobs ADD COLUMN decided BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE jobs SET decided = TRUE
    WHERE EXISTS (SELECT 1 FROM job_executions e WHERE e.job_id = jobs.id AND e.state IN (4, 7));
-- The job has ended, but its allocation holds for a verified provider whose invoice came late:
-- the runner accepts it when it comes, and releases the allocation then or at its timeout.
ALTER TABLE jobs ADD COLUMN allocation_held BOOLEAN NOT NULL DEFAULT FALSE;
