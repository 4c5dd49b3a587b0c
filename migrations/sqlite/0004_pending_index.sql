-- Only pending requests are ever listed by status (the approvers' inbox; expiry looks a request
-- up by id). A partial index holds just those, so deciding a request removes one entry instead
-- of moving it.
DROP INDEX approvals_status;
CREATE INDEX approvals_pending ON approvals(created_at) WHERE status = 'pending';
