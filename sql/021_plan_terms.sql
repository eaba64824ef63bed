-- Plan terms (docs/PRICING.md, "Plan terms"): a plan's base fee and per-seat fee per period, its
-- allowances (tokens included per period, per model and token class) and its commitment
-- (a minimum usage spend per period), on each plan row so that they change with the plan, at the
-- start of the next period. Seats are set on the tenant, by day (tenant_seats). Invoices carry
-- the fee lines (base fee, seats, commitment true-up) in `fees`.

-- {"base_fee_micros": n, "seat_fee_micros": n, "commitment_micros": n,
--  "allowances": [{"model": m, "token_class": c, "tokens": n}]}, canonical (checked by the API).
ALTER TABLE tenant_plans ADD COLUMN terms jsonb NOT NULL DEFAULT '{}'
  CHECK (jsonb_typeof(terms) = 'object');

-- A tenant's seat count from a UTC day on. A second change on the same day replaces the first:
-- a day is billed at the count set last for it.
CREATE TABLE tenant_seats (
  tenant_id      text COLLATE "C" NOT NULL REFERENCES tenants (id),
  effective_day  date NOT NULL,
  seats          integer NOT NULL CHECK (seats BETWEEN 0 AND 1000000),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, effective_day)
);

-- Fee lines of an invoice: [{kind, quantity, unit_amount_micros, amount_micros, amount_minor}],
-- kind base_fee, seats (quantity: seat-days) or commitment_true_up.
ALTER TABLE invoices ADD COLUMN fees jsonb NOT NULL DEFAULT '[]'
  CHECK (jsonb_typeof(fees) = 'array');

-- The plan functions again, with the terms. Terms not given keep the latest plan's (a first
-- plan starts from none), terms given as null are taken away; a change of terms, like a change
-- of prices, takes effect at the start of the next period.
DROP FUNCTION tollgate_set_tenant_plan(text, text, integer, text, text);

CREATE OR REPLACE FUNCTION tollgate_tenant_plan_json(p_tenant text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  WITH rows AS (
    SELECT p.*, p.from_period > to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') AS pending
    FROM tenant_plans p WHERE p.tenant_id = p_tenant
      AND p.from_period >= tollgate_plan_period(p_tenant,
                                                to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')))
  SELECT jsonb_build_object('object', 'plan', 'tenant_id', c.tenant_id,
    'price_book_id', c.book_id, 'batch_discount_bp', c.batch_discount_bp,
    'settlement_mode', c.settlement_mode, 'from_period', c.from_period,
    'terms', c.terms,
    'updated_at', extract(epoch from c.updated_at)::bigint,
    'scheduled', (SELECT jsonb_build_object('from_period', s.from_period,
                    'price_book_id', s.book_id, 'batch_discount_bp', s.batch_discount_bp,
                    'terms', s.terms)
                  FROM rows s WHERE s.pending ORDER BY s.from_period LIMIT 1))
  FROM rows c WHERE NOT c.pending
$$;

CREATE FUNCTION tollgate_set_tenant_plan(p_tenant text, p_book text, p_discount integer,
                                         p_mode text, p_terms jsonb, p_actor text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  cur_period  text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM');
  next_period text := to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month',
                              'YYYY-MM');
  cur    tenant_plans;
  latest tenant_plans;
  before jsonb;
  after  jsonb;
BEGIN
  -- One plan change of a tenant at a time.
  PERFORM 1 FROM tenants WHERE id = p_tenant FOR UPDATE;
  IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM price_books WHERE id = p_book) THEN
    RETURN NULL;
  END IF;
  SELECT jsonb_agg(to_jsonb(t) ORDER BY t.from_period) INTO before FROM tenant_plans t
    WHERE t.tenant_id = p_tenant AND t.from_period >= tollgate_plan_period(p_tenant, cur_period);
  SELECT * INTO cur FROM tenant_plans
    WHERE tenant_id = p_tenant AND from_period = tollgate_plan_period(p_tenant, cur_period);
  IF NOT FOUND THEN
    INSERT INTO tenant_plans (tenant_id, from_period, book_id, batch_discount_bp, settlement_mode,
                              terms)
      VALUES (p_tenant, cur_period, p_book, coalesce(p_discount, 5000),
              coalesce(p_mode, 'credit_then_invoice'),
              jsonb_strip_nulls(coalesce(p_terms, '{}')));
  ELSE
    IF (SELECT currency FROM price_books WHERE id = p_book) <>
       (SELECT currency FROM price_books WHERE id = cur.book_id) THEN
      RAISE EXCEPTION 'price book % is in %, the tenant''s plan in %: a tenant keeps one currency',
        p_book, (SELECT currency FROM price_books WHERE id = p_book),
        (SELECT currency FROM price_books WHERE id = cur.book_id)
        USING ERRCODE = 'check_violation';
    END IF;
    SELECT * INTO latest FROM tenant_plans WHERE tenant_id = p_tenant
      ORDER BY from_period DESC LIMIT 1;
    p_discount := coalesce(p_discount, latest.batch_discount_bp);
    p_terms := jsonb_strip_nulls(latest.terms || coalesce(p_terms, '{}'));
    -- The settlement mode applies at once, to the current plan and any pending one.
    UPDATE tenant_plans SET settlement_mode = coalesce(p_mode, settlement_mode), updated_at = now()
      WHERE tenant_id = p_tenant AND from_period >= cur.from_period;
    -- Prices and terms change at the next period; asking for the current ones cancels a
    -- pending change.
    DELETE FROM tenant_plans WHERE tenant_id = p_tenant AND from_period > cur.from_period;
    IF p_book <> cur.book_id OR p_discount <> cur.batch_discount_bp OR p_terms <> cur.terms THEN
      INSERT INTO tenant_plans (tenant_id, from_period, book_id, batch_discount_bp,
                                settlement_mode, terms)
        VALUES (p_tenant, next_period, p_book, p_discount,
                coalesce(p_mode, cur.settlement_mode), p_terms);
    END IF;
  END IF;
  after := tollgate_tenant_plan_json(p_tenant);
  INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id, before, after)
    VALUES (p_actor, 'plan.set', p_tenant, 'plan', p_tenant, before, after);
  RETURN after;
END $$;

-- Sets a tenant's seat count from a day on and returns the tenant's seats as of `p_today`
-- with their history as JSON ({"object": "seats", tenant_id, seats, history: [{effective_day,
-- seats}]}). NULL: no such tenant.
CREATE FUNCTION tollgate_set_tenant_seats(p_tenant text, p_day date, p_seats integer,
                                          p_today date, p_actor text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  before integer;
BEGIN
  PERFORM 1 FROM tenants WHERE id = p_tenant FOR UPDATE;
  IF NOT FOUND THEN RETURN NULL; END IF;
  SELECT seats INTO before FROM tenant_seats WHERE tenant_id = p_tenant AND effective_day <= p_day
    ORDER BY effective_day DESC LIMIT 1;
  INSERT INTO tenant_seats (tenant_id, effective_day, seats) VALUES (p_tenant, p_day, p_seats)
    ON CONFLICT (tenant_id, effective_day) DO UPDATE SET seats = EXCLUDED.seats,
      updated_at = now();
  INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id, before, after)
    VALUES (p_actor, 'seats.set', p_tenant, 'seats', p_tenant,
            jsonb_build_object('seats', before),
            jsonb_build_object('seats', p_seats, 'effective_day', p_day));
  RETURN tollgate_tenant_seats_json(p_tenant, p_today);
END $$;

-- A tenant's seats as of day `p_day`, with the history of changes.
CREATE FUNCTION tollgate_tenant_seats_json(p_tenant text, p_day date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('object', 'seats', 'tenant_id', p_tenant,
    'seats', coalesce((SELECT seats FROM tenant_seats WHERE tenant_id = p_tenant
                       AND effective_day <= p_day ORDER BY effective_day DESC LIMIT 1), 0),
    'history', coalesce((SELECT jsonb_agg(jsonb_build_object(
                 'effective_day', to_char(effective_day, 'YYYY-MM-DD'), 'seats', seats)
                 ORDER BY effective_day) FROM tenant_seats WHERE tenant_id = p_tenant), '[]'))
  FROM tenants WHERE id = p_tenant
$$;
