-- Per-event rating (docs/PRICING.md): the ledger writer prices each usage event as it stores
-- it, against the tenant's price book version in force at the event's time, on the period's
-- accumulators, and stores the cost and the version with the event.

-- NULL cost: the event was not rated (the tenant had no plan when it was stored, no version
-- was in force at its time, or the model is not in the book). Adding nullable columns without
-- a default rewrites nothing.
ALTER TABLE usage_events
  ADD COLUMN cost_micros bigint CHECK (cost_micros >= 0),
  ADD COLUMN price_book_id text COLLATE "C",
  ADD COLUMN price_book_version integer;

-- One accumulator per tenant, calendar month (UTC), model ('*' for a book whose tiers span all
-- models), token class and batch flag: the tokens rated so far in the period and what they
-- were charged (provisional for volume tiers; the invoice trues up). Updated once per ledger
-- batch, in the batch's transaction, with the rows locked.
CREATE TABLE rating_accumulators (
  tenant_id       text COLLATE "C" NOT NULL,
  period          text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
  model           text COLLATE "C" NOT NULL,
  token_class     text NOT NULL CHECK (token_class IN ('input', 'cached_input', 'output')),
  batch           boolean NOT NULL,
  position        bigint NOT NULL CHECK (position >= 0),
  charged_micros  bigint NOT NULL CHECK (charged_micros >= 0),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, period, model, token_class, batch)
);

CREATE OR REPLACE VIEW finance.usage_events AS
SELECT tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream,
       stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens,
       reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, estimated,
       cost_micros, price_book_id, price_book_version
FROM public.usage_events;

CREATE VIEW finance.rating_accumulators AS
SELECT tenant_id, period, model, token_class, batch, position, charged_micros, updated_at
FROM public.rating_accumulators;
GRANT SELECT ON finance.rating_accumulators TO tollgate_finance;
