-- What the server sends out: signed webhooks to the client that created a request, and mail and
-- chat messages telling approvers of a new one. A row is written in the transaction of the change
-- it tells of (webhooks by the trigger below, on the audit event that every such change writes;
-- announcements by the creating transaction), then delivered at least once by whichever server
-- holds its lease.

-- One endpoint per API client (Standard Webhooks v1).
CREATE TABLE webhooks (
    client_id     TEXT PRIMARY KEY REFERENCES clients(id),
    url           TEXT NOT NULL,
    events        TEXT NOT NULL,     -- JSON list of event types
    secrets       TEXT NOT NULL,     -- JSON list, newest first: {"sealed": b64url, "until": unix|null}
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER,           -- the endpoint answered 410 Gone
    disabled_why  TEXT
);

CREATE TABLE outbox (
    id            TEXT PRIMARY KEY,  -- webhook-id: the same for every attempt
    channel       TEXT NOT NULL CHECK (channel IN ('webhook', 'email', 'chat', 'announce')),
    client_id     TEXT REFERENCES clients(id),   -- webhooks: whose endpoint
    target        TEXT,              -- email: the address; chat: the group
    event         TEXT NOT NULL,     -- approval.approved, …; request.created
    approval_id   TEXT NOT NULL,
    at            INTEGER NOT NULL,  -- when the change happened
    payload       TEXT,              -- the body, fixed by the first attempt
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    lease_until   INTEGER,           -- a server is attempting it until then
    last_code     INTEGER,
    last_error    TEXT,
    delivered_at  INTEGER
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE status = 'pending';
CREATE INDEX outbox_of_client ON outbox (client_id, at);

CREATE TRIGGER outbox_webhooks AFTER INSERT ON audit_events
WHEN NEW.kind IN ('request_approved', 'request_rejected', 'request_expired',
                  'request_cancelled', 'request_revoked', 'receipt_redeemed')
BEGIN
    INSERT INTO outbox (id, channel, client_id, event, approval_id, at, next_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), 'webhook', w.client_id, t.type, NEW.approval_id, NEW.at, NEW.at
    FROM (SELECT CASE NEW.kind
                   WHEN 'request_approved' THEN 'approval.approved'
                   WHEN 'request_rejected' THEN 'approval.rejected'
                   WHEN 'request_expired' THEN 'approval.expired'
                   WHEN 'request_cancelled' THEN 'approval.cancelled'
                   WHEN 'request_revoked' THEN 'approval.revoked'
                   ELSE 'receipt.redeemed' END AS type) AS t
    JOIN approvals a ON a.id = NEW.approval_id
    JOIN webhooks w ON w.client_id = a.client_id AND w.disabled_at IS NULL
    WHERE EXISTS (SELECT 1 FROM json_each(w.events) WHERE value = t.type);
END;

-- People may have an address to be told of requests at; kept with who could approve, so a
-- change of it moves the revision too.
ALTER TABLE users ADD COLUMN email TEXT;
CREATE TRIGGER people_revision_email_changed AFTER UPDATE OF email ON users
    BEGIN UPDATE people_revision SET rev = rev + 1 WHERE id = 1; END;
