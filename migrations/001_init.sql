-- Jobs: one row per submitted job. The server inserts and claims; the worker that owns the current lease
-- writes progress, heartbeat, result or error. Times are epoch milliseconds.
CREATE TABLE jobs (
  id               INTEGER PRIMARY KEY,
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
  lease            INTEGER NOT NULL DEFAULT 0,             -- fencing token, +1 at every claim
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
  updated_at       INTEGER NOT NULL
);

-- Listing newest first, with and without a status filter; the scheduler's queue order; worker lookups.
CREATE INDEX jobs_status_id ON jobs (status, id);
CREATE INDEX jobs_queue ON jobs (priority DESC, id) WHERE status = 'pending';
CREATE INDEX jobs_worker ON jobs (worker) WHERE status = 'running';
CREATE INDEX jobs_updated ON jobs (updated_at);

-- The latest checkpoint of a running job, apart from the jobs table so that listing jobs never reads a blob.
CREATE TABLE checkpoints (
  job_id    INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  lease     INTEGER NOT NULL,                              -- the lease that wrote it
  step      INTEGER NOT NULL,
  state     BLOB    NOT NULL,
  saved_at  INTEGER NOT NULL
);
