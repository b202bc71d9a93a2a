-- What the SQLite schema gained in migrations/006 and 007, on PostgreSQL: each job's history, the indexes of the
-- list's filters and of throughput, the node holding a running job, the nodes table and the periodic-work slots.

-- Each job's history: one row per event, written by src/store/postgres.ts in the same transaction as the change of
-- the job it describes, so the history never disagrees with the job (a fenced-out worker write changes no job row
-- and adds no event). Deleted with its job (a delete, a bulk delete, retention). The events of one job are written
-- by transactions that hold its row lock (or insert it), so their ids follow the order of the job's changes.
CREATE TABLE job_events (
  id       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id   bigint  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  at       timestamptz NOT NULL DEFAULT now(),
  kind     text    NOT NULL CHECK (kind IN ('submitted', 'claimed', 'started', 'checkpoint', 'stop-requested',
                                            'released', 'lost', 'failed', 'canceled', 'done')),
  attempt  integer NOT NULL,                               -- the job's attempts count when it happened
  lease    integer NOT NULL,                               -- the job's lease then (which attempt wrote it)
  step     integer NOT NULL,                               -- the job's step then
  detail   text                                            -- JSON: reason, pid, resumedFromStep, by, …
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Bounded per job, as on SQLite: a job released at every restart, or checkpointing for days, keeps its submit and
-- its latest 200 events; older ones are dropped as new ones come.
CREATE FUNCTION job_events_bounded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM job_events WHERE job_id = NEW.job_id AND kind <> 'submitted' AND id <= (
    SELECT id FROM job_events WHERE job_id = NEW.job_id ORDER BY id DESC LIMIT 1 OFFSET 200);
  RETURN NULL;
END $$;
CREATE TRIGGER job_events_bounded AFTER INSERT ON job_events FOR EACH ROW EXECUTE FUNCTION job_events_bounded();

-- Which node's worker holds a running job (the claiming node's id). As on SQLite it is set by a claim and left as
-- it is when the attempt ends; only running jobs count for a node.
ALTER TABLE jobs ADD COLUMN node text;
CREATE INDEX jobs_node ON jobs (node) WHERE status = 'running';

-- Filters of the list (src/store/postgres-filter.ts): type with or without statuses, newest first without a sort;
-- the creation range on created_at (also per status, for counts).
CREATE INDEX jobs_type_id ON jobs (type, id);
CREATE INDEX jobs_status_type_id ON jobs (status, type, id);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_status_created ON jobs (status, created_at);
-- A bulk retry skips a job already retried: found by the job it retries.
CREATE INDEX jobs_retry_of ON jobs (retry_of) WHERE retry_of IS NOT NULL;
-- Throughput per minute reads finished jobs by their end: jobs_finished (001) covers it.

-- Nodes: every server process sharing this database records itself here and beats; the dashboard and /metrics list
-- them. A restarted node keeps its id and gets its new pid, boot id and start time.
CREATE TABLE nodes (
  node_id       text    PRIMARY KEY,                       -- NODE_ID, or host:port: kept across restarts
  boot_id       text    NOT NULL,                          -- the machine's boot id: /proc is trusted only within it
  pid           integer NOT NULL,
  host          text    NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- Periodic work (timeouts, sweeps, retention, feed pruning) runs once per interval across the nodes: a caller
-- takes the slot by moving last_at forward (INSERT … ON CONFLICT DO UPDATE … WHERE) only when the interval has
-- passed by the database's clock. The row lock orders racing callers; the later ones see the moved last_at.
CREATE TABLE periodic (
  name     text    PRIMARY KEY,
  last_at  timestamptz NOT NULL
);
