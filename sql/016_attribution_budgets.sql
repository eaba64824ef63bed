-- Budgets on the attribution dimensions (docs/ATTRIBUTION.md, docs/BUDGETS.md): scope end_user
-- (scope_id NULL: each end user its own counter; else that end user), tag (scope_id a tag key:
-- each value its own counter; key=value: that value) and session (like end_user).
ALTER TABLE budgets DROP CONSTRAINT budgets_scope_check;
ALTER TABLE budgets ADD CONSTRAINT budgets_scope_check
  CHECK (scope IN ('tenant', 'project', 'key', 'end_user', 'tag', 'session'));
ALTER TABLE budgets DROP CONSTRAINT budgets_check;
ALTER TABLE budgets ADD CONSTRAINT budgets_scope_id_check
  CHECK (CASE scope WHEN 'tenant' THEN scope_id IS NULL
                    WHEN 'project' THEN scope_id IS NOT NULL
                    WHEN 'key' THEN scope_id IS NOT NULL
                    WHEN 'tag' THEN scope_id IS NOT NULL
                    ELSE true END);
