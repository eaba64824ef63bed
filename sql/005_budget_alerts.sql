-- Budget alerts: thresholds in percent of a budget's limit, crossed at most once per window
-- instance (Redis decides, atomically with the settlement), recorded here and delivered as an
-- HMAC-SHA256-signed webhook POST, retried with backoff (gateway/alert_dispatcher).
ALTER TABLE budgets
  ADD COLUMN alert_thresholds integer[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(alert_thresholds) <= 10 AND 1 <= ALL (alert_thresholds)
           AND 1000 >= ALL (alert_thresholds)),
  ADD COLUMN alert_webhook_url text,
  ADD COLUMN alert_webhook_secret text,
  ADD CHECK ((alert_webhook_url IS NULL) = (alert_webhook_secret IS NULL));

CREATE TABLE budget_alerts (
  id               text COLLATE "C" PRIMARY KEY,
  tenant_id        text COLLATE "C" NOT NULL REFERENCES tenants (id),
  budget_id        text COLLATE "C" NOT NULL REFERENCES budgets (id),
  window_start     timestamptz NOT NULL,
  threshold        integer NOT NULL,        -- percent of the limit
  limit_value      bigint NOT NULL,
  used             bigint NOT NULL,         -- the settled usage that crossed it
  payload          text NOT NULL,           -- the JSON body, signed as sent
  webhook_url      text,                    -- NULL: recorded only
  status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'recorded')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  UNIQUE (budget_id, window_start, threshold)
);
CREATE INDEX budget_alerts_due ON budget_alerts (next_attempt_at) WHERE status = 'pending';
