-- Activities on both sides: the provider hosts them, the requestor drives them.
CREATE TABLE activities (
    activity_id  TEXT PRIMARY KEY,
    agreement_id TEXT NOT NULL REFERENCES agreements (agreement_id),
    role         TEXT NOT NULL CHECK (role IN ('requestor', 'provider')),
    -- the other side's libp2p peer
    peer_id      TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN
                     ('New', 'Initialized', 'Deployed', 'Ready', 'Unresponsive', 'Terminated')),
    reason       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX activities_by_agreement ON activities (agreement_id);
