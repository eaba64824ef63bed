-- Tenants, projects, API keys, the usage ledger and the audit log.
-- Ids are text with a type prefix (ten_, proj_, key_) made by the gateway; every table that a
-- tenant owns leads its keys with tenant_id, so the schema can be distributed by tenant later.
-- Id columns use the "C" collation whatever the cluster's locale: they are ASCII, and byte
-- order keeps the ledger's indexes cheap to maintain.

CREATE TABLE tenants (
  id          text COLLATE "C" PRIMARY KEY,
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
  tenant_id   text COLLATE "C" NOT NULL REFERENCES tenants (id),
  id          text COLLATE "C" NOT NULL UNIQUE,
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

CREATE TABLE api_keys (
  tenant_id       text COLLATE "C" NOT NULL REFERENCES tenants (id),
  id              text COLLATE "C" NOT NULL UNIQUE,
  project_id      text COLLATE "C",
  name            text NOT NULL DEFAULT '',
  prefix          text NOT NULL,              -- the first characters of the key, for display
  key_sha256      bytea NOT NULL UNIQUE CHECK (length(key_sha256) = 32),
  status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
  allowed_models  text[],                     -- NULL: every model
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz,
  revoked_at      timestamptz,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id)
);

-- One row per request. Partitioned by month on occurred_at; PostgreSQL requires the partition
-- key in every unique index, so the key is (tenant_id, occurred_at, request_id): a replayed
-- event carries its original occurred_at and request_id and is skipped by ON CONFLICT.
CREATE TABLE usage_events (
  tenant_id                  text COLLATE "C" NOT NULL,
  occurred_at                timestamptz NOT NULL,
  request_id                 text COLLATE "C" NOT NULL,
  project_id                 text COLLATE "C",
  api_key_id                 text COLLATE "C",
  endpoint                   text NOT NULL,
  model                      text NOT NULL,
  upstream                   text NOT NULL,
  stream                     boolean NOT NULL,
  batch                      boolean NOT NULL DEFAULT false,
  status                     integer NOT NULL,
  -- Billed counts: the upstream's report, or the gateway's own when `estimated`.
  prompt_tokens              bigint NOT NULL CHECK (prompt_tokens >= 0),
  cached_prompt_tokens       bigint NOT NULL CHECK (cached_prompt_tokens >= 0),
  completion_tokens          bigint NOT NULL CHECK (completion_tokens >= 0),
  reasoning_tokens           bigint NOT NULL CHECK (reasoning_tokens >= 0),
  -- The gateway's counts with the model's tokenizer (NULL where it did not count).
  counted_prompt_tokens      bigint,
  counted_completion_tokens  bigint,
  usage_reported             boolean NOT NULL,
  estimated                  boolean NOT NULL,
  latency_us                 bigint NOT NULL,
  ttft_us                    bigint,
  client_disconnected        boolean NOT NULL,
  error_code                 text,
  client_request_id          text,
  PRIMARY KEY (tenant_id, occurred_at, request_id)
) PARTITION BY RANGE (occurred_at);

-- Catches rows outside every monthly partition so that none is ever refused; kept empty in
-- practice because partitions are created months ahead.
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;

-- The finance queries select a time range, of one tenant (the primary key) or of all tenants
-- (this index); project, key and model filters are applied within that range. Rows arrive in
-- about time order, so a BRIN index serves the all-tenant range at almost no ingest cost; every
-- B-tree costs ingest rate, so there is no other.
CREATE INDEX usage_events_time ON usage_events USING brin (occurred_at);

-- Creates the monthly partitions from the month of `from_month` for `months` months; returns
-- how many it created. Called by `tollgate migrate` and daily by the gateway.
CREATE FUNCTION tollgate_ensure_usage_partitions(from_month date, months integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  first date := date_trunc('month', from_month)::date;
  made integer := 0;
  lo date;
  name text;
BEGIN
  FOR i IN 0 .. months - 1 LOOP
    lo := (first + make_interval(months => i))::date;
    name := format('usage_events_%s', to_char(lo, 'YYYY_MM'));
    IF to_regclass(name) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                     name, lo::timestamp AT TIME ZONE 'UTC',
                     (lo + interval '1 month')::timestamp AT TIME ZONE 'UTC');
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END $$;

CREATE TABLE audit_log (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at  timestamptz NOT NULL DEFAULT now(),
  actor        text NOT NULL,        -- 'admin' (the admin token) or 'tollctl' etc.
  action       text NOT NULL,        -- e.g. 'tenant.create', 'key.revoke'
  tenant_id    text,
  object_type  text NOT NULL,
  object_id    text NOT NULL,
  before       jsonb,
  after        jsonb
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
