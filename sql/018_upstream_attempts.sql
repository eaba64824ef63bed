-- Upstream replicas and retries (docs/CONFIG.md, "Replicas"): each usage event's upstream
-- endpoint that answered (its configured name or base URL, never credentials), how many attempts
-- the gateway made (retries on other endpoints included), and the routing rule that chose the
-- upstream (filled by routing rules; NULL until then). Nullable columns without defaults:
-- adding them rewrites nothing; events stored before this migration keep them NULL.
ALTER TABLE usage_events
  ADD COLUMN upstream_endpoint text,
  ADD COLUMN attempts integer CHECK (attempts IS NULL OR attempts >= 0),
  ADD COLUMN routing_rule text;

CREATE OR REPLACE VIEW finance.usage_events AS
SELECT tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream,
       stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens,
       reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, estimated,
       cost_micros, price_book_id, price_book_version, credit_micros, end_user, tags, session_id,
       upstream_endpoint, attempts, routing_rule
FROM public.usage_events;
