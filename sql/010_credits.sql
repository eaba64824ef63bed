-- Pre-purchased credits (docs/CREDITS.md), kept in double entry: every grant has an account;
-- each tenant has a funding account (where granted credit comes from), a usage account (where
-- drawn credit goes) and a breakage account (where expired credit goes). Money moves only in
-- transfers whose entries sum to zero (checked at commit), and a grant's account never goes
-- below zero (a CHECK on its balance). Entries and transfers are never changed.

CREATE TABLE credit_grants (
  id                 text COLLATE "C" PRIMARY KEY,
  tenant_id          text COLLATE "C" NOT NULL REFERENCES tenants (id),
  kind               text NOT NULL CHECK (kind IN ('purchased', 'promotional')),
  amount_micros      bigint NOT NULL CHECK (amount_micros > 0),
  -- What the tenant paid for a purchased grant (micro-units); NULL for a promotional one.
  price_paid_micros  bigint CHECK (price_paid_micros >= 0),
  effective_at       timestamptz NOT NULL,
  expires_at         timestamptz,
  -- Drawdown order: priority ascending, then earliest expiry, then effective date, then id.
  priority           integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 1000000),
  -- NULL: usage of any model; else only usage of these models.
  models             text[],
  memo               text CHECK (length(memo) <= 500),
  created_at         timestamptz NOT NULL DEFAULT now(),
  CHECK ((kind = 'purchased') = (price_paid_micros IS NOT NULL)),
  CHECK (expires_at IS NULL OR expires_at > effective_at)
);
CREATE INDEX credit_grants_tenant ON credit_grants (tenant_id, priority, expires_at, effective_at, id);

CREATE TABLE credit_accounts (
  id              text COLLATE "C" PRIMARY KEY,  -- grant:<id>, funding:<t>, usage:<t>, breakage:<t>
  tenant_id       text COLLATE "C" NOT NULL REFERENCES tenants (id),
  kind            text NOT NULL CHECK (kind IN ('grant', 'funding', 'usage', 'breakage')),
  grant_id        text COLLATE "C" UNIQUE REFERENCES credit_grants (id),
  balance_micros  bigint NOT NULL DEFAULT 0,
  CHECK ((kind = 'grant') = (grant_id IS NOT NULL)),
  -- No grant below zero.
  CONSTRAINT credit_grant_not_negative CHECK (kind <> 'grant' OR balance_micros >= 0)
);

CREATE TABLE credit_transfers (
  -- Idempotent on the id: grant:<grant>, expire:<grant>, draw:<tenant>:<period>:<request>,
  -- true_up:<tenant>:<period>.
  id           text COLLATE "C" PRIMARY KEY,
  tenant_id    text COLLATE "C" NOT NULL REFERENCES tenants (id),
  kind         text NOT NULL CHECK (kind IN ('grant', 'drawdown', 'expiry', 'true_up')),
  -- The billing period the transfer belongs to (drawdowns and true-ups: the usage's month).
  period       text CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
  occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_transfers_tenant ON credit_transfers (tenant_id, period);

CREATE TABLE credit_entries (
  transfer_id    text COLLATE "C" NOT NULL REFERENCES credit_transfers (id),
  account_id     text COLLATE "C" NOT NULL REFERENCES credit_accounts (id),
  amount_micros  bigint NOT NULL CHECK (amount_micros <> 0),
  PRIMARY KEY (transfer_id, account_id)
);
CREATE INDEX credit_entries_account ON credit_entries (account_id);

-- Each entry moves its account's balance.
CREATE FUNCTION tollgate_credit_entry_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE credit_accounts SET balance_micros = balance_micros + NEW.amount_micros
    WHERE id = NEW.account_id;
  RETURN NULL;
END $$;
CREATE TRIGGER credit_entry_apply AFTER INSERT ON credit_entries
  FOR EACH ROW EXECUTE FUNCTION tollgate_credit_entry_apply();

-- Every transfer sums to zero, checked when the transaction commits (its entries are then all
-- there).
CREATE FUNCTION tollgate_credit_transfer_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  total numeric;
BEGIN
  SELECT sum(amount_micros) INTO total FROM credit_entries WHERE transfer_id = NEW.transfer_id;
  IF total <> 0 THEN
    RAISE EXCEPTION 'credit transfer % does not sum to zero (%)', NEW.transfer_id, total
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER credit_transfer_balanced AFTER INSERT ON credit_entries
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION tollgate_credit_transfer_balanced();

CREATE FUNCTION tollgate_credit_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'credit grants, transfers and entries are immutable; make a new transfer'
    USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER credit_entries_immutable BEFORE UPDATE OR DELETE ON credit_entries
  FOR EACH ROW EXECUTE FUNCTION tollgate_credit_immutable();
CREATE TRIGGER credit_transfers_immutable BEFORE UPDATE OR DELETE ON credit_transfers
  FOR EACH ROW EXECUTE FUNCTION tollgate_credit_immutable();
CREATE TRIGGER credit_grants_immutable BEFORE UPDATE OR DELETE ON credit_grants
  FOR EACH ROW EXECUTE FUNCTION tollgate_credit_immutable();

-- A tenant's funding, usage and breakage accounts, made on first use.
CREATE FUNCTION tollgate_credit_tenant_accounts(tenant text) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO credit_accounts (id, tenant_id, kind)
  SELECT k || ':' || tenant, tenant, k FROM unnest(ARRAY['funding', 'usage', 'breakage']) k
  ON CONFLICT (id) DO NOTHING;
$$;

-- Grants credit: the grant, its account, and the transfer funding -> grant, in one go.
CREATE FUNCTION tollgate_grant_credit(grant_id text, tenant text, grant_kind text,
                                      amount bigint, price_paid bigint,
                                      effective timestamptz, expires timestamptz,
                                      grant_priority integer, grant_models text[],
                                      grant_memo text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO credit_grants (id, tenant_id, kind, amount_micros, price_paid_micros,
                             effective_at, expires_at, priority, models, memo)
  VALUES (grant_id, tenant, grant_kind, amount, price_paid, effective, expires,
          grant_priority, grant_models, grant_memo);
  PERFORM tollgate_credit_tenant_accounts(tenant);
  INSERT INTO credit_accounts (id, tenant_id, kind, grant_id)
    VALUES ('grant:' || grant_id, tenant, 'grant', grant_id);
  INSERT INTO credit_transfers (id, tenant_id, kind, occurred_at)
    VALUES ('grant:' || grant_id, tenant, 'grant', effective);
  INSERT INTO credit_entries (transfer_id, account_id, amount_micros) VALUES
    ('grant:' || grant_id, 'funding:' || tenant, -amount),
    ('grant:' || grant_id, 'grant:' || grant_id, amount);
END $$;

-- Moves what is left on grants expired by `at` to their tenant's breakage account; returns how
-- many grants it expired. Run by the gateway's ledger writer every minute and by
-- `tollctl credits expire`; running it twice changes nothing.
CREATE FUNCTION tollgate_expire_credits(at timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  g record;
  n integer := 0;
BEGIN
  FOR g IN SELECT a.id AS account, a.tenant_id, a.grant_id, a.balance_micros
           FROM credit_accounts a JOIN credit_grants c ON c.id = a.grant_id
           WHERE c.expires_at <= at AND a.balance_micros > 0
           ORDER BY a.id FOR UPDATE OF a LOOP
    INSERT INTO credit_transfers (id, tenant_id, kind, occurred_at)
      VALUES ('expire:' || g.grant_id, g.tenant_id, 'expiry', at)
      ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
      INSERT INTO credit_entries (transfer_id, account_id, amount_micros) VALUES
        ('expire:' || g.grant_id, g.account, -g.balance_micros),
        ('expire:' || g.grant_id, 'breakage:' || g.tenant_id, g.balance_micros);
      n := n + 1;
    END IF;
  END LOOP;
  RETURN n;
END $$;

-- Returns `excess` micro-units of a period's drawdowns to the grants that paid them, the last
-- in drawdown order first: the invoice's total came out below the credit drawn for the period
-- (volume tiers are rated provisionally and trued up on the invoice). Called when the invoice
-- is finalized; once per tenant and period.
CREATE FUNCTION tollgate_credit_true_up(tenant text, for_period text, excess bigint)
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
           JOIN credit_grants c ON c.id = a.grant_id
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

-- The credit that paid for each event (the rest is invoiced); NULL when none did.
ALTER TABLE usage_events ADD COLUMN credit_micros bigint CHECK (credit_micros > 0);

-- Invoices show the credits applied in drawdown order and the total due after them.
ALTER TABLE invoices
  ADD COLUMN credits jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(credits) = 'array'),
  ADD COLUMN credits_micros bigint NOT NULL DEFAULT 0,
  -- Credit drawn for the period beyond its total (volume tiers), given back on finalizing.
  ADD COLUMN credits_returned_micros bigint NOT NULL DEFAULT 0,
  ADD COLUMN total_due_micros bigint,
  ADD COLUMN total_due_minor bigint;

CREATE VIEW finance.credit_grants AS
SELECT g.id, g.tenant_id, g.kind, g.amount_micros, g.price_paid_micros, g.effective_at,
       g.expires_at, g.priority, g.models, g.memo, g.created_at, a.balance_micros
FROM public.credit_grants g JOIN public.credit_accounts a ON a.grant_id = g.id;

CREATE VIEW finance.credit_entries AS
SELECT t.id AS transfer_id, t.tenant_id, t.kind, t.period, t.occurred_at, e.account_id,
       e.amount_micros
FROM public.credit_transfers t JOIN public.credit_entries e ON e.transfer_id = t.id;

CREATE OR REPLACE VIEW finance.usage_events AS
SELECT tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream,
       stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens,
       reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, estimated,
       cost_micros, price_book_id, price_book_version, credit_micros
FROM public.usage_events;

GRANT SELECT ON finance.credit_grants, finance.credit_entries TO tollgate_finance;
