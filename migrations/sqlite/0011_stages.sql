-- Stages: what each stage of a request needs (JSON [{name, groups, quorum}]; NULL for the one
-- stage `default` of required_groups and required_approvals, as every request made before stages
-- has) and the stage each decision went to. required_approvals and required_groups stay the sum
-- and the union, which the inbox filters on.
ALTER TABLE approvals ADD COLUMN stages TEXT;
ALTER TABLE decisions ADD COLUMN stage TEXT NOT NULL DEFAULT 'default';
-- A decision ceremony for a stage the person asked for (NULL: placed when it is recorded).
ALTER TABLE ceremonies ADD COLUMN stage TEXT;
