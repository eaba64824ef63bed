-- Spend budgets: a budget may limit spend in micro-units. Until the pricing engine exists the
-- gateway prices a request with its model's configured estimate prices (docs/BUDGETS.md).
ALTER TABLE budgets DROP CONSTRAINT budgets_metric_check;
ALTER TABLE budgets ADD CONSTRAINT budgets_metric_check
  CHECK (metric IN ('tokens', 'requests', 'spend'));
