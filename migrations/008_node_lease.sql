-- Each node's LEASE_MS, recorded as it registers: a job is taken from its node only once its heartbeat is older than
-- the lease its own worker fences itself on, whatever lease the node sweeping it has. NULL: registered by a server
-- from before this column (the sweeping node's own lease applies).
ALTER TABLE nodes ADD COLUMN lease_ms INTEGER;
