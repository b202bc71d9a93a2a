-- The lease of each attempt, recorded when it is claimed (as migrations/010 on SQLite): the LEASE_MS its worker
-- fences itself on, whatever the node's current one is after a restart. NULL: claimed before this column.
ALTER TABLE jobs ADD COLUMN lease_ms integer;
-- The attempt (jobs.lease) lease_ms was recorded for: it counts only while this equals lease. In a rolling upgrade
-- a node older than this column claims without touching lease_ms, which then belongs to another attempt.
ALTER TABLE jobs ADD COLUMN lease_ms_lease integer;
