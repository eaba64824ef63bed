-- The hourly usage aggregate (docs/LEDGER.md, "The hourly aggregate"): per tenant, UTC hour,
-- project, key and model, the sums of usage_events and the refused requests (429, 402), so that
-- the console's overview (every tenant, split by model or tenant, top tenants, projects and
-- keys, refusals over time) reads a few rows per hour instead of every event. It holds exactly
-- the events below the usage rollup's watermark (015) and is advanced with it, by the same
-- function; queries add the events at or above the watermark from usage_events.
CREATE TABLE usage_hourly (
  tenant_id         text COLLATE "C" NOT NULL,
  hour              timestamptz NOT NULL,  -- the start of a UTC hour
  project_id        text COLLATE "C",
  api_key_id        text COLLATE "C",
  model             text COLLATE "C" NOT NULL,
  requests          bigint NOT NULL,
  input_tokens      bigint NOT NULL,
  cached_tokens     bigint NOT NULL,
  output_tokens     bigint NOT NULL,
  reasoning_tokens  bigint NOT NULL,
  cost_micros       bigint NOT NULL,  -- of the rated events
  unrated_requests  bigint NOT NULL,  -- events with cost_micros NULL
  refused_429       bigint NOT NULL,  -- events with status 429 (a budget or rate limit)
  refused_402       bigint NOT NULL   -- events with status 402 (credits)
);
-- Events without a project or key share one row: NULLs are not distinct here.
CREATE UNIQUE INDEX usage_hourly_key ON usage_hourly
  (hour, tenant_id, project_id, api_key_id, model) NULLS NOT DISTINCT;

-- 017's function, with the hourly rows added from the same scan of the events.
CREATE OR REPLACE FUNCTION tollgate_usage_rollup_add(cond text, lo bigint, hi bigint)
RETURNS bigint
LANGUAGE plpgsql SET jit = off SET enable_sort = off SET enable_seqscan = off
  SET work_mem = '64MB' AS $$
DECLARE
  changed bigint;
BEGIN
  EXECUTE format($q$
    WITH e AS MATERIALIZED (
      SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, occurred_at, end_user,
             tag_set_id, prompt_tokens, cached_prompt_tokens, completion_tokens,
             reasoning_tokens, cost_micros, project_id, api_key_id, model, status
      FROM usage_events WHERE %1$s
    ), hourly AS (
      INSERT INTO usage_hourly AS h (tenant_id, hour, project_id, api_key_id, model, requests,
        input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_micros,
        unrated_requests, refused_429, refused_402)
      SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), project_id, api_key_id, model,
             count(*), sum(prompt_tokens), sum(cached_prompt_tokens), sum(completion_tokens),
             sum(reasoning_tokens), coalesce(sum(cost_micros), 0), count(*) - count(cost_micros),
             count(*) FILTER (WHERE status = 429), count(*) FILTER (WHERE status = 402)
      FROM e GROUP BY 1, 2, 3, 4, 5
      ON CONFLICT (hour, tenant_id, project_id, api_key_id, model) DO UPDATE SET
        requests = h.requests + excluded.requests,
        input_tokens = h.input_tokens + excluded.input_tokens,
        cached_tokens = h.cached_tokens + excluded.cached_tokens,
        output_tokens = h.output_tokens + excluded.output_tokens,
        reasoning_tokens = h.reasoning_tokens + excluded.reasoning_tokens,
        cost_micros = h.cost_micros + excluded.cost_micros,
        unrated_requests = h.unrated_requests + excluded.unrated_requests,
        refused_429 = h.refused_429 + excluded.refused_429,
        refused_402 = h.refused_402 + excluded.refused_402
    ), u AS (
      SELECT tenant_id, day, end_user,
             count(*) AS n, sum(prompt_tokens) AS i, sum(cached_prompt_tokens) AS c,
             sum(completion_tokens) AS o, sum(reasoning_tokens) AS rs,
             coalesce(sum(cost_micros), 0) AS cost, count(*) - count(cost_micros) AS un,
             min(occurred_at) AS f, max(occurred_at) AS l
      FROM e GROUP BY 1, 2, 3
    ), t AS (
      SELECT tenant_id, day, tag_set_id,
             count(*) AS n, sum(prompt_tokens) AS i, sum(cached_prompt_tokens) AS c,
             sum(completion_tokens) AS o, sum(reasoning_tokens) AS rs,
             coalesce(sum(cost_micros), 0) AS cost, count(*) - count(cost_micros) AS un
      FROM e WHERE tag_set_id IS NOT NULL GROUP BY 1, 2, 3
    ), d AS MATERIALIZED (
      SELECT tenant_id, day, ''::text AS dim, ''::text AS val, sum(n) AS n, sum(i) AS i,
             sum(c) AS c, sum(o) AS o, sum(rs) AS rs, sum(cost) AS cost, sum(un) AS un,
             min(f) AS f, max(l) AS l
      FROM u GROUP BY 1, 2
      UNION ALL
      SELECT tenant_id, day, 'end_user', end_user, n, i, c, o, rs, cost, un, NULL, NULL
      FROM u WHERE end_user IS NOT NULL
      UNION ALL
      SELECT t.tenant_id, t.day, 'tag:' || k.key, k.value, sum(t.n), sum(t.i), sum(t.c),
             sum(t.o), sum(t.rs), sum(t.cost), sum(t.un), NULL, NULL
      FROM t JOIN usage_tag_sets s ON s.id = t.tag_set_id, jsonb_each_text(s.tags) k
      GROUP BY 1, 2, 3, 4
    )
    INSERT INTO usage_rollup AS r (tenant_id, dimension, grain, period, value, requests,
      input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_micros,
      unrated_requests, first_at, last_at)
    SELECT tenant_id, dim, 'd', day, val, n, i, c, o, rs, cost, un, f, l FROM d
    UNION ALL
    SELECT tenant_id, dim, 'm', date_trunc('month', day)::date, val, sum(n), sum(i), sum(c),
           sum(o), sum(rs), sum(cost), sum(un), min(f), max(l)
    FROM d GROUP BY tenant_id, dim, date_trunc('month', day), val
    ON CONFLICT (tenant_id, dimension, grain, period, value) DO UPDATE SET
      requests = r.requests + excluded.requests,
      input_tokens = r.input_tokens + excluded.input_tokens,
      cached_tokens = r.cached_tokens + excluded.cached_tokens,
      output_tokens = r.output_tokens + excluded.output_tokens,
      reasoning_tokens = r.reasoning_tokens + excluded.reasoning_tokens,
      cost_micros = r.cost_micros + excluded.cost_micros,
      unrated_requests = r.unrated_requests + excluded.unrated_requests,
      first_at = least(r.first_at, excluded.first_at),
      last_at = greatest(r.last_at, excluded.last_at)
  $q$, cond) USING lo, hi;
  GET DIAGNOSTICS changed = ROW_COUNT;
  RETURN changed;
END $$;

-- 015's rebuild, emptying the hourly aggregate too.
CREATE OR REPLACE FUNCTION tollgate_rebuild_usage_rollup() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  wm bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(7346021, 15);
  SELECT watermark INTO wm FROM usage_rollup_state FOR UPDATE;
  DELETE FROM usage_rollup;
  DELETE FROM usage_hourly;
  RETURN tollgate_usage_rollup_add('xact_id IS NULL OR xact_id < $2', NULL, wm);
END $$;

-- The events already below the watermark, with the advance held off meanwhile (its lock, then
-- the state row, whose watermark the next statement reads with a new snapshot).
SELECT pg_advisory_xact_lock(7346021, 15);
SELECT watermark FROM usage_rollup_state FOR UPDATE;
INSERT INTO usage_hourly (tenant_id, hour, project_id, api_key_id, model, requests,
  input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_micros, unrated_requests,
  refused_429, refused_402)
SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), project_id, api_key_id, model,
       count(*), sum(prompt_tokens), sum(cached_prompt_tokens), sum(completion_tokens),
       sum(reasoning_tokens), coalesce(sum(cost_micros), 0), count(*) - count(cost_micros),
       count(*) FILTER (WHERE status = 429), count(*) FILTER (WHERE status = 402)
FROM usage_events
WHERE xact_id IS NULL OR xact_id < (SELECT watermark FROM usage_rollup_state)
GROUP BY 1, 2, 3, 4, 5;
