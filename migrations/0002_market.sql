-- The market: this node's offers and demands, offers received from the network, proposals, and
-- the events subscribers collect.

CREATE TABLE offers (
    offer_id        TEXT PRIMARY KEY,
    provider_id     TEXT NOT NULL,
    properties      JSONB NOT NULL,
    constraints     TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    unsubscribed_at TIMESTAMPTZ
);

CREATE TABLE demands (
    demand_id       TEXT PRIMARY KEY,
    requestor_id    TEXT NOT NULL,
    properties      JSONB NOT NULL,
    constraints     TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    unsubscribed_at TIMESTAMPTZ
);

-- Offers of other nodes, as fetched from them and checked against their ids.
CREATE TABLE remote_offers (
    offer_id        TEXT PRIMARY KEY,
    provider_id     TEXT NOT NULL,
    peer_id         TEXT NOT NULL,
    properties      JSONB NOT NULL,
    constraints     TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    unsubscribed_at TIMESTAMPTZ,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE proposals (
    proposal_id      TEXT PRIMARY KEY,
    -- the demand (requestor side) or offer (provider side) subscription it belongs to
    subscription_id  TEXT NOT NULL,
    demand_id        TEXT NOT NULL,
    offer_id         TEXT NOT NULL,
    issuer_id        TEXT NOT NULL,
    -- the other side's libp2p peer, to send counter-proposals and agreements to
    peer_id          TEXT NOT NULL,
    properties       JSONB NOT NULL,
    constraints      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('Initial', 'Draft', 'Rejected', 'Accepted', 'Expired')),
    -- may name the other side's proposal, which is not stored here
    prev_proposal_id TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX proposals_by_subscription ON proposals (subscription_id);

-- Events wait here until a subscriber collects them; collecting marks them delivered, so a
-- restart loses none and none is handed out twice.
CREATE TABLE market_events (
    id              BIGSERIAL PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    proposal_id     TEXT REFERENCES proposals (proposal_id),
    agreement_id    TEXT,
    reason          JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered       BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX market_events_pending ON market_events (subscription_id, id) WHERE NOT delivered;

CREATE TABLE agreements (
    agreement_id        TEXT PRIMARY KEY,
    -- 'requestor' or 'provider': which side of it this node is
    role                TEXT NOT NULL CHECK (role IN ('requestor', 'provider')),
    peer_id             TEXT NOT NULL,
    requestor_id        TEXT NOT NULL,
    provider_id         TEXT NOT NULL,
    demand              JSONB NOT NULL,
    offer               JSONB NOT NULL,
    valid_to            TIMESTAMPTZ NOT NULL,
    state               TEXT NOT NULL CHECK (state IN
                            ('Proposal', 'Pending', 'Approved', 'Rejected', 'Cancelled', 'Expired', 'Terminated')),
    proposed_signature  TEXT,
    approved_signature  TEXT,
    approved_date       TIMESTAMPTZ,
    reason              JSONB,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE agreement_events (
    id           BIGSERIAL PRIMARY KEY,
    agreement_id TEXT NOT NULL REFERENCES agreements (agreement_id),
    event_type   TEXT NOT NULL,
    reason       JSONB,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Messages to other nodes that must arrive (an approval, a termination): kept until the peer
-- acknowledges, retried meanwhile, so a peer that restarts still gets them.
CREATE TABLE market_outbox (
    id         BIGSERIAL PRIMARY KEY,
    peer_id    TEXT NOT NULL,
    message    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts   INTEGER NOT NULL DEFAULT 0
);
