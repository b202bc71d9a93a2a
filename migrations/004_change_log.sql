-- The change counter lives outside the job rows, so it only ever increases: deleting the newest jobs, or a
-- retention purge that empties the table, can no longer make later changes reuse numbers a client has
-- already seen (migration 002 took max(seq) + 1 over the rows that were left).
--
-- change_counter has exactly one row: `n` is the number of the latest change; `keep_tombstones` is how many
-- change numbers a deletion's tombstone is kept for. A client resuming from further back than that cannot be
-- told of every deletion and is sent `reset` instead (src/jobs/store.ts, resumableAfter).
CREATE TABLE change_counter (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  n INTEGER NOT NULL,
  keep_tombstones INTEGER NOT NULL CHECK (keep_tombstones > 0)
);
INSERT INTO change_counter (one, n, keep_tombstones) VALUES (1, (SELECT coalesce(max(seq), 0) FROM jobs), 100000);

-- A deleted job leaves its id under a change number of its own, so the stream can announce the deletion
-- to clients that are connected and to clients that resume later with Last-Event-ID, whoever deleted it.
CREATE TABLE job_tombstones (
  seq INTEGER PRIMARY KEY,
  job_id INTEGER NOT NULL,
  deleted_at INTEGER NOT NULL
);

DROP TRIGGER IF EXISTS jobs_seq_on_insert;
DROP TRIGGER IF EXISTS jobs_seq_on_update;

-- Each write takes the next number inside its own transaction; SQLite has one writer at a time, so the
-- numbers follow commit order exactly.
CREATE TRIGGER jobs_seq_on_insert AFTER INSERT ON jobs
BEGIN
  UPDATE change_counter SET n = n + 1;
  UPDATE jobs SET seq = (SELECT n FROM change_counter) WHERE id = NEW.id;
END;

-- The guard skips the trigger's own update of seq.
CREATE TRIGGER jobs_seq_on_update AFTER UPDATE ON jobs WHEN NEW.seq = OLD.seq
BEGIN
  UPDATE change_counter SET n = n + 1;
  UPDATE jobs SET seq = (SELECT n FROM change_counter) WHERE id = NEW.id;
END;

-- Every deletion (DELETE /api/jobs/:id, a retention purge, anything else) leaves a tombstone; tombstones older
-- than keep_tombstones changes are pruned here, so the table stays bounded without a timer.
CREATE TRIGGER jobs_tombstone_on_delete AFTER DELETE ON jobs
BEGIN
  UPDATE change_counter SET n = n + 1;
  INSERT INTO job_tombstones (seq, job_id, deleted_at)
    VALUES ((SELECT n FROM change_counter), OLD.id, CAST(unixepoch('subsec') * 1000 AS INTEGER));
  DELETE FROM job_tombstones WHERE seq <= (SELECT n - keep_tombstones FROM change_counter);
END;
