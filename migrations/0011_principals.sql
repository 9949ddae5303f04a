-- Whose money each thing is: the app-key (`app-key:<name>@<micros>`, a service as the jobs API
-- names it) that subscribed a demand or offer, made an allocation, or owns the agreement a debit
-- note or invoice is of; `admin` for the node's own (its admin token, its provider agent).
-- An agreement belongs to the subscription it was made on. Rows from before were the node's own.
ALTER TABLE demands ADD COLUMN principal TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE offers ADD COLUMN principal TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE agreements ADD COLUMN principal TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE allocations ADD COLUMN principal TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE payment_documents ADD COLUMN principal TEXT NOT NULL DEFAULT 'admin';

CREATE INDEX allocations_principal ON allocations (principal, created_at);
CREATE INDEX payment_documents_principal ON payment_documents (principal, kind, created_at);
