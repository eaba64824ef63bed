-- The Batch API (docs/BATCH.md): uploaded files, batches and their lines.
--
-- Files live in PostgreSQL, one row per line (the bytes as uploaded, line end included), so
-- every gateway can serve them and the batch worker claims lines with plain row locks.
-- Output and error files have no lines of their own: their content is the batch's finished
-- lines (batch_lines.result), read in line order.
CREATE TABLE files (
  id            text COLLATE "C" PRIMARY KEY,
  tenant_id     text COLLATE "C" NOT NULL REFERENCES tenants (id),
  purpose       text NOT NULL CHECK (purpose IN ('batch', 'batch_output')),
  filename      text NOT NULL,
  bytes         bigint NOT NULL CHECK (bytes >= 0),
  line_count    integer NOT NULL CHECK (line_count >= 0),
  -- 'lines': content in file_lines; 'batch_output' / 'batch_errors': the batch's results.
  content_kind  text NOT NULL DEFAULT 'lines'
                CHECK (content_kind IN ('lines', 'batch_output', 'batch_errors')),
  batch_id      text COLLATE "C",
  created_at    timestamptz NOT NULL DEFAULT now(),
  CHECK ((content_kind = 'lines') = (batch_id IS NULL))
);
CREATE INDEX files_by_tenant ON files (tenant_id, id);

CREATE TABLE file_lines (
  file_id    text COLLATE "C" NOT NULL REFERENCES files (id) ON DELETE CASCADE,
  line_no    integer NOT NULL CHECK (line_no >= 1),
  content    text NOT NULL,
  PRIMARY KEY (file_id, line_no)
);

CREATE TABLE batches (
  id                 text COLLATE "C" PRIMARY KEY,
  tenant_id          text COLLATE "C" NOT NULL REFERENCES tenants (id),
  project_id         text COLLATE "C",
  api_key_id         text COLLATE "C" NOT NULL,
  endpoint           text NOT NULL CHECK (endpoint IN ('/v1/chat/completions', '/v1/completions')),
  input_file_id      text COLLATE "C" NOT NULL,
  completion_window  text NOT NULL,
  metadata           jsonb,
  status             text NOT NULL CHECK (status IN ('validating', 'in_progress', 'finalizing',
                       'completed', 'failed', 'expired', 'cancelling', 'cancelled')),
  line_count         integer NOT NULL,
  output_file_id     text COLLATE "C",
  error_file_id      text COLLATE "C",
  created_at         timestamptz NOT NULL DEFAULT now(),
  expires_at         timestamptz NOT NULL,
  in_progress_at     timestamptz,
  finalizing_at      timestamptz,
  completed_at       timestamptz,
  failed_at          timestamptz,
  expired_at         timestamptz,
  cancelling_at      timestamptz,
  cancelled_at       timestamptz
);
CREATE INDEX batches_by_tenant ON batches (tenant_id, id);
CREATE INDEX batches_running ON batches (created_at)
  WHERE status IN ('validating', 'in_progress', 'cancelling');

-- One row per input line. The request id is derived from the batch and the custom_id, and
-- `first_started_at` (set by the first claim, never changed) is the usage event's occurred_at:
-- a line run again after a crash carries the same ledger key, so it is stored and billed once.
-- A claim is a lease (owner, until), renewed while the line runs; a dead gateway's leases
-- lapse and another worker takes the line over.
CREATE TABLE batch_lines (
  batch_id          text COLLATE "C" NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
  line_no           integer NOT NULL CHECK (line_no >= 1),
  custom_id         text NOT NULL,
  request_id        text COLLATE "C" NOT NULL,
  body              text NOT NULL,
  first_started_at  timestamptz,
  attempts          integer NOT NULL DEFAULT 0,
  lease_owner       text,
  lease_until       timestamptz,
  done              boolean NOT NULL DEFAULT false,
  failed            boolean NOT NULL DEFAULT false,
  result            text,  -- the output or error file's JSONL line (with its newline)
  finished_at       timestamptz,
  PRIMARY KEY (batch_id, line_no),
  UNIQUE (batch_id, custom_id),
  CHECK (done = (result IS NOT NULL))
);
CREATE INDEX batch_lines_pending ON batch_lines (batch_id, line_no) WHERE NOT done;

-- The API's JSON shapes, in one place (OpenAI's file and batch objects).
CREATE FUNCTION tollgate_file_json(f files) RETURNS json LANGUAGE sql STABLE AS $$
  SELECT json_build_object('id', f.id, 'object', 'file', 'bytes', f.bytes,
    'created_at', extract(epoch FROM f.created_at)::bigint, 'filename', f.filename,
    'purpose', f.purpose, 'status', 'processed', 'status_details', NULL, 'expires_at', NULL)
$$;

CREATE FUNCTION tollgate_batch_json(b batches) RETURNS json LANGUAGE sql STABLE AS $$
  SELECT json_build_object('id', b.id, 'object', 'batch', 'endpoint', b.endpoint,
    'errors', NULL, 'input_file_id', b.input_file_id,
    'completion_window', b.completion_window, 'status', b.status,
    'output_file_id', b.output_file_id, 'error_file_id', b.error_file_id,
    'created_at', extract(epoch FROM b.created_at)::bigint,
    'in_progress_at', extract(epoch FROM b.in_progress_at)::bigint,
    'expires_at', extract(epoch FROM b.expires_at)::bigint,
    'finalizing_at', extract(epoch FROM b.finalizing_at)::bigint,
    'completed_at', extract(epoch FROM b.completed_at)::bigint,
    'failed_at', extract(epoch FROM b.failed_at)::bigint,
    'expired_at', extract(epoch FROM b.expired_at)::bigint,
    'cancelling_at', extract(epoch FROM b.cancelling_at)::bigint,
    'cancelled_at', extract(epoch FROM b.cancelled_at)::bigint,
    'request_counts', (SELECT json_build_object('total', b.line_count,
        'completed', count(*) FILTER (WHERE l.done AND NOT l.failed),
        'failed', count(*) FILTER (WHERE l.done AND l.failed))
      FROM batch_lines l WHERE l.batch_id = b.id),
    'metadata', b.metadata)
$$;

-- Moves one batch along its lifecycle, atomically (the batch row is locked): validating ->
-- in_progress; past its expiry, lines nobody runs become `batch_expired` errors; when every
-- line is done (in_progress) or none is running any more (cancelling), the output and error
-- files are made from the finished lines and the batch ends completed, expired or cancelled.
-- Returns the batch's status afterwards. Safe to call from any gateway at any time.
CREATE FUNCTION tollgate_advance_batch(p_batch text, p_output_id text, p_error_id text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  b batches;
  final text;
  n_ok integer;
  n_failed integer;
BEGIN
  SELECT * INTO b FROM batches WHERE id = p_batch FOR UPDATE;
  IF NOT FOUND THEN RETURN NULL; END IF;
  IF b.status = 'validating' THEN
    UPDATE batches SET status = 'in_progress', in_progress_at = now() WHERE id = p_batch;
    b.status := 'in_progress';
  END IF;
  IF b.status = 'in_progress' THEN
    IF b.expires_at <= now() THEN
      UPDATE batch_lines SET done = true, failed = true, finished_at = now(),
        lease_owner = NULL, lease_until = NULL,
        result = json_build_object('id', 'batch_req_' || substr(request_id, 5),
          'custom_id', custom_id, 'response', NULL,
          'error', json_build_object('code', 'batch_expired',
            'message', 'This line was not run before the batch expired.'))::text || E'\n'
      WHERE batch_id = p_batch AND NOT done
        AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until < now());
    END IF;
    IF EXISTS (SELECT 1 FROM batch_lines WHERE batch_id = p_batch AND NOT done) THEN
      RETURN b.status;
    END IF;
    final := CASE WHEN b.expires_at <= now() THEN 'expired' ELSE 'completed' END;
  ELSIF b.status = 'cancelling' THEN
    IF EXISTS (SELECT 1 FROM batch_lines WHERE batch_id = p_batch AND NOT done
               AND lease_owner IS NOT NULL AND lease_until > now()) THEN
      RETURN b.status;
    END IF;
    final := 'cancelled';
  ELSE
    RETURN b.status;
  END IF;

  SELECT count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed)
    INTO n_ok, n_failed FROM batch_lines WHERE batch_id = p_batch AND done;
  IF n_ok > 0 THEN
    INSERT INTO files (id, tenant_id, purpose, filename, bytes, line_count, content_kind, batch_id)
    SELECT p_output_id, b.tenant_id, 'batch_output', b.id || '_output.jsonl',
           sum(octet_length(result)), count(*), 'batch_output', b.id
    FROM batch_lines WHERE batch_id = p_batch AND done AND NOT failed;
  END IF;
  IF n_failed > 0 THEN
    INSERT INTO files (id, tenant_id, purpose, filename, bytes, line_count, content_kind, batch_id)
    SELECT p_error_id, b.tenant_id, 'batch_output', b.id || '_error.jsonl',
           sum(octet_length(result)), count(*), 'batch_errors', b.id
    FROM batch_lines WHERE batch_id = p_batch AND done AND failed;
  END IF;
  UPDATE batches SET status = final, finalizing_at = now(),
    output_file_id = CASE WHEN n_ok > 0 THEN p_output_id END,
    error_file_id = CASE WHEN n_failed > 0 THEN p_error_id END,
    completed_at = CASE WHEN final = 'completed' THEN now() END,
    expired_at = CASE WHEN final = 'expired' THEN now() END,
    cancelled_at = CASE WHEN final = 'cancelled' THEN now() END
  WHERE id = p_batch;
  RETURN final;
END $$;
