-- Attribution below the API key (docs/ATTRIBUTION.md): each usage event's end user (OpenAI's
-- `user`, or x-tollgate-end-user), its tags (OpenAI's `metadata`, x-tollgate-tags and the
-- defaults of its key and project, merged) and its agent session (x-tollgate-session).
-- Nullable columns without defaults: adding them rewrites nothing. Tags are a flat jsonb object
-- of strings; no index is added on the ledger (every index costs ingest rate): queries select
-- a tenant's time range by the primary key and filter there.
ALTER TABLE usage_events
  ADD COLUMN end_user text,
  ADD COLUMN tags jsonb CHECK (tags IS NULL OR jsonb_typeof(tags) = 'object'),
  ADD COLUMN session_id text;

-- Default tags an admin sets on an API key and on a project; a request's own tags win over the
-- key's, and the key's over the project's.
ALTER TABLE api_keys
  ADD COLUMN default_tags jsonb CHECK (default_tags IS NULL OR jsonb_typeof(default_tags) = 'object');
ALTER TABLE projects
  ADD COLUMN default_tags jsonb CHECK (default_tags IS NULL OR jsonb_typeof(default_tags) = 'object');

CREATE OR REPLACE VIEW finance.usage_events AS
SELECT tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream,
       stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens,
       reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, estimated,
       cost_micros, price_book_id, price_book_version, credit_micros, end_user, tags, session_id
FROM public.usage_events;
