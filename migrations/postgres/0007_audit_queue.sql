-- Audit events are written in the transaction of the change they record, here, and given their
-- place in the hash chain (audit_events) by the chainer just after, in batches: appending to the
-- chain directly made every writer wait on the chain's head row until the writer before it had
-- committed, so no two changes could commit together.
CREATE TABLE audit_pending (
    id           BIGSERIAL PRIMARY KEY,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    approval_id  TEXT,
    data         TEXT NOT NULL
);
