-- The lease of each attempt, recorded when it is claimed (as migrations/010 on SQLite): the LEASE_MS its worker
-- fences itself on, whatever the node's current one is after a restart. NULL: claimed before this column.
ALTER TABLE jobs ADD COLUMN lease_ms integer;
