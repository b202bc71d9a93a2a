-- Nodes: every server process sharing this database records itself here and beats; the dashboard and /metrics list
-- them. On SQLite there is one server per file (server_lock), so one row; the table is the same on PostgreSQL,
-- where several nodes share the queue.
CREATE TABLE nodes (
  node_id       TEXT    PRIMARY KEY,                       -- NODE_ID, or host:port: kept across restarts
  boot_id       TEXT    NOT NULL,                          -- the machine's boot id: /proc is trusted only within it
  pid           INTEGER NOT NULL,
  host          TEXT    NOT NULL,
  started_at    INTEGER NOT NULL,                          -- epoch ms
  heartbeat_at  INTEGER NOT NULL
);

-- The node whose worker took the job at its latest claim (NULL before any): for a running job, the node that runs
-- it; for a finished one, the node that ran it last.
ALTER TABLE jobs ADD COLUMN node TEXT;

-- Periodic work (timeouts, sweeps, retention, feed pruning) runs once per interval across the nodes sharing the
-- database: a caller takes the slot by moving last_at forward only when the interval has passed.
CREATE TABLE periodic (
  name     TEXT    PRIMARY KEY,
  last_at  INTEGER NOT NULL
);
