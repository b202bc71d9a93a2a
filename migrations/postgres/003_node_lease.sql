-- Each node's LEASE_MS, recorded as it registers (as migrations/008 on SQLite): nodes configured with different
-- leases never take a job from a worker still inside its own lease. NULL: registered by an older server.
ALTER TABLE nodes ADD COLUMN lease_ms integer;
