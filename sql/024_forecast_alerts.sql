-- Forecast alerts (docs/BUDGETS.md, "Forecast alerts"): a tenant's monthly spend budget can
-- alert when the cost preview's run-rate forecast of the billing period (docs/PRICING.md)
-- reaches a percent of its limit, once per threshold and month. Budget alerts get a kind:
-- `usage` (the settled usage crossed it, as before) or `forecast`; each kind fires once per
-- budget, window and threshold.
ALTER TABLE budgets
  ADD COLUMN forecast_alert_thresholds integer[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(forecast_alert_thresholds) <= 10 AND 1 <= ALL (forecast_alert_thresholds)
           AND 1000 >= ALL (forecast_alert_thresholds)),
  ADD CONSTRAINT budgets_forecast_alerts_check
    CHECK (cardinality(forecast_alert_thresholds) = 0
           OR (metric = 'spend' AND scope = 'tenant' AND time_window = 'month'));

ALTER TABLE budget_alerts
  ADD COLUMN kind text NOT NULL DEFAULT 'usage' CHECK (kind IN ('usage', 'forecast'));
ALTER TABLE budget_alerts DROP CONSTRAINT budget_alerts_budget_id_window_start_threshold_key;
ALTER TABLE budget_alerts ADD CONSTRAINT budget_alerts_once
  UNIQUE (budget_id, window_start, threshold, kind);
