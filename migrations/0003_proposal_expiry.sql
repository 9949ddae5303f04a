-- Open proposals are swept to Expired by age; this keeps the sweep off the closed ones.
CREATE INDEX proposals_open ON proposals (created_at) WHERE state IN ('Initial', 'Draft');
