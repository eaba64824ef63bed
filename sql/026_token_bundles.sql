-- Token bundles (docs/CREDITS.md, "Token bundles"): a prepaid grant of N tokens of one model and
-- token class bought at a locked price of P micro-units per 1M tokens. A bundle is a credit
-- grant of kind 'bundle' (amount floor(N x P / 10^6), paid in full) whose account also holds
-- tokens: entries carry the tokens they move beside the money, and a transfer's tokens sum to
-- zero like its money. The ledger writer draws a bundle's tokens before rating (they are not
-- charged at the price book and do not advance the tiers); the first d tokens drawn are worth
-- floor(d x P / 10^6), so the money drawn telescopes to the amount. Expiry moves the tokens and
-- money left to breakage.

ALTER TABLE credit_grants
  ADD COLUMN bundle_token_class text CHECK (bundle_token_class IN ('input', 'cached_input',
    'cache_write', 'image_input', 'audio_input', 'output', 'audio_output')),
  ADD COLUMN bundle_tokens bigint CHECK (bundle_tokens > 0),
  ADD COLUMN bundle_price_per_million_micros bigint CHECK (bundle_price_per_million_micros > 0),
  -- The projects of its tenant a bundle is shared with (sorted, no repeats); NULL: all of them.
  ADD COLUMN bundle_project_ids text[] COLLATE "C"
    CHECK (cardinality(bundle_project_ids) BETWEEN 1 AND 100),
  DROP CONSTRAINT credit_grants_kind_check,
  ADD CONSTRAINT credit_grants_kind_check CHECK (kind IN ('purchased', 'promotional', 'bundle')),
  DROP CONSTRAINT credit_grants_check,
  ADD CONSTRAINT credit_grants_price_paid_check
    CHECK ((kind IN ('purchased', 'bundle')) = (price_paid_micros IS NOT NULL)),
  -- A bundle names its one model, class, tokens and price; other grants none of them.
  ADD CONSTRAINT credit_grants_bundle_check CHECK ((kind = 'bundle') = (
    bundle_token_class IS NOT NULL AND bundle_tokens IS NOT NULL
    AND bundle_price_per_million_micros IS NOT NULL AND cardinality(models) = 1)),
  ADD CONSTRAINT credit_grants_bundle_projects_check
    CHECK (kind = 'bundle' OR bundle_project_ids IS NULL);

-- Tokens an entry moves (bundle accounts and the usage, funding and breakage accounts facing
-- them); NULL for money alone. A bundle draw worth less than a micro-unit moves tokens only.
ALTER TABLE credit_entries
  ADD COLUMN tokens bigint CHECK (tokens <> 0),
  DROP CONSTRAINT credit_entries_amount_micros_check,
  ADD CONSTRAINT credit_entries_moves_check CHECK (amount_micros <> 0 OR tokens IS NOT NULL);

ALTER TABLE credit_accounts
  ADD COLUMN tokens_balance bigint NOT NULL DEFAULT 0,
  ADD CONSTRAINT credit_bundle_tokens_not_negative CHECK (kind <> 'grant' OR tokens_balance >= 0);

-- Tokens a bundle paid for, per usage event and class (NULL: none): the invoice takes them out
-- of the period's totals before the price book prices them.
ALTER TABLE usage_events
  ADD COLUMN bundle_input_tokens bigint CHECK (bundle_input_tokens > 0),
  ADD COLUMN bundle_cached_tokens bigint CHECK (bundle_cached_tokens > 0),
  ADD COLUMN bundle_cache_write_tokens bigint CHECK (bundle_cache_write_tokens > 0),
  ADD COLUMN bundle_image_tokens bigint CHECK (bundle_image_tokens > 0),
  ADD COLUMN bundle_audio_prompt_tokens bigint CHECK (bundle_audio_prompt_tokens > 0),
  ADD COLUMN bundle_output_tokens bigint CHECK (bundle_output_tokens > 0),
  ADD COLUMN bundle_audio_completion_tokens bigint CHECK (bundle_audio_completion_tokens > 0);

CREATE OR REPLACE FUNCTION tollgate_credit_entry_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE credit_accounts SET balance_micros = balance_micros + NEW.amount_micros,
    tokens_balance = tokens_balance + coalesce(NEW.tokens, 0)
    WHERE id = NEW.account_id;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tollgate_credit_transfer_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  total numeric;
  total_tokens numeric;
BEGIN
  SELECT sum(amount_micros), sum(coalesce(tokens, 0)) INTO total, total_tokens
    FROM credit_entries WHERE transfer_id = NEW.transfer_id;
  IF total <> 0 OR total_tokens <> 0 THEN
    RAISE EXCEPTION 'credit transfer % does not sum to zero (% micros, % tokens)',
      NEW.transfer_id, total, total_tokens USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;

-- Makes a bundle: the grant (kind bundle, price paid = amount), its account and the transfer
-- funding -> bundle of the money and the tokens, in one go.
CREATE FUNCTION tollgate_grant_bundle(grant_id text, tenant text, bundle_model text,
                                      token_class text, tokens bigint, price_per_million bigint,
                                      effective timestamptz, expires timestamptz,
                                      grant_priority integer, grant_memo text,
                                      shared_with text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  amount bigint;
  missing text;
BEGIN
  SELECT p INTO missing FROM unnest(shared_with) AS p
    WHERE NOT EXISTS (SELECT 1 FROM projects x WHERE x.id = p AND x.tenant_id = tenant) LIMIT 1;
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'project % is not a project of tenant %', missing, tenant
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  amount := floor(tokens::numeric * price_per_million / 1000000)::bigint;
  INSERT INTO credit_grants (id, tenant_id, kind, amount_micros, price_paid_micros,
                             effective_at, expires_at, priority, models, memo,
                             bundle_token_class, bundle_tokens, bundle_price_per_million_micros,
                             bundle_project_ids)
  VALUES (grant_id, tenant, 'bundle', amount, amount, effective, expires, grant_priority,
          ARRAY[bundle_model], grant_memo, token_class, tokens, price_per_million,
          (SELECT array_agg(DISTINCT p ORDER BY p) FROM unnest(shared_with) AS p));
  PERFORM tollgate_credit_tenant_accounts(tenant);
  INSERT INTO credit_accounts (id, tenant_id, kind, grant_id)
    VALUES ('grant:' || grant_id, tenant, 'grant', grant_id);
  INSERT INTO credit_transfers (id, tenant_id, kind, occurred_at)
    VALUES ('grant:' || grant_id, tenant, 'grant', effective);
  INSERT INTO credit_entries (transfer_id, account_id, amount_micros, tokens) VALUES
    ('grant:' || grant_id, 'funding:' || tenant, -amount, -tokens),
    ('grant:' || grant_id, 'grant:' || grant_id, amount, tokens);
END $$;

-- Expiry again, with the tokens: what is left on an expired grant or bundle (money and tokens)
-- goes to breakage, once.
CREATE OR REPLACE FUNCTION tollgate_expire_credits(at timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  g record;
  n integer := 0;
BEGIN
  FOR g IN SELECT a.id AS account, a.tenant_id, a.grant_id, a.balance_micros, a.tokens_balance
           FROM credit_accounts a JOIN credit_grants c ON c.id = a.grant_id
           WHERE c.expires_at <= at AND (a.balance_micros > 0 OR a.tokens_balance > 0)
           ORDER BY a.id FOR UPDATE OF a LOOP
    INSERT INTO credit_transfers (id, tenant_id, kind, occurred_at)
      VALUES ('expire:' || g.grant_id, g.tenant_id, 'expiry', at)
      ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
      INSERT INTO credit_entries (transfer_id, account_id, amount_micros, tokens) VALUES
        ('expire:' || g.grant_id, g.account, -g.balance_micros, nullif(-g.tokens_balance, 0)),
        ('expire:' || g.grant_id, 'breakage:' || g.tenant_id, g.balance_micros,
         nullif(g.tokens_balance, 0));
      n := n + 1;
    END IF;
  END LOOP;
  RETURN n;
END $$;

-- The volume-tier true-up gives money back to money grants only: a bundle's draws paid for
-- tokens the price book did not charge, so none of them is returned.
CREATE OR REPLACE FUNCTION tollgate_credit_true_up(tenant text, for_period text, excess bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  g record;
  left_over bigint := excess;
  take bigint;
  tid text := 'true_up:' || tenant || ':' || for_period;
BEGIN
  IF excess <= 0 THEN
    RETURN;
  END IF;
  INSERT INTO credit_transfers (id, tenant_id, kind, period)
    VALUES (tid, tenant, 'true_up', for_period) ON CONFLICT (id) DO NOTHING;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  FOR g IN SELECT e.account_id, -sum(e.amount_micros) AS drawn
           FROM credit_transfers t JOIN credit_entries e ON e.transfer_id = t.id
           JOIN credit_accounts a ON a.id = e.account_id AND a.kind = 'grant'
           JOIN credit_grants c ON c.id = a.grant_id AND c.kind <> 'bundle'
           WHERE t.tenant_id = tenant AND t.period = for_period AND t.kind = 'drawdown'
           GROUP BY e.account_id, c.priority, c.expires_at, c.effective_at, c.id
           ORDER BY c.priority DESC, c.expires_at DESC NULLS FIRST, c.effective_at DESC, c.id DESC
  LOOP
    EXIT WHEN left_over = 0;
    take := least(left_over, g.drawn);
    IF take > 0 THEN
      INSERT INTO credit_entries (transfer_id, account_id, amount_micros)
        VALUES (tid, g.account_id, take);
      left_over := left_over - take;
    END IF;
  END LOOP;
  IF excess - left_over > 0 THEN
    INSERT INTO credit_entries (transfer_id, account_id, amount_micros)
      VALUES (tid, 'usage:' || tenant, -(excess - left_over));
  END IF;
END $$;

-- Auto top-up (docs/CREDITS.md, "Auto top-up"): when a drawdown takes a tenant's money credit
-- in force from at or above its threshold to below it, a purchased grant of the set amount is
-- made, once per crossing: the top-up's id is the crossing drawdown's transfer id (unique),
-- and a webhook (signed like budget alerts, sent by the same dispatcher) announces it.
CREATE TABLE credit_auto_top_ups (
  tenant_id          text COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
  threshold_micros   bigint NOT NULL CHECK (threshold_micros BETWEEN 1 AND 1000000000000000),
  amount_micros      bigint NOT NULL CHECK (amount_micros BETWEEN 1 AND 1000000000000000),
  price_paid_micros  bigint NOT NULL CHECK (price_paid_micros BETWEEN 0 AND 1000000000000000),
  webhook_url        text,
  webhook_secret     text,
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL))
);

CREATE TABLE credit_top_ups (
  id               text COLLATE "C" PRIMARY KEY,  -- top_up:<drawdown transfer id>
  tenant_id        text COLLATE "C" NOT NULL REFERENCES tenants (id),
  grant_id         text COLLATE "C" NOT NULL REFERENCES credit_grants (id),
  balance_before   bigint NOT NULL,
  balance_after    bigint NOT NULL,
  threshold_micros bigint NOT NULL,
  payload          text NOT NULL,           -- the JSON body, signed as sent
  webhook_url      text,                    -- NULL: recorded only
  status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'recorded')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz
);
CREATE INDEX credit_top_ups_due ON credit_top_ups (next_attempt_at) WHERE status = 'pending';
CREATE INDEX credit_top_ups_tenant ON credit_top_ups (tenant_id, created_at);

-- Called by the ledger writer after it booked drawdown `p_transfer` of `p_tenant` (in the same
-- transaction, its grants locked): the money credit usable by any model in force at `p_at`
-- after the drawdown, and before it (plus what the drawdown took of it). A crossing makes the
-- top-up grant and its webhook record; returns 1, else 0.
CREATE FUNCTION tollgate_credit_auto_top_up(p_tenant text, p_transfer text, p_at timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  cfg credit_auto_top_ups;
  after_micros bigint;
  drawn bigint;
  gid text;
  tid text := 'top_up:' || p_transfer;
BEGIN
  SELECT * INTO cfg FROM credit_auto_top_ups WHERE tenant_id = p_tenant;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  SELECT coalesce(sum(a.balance_micros), 0) INTO after_micros
    FROM credit_grants g JOIN credit_accounts a ON a.grant_id = g.id
    WHERE g.tenant_id = p_tenant AND g.kind <> 'bundle' AND g.models IS NULL
      AND g.effective_at <= p_at AND (g.expires_at IS NULL OR g.expires_at > p_at);
  SELECT coalesce(-sum(e.amount_micros), 0) INTO drawn
    FROM credit_entries e JOIN credit_accounts a ON a.id = e.account_id
    JOIN credit_grants g ON g.id = a.grant_id
    WHERE e.transfer_id = p_transfer AND g.kind <> 'bundle' AND g.models IS NULL
      AND g.effective_at <= p_at AND (g.expires_at IS NULL OR g.expires_at > p_at);
  IF NOT (after_micros + drawn >= cfg.threshold_micros AND after_micros < cfg.threshold_micros) THEN
    RETURN 0;
  END IF;
  IF EXISTS (SELECT 1 FROM credit_top_ups WHERE id = tid) THEN
    RETURN 0;
  END IF;
  gid := 'cg_top_up_' || md5(p_transfer);
  PERFORM tollgate_grant_credit(gid, p_tenant, 'purchased', cfg.amount_micros,
                                cfg.price_paid_micros, p_at, NULL, 0, NULL, 'auto top-up');
  INSERT INTO credit_top_ups (id, tenant_id, grant_id, balance_before, balance_after,
                              threshold_micros, payload, webhook_url, status)
  VALUES (tid, p_tenant, gid, after_micros + drawn, after_micros, cfg.threshold_micros,
          json_build_object('object', 'credit.auto_top_up', 'id', tid, 'tenant_id', p_tenant,
                            'grant_id', gid, 'amount_micros', cfg.amount_micros,
                            'price_paid_micros', cfg.price_paid_micros,
                            'threshold_micros', cfg.threshold_micros,
                            'balance_before_micros', after_micros + drawn,
                            'balance_after_micros', after_micros,
                            'at', extract(epoch from p_at)::bigint)::text,
          cfg.webhook_url, CASE WHEN cfg.webhook_url IS NULL THEN 'recorded' ELSE 'pending' END);
  INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id, after)
    VALUES ('ledger', 'credit.auto_top_up', p_tenant, 'credit_grant', gid,
            jsonb_build_object('amount_micros', cfg.amount_micros, 'top_up', tid));
  RETURN 1;
END $$;
