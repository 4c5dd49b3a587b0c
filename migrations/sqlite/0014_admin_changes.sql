-- Console changes carried out: one row per approved `countersign.admin` request, inserted in the
-- transaction that makes the change (or records why it could not be made), so that a change is
-- carried out at most once whoever tries again: a second attempt fails on the key and rolls back.
CREATE TABLE admin_changes (
    approval_id     TEXT PRIMARY KEY REFERENCES approvals(id),
    carried_out_at  INTEGER NOT NULL,
    outcome         TEXT,            -- JSON: what it produced, without secrets
    failure         TEXT,            -- why it was not made (then outcome is NULL)
    sealed_secret   BLOB,            -- the secret it produced, sealed under the master key
    secret_taken_at INTEGER          -- shown to the proposer then, once
) WITHOUT ROWID;

-- The sweeper's look for approved changes not carried out (a crash in between).
CREATE INDEX approvals_admin ON approvals (status) WHERE action = 'countersign.admin';
