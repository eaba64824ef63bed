-- A tenant's time zone (an IANA name): its day and calendar-month budget windows turn at local
-- midnight there. 'UTC' for every existing tenant.
ALTER TABLE tenants ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
