-- Revoking an approval before it executes: a new final status, and the receipt row where a
-- revocation and a redemption meet (each only while the other has not happened).
ALTER TABLE approvals DROP CONSTRAINT approvals_status_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_status_check
    CHECK (status IN ('pending','approved','rejected','expired','cancelled','revoked'));
ALTER TABLE receipts ADD COLUMN revoked_at BIGINT;
