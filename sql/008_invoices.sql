-- Invoices (docs/PRICING.md): one per tenant per calendar month (UTC), a draft until it is
-- finalized, then immutable and numbered. Lines per model x token class x batch flag x tier,
-- and adjustments for late usage of earlier periods, in micro-units and in the currency's minor
-- unit (largest-remainder rounding, so that lines and adjustments add up to the total).
CREATE SEQUENCE invoice_numbers;

CREATE TABLE invoices (
  id             text COLLATE "C" PRIMARY KEY,
  tenant_id      text COLLATE "C" NOT NULL REFERENCES tenants (id),
  period         text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
  status         text NOT NULL CHECK (status IN ('draft', 'finalized')),
  number         text UNIQUE,
  currency       text NOT NULL,
  price_book_id  text COLLATE "C" NOT NULL REFERENCES price_books (id),
  minor_digits   integer NOT NULL CHECK (minor_digits BETWEEN 0 AND 6),
  lines          jsonb NOT NULL CHECK (jsonb_typeof(lines) = 'array'),
  unpriced       jsonb NOT NULL CHECK (jsonb_typeof(unpriced) = 'array'),
  -- Usage of earlier, finalized periods that arrived after they were finalized, priced at its
  -- place in its own period: [{period, model, token_class, batch, tokens, amount_micros,
  -- amount_minor}].
  adjustments    jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(adjustments) = 'array'),
  total_micros   bigint NOT NULL,
  total_minor    bigint NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  finalized_at   timestamptz,
  UNIQUE (tenant_id, period),
  CHECK ((status = 'finalized') = (number IS NOT NULL AND finalized_at IS NOT NULL))
);

-- A finalized invoice is never edited or removed.
CREATE FUNCTION tollgate_invoices_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'finalized' THEN
    RAISE EXCEPTION 'invoice % is finalized and cannot change', OLD.number
      USING ERRCODE = 'restrict_violation';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
  FOR EACH ROW EXECUTE FUNCTION tollgate_invoices_immutable();
