-- Identity records and app-keys. The keys themselves live in V3 keystore files in the node's data
-- dir; these rows hold what the node knows about each one.
CREATE TABLE identities (
    address    TEXT PRIMARY KEY CHECK (address ~ '^0x[0-9a-f]{40}$'),
    alias      TEXT UNIQUE,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    -- true when the keystore file is encrypted with a password of its own
    locked     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- At most one default identity.
CREATE UNIQUE INDEX identities_one_default ON identities (is_default) WHERE is_default;

-- App-keys authenticate REST callers. Only the SHA-256 of a key is kept, so a database dump does
-- not hand out working keys.
CREATE TABLE app_keys (
    name       TEXT PRIMARY KEY,
    key_hash   BYTEA NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    identity   TEXT NOT NULL REFERENCES identities (address),
    role       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
