-- The read-only finance role and the views it reads (for BI tools; see docs/LEDGER.md).
-- Roles are cluster-wide: create them once, tolerate a concurrent creator in another database.
DO $$
BEGIN
  CREATE ROLE tollgate_finance NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE SCHEMA finance;

CREATE VIEW finance.usage_events AS
SELECT tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream,
       stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens,
       reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, estimated
FROM public.usage_events;

CREATE VIEW finance.usage_daily AS
SELECT tenant_id, project_id, api_key_id, model, batch,
       date_trunc('day', occurred_at AT TIME ZONE 'UTC') AS day_utc,
       count(*) AS requests,
       sum(prompt_tokens) AS prompt_tokens,
       sum(cached_prompt_tokens) AS cached_prompt_tokens,
       sum(completion_tokens) AS completion_tokens,
       sum(reasoning_tokens) AS reasoning_tokens,
       count(*) FILTER (WHERE estimated) AS estimated_requests
FROM public.usage_events
GROUP BY 1, 2, 3, 4, 5, 6;

CREATE VIEW finance.tenants AS
SELECT id, name, status, created_at FROM public.tenants;

CREATE VIEW finance.projects AS
SELECT tenant_id, id, name, status, created_at FROM public.projects;

CREATE VIEW finance.api_keys AS
SELECT tenant_id, id, project_id, name, prefix, status, created_at, expires_at, revoked_at
FROM public.api_keys;

REVOKE ALL ON SCHEMA finance FROM PUBLIC;
GRANT USAGE ON SCHEMA finance TO tollgate_finance;
GRANT SELECT ON ALL TABLES IN SCHEMA finance TO tollgate_finance;
