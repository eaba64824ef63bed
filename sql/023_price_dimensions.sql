-- More price dimensions (docs/PRICING.md): each usage event's prompt tokens written to the
-- upstream's cache, image and audio prompt tokens and audio completion tokens (parts of
-- prompt_tokens and completion_tokens, priced as classes of their own), and of a rated event
-- the request fee it paid and the context band that priced it. The token columns are NOT NULL
-- with a constant default (no rewrite; events stored before, and journal records of versions
-- 1-5 replayed after, have 0); the rating columns are NULL when the event is not rated.
ALTER TABLE usage_events
  ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
  ADD COLUMN image_prompt_tokens bigint NOT NULL DEFAULT 0 CHECK (image_prompt_tokens >= 0),
  ADD COLUMN audio_prompt_tokens bigint NOT NULL DEFAULT 0 CHECK (audio_prompt_tokens >= 0),
  ADD COLUMN audio_completion_tokens bigint NOT NULL DEFAULT 0
    CHECK (audio_completion_tokens >= 0),
  ADD COLUMN request_fee_micros bigint CHECK (request_fee_micros >= 0),
  ADD COLUMN context_band bigint CHECK (context_band >= 0);

-- Accumulators of the new classes, in a context band ("input>128000": prompts above 128000
-- tokens) and of per-request fees ("requests", counting requests).
ALTER TABLE rating_accumulators DROP CONSTRAINT rating_accumulators_token_class_check;
ALTER TABLE rating_accumulators ADD CONSTRAINT rating_accumulators_token_class_check
  CHECK (token_class ~ ('^(input|cached_input|cache_write|image_input|audio_input|output|'
                        || 'audio_output|requests)(>[1-9][0-9]*)?$'));

CREATE OR REPLACE VIEW finance.usage_events AS
SELECT e.tenant_id, e.occurred_at, e.request_id, e.project_id, e.api_key_id, e.endpoint,
       e.model, e.upstream, e.stream, e.batch, e.status, e.prompt_tokens,
       e.cached_prompt_tokens, e.completion_tokens, e.reasoning_tokens,
       e.counted_prompt_tokens, e.counted_completion_tokens, e.estimated, e.cost_micros,
       e.price_book_id, e.price_book_version, e.credit_micros, e.end_user, s.tags, e.session_id,
       e.upstream_endpoint, e.attempts, e.routing_rule, e.trace_id, e.cache_write_tokens,
       e.image_prompt_tokens, e.audio_prompt_tokens, e.audio_completion_tokens,
       e.request_fee_micros, e.context_band
FROM public.usage_events e LEFT JOIN public.usage_tag_sets s ON s.id = e.tag_set_id;
