-- Agent and service initiators: the party object as sent (NULL for a plain username, whose
-- comparison form stays in initiator_key) and the person it acted for, in comparison form, so
-- that the inbox keeps them both from deciding.
ALTER TABLE approvals ADD COLUMN initiator_party TEXT;
ALTER TABLE approvals ADD COLUMN behalf_key TEXT NOT NULL DEFAULT '';
