-- Stages: what each stage of a request needs (JSON [{name, groups, quorum}]; NULL for the one
-- stage `default` of required_groups and required_approvals, as every request made before stages
-- has) and the stage each decision went to. required_approvals and required_groups stay the sum
-- and the union, which the inbox filters on.
ALTER TABLE approvals ADD COLUMN stages TEXT;
ALTER TABLE decisions ADD COLUMN stage TEXT NOT NULL DEFAULT 'default';
-- A decision ceremony for a stage the person asked for (NULL: placed when it is recorded).
ALTER TABLE ceremonies ADD COLUMN stage TEXT;

-- The one-trip decision (0008) records the stage the service placed the decision in (the
-- placement depends only on the earlier decisions, which the function checks are the ones it
-- was judged over), and a passkey it flags as a clone empties every replica's cache of who
-- could approve.
DROP FUNCTION countersign_record_decision(
    TEXT, BIGINT, TEXT, TEXT, TEXT[], TEXT, BIGINT, TEXT, TEXT, TEXT, BYTEA, BYTEA, BYTEA, BYTEA,
    TEXT, BIGINT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT[], TEXT[], TEXT[], TEXT, TEXT, TEXT);
CREATE FUNCTION countersign_record_decision(
    p_id TEXT, p_now BIGINT, p_ceremony TEXT, p_user TEXT, p_prior TEXT[],
    p_credential TEXT, p_counter BIGINT,
    p_decision TEXT, p_username TEXT, p_display_name TEXT, p_nonce BYTEA,
    p_authenticator_data BYTEA, p_client_data_json BYTEA, p_signature BYTEA,
    p_public_jwk TEXT, p_user_verified BIGINT, p_stage TEXT,
    p_status TEXT, p_kid TEXT, p_jti TEXT, p_token TEXT, p_receipt_expires BIGINT,
    p_kinds TEXT[], p_actors TEXT[], p_data TEXT[],
    p_clone_kind TEXT, p_clone_actor TEXT, p_clone_data TEXT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    v_audience TEXT;
    v_prior TEXT[];
BEGIN
    SELECT audience INTO v_audience FROM approvals
     WHERE id = p_id AND status = 'pending' AND expires_at > p_now
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'not_pending';
    END IF;
    SELECT COALESCE(array_agg(user_id), '{}') INTO v_prior
      FROM decisions WHERE approval_id = p_id;
    IF NOT (p_user = ANY (v_prior)) THEN
        -- Deciders are distinct, so containment both ways is equality.
        IF NOT (v_prior @> p_prior AND p_prior @> v_prior) THEN
            RETURN 'stale';
        END IF;
        IF p_status = 'approved' AND p_kid IS DISTINCT FROM (
            SELECT kid FROM signing_keys WHERE retired_at IS NULL
             ORDER BY generation DESC LIMIT 1) THEN
            RETURN 'stale';
        END IF;
    END IF;
    DELETE FROM ceremonies
     WHERE id = p_ceremony AND approval_id = p_id AND user_id = p_user;
    IF NOT FOUND THEN
        RETURN 'consumed';
    END IF;
    IF p_user = ANY (v_prior) THEN
        RETURN 'already_decided';
    END IF;
    UPDATE credentials SET counter = p_counter, last_used_at = p_now
     WHERE id = p_credential AND flagged_at IS NULL
       AND (counter < p_counter OR (p_counter = 0 AND counter = 0));
    IF NOT FOUND THEN
        UPDATE credentials SET flagged_at = p_now WHERE id = p_credential AND flagged_at IS NULL;
        DELETE FROM sessions WHERE credential_id = p_credential;
        -- A flagged passkey no longer counts among who could approve: caches start over.
        PERFORM pg_notify('countersign_invalidate', '');
        INSERT INTO audit_pending (at, kind, actor, approval_id, data)
        VALUES (p_now, p_clone_kind, p_clone_actor, NULL, p_clone_data);
        RETURN 'clone';
    END IF;
    INSERT INTO decisions (approval_id, user_id, decision, username, display_name,
                           credential_id, at, nonce, authenticator_data, client_data_json,
                           signature, public_jwk, user_verified, stage)
    VALUES (p_id, p_user, p_decision, p_username, p_display_name, p_credential, p_now,
            p_nonce, p_authenticator_data, p_client_data_json, p_signature, p_public_jwk,
            p_user_verified, p_stage);
    IF p_status = 'approved' THEN
        -- Stored with the approval itself: after any crash there is an approved request with
        -- its receipt, or neither.
        INSERT INTO receipts (jti, approval_id, kid, audience, token, issued_at, expires_at)
        VALUES (p_jti, p_id, p_kid, v_audience, p_token, p_now, p_receipt_expires);
    END IF;
    IF p_status IS NOT NULL THEN
        UPDATE approvals SET status = p_status, decided_at = p_now WHERE id = p_id;
    END IF;
    INSERT INTO audit_pending (at, kind, actor, approval_id, data)
    SELECT p_now, k, a, p_id, d FROM unnest(p_kinds, p_actors, p_data) AS e (k, a, d);
    PERFORM pg_notify('countersign_approvals', p_id);
    RETURN 'recorded';
END
$$;
