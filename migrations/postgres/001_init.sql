-- nonstop on PostgreSQL: the same jobs, checkpoints and matrices as the SQLite schema (migrations/001–005), in
-- PostgreSQL's types. Applied by src/store/postgres-migrate.ts in one transaction, under an advisory lock.
-- Times are timestamptz written with the database's clock (now()): every node reads the same clock.

-- Version of a job's state: every insert or update takes the next number (a per-row order, not commit order).
CREATE SEQUENCE job_versions AS bigint;

CREATE TABLE jobs (
  -- GENERATED ALWAYS: an id is never handed out twice, even after the newest job is deleted (a sequence does
  -- not go back), and no insert can choose one without OVERRIDING SYSTEM VALUE.
  id                bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  type              text    NOT NULL DEFAULT 'lyapunov',
  name              text,
  params            text    NOT NULL,                      -- JSON as submitted (text: the bytes are kept as they are)
  priority          integer NOT NULL DEFAULT 0,
  status            text    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'done', 'failed', 'canceled')),
  step              integer NOT NULL DEFAULT 0,
  steps             integer NOT NULL,
  progress          double precision NOT NULL DEFAULT 0,   -- 0..100
  result            text,                                  -- JSON, set when done
  error             text,
  attempts          integer NOT NULL DEFAULT 0,
  lease             integer NOT NULL DEFAULT 0,            -- +1 at every claim; with worker, the fencing token
  worker            text,                                  -- token of the worker process holding the lease
  pid               integer,
  pid_start         bigint,                                -- start time of that pid (clock ticks since boot)
  heartbeat_at      timestamptz,
  stop_request      text    CHECK (stop_request IN ('cancel', 'release', 'timeout')),
  stop_requested_at timestamptz,
  timeout_ms        bigint,
  idempotency_key   text    UNIQUE,
  retry_of          bigint,
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  seq               bigint  NOT NULL DEFAULT 0             -- version: set by jobs_version below
);

CREATE INDEX jobs_status_id ON jobs (status, id);
CREATE INDEX jobs_queue ON jobs (priority DESC, id) WHERE status = 'pending';
CREATE INDEX jobs_worker ON jobs (worker) WHERE status = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('done', 'failed', 'canceled');

CREATE FUNCTION jobs_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.seq := nextval('job_versions');
  RETURN NEW;
END $$;
CREATE TRIGGER jobs_version BEFORE INSERT OR UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_version();

-- The latest checkpoint of a running (or released) job, apart from jobs so that listing never reads it.
CREATE TABLE checkpoints (
  job_id    bigint  PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  lease     integer NOT NULL,
  step      integer NOT NULL,
  state     bytea   NOT NULL,
  saved_at  timestamptz NOT NULL DEFAULT now()
);

-- The change feed. Every insert, update and delete of a job appends an entry under its transaction's id.
-- Sequences (and so `id`) are not assigned in commit order, so a reader never asks for "id above my cursor":
-- it reads entries of transactions below pg_snapshot_xmin(pg_current_snapshot()), all of which have ended,
-- in (xid, id) order after its (xid, id) cursor. An entry of a transaction still open holds the feed back;
-- it is never skipped. The reader joins the job's current row (a deleted job's entries give its tombstone).
CREATE TABLE job_changes (
  xid       xid8    NOT NULL DEFAULT pg_current_xact_id(),
  id        bigint  GENERATED ALWAYS AS IDENTITY,
  job_id    bigint  NOT NULL,
  deleted   boolean NOT NULL DEFAULT false,
  PRIMARY KEY (xid, id)
);

CREATE FUNCTION jobs_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO job_changes (job_id, deleted) VALUES (OLD.id, true);
    RETURN OLD;
  END IF;
  INSERT INTO job_changes (job_id) VALUES (NEW.id);
  RETURN NEW;
END $$;
CREATE TRIGGER jobs_log_change AFTER INSERT OR UPDATE OR DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_log_change();

-- Entries at or below this cursor have been pruned: a client resuming from further back is sent `reset`.
CREATE TABLE job_changes_pruned (
  one  boolean PRIMARY KEY DEFAULT true CHECK (one),
  xid  xid8    NOT NULL,
  id   bigint  NOT NULL
);
INSERT INTO job_changes_pruned (xid, id) VALUES ('0', 0);

-- Matrices, as migrations/005: `data` float64 little-endian row-major, `corner` its top-left ≤ 32×32.
CREATE TABLE matrices (
  id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text    NOT NULL,
  rows        integer NOT NULL CHECK (rows BETWEEN 1 AND 8192),
  cols        integer NOT NULL CHECK (cols BETWEEN 1 AND 8192),
  sha256      text    NOT NULL,
  bytes       bigint  NOT NULL CHECK (bytes = rows::bigint * cols * 8),
  created_at  timestamptz NOT NULL DEFAULT now(),
  job_id      bigint  REFERENCES jobs (id) ON DELETE CASCADE,
  corner      bytea   NOT NULL,
  data        bytea   NOT NULL CHECK (length(data) = bytes)
);
CREATE INDEX matrices_job ON matrices (job_id) WHERE job_id IS NOT NULL;
