-- What the server sends out: signed webhooks to the client that created a request, and mail and
-- chat messages telling approvers of a new one. A row is written in the transaction of the change
-- it tells of (webhooks by the trigger below, on the audit event that every such change writes,
-- the one-trip decision function's included; announcements by the creating statement), then
-- delivered at least once by one replica at a time (claimed FOR UPDATE SKIP LOCKED, then leased
-- for the attempt).

-- One endpoint per API client (Standard Webhooks v1).
CREATE TABLE webhooks (
    client_id     TEXT PRIMARY KEY REFERENCES clients(id),
    url           TEXT NOT NULL,
    events        TEXT[] NOT NULL,
    secrets       TEXT NOT NULL,     -- JSON list, newest first: {"sealed": b64url, "until": unix|null}
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT,            -- the endpoint answered 410 Gone
    disabled_why  TEXT
);

CREATE TABLE outbox (
    id            TEXT PRIMARY KEY,  -- webhook-id: the same for every attempt
    channel       TEXT NOT NULL CHECK (channel IN ('webhook', 'email', 'chat', 'announce')),
    client_id     TEXT REFERENCES clients(id),
    target        TEXT,
    event         TEXT NOT NULL,
    approval_id   TEXT NOT NULL,
    at            BIGINT NOT NULL,
    payload       TEXT,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       BIGINT NOT NULL,
    lease_until   BIGINT,
    last_code     INTEGER,
    last_error    TEXT,
    delivered_at  BIGINT
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE status = 'pending';
CREATE INDEX outbox_of_client ON outbox (client_id, at);

CREATE FUNCTION countersign_outbox_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t TEXT := CASE NEW.kind
        WHEN 'request_approved' THEN 'approval.approved'
        WHEN 'request_rejected' THEN 'approval.rejected'
        WHEN 'request_expired' THEN 'approval.expired'
        WHEN 'request_cancelled' THEN 'approval.cancelled'
        WHEN 'request_revoked' THEN 'approval.revoked'
        ELSE 'receipt.redeemed' END;
BEGIN
    INSERT INTO outbox (id, channel, client_id, event, approval_id, at, next_at)
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), 'webhook', w.client_id, t,
           NEW.approval_id, NEW.at, NEW.at
    FROM approvals a
    JOIN webhooks w ON w.client_id = a.client_id AND w.disabled_at IS NULL
    WHERE a.id = NEW.approval_id AND t = ANY (w.events);
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_webhooks AFTER INSERT ON audit_pending
FOR EACH ROW
WHEN (NEW.kind IN ('request_approved', 'request_rejected', 'request_expired',
                   'request_cancelled', 'request_revoked', 'receipt_redeemed'))
EXECUTE FUNCTION countersign_outbox_webhooks();

ALTER TABLE users ADD COLUMN email TEXT;
