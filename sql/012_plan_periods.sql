-- Plans by billing period (docs/PRICING.md, "Plans"). A tenant's plan rows each name the first
-- period ("YYYY-MM", UTC) they price; the plan of a period is the row with the latest
-- from_period at or before it (the first row for periods before every row). A tenant's first
-- plan prices the current period; a later change of price book or batch discount takes effect
-- at the start of the next period, so one plan prices each whole period and the rated events
-- of a period add up to its invoice. A settlement mode change applies at once.

ALTER TABLE tenant_plans ADD COLUMN from_period text COLLATE "C"
  CHECK (from_period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$');
UPDATE tenant_plans SET from_period = to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM');
ALTER TABLE tenant_plans ALTER COLUMN from_period SET NOT NULL,
  ALTER COLUMN from_period SET DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'),
  DROP CONSTRAINT tenant_plans_pkey,
  ADD PRIMARY KEY (tenant_id, from_period);

-- The from_period of the plan that prices `p_period` for `p_tenant` (NULL: no plan).
CREATE FUNCTION tollgate_plan_period(p_tenant text, p_period text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(max(from_period) FILTER (WHERE from_period <= p_period), min(from_period))
  FROM tenant_plans WHERE tenant_id = p_tenant
$$;

-- A tenant's plan as the admin API shows it: the plan pricing the current period, with the
-- change pending for a later period, if any. NULL: no plan.
CREATE FUNCTION tollgate_tenant_plan_json(p_tenant text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  WITH rows AS (
    SELECT p.*, p.from_period > to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') AS pending
    FROM tenant_plans p WHERE p.tenant_id = p_tenant
      AND p.from_period >= tollgate_plan_period(p_tenant,
                                                to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')))
  SELECT jsonb_build_object('object', 'plan', 'tenant_id', c.tenant_id,
    'price_book_id', c.book_id, 'batch_discount_bp', c.batch_discount_bp,
    'settlement_mode', c.settlement_mode, 'from_period', c.from_period,
    'updated_at', extract(epoch from c.updated_at)::bigint,
    'scheduled', (SELECT jsonb_build_object('from_period', s.from_period,
                    'price_book_id', s.book_id, 'batch_discount_bp', s.batch_discount_bp)
                  FROM rows s WHERE s.pending ORDER BY s.from_period LIMIT 1))
  FROM rows c WHERE NOT c.pending
$$;

-- Sets a tenant's plan (NULL discount or mode: the latest plan's, or the defaults for a first
-- plan) and returns the plan rows from the current period on, as JSON: {"current", "scheduled"}
-- (scheduled: null when no change is pending). NULL: the tenant or the book does not exist.
CREATE FUNCTION tollgate_set_tenant_plan(p_tenant text, p_book text, p_discount integer,
                                         p_mode text, p_actor text) RETURNS jsonb
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
    INSERT INTO tenant_plans (tenant_id, from_period, book_id, batch_discount_bp, settlement_mode)
      VALUES (p_tenant, cur_period, p_book, coalesce(p_discount, 5000),
              coalesce(p_mode, 'credit_then_invoice'));
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
    -- The settlement mode applies at once, to the current plan and any pending one.
    UPDATE tenant_plans SET settlement_mode = coalesce(p_mode, settlement_mode), updated_at = now()
      WHERE tenant_id = p_tenant AND from_period >= cur.from_period;
    -- Prices change at the next period; asking for the current ones cancels a pending change.
    DELETE FROM tenant_plans WHERE tenant_id = p_tenant AND from_period > cur.from_period;
    IF p_book <> cur.book_id OR p_discount <> cur.batch_discount_bp THEN
      INSERT INTO tenant_plans (tenant_id, from_period, book_id, batch_discount_bp, settlement_mode)
        VALUES (p_tenant, next_period, p_book, p_discount,
                coalesce(p_mode, cur.settlement_mode));
    END IF;
  END IF;
  after := tollgate_tenant_plan_json(p_tenant);
  INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id, before, after)
    VALUES (p_actor, 'plan.set', p_tenant, 'plan', p_tenant, before, after);
  RETURN after;
END $$;
