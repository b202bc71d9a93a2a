-- Job ids are never reused: a plain INTEGER PRIMARY KEY hands out max(id) + 1, so deleting the newest job gave
-- its id to the next submit, and a worker still holding (that id, lease 1) could write into the new job.
-- AUTOINCREMENT needs the table rebuilt; rows, indexes and triggers are carried over as they were
-- (migrate() turns foreign keys off around this file, so checkpoints stay attached to their jobs).
-- pid_start records which process the pid is: its start time in clock ticks since boot (/proc/<pid>/stat
-- field 22), written by the worker with its first heartbeat, so a pid the OS has since given to another
-- process is never trusted or signalled.
CREATE TABLE jobs_new (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  type             TEXT    NOT NULL DEFAULT 'lyapunov',
  name             TEXT,
  params           TEXT    NOT NULL,                       -- JSON, e.g. {"n":400,"steps":20,"seed":123}
  priority         INTEGER NOT NULL DEFAULT 0,
  status           TEXT    NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'done', 'failed', 'canceled')),
  step             INTEGER NOT NULL DEFAULT 0,
  steps            INTEGER NOT NULL,
  progress         REAL    NOT NULL DEFAULT 0,             -- 0..100
  result           TEXT,                                   -- JSON, set when done
  error            TEXT,                                   -- reason, set when failed
  attempts         INTEGER NOT NULL DEFAULT 0,             -- attempts charged so far
  lease            INTEGER NOT NULL DEFAULT 0,             -- +1 at every claim; with worker, the fencing token
  worker           TEXT,                                   -- token of the worker process holding the lease
  pid              INTEGER,                                -- that worker's pid
  heartbeat_at     INTEGER,
  stop_request     TEXT    CHECK (stop_request IN ('cancel', 'release', 'timeout')),
  stop_requested_at INTEGER,
  timeout_ms       INTEGER,                                -- run-time limit, NULL for none
  idempotency_key  TEXT    UNIQUE,
  retry_of         INTEGER,                                -- the job this one retries
  created_at       INTEGER NOT NULL,
  started_at       INTEGER,                                -- first time a worker took it
  finished_at      INTEGER,
  updated_at       INTEGER NOT NULL,
  seq              INTEGER NOT NULL DEFAULT 0,
  pid_start        INTEGER                                 -- start time of that pid (clock ticks since boot)
);

INSERT INTO jobs_new (id, type, name, params, priority, status, step, steps, progress, result, error, attempts, lease,
  worker, pid, heartbeat_at, stop_request, stop_requested_at, timeout_ms, idempotency_key, retry_of, created_at,
  started_at, finished_at, updated_at, seq)
SELECT id, type, name, params, priority, status, step, steps, progress, result, error, attempts, lease,
  worker, pid, heartbeat_at, stop_request, stop_requested_at, timeout_ms, idempotency_key, retry_of, created_at,
  started_at, finished_at, updated_at, seq
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

-- As in 001 and 002.
CREATE INDEX jobs_status_id ON jobs (status, id);
CREATE INDEX jobs_queue ON jobs (priority DESC, id) WHERE status = 'pending';
CREATE INDEX jobs_worker ON jobs (worker) WHERE status = 'running';
CREATE INDEX jobs_seq ON jobs (seq);

CREATE TRIGGER jobs_seq_on_insert AFTER INSERT ON jobs
BEGIN
  UPDATE jobs SET seq = (SELECT max(seq) FROM jobs) + 1 WHERE id = NEW.id;
END;

-- The guard skips the trigger's own update of seq.
CREATE TRIGGER jobs_seq_on_update AFTER UPDATE ON jobs WHEN NEW.seq = OLD.seq
BEGIN
  UPDATE jobs SET seq = (SELECT max(seq) FROM jobs) + 1 WHERE id = NEW.id;
END;

-- One server per database. The server that schedules holds this row and refreshes heartbeat_at every second;
-- another server refuses to start while the holder is alive (see src/server-lock.ts).
CREATE TABLE server_lock (
  id            INTEGER PRIMARY KEY CHECK (id = 1),
  holder        TEXT    NOT NULL,                        -- random id of the holding server instance
  pid           INTEGER NOT NULL,
  pid_start     INTEGER,                                 -- its start time (clock ticks since boot), when known
  boot_id       TEXT,                                    -- /proc/sys/kernel/random/boot_id of its machine, when known
  host          TEXT    NOT NULL,                        -- os.hostname()
  started_at    INTEGER NOT NULL,                        -- epoch ms
  heartbeat_at  INTEGER NOT NULL                         -- epoch ms
);
