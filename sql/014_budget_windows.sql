-- Budget windows of any length and budgets limited to models (docs/BUDGETS.md): a window is a
-- named one (now with the calendar 'week', ISO from Monday, and 'quarter') or a sliding
-- duration written as a whole number of s, m, h or d ('90s', '15m', '3h', '2d'; the admin API
-- holds it between one minute and 31 days). `models` lists the models whose requests a budget
-- counts; NULL counts every model.
ALTER TABLE budgets DROP CONSTRAINT budgets_time_window_check;
ALTER TABLE budgets ADD CONSTRAINT budgets_time_window_check
  CHECK (time_window IN ('minute', 'hour', 'day', 'week', 'month', 'quarter', 'lifetime')
         OR time_window ~ '^[1-9][0-9]{0,8}[smhd]$');
ALTER TABLE budgets ADD COLUMN models text[]
  CHECK (models IS NULL OR (cardinality(models) > 0 AND array_position(models, NULL) IS NULL));

CREATE OR REPLACE VIEW finance.budgets AS
SELECT tenant_id, id, scope, scope_id, metric, time_window, limit_value, mode, status, created_at,
       models
FROM public.budgets;
