-- One peer or payee cannot hold up the others (owned by agora-payment).
-- The outbox is read per peer, each peer's oldest messages side by side; this index serves it.
CREATE INDEX payment_outbox_peer ON payment_outbox (peer, id);
-- An order the chain refuses to pay (its payee is the zero address, say), with the chain's
-- reason: it leaves the batches, so the other orders are paid.
ALTER TABLE payment_orders ADD COLUMN failure TEXT;
-- A payment notice not found on chain yet is looked at again later and later, and given up on
-- after a while: how often it was looked at, and when next.
ALTER TABLE payments ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN next_check_at TIMESTAMPTZ;
-- When this node received it, by its own clock (a payment's timestamp is the payer's word).
ALTER TABLE payments ADD COLUMN received_at TIMESTAMPTZ NOT NULL DEFAULT now();
