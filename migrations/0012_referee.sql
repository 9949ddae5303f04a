-- When a referee last contradicted a winning group the provider was in: such a provider has lost
-- its score and is left out of this node's jobs.
ALTER TABLE reputation ADD COLUMN caught_at TIMESTAMPTZ;
