-- The rollup's advance (015) summarizes the BRIN ranges on xact_id written since its last call;
-- an unsummarized range matches every search, so a report reads every row written in it. When
-- an autovacuum holds a partition the advance used to skip it, and after a burst of writes (an
-- autovacuum each time the partition grew by a fifth) hundreds of ranges stayed unsummarized
-- for as long as the VACUUM ran: a month's top end users took 230 to 350 ms instead of 47.
-- Now the advance records when it last summarized every partition, and once that is more than
-- `summarize_patience` ago it waits for the lock up to 2 s: past deadlock_timeout (1 s) the
-- server cancels an autovacuum that blocks another session (PostgreSQL's rule; a VACUUM run by
-- hand, or one against transaction id wraparound, is never cancelled, and the wait then ends
-- at the lock timeout as before). The autovacuum starts again later and finds its work done up
-- to where it stopped; it yields at most once per `summarize_patience`.
ALTER TABLE usage_rollup_state ADD COLUMN summarized_at timestamptz NOT NULL DEFAULT now();

CREATE OR REPLACE FUNCTION tollgate_advance_usage_rollup(budget_ms integer DEFAULT 500)
RETURNS bigint
LANGUAGE plpgsql SET lock_timeout = '100ms' AS $$
DECLARE
  summarize_patience constant interval := interval '5 seconds';
  part     regclass;
  step_min constant bigint := 1024;  -- transactions
  step     bigint := step_min;
  started  timestamptz := clock_timestamp();
  lo       bigint;
  hi       bigint;
  target   bigint;
  last_summary timestamptz;
  held     boolean := false;
BEGIN
  IF NOT pg_try_advisory_xact_lock(7346021, 15) THEN
    RETURN NULL;
  END IF;
  SELECT watermark, summarized_at INTO lo, last_summary FROM usage_rollup_state FOR UPDATE;
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
  IF clock_timestamp() - last_summary > summarize_patience THEN
    PERFORM set_config('lock_timeout', '2s', true);
  END IF;
  FOR part IN SELECT relid FROM pg_partition_tree('usage_events_xact') WHERE isleaf LOOP
    BEGIN
      PERFORM brin_summarize_new_values(part);
    EXCEPTION WHEN lock_not_available THEN
      held := true;
    END;
  END LOOP;
  UPDATE usage_rollup_state SET watermark = lo, advanced_at = now(),
    summarized_at = CASE WHEN held THEN summarized_at ELSE clock_timestamp() END;
  RETURN lo;
END $$;
