-- Receipt signing keys, sealed under the operator's master key, and issued receipts.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    generation     BIGINT NOT NULL UNIQUE,   -- order of creation; the newest unretired key signs
    public_jwk     TEXT NOT NULL,
    sealed         BYTEA NOT NULL,   -- AES-256-GCM: nonce || ciphertext || tag, AAD = kid
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT
);

CREATE TABLE receipts (
    jti          TEXT PRIMARY KEY,
    approval_id  TEXT NOT NULL UNIQUE REFERENCES approvals(id),
    kid          TEXT NOT NULL REFERENCES signing_keys(kid),
    audience     TEXT NOT NULL,
    token        TEXT NOT NULL,
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    redeemed_at  BIGINT,
    redeemed_by  TEXT
);

-- The receipt lifetime the policy set when the request was made (seconds).
ALTER TABLE approvals ADD COLUMN receipt_ttl BIGINT NOT NULL DEFAULT 300;
