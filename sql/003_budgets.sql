-- Budgets and rate limits: a limit on tokens or requests per window, attached to a tenant, one
-- of its projects or one of its API keys. Enforced in Redis (metering/budget_engine); this
-- table is where admins set them. Spend budgets come with the pricing engine.
CREATE TABLE budgets (
  tenant_id    text COLLATE "C" NOT NULL REFERENCES tenants (id),
  id           text COLLATE "C" NOT NULL UNIQUE,
  scope        text NOT NULL CHECK (scope IN ('tenant', 'project', 'key')),
  scope_id     text COLLATE "C",          -- the project or key id; NULL for the tenant
  metric       text NOT NULL CHECK (metric IN ('tokens', 'requests')),
  time_window  text NOT NULL CHECK (time_window IN ('minute', 'hour', 'day', 'month', 'lifetime')),
  limit_value  bigint NOT NULL CHECK (limit_value >= 0),
  mode         text NOT NULL DEFAULT 'hard' CHECK (mode IN ('hard', 'soft')),
  status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CHECK ((scope = 'tenant') = (scope_id IS NULL))
);

CREATE VIEW finance.budgets AS
SELECT tenant_id, id, scope, scope_id, metric, time_window, limit_value, mode, status, created_at
FROM public.budgets;
GRANT SELECT ON finance.budgets TO tollgate_finance;
