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
SELECT e.tenant_id, e.occurred_at, e.request_id, e.project_id, e.api_key_id, e.endpoint,
       e.model, e.upstream, e.stream, e.batch, e.status, e.prompt_tokens,
       e.cached_prompt_tokens, e.completion_tokens, e.reasoning_tokens,
       e.counted_prompt_tokens, e.counted_completion_tokens, e.estimated, e.cost_micros,
       e.price_book_id, e.price_book_version, e.credit_micros, e.end_user, s.tags, e.session_id,
       e.upstream_endpoint, e.attempts, e.routing_rule
FROM public.usage_events e LEFT JOIN public.usage_tag_sets s ON s.id = e.tag_set_id;
