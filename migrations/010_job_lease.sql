-- The lease of each attempt, recorded when it is claimed: the LEASE_MS of the node that forked its worker, the one
-- that worker fences itself on. A node restarted with another LEASE_MS adopts the workers of its previous process,
-- which keep their old lease; judged by the node's new one (migrations/008), a shorter lease let another node take
-- a job from a worker still inside its own, and a longer one kept a lost job waiting. NULL: claimed before this
-- column (its node's recorded lease applies).
ALTER TABLE jobs ADD COLUMN lease_ms INTEGER;
-- The attempt (jobs.lease) lease_ms was recorded for. lease_ms counts only while this equals lease: a claim by a
-- server older than this column moves lease on without touching lease_ms, which then belongs to another attempt.
ALTER TABLE jobs ADD COLUMN lease_ms_lease INTEGER;
