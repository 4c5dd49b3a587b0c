-- Ceremonies keep what finishing needs in typed columns, per kind, instead of a JSON scope.
-- Ceremonies live five minutes: those in flight during the upgrade are dropped and start again.
DROP TABLE ceremonies;
CREATE TABLE ceremonies (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('enroll', 'signin', 'decision')),
    user_id       TEXT,
    approval_id   TEXT,
    decision      TEXT CHECK (decision IN ('approve', 'reject')),
    secret        BYTEA,          -- sign-in: the challenge; decision: the nonce
    allow         TEXT,          -- credential ids offered, space-separated; NULL: any (discoverable)
    invitation    BYTEA,          -- enrolment: SHA-256 of the invitation token
    registration  TEXT,          -- enrolment: webauthn-rs's registration state
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
-- Starting a ceremony sweeps those long expired.
CREATE INDEX ceremonies_expiry ON ceremonies(expires_at);

-- The rules that matched, as a JSON list (rule names cannot hold '"' or '+').
ALTER TABLE approvals ADD COLUMN rules TEXT NOT NULL DEFAULT '[]';
UPDATE approvals SET rules = CASE WHEN rule = 'default' THEN '[]'
                                  ELSE '["' || replace(rule, '+', '","') || '"]' END;
ALTER TABLE approvals DROP COLUMN rule;

-- The initiator in the form identities are compared in (case, spaces and NFKC folded), so that
-- separation of duties and the inbox compare one spelling. Earlier rows: case and spaces.
ALTER TABLE approvals ADD COLUMN initiator_key TEXT NOT NULL DEFAULT '';
UPDATE approvals SET initiator_key = lower(btrim(initiator));

-- Usernames in the same form, where that folds no two people into one.
UPDATE users SET username = lower(btrim(username))
 WHERE username <> lower(btrim(username))
   AND NOT EXISTS (SELECT 1 FROM users o WHERE o.username = lower(btrim(users.username)));

-- A session remembers the passkey that opened it, so revoking or flagging that passkey ends it.
-- Sessions from before cannot say, so they end here: everyone signs in once more.
DELETE FROM sessions;
ALTER TABLE sessions ADD COLUMN credential_id TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_credential ON sessions(credential_id);
CREATE INDEX sessions_user ON sessions(user_id);
