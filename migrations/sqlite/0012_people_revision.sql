-- Who could approve a request changes only with these rows and columns. A revision that every
-- such change bumps (in the same transaction, by trigger, whichever process makes it: the CLI
-- beside a running server too) lets a server keep the answer in memory and see when it is stale.
CREATE TABLE people_revision (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    rev  INTEGER NOT NULL
);
INSERT INTO people_revision (id, rev) VALUES (1, 0);
CREATE TRIGGER people_revision_user_added AFTER INSERT ON users
    BEGIN UPDATE people_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER people_revision_user_changed
    AFTER UPDATE OF username, display_name, groups, disabled_at ON users
    BEGIN UPDATE people_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER people_revision_user_removed AFTER DELETE ON users
    BEGIN UPDATE people_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER people_revision_passkey_added AFTER INSERT ON credentials
    BEGIN UPDATE people_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER people_revision_passkey_changed
    AFTER UPDATE OF user_id, revoked_at, flagged_at ON credentials
    BEGIN UPDATE people_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER people_revision_passkey_removed AFTER DELETE ON credentials
    BEGIN UPDATE people_revision SET rev = rev + 1 WHERE id = 1; END;
