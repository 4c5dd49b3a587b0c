-- Revoking an approval before it executes: a new final status, and the receipt row where a
-- revocation and a redemption meet (each only while the other has not happened).
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt, as SQLite's documented
-- procedure does it (the runner turns foreign keys off around every migration and checks them
-- before it commits).
CREATE TABLE approvals_new (
    id                  TEXT PRIMARY KEY,
    client_id           TEXT NOT NULL REFERENCES clients(id),
    action              TEXT NOT NULL,
    transaction_jcs     TEXT NOT NULL,  -- the transaction in RFC 8785 form: what the page shows and what was hashed
    tx_hash             TEXT NOT NULL,
    initiator           TEXT NOT NULL,
    audience            TEXT NOT NULL,
    risk                TEXT,           -- JSON or NULL
    policy_rev          TEXT NOT NULL,
    required_approvals  INTEGER NOT NULL,
    required_groups     TEXT NOT NULL,  -- JSON array
    status              TEXT NOT NULL CHECK (status IN ('pending','approved','rejected','expired','cancelled','revoked')),
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    decided_at          INTEGER,
    self_approval       INTEGER NOT NULL DEFAULT 0,
    receipt_ttl         INTEGER NOT NULL DEFAULT 300,
    rules               TEXT NOT NULL DEFAULT '[]',
    initiator_key       TEXT NOT NULL DEFAULT ''
);
INSERT INTO approvals_new (id, client_id, action, transaction_jcs, tx_hash, initiator, audience, risk,
                           policy_rev, required_approvals, required_groups, status, created_at,
                           expires_at, decided_at, self_approval, receipt_ttl, rules, initiator_key)
    SELECT id, client_id, action, transaction_jcs, tx_hash, initiator, audience, risk,
           policy_rev, required_approvals, required_groups, status, created_at,
           expires_at, decided_at, self_approval, receipt_ttl, rules, initiator_key FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE INDEX approvals_client ON approvals(client_id, created_at);
CREATE INDEX approvals_pending ON approvals(created_at) WHERE status = 'pending';

ALTER TABLE receipts ADD COLUMN revoked_at INTEGER;
