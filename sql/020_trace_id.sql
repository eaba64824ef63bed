-- W3C trace context: each usage event's trace id (32 lowercase hex digits), the caller's
-- `traceparent` or the one the gateway started, so a ledger row can be found from a trace and a
-- trace from a row. Nullable without a default: adding it rewrites no partition (its check reads
-- each once); events stored before this migration, and journal records of versions 1-4
-- replayed after it, keep it NULL.
ALTER TABLE usage_events
  ADD COLUMN trace_id text CHECK (trace_id IS NULL OR trace_id ~ '^[0-9a-f]{32}$');

CREATE OR REPLACE VIEW finance.usage_events AS
SELECT e.tenant_id, e.occurred_at, e.request_id, e.project_id, e.api_key_id, e.endpoint,
       e.model, e.upstream, e.stream, e.batch, e.status, e.prompt_tokens,
       e.cached_prompt_tokens, e.completion_tokens, e.reasoning_tokens,
       e.counted_prompt_tokens, e.counted_completion_tokens, e.estimated, e.cost_micros,
       e.price_book_id, e.price_book_version, e.credit_micros, e.end_user, s.tags, e.session_id,
       e.upstream_endpoint, e.attempts, e.routing_rule, e.trace_id
FROM public.usage_events e LEFT JOIN public.usage_tag_sets s ON s.id = e.tag_set_id;
