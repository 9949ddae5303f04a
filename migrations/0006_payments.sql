-- Payments: allocations, the documents a provider issues (debit notes and invoices, one table,
-- one copy on each side), their events, payment orders, the chain transactions that carry them,
-- the payments both sides record, and the messages still owed to another node. Amounts are
-- NUMERIC tokens, never floats.

CREATE TABLE allocations (
    id TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    address TEXT NOT NULL,
    total NUMERIC NOT NULL CHECK (total >= 0),
    -- Never over-committed: what acceptances took never passes the total.
    spent NUMERIC NOT NULL DEFAULT 0 CHECK (spent >= 0 AND spent <= total),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    timeout TIMESTAMPTZ,
    make_deposit BOOLEAN NOT NULL DEFAULT false,
    released_at TIMESTAMPTZ
);

CREATE TABLE payment_documents (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('debit_note', 'invoice')),
    -- 'issuer': this node issued it (the provider); 'recipient': it was received here.
    side TEXT NOT NULL CHECK (side IN ('issuer', 'recipient')),
    agreement_id TEXT NOT NULL,
    activity_id TEXT,
    activity_ids JSONB,
    issuer_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    payee_addr TEXT NOT NULL,
    payer_addr TEXT NOT NULL,
    platform TEXT NOT NULL,
    previous_id TEXT,
    -- A debit note's totalAmountDue, an invoice's amount.
    amount NUMERIC NOT NULL CHECK (amount >= 0),
    usage JSONB,
    payment_due_date TIMESTAMPTZ,
    status TEXT NOT NULL CHECK (status IN
        ('ISSUED', 'RECEIVED', 'ACCEPTED', 'REJECTED', 'FAILED', 'SETTLED', 'CANCELLED')),
    created_at TIMESTAMPTZ NOT NULL,
    -- The issuer's signature over the document as sent.
    signature TEXT NOT NULL,
    accepted_amount NUMERIC,
    allocation_id TEXT REFERENCES allocations (id),
    rejection JSONB
);
CREATE INDEX payment_documents_agreement ON payment_documents (agreement_id, kind);
-- One invoice an agreement.
CREATE UNIQUE INDEX payment_documents_one_invoice ON payment_documents (agreement_id, side)
    WHERE kind = 'invoice' AND status <> 'CANCELLED';

-- Events have distinct, increasing microsecond timestamps, so "after this instant" never skips one.
CREATE TABLE payment_events (
    event_date TIMESTAMPTZ PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('debit_note', 'invoice')),
    document_id TEXT NOT NULL REFERENCES payment_documents (id),
    event_type TEXT NOT NULL,
    detail JSONB
);

-- What the requestor owes a payee, written when it accepts, before anything is signed.
CREATE TABLE payment_orders (
    id BIGSERIAL PRIMARY KEY,
    platform TEXT NOT NULL,
    payer_addr TEXT NOT NULL,
    payee_addr TEXT NOT NULL,
    payee_id TEXT NOT NULL,
    payee_peer TEXT NOT NULL,
    amount NUMERIC NOT NULL CHECK (amount > 0),
    agreement_id TEXT NOT NULL,
    activity_id TEXT,
    document_kind TEXT NOT NULL,
    document_id TEXT NOT NULL REFERENCES payment_documents (id),
    allocation_id TEXT NOT NULL REFERENCES allocations (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The chain transaction that pays it; none while it waits for the next batch.
    batch_id BIGINT,
    paid BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX payment_orders_waiting ON payment_orders (platform, payer_addr) WHERE batch_id IS NULL;

-- One nonce of the payer's account: an approval or a batch. Its signed transactions (the first,
-- and any replacement with a higher fee) are in chain_txs, each written before it is sent.
CREATE TABLE chain_batches (
    id BIGSERIAL PRIMARY KEY,
    platform TEXT NOT NULL,
    payer_addr TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('approve', 'pay')),
    -- 'pending' until one of its transactions is mined: then 'mined' (it succeeded) or
    -- 'reverted' (its orders wait for another batch).
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'mined', 'reverted')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    mined_hash TEXT,
    mined_block BIGINT,
    UNIQUE (platform, payer_addr, nonce)
);

CREATE TABLE chain_txs (
    hash TEXT PRIMARY KEY,
    batch_id BIGINT NOT NULL REFERENCES chain_batches (id),
    raw BYTEA NOT NULL,
    max_fee NUMERIC NOT NULL,
    priority_fee NUMERIC NOT NULL,
    gas_limit BIGINT NOT NULL,
    signed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at TIMESTAMPTZ
);

-- A payment to one payee in one transaction, as the payer made it ('payer') or as the payee
-- received and checked it ('payee').
CREATE TABLE payments (
    id TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('payer', 'payee')),
    platform TEXT NOT NULL,
    payer_id TEXT NOT NULL,
    payee_id TEXT NOT NULL,
    payer_addr TEXT NOT NULL,
    payee_addr TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    tx_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    -- agreementPayments and activityPayments, with the documents they pay.
    details JSONB NOT NULL,
    signature TEXT NOT NULL,
    -- On the payee's side: checked on chain (then its documents are Settled).
    verified BOOLEAN NOT NULL DEFAULT false,
    problem TEXT,
    PRIMARY KEY (id, side),
    -- A transaction pays a payee once: the same transfer cannot settle two payments.
    UNIQUE (side, tx_hash, payee_addr)
);

CREATE TABLE payment_outbox (
    id BIGSERIAL PRIMARY KEY,
    peer TEXT NOT NULL,
    message JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    tries INTEGER NOT NULL DEFAULT 0
);

COMMENT ON TABLE allocations IS 'owned by agora-payment';
COMMENT ON TABLE payment_documents IS 'owned by agora-payment';
COMMENT ON TABLE payment_events IS 'owned by agora-payment';
COMMENT ON TABLE payment_orders IS 'owned by agora-payment';
COMMENT ON TABLE chain_batches IS 'owned by agora-payment';
COMMENT ON TABLE chain_txs IS 'owned by agora-payment';
COMMENT ON TABLE payments IS 'owned by agora-payment';
COMMENT ON TABLE payment_outbox IS 'owned by agora-payment';
