-- Token banking (docs/PRICING.md, "Plan terms"): an allowance with `rollover_periods` N carries
-- the tokens a period left unused into the next N periods. When the ledger writer first rates
-- interactive usage of a later period, it settles each earlier period whose allowance may
-- still roll into it: the unused part U = max(0, A - position) is frozen on that period's
-- accumulator (`rolled_over`: usage arriving late in the earlier period is rated as if its
-- allowance had been A - U) and moved, as tokens, into a grant of kind 'rollover' (price 0,
-- amount 0) effective from the next period and expiring at the start of period P + N + 1. The
-- ledger draws those grants like token bundles; what is left at expiry goes to breakage.

-- NULL: the period's allowance is not settled (it still covers usage up to A).
ALTER TABLE rating_accumulators
  ADD COLUMN rolled_over bigint CHECK (rolled_over >= 0);
CREATE OR REPLACE VIEW finance.rating_accumulators AS
SELECT tenant_id, period, model, token_class, batch, position, charged_micros, updated_at,
       rolled_over
FROM public.rating_accumulators;

ALTER TABLE credit_grants
  DROP CONSTRAINT credit_grants_kind_check,
  ADD CONSTRAINT credit_grants_kind_check
    CHECK (kind IN ('purchased', 'promotional', 'bundle', 'rollover')),
  DROP CONSTRAINT credit_grants_amount_micros_check,
  ADD CONSTRAINT credit_grants_amount_micros_check
    CHECK (amount_micros > 0 OR (kind = 'rollover' AND amount_micros = 0)),
  DROP CONSTRAINT credit_grants_bundle_price_per_million_micros_check,
  ADD CONSTRAINT credit_grants_bundle_price_check
    CHECK (bundle_price_per_million_micros > 0
           OR (kind = 'rollover' AND bundle_price_per_million_micros = 0)),
  DROP CONSTRAINT credit_grants_bundle_check,
  ADD CONSTRAINT credit_grants_bundle_check CHECK ((kind IN ('bundle', 'rollover')) = (
    bundle_token_class IS NOT NULL AND bundle_tokens IS NOT NULL
    AND bundle_price_per_million_micros IS NOT NULL AND cardinality(models) = 1)),
  -- The period whose unused allowance a rollover grant holds.
  ADD COLUMN rolled_over_from text CHECK (rolled_over_from ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
  ADD CONSTRAINT credit_grants_rollover_check
    CHECK ((kind = 'rollover') = (rolled_over_from IS NOT NULL));

-- Each tenant's 'allowance' account: where rolled-over tokens come from (its token balance is
-- minus what its allowances ever rolled over).
ALTER TABLE credit_accounts
  DROP CONSTRAINT credit_accounts_kind_check,
  ADD CONSTRAINT credit_accounts_kind_check
    CHECK (kind IN ('grant', 'funding', 'usage', 'breakage', 'allowance'));

ALTER TABLE credit_transfers
  DROP CONSTRAINT credit_transfers_kind_check,
  ADD CONSTRAINT credit_transfers_kind_check
    CHECK (kind IN ('grant', 'drawdown', 'expiry', 'true_up', 'rollover'));

-- Makes the rollover grant of `tokens` unused tokens of (model, class) of `from_period`: the
-- grant, its account and the transfer allowance -> grant of the tokens, in one go. Once: a
-- second call with the same id does nothing.
CREATE FUNCTION tollgate_grant_rollover(grant_id text, tenant text, from_period text,
                                        rollover_model text, token_class text, tokens bigint,
                                        effective timestamptz, expires timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO credit_grants (id, tenant_id, kind, amount_micros, effective_at, expires_at,
                             models, memo, bundle_token_class, bundle_tokens,
                             bundle_price_per_million_micros, rolled_over_from)
  VALUES (grant_id, tenant, 'rollover', 0, effective, expires, ARRAY[rollover_model],
          'unused allowance of ' || from_period, token_class, tokens, 0, from_period)
  ON CONFLICT (id) DO NOTHING;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  PERFORM tollgate_credit_tenant_accounts(tenant);
  INSERT INTO credit_accounts (id, tenant_id, kind)
    VALUES ('allowance:' || tenant, tenant, 'allowance') ON CONFLICT (id) DO NOTHING;
  INSERT INTO credit_accounts (id, tenant_id, kind, grant_id)
    VALUES ('grant:' || grant_id, tenant, 'grant', grant_id);
  INSERT INTO credit_transfers (id, tenant_id, kind, occurred_at, period)
    VALUES ('grant:' || grant_id, tenant, 'rollover', effective, from_period);
  INSERT INTO credit_entries (transfer_id, account_id, amount_micros, tokens) VALUES
    ('grant:' || grant_id, 'allowance:' || tenant, 0, -tokens),
    ('grant:' || grant_id, 'grant:' || grant_id, 0, tokens);
END $$;
