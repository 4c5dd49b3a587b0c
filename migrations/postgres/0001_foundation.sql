-- Service clients: an API key is stored only as its SHA-256.
CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    key_hash    BYTEA NOT NULL UNIQUE,
    rights      TEXT NOT NULL,          -- JSON: {"create":[globs],"redeem":[audiences],"audit":bool}
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE approvals (
    id                  TEXT PRIMARY KEY,
    client_id           TEXT NOT NULL REFERENCES clients(id),
    action              TEXT NOT NULL,
    transaction_jcs     TEXT NOT NULL,  -- the transaction in RFC 8785 form: what the page shows and what was hashed
    tx_hash             TEXT NOT NULL,
    initiator           TEXT NOT NULL,
    audience            TEXT NOT NULL,
    risk                TEXT,           -- JSON or NULL
    policy_rev          TEXT NOT NULL,
    required_approvals  BIGINT NOT NULL,
    required_groups     TEXT NOT NULL,  -- JSON array
    rule                TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('pending','approved','rejected','expired','cancelled')),
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    decided_at          BIGINT
);
CREATE INDEX approvals_status ON approvals(status, created_at);
CREATE INDEX approvals_client ON approvals(client_id, created_at);

-- A replayed Idempotency-Key returns the stored first response byte for byte.
CREATE TABLE idempotency_keys (
    client_id     TEXT NOT NULL REFERENCES clients(id),
    key           TEXT NOT NULL,
    request_hash  BYTEA NOT NULL,
    approval_id   TEXT NOT NULL REFERENCES approvals(id),
    response      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (client_id, key)
);

-- Hash-chained audit log. audit_head is a single row that every appender updates first, so
-- appends are serialised by its row lock (across replicas on PostgreSQL) and a truncated
-- tail is detectable.
CREATE TABLE audit_events (
    seq          BIGINT PRIMARY KEY,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    approval_id  TEXT,
    data         TEXT NOT NULL,
    prev_hash    BYTEA NOT NULL,
    hash         BYTEA NOT NULL
);
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
