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
    properties       JSONB NOT NULL,
    constraints      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('Initial', 'Draft', 'Rejected', 'Accepted', 'Expired')),
    prev_proposal_id TEXT REFERENCES proposals (proposal_id),
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
    reason          JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered       BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX market_events_pending ON market_events (subscription_id, id) WHERE NOT delivered;
