-- Ceremonies, sessions and decisions are only ever found by their primary key (or its prefix):
-- stored WITHOUT ROWID, each is one B-tree keyed by it instead of a rowid table plus an index
-- of the key, so every decision reads and rewrites one page fewer of each. Nothing refers to
-- these tables, so they are rebuilt in place.
CREATE TABLE ceremonies_new (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('enroll', 'signin', 'decision')),
    user_id      TEXT,
    approval_id  TEXT,
    decision     TEXT,
    scope        TEXT NOT NULL,              -- JSON: what finishing needs (state, challenge, allowed credentials)
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO ceremonies_new (id, kind, user_id, approval_id, decision, scope, created_at, expires_at)
    SELECT id, kind, user_id, approval_id, decision, scope, created_at, expires_at FROM ceremonies;
DROP TABLE ceremonies;
ALTER TABLE ceremonies_new RENAME TO ceremonies;

CREATE TABLE sessions_new (
    id_hash       BLOB PRIMARY KEY,          -- SHA-256 of the cookie value
    user_id       TEXT NOT NULL REFERENCES users(id),
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL           -- absolute limit
) WITHOUT ROWID;
INSERT INTO sessions_new (id_hash, user_id, created_at, last_seen_at, expires_at)
    SELECT id_hash, user_id, created_at, last_seen_at, expires_at FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;

CREATE TABLE decisions_new (
    approval_id         TEXT NOT NULL REFERENCES approvals(id),
    user_id             TEXT NOT NULL REFERENCES users(id),
    decision            TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    username            TEXT NOT NULL,
    display_name        TEXT NOT NULL,
    credential_id       TEXT NOT NULL,
    at                  INTEGER NOT NULL,
    nonce               BLOB NOT NULL,
    authenticator_data  BLOB NOT NULL,
    client_data_json    BLOB NOT NULL,
    signature           BLOB NOT NULL,
    public_jwk          TEXT NOT NULL,
    user_verified       INTEGER NOT NULL,
    PRIMARY KEY (approval_id, user_id)       -- one person counts once, whatever passkeys they hold
) WITHOUT ROWID;
INSERT INTO decisions_new (approval_id, user_id, decision, username, display_name, credential_id, at,
                           nonce, authenticator_data, client_data_json, signature, public_jwk, user_verified)
    SELECT approval_id, user_id, decision, username, display_name, credential_id, at,
           nonce, authenticator_data, client_data_json, signature, public_jwk, user_verified FROM decisions;
DROP TABLE decisions;
ALTER TABLE decisions_new RENAME TO decisions;
