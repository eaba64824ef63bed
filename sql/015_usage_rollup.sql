-- The usage rollup (docs/LEDGER.md, "The usage rollup"): per tenant, dimension, UTC day and UTC
-- month and value, the sums of usage_events, so that a month's top end users or tags are read
-- from one row per value instead of every event. Exact at every moment: each event records the
-- transaction that wrote it (xact_id); the rollup holds exactly the events whose transaction is
-- below the watermark, and queries add the events at or above it from usage_events.

-- The writing transaction of each event, from its default (whoever writes it: the ledger writer,
-- an older gateway during an upgrade, a hand-written INSERT). A column added without a default
-- rewrites nothing, and the default then applies to new rows only: the rows older than this
-- migration keep NULL and are folded into the rollup below. txid_current() is
-- pg_current_xact_id() as a bigint (the 64-bit id, which never wraps), without a text round
-- trip per row. Rows arrive in about transaction order, so a BRIN index finds a range of
-- transactions at no ingest cost the ledger benchmark can measure (a B-tree costs about 7%
-- there). Its new ranges are summarized by tollgate_advance_usage_rollup, or by autovacuum
-- (autosummarize) where that could not take the partition.
ALTER TABLE usage_events ADD COLUMN xact_id bigint;
ALTER TABLE usage_events ALTER COLUMN xact_id SET DEFAULT txid_current();
CREATE INDEX usage_events_xact ON usage_events USING brin (xact_id) WITH (autosummarize = on);

-- grain 'd': period is a UTC day; 'm': period is the first day of a UTC month.
-- dimension: '' (the tenant's total, value ''), 'end_user', or 'tag:' || key. Only non-NULL
-- values have rows: the events without one (no end user, no such tag) are the total less the
-- values, so a grouping's NULL group is derived, not stored. first_at and last_at (total rows
-- only) bound the events' occurred_at, so that a query whose range covers them may use the
-- period's rows even when the range does not cover the whole period (this month so far).
CREATE TABLE usage_rollup (
  tenant_id         text COLLATE "C" NOT NULL,
  dimension         text COLLATE "C" NOT NULL,
  grain             "char" NOT NULL CHECK (grain IN ('d', 'm')),
  period            date NOT NULL,
  value             text COLLATE "C" NOT NULL,
  requests          bigint NOT NULL,
  input_tokens      bigint NOT NULL,
  cached_tokens     bigint NOT NULL,
  output_tokens     bigint NOT NULL,
  reasoning_tokens  bigint NOT NULL,
  cost_micros       bigint NOT NULL,  -- of the rated events
  unrated_requests  bigint NOT NULL,  -- events with cost_micros NULL
  first_at          timestamptz,
  last_at           timestamptz,
  PRIMARY KEY (tenant_id, dimension, grain, period, value)
);

-- One row: every usage_events row whose xact_id is below `watermark` (or NULL) is in
-- usage_rollup, and no other.
CREATE TABLE usage_rollup_state (
  id           boolean PRIMARY KEY DEFAULT true CHECK (id),
  watermark    bigint NOT NULL,
  advanced_at  timestamptz NOT NULL DEFAULT now()
);

-- Adds the events of usage_events selected by `cond` (SQL over usage_events, with $1 and $2
-- bound to lo and hi) to the rollup; returns how many rollup rows it made or changed. One scan
-- of the events, two hash aggregations (by end user; by tag set, of which a tenant has few a
-- day), then the tags split out of the sets: far cheaper than splitting every event's tags.
-- The planner settings: hashing (sorting text is slower), no JIT (its compile time is longer
-- than the query), and the BRIN index even where statistics know nothing of xact_id (the
-- partitions older than this migration, whose rows all hold NULL).
CREATE FUNCTION tollgate_usage_rollup_add(cond text, lo bigint, hi bigint) RETURNS bigint
LANGUAGE plpgsql SET jit = off SET enable_sort = off SET enable_seqscan = off
  SET work_mem = '64MB' AS $$
DECLARE
  changed bigint;
BEGIN
  EXECUTE format($q$
    WITH e AS MATERIALIZED (
      SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, occurred_at, end_user,
             tags, prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens,
             cost_micros
      FROM usage_events WHERE %1$s
    ), u AS (
      SELECT tenant_id, day, end_user,
             count(*) AS n, sum(prompt_tokens) AS i, sum(cached_prompt_tokens) AS c,
             sum(completion_tokens) AS o, sum(reasoning_tokens) AS rs,
             coalesce(sum(cost_micros), 0) AS cost, count(*) - count(cost_micros) AS un,
             min(occurred_at) AS f, max(occurred_at) AS l
      FROM e GROUP BY 1, 2, 3
    ), t AS (
      SELECT tenant_id, day, tags,
             count(*) AS n, sum(prompt_tokens) AS i, sum(cached_prompt_tokens) AS c,
             sum(completion_tokens) AS o, sum(reasoning_tokens) AS rs,
             coalesce(sum(cost_micros), 0) AS cost, count(*) - count(cost_micros) AS un
      FROM e WHERE tags IS NOT NULL GROUP BY 1, 2, 3
    ), d AS MATERIALIZED (
      SELECT tenant_id, day, ''::text AS dim, ''::text AS val, sum(n) AS n, sum(i) AS i,
             sum(c) AS c, sum(o) AS o, sum(rs) AS rs, sum(cost) AS cost, sum(un) AS un,
             min(f) AS f, max(l) AS l
      FROM u GROUP BY 1, 2
      UNION ALL
      SELECT tenant_id, day, 'end_user', end_user, n, i, c, o, rs, cost, un, NULL, NULL
      FROM u WHERE end_user IS NOT NULL
      UNION ALL
      SELECT tenant_id, day, 'tag:' || k.key, k.value, sum(n), sum(i), sum(c), sum(o), sum(rs),
             sum(cost), sum(un), NULL, NULL
      FROM t, jsonb_each_text(t.tags) k GROUP BY 1, 2, 3, 4
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

-- The rows written before this migration (no other transaction writes usage_events while it
-- holds the table). The watermark starts at the oldest transaction still running: those below
-- it have finished without an xact_id (the column did not exist for them).
SELECT tollgate_usage_rollup_add('xact_id IS NULL', NULL, NULL);
INSERT INTO usage_rollup_state (watermark)
  VALUES (pg_snapshot_xmin(pg_current_snapshot())::text::bigint);

-- Advances the watermark: folds the events of every transaction that has finished since the
-- last call into the rollup. The new watermark is the current snapshot's xmin: every
-- transaction below it has committed or aborted, so no row can still appear below it. Works in
-- steps of transactions for up to about `budget_ms`, so that a backlog (after a long
-- transaction held the watermark back) is caught up over several calls; a step that finds no
-- events doubles the next, so that long runs of transactions that wrote no usage are crossed
-- quickly. Then it summarizes the BRIN ranges written since the last call: an unsummarized
-- range matches every search, so reports would read every row written since. A partition a
-- VACUUM holds is skipped after 500 ms (the VACUUM summarizes it when it ends). Returns the
-- watermark, or NULL when another session is advancing it (every gateway calls it; one at a
-- time does the work).
CREATE FUNCTION tollgate_advance_usage_rollup(budget_ms integer DEFAULT 500) RETURNS bigint
LANGUAGE plpgsql SET lock_timeout = '100ms' AS $$
DECLARE
  part     regclass;
  step_min constant bigint := 1024;  -- transactions
  step     bigint := step_min;
  started  timestamptz := clock_timestamp();
  lo       bigint;
  hi       bigint;
  target   bigint;
BEGIN
  IF NOT pg_try_advisory_xact_lock(7346021, 15) THEN
    RETURN NULL;
  END IF;
  SELECT watermark INTO lo FROM usage_rollup_state FOR UPDATE;
  target := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
  WHILE lo < target LOOP
    hi := least(lo + step, target);
    IF tollgate_usage_rollup_add('xact_id >= $1 AND xact_id < $2', lo, hi) > 0 THEN
      step := step_min;
    ELSE
      step := step * 2;
    END IF;
    lo := hi;
    EXIT WHEN clock_timestamp() - started > make_interval(secs => budget_ms / 1000.0);
  END LOOP;
  UPDATE usage_rollup_state SET watermark = lo, advanced_at = now();
  FOR part IN SELECT relid FROM pg_partition_tree('usage_events_xact') WHERE isleaf LOOP
    BEGIN
      PERFORM brin_summarize_new_values(part);
    EXCEPTION WHEN lock_not_available THEN
      NULL;
    END;
  END LOOP;
  RETURN lo;
END $$;

-- Builds the rollup again from the events below the watermark: for after events were removed
-- by hand (the ledger itself never updates or deletes one). Readers keep their snapshot.
CREATE FUNCTION tollgate_rebuild_usage_rollup() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  wm bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(7346021, 15);
  SELECT watermark INTO wm FROM usage_rollup_state FOR UPDATE;
  DELETE FROM usage_rollup;
  RETURN tollgate_usage_rollup_add('xact_id IS NULL OR xact_id < $2', NULL, wm);
END $$;
