-- Price books and plans (docs/PRICING.md). A price book holds versions; each version is
-- immutable, takes effect at its effective_at, and holds per-model prices per 1M tokens in
-- micro-units as exact decimal strings (the canonical JSON of billing/price_book), tiered on
-- the period's volume. A tenant's plan names its price book, its batch discount and how it
-- settles.
CREATE TABLE price_books (
  id          text COLLATE "C" PRIMARY KEY,
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  tier_mode   text NOT NULL CHECK (tier_mode IN ('graduated', 'volume')),
  tier_scope  text NOT NULL CHECK (tier_scope IN ('model', 'all_models')),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE price_book_versions (
  book_id       text COLLATE "C" NOT NULL REFERENCES price_books (id),
  version       integer NOT NULL CHECK (version >= 1),
  effective_at  timestamptz NOT NULL,
  prices        jsonb NOT NULL CHECK (jsonb_typeof(prices) = 'object'),
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (book_id, version),
  UNIQUE (book_id, effective_at)
);

-- Versions are never edited or removed: rated events name the version that priced them.
CREATE FUNCTION tollgate_price_book_versions_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'price book versions are immutable; add a new version instead'
    USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER price_book_versions_immutable BEFORE UPDATE OR DELETE ON price_book_versions
  FOR EACH ROW EXECUTE FUNCTION tollgate_price_book_versions_immutable();

CREATE TABLE tenant_plans (
  tenant_id          text COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
  book_id            text COLLATE "C" NOT NULL REFERENCES price_books (id),
  -- Basis points off for requests made through the batch API: 5000 = 50 %.
  batch_discount_bp  integer NOT NULL DEFAULT 5000 CHECK (batch_discount_bp BETWEEN 0 AND 10000),
  settlement_mode    text NOT NULL DEFAULT 'credit_then_invoice'
                       CHECK (settlement_mode IN ('credit_then_invoice', 'credit_only')),
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
