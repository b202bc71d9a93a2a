-- Each job's history: what happened to it, one row per event, written in the same transaction as the change of
-- the job it describes (src/jobs/store.ts), so the history can never disagree with the job. A fenced-out worker
-- write changes no job row and so adds no event. Deleted with its job (a delete, a bulk delete, retention).
CREATE TABLE job_events (
  id       INTEGER PRIMARY KEY,
  job_id   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  at       INTEGER NOT NULL,                                 -- epoch ms
  kind     TEXT    NOT NULL CHECK (kind IN ('submitted', 'claimed', 'started', 'checkpoint', 'stop-requested',
                                            'released', 'lost', 'failed', 'canceled', 'done')),
  attempt  INTEGER NOT NULL,                                 -- the job's attempts count when it happened
  lease    INTEGER NOT NULL,                                 -- the job's lease then (which attempt wrote it)
  step     INTEGER NOT NULL,                                 -- the job's step then
  detail   TEXT                                              -- JSON: reason, pid, resumedFromStep, by, …
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Bounded per job: a job released at every restart, or checkpointing for days, keeps its submit and its latest
-- KEEP events (the cap below); older ones are dropped as new ones come.
CREATE TRIGGER job_events_bounded AFTER INSERT ON job_events
BEGIN
  DELETE FROM job_events WHERE job_id = NEW.job_id AND kind <> 'submitted' AND id <= (
    SELECT id FROM job_events WHERE job_id = NEW.job_id ORDER BY id DESC LIMIT 1 OFFSET 200);
END;

-- Filters of the list (src/jobs/job-filter.ts): status and type, each newest first without a sort; the creation
-- time as the run of ids created in a range, and per status for counts. Throughput per minute (done / failed) reads finished jobs by their end.
CREATE INDEX jobs_type_id ON jobs (type, id);
CREATE INDEX jobs_status_type_id ON jobs (status, type, id);
CREATE INDEX jobs_created ON jobs (created_at);
-- A bulk retry skips a job already retried: found by the job it retries.
CREATE INDEX jobs_retry_of ON jobs (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX jobs_status_created ON jobs (status, created_at);
CREATE INDEX jobs_finished ON jobs (finished_at, status) WHERE finished_at IS NOT NULL;
