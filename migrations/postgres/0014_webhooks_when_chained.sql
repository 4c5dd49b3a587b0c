-- Webhook messages are written when their audit event is chained, as on SQLite (a trigger on
-- audit_events), instead of by a row trigger on audit_pending: that PL/pgSQL call in every
-- deciding or redeeming transaction was about a third of the CPU PostgreSQL spent on a
-- redemption. Here it runs once a chained batch, in the chainer's transaction, the one that
-- takes the events from audit_pending. Nothing is lost: the event is written in the transaction
-- of its change, and its message in the one that chains it, which is either done or left to the
-- next chainer. Whoever reads the outbox chains first (src/store/postgres/ops/outbox.rs).
DROP TRIGGER outbox_webhooks ON audit_pending;
DROP FUNCTION countersign_outbox_webhooks();

CREATE FUNCTION countersign_outbox_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A server without webhooks, and events no webhook tells of (most of a batch), cost no
    -- look-up of their request.
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE disabled_at IS NULL) THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (id, channel, client_id, event, approval_id, at, next_at)
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), 'webhook', w.client_id, e.type,
           e.approval_id, e.at, e.at
    FROM (SELECT approval_id, at, CASE kind
                   WHEN 'request_approved' THEN 'approval.approved'
                   WHEN 'request_rejected' THEN 'approval.rejected'
                   WHEN 'request_expired' THEN 'approval.expired'
                   WHEN 'request_cancelled' THEN 'approval.cancelled'
                   WHEN 'request_revoked' THEN 'approval.revoked'
                   WHEN 'receipt_redeemed' THEN 'receipt.redeemed' END AS type
          FROM chained) e
    JOIN approvals a ON a.id = e.approval_id
    JOIN webhooks w ON w.client_id = a.client_id AND w.disabled_at IS NULL
    -- Other kinds have no type; the planner filters them out before the joins.
    WHERE e.type IS NOT NULL AND e.type = ANY (w.events);
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_webhooks AFTER INSERT ON audit_events
REFERENCING NEW TABLE AS chained
FOR EACH STATEMENT EXECUTE FUNCTION countersign_outbox_webhooks();
