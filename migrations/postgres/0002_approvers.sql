-- Approvers, their passkeys, one-time enrolment invitations, sessions, WebAuthn ceremonies in
-- flight, and the decisions (with the raw assertion as evidence).
ALTER TABLE approvals ADD COLUMN self_approval BIGINT NOT NULL DEFAULT 0;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,          -- also the WebAuthn user handle (a UUID)
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    groups        TEXT NOT NULL,             -- JSON array of group names
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);

CREATE TABLE invitations (
    token_hash  BYTEA PRIMARY KEY,            -- SHA-256 of the link's token; the token itself is never stored
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,          -- base64url credential id
    user_id       TEXT NOT NULL REFERENCES users(id),
    label         TEXT NOT NULL,
    public_x      BYTEA NOT NULL,             -- P-256 (ES256 only)
    public_y      BYTEA NOT NULL,
    counter       BIGINT NOT NULL,
    passkey       TEXT NOT NULL,             -- the library's registration record, kept for future use
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    flagged_at    BIGINT                    -- a counter went backwards: possible clone
);
CREATE INDEX credentials_user ON credentials(user_id);

CREATE TABLE ceremonies (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('enroll', 'signin', 'decision')),
    user_id      TEXT,
    approval_id  TEXT,
    decision     TEXT,
    scope        TEXT NOT NULL,              -- JSON: what finishing needs (state, challenge, allowed credentials)
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash       BYTEA PRIMARY KEY,          -- SHA-256 of the cookie value
    user_id       TEXT NOT NULL REFERENCES users(id),
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL           -- absolute limit
);

CREATE TABLE decisions (
    approval_id         TEXT NOT NULL REFERENCES approvals(id),
    user_id             TEXT NOT NULL REFERENCES users(id),
    decision            TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    username            TEXT NOT NULL,
    display_name        TEXT NOT NULL,
    credential_id       TEXT NOT NULL,
    at                  BIGINT NOT NULL,
    nonce               BYTEA NOT NULL,
    authenticator_data  BYTEA NOT NULL,
    client_data_json    BYTEA NOT NULL,
    signature           BYTEA NOT NULL,
    public_jwk          TEXT NOT NULL,
    user_verified       BIGINT NOT NULL,
    PRIMARY KEY (approval_id, user_id)       -- one person counts once, whatever passkeys they hold
);
