-- A change counter. Every insert or update of a job gives it the next number, inside its own write transaction;
-- SQLite has one writer at a time, so the numbers follow commit order exactly, whatever the clocks of the
-- processes that wrote the rows. The event stream reads "seq > cursor": nothing missed, nothing sent twice.
ALTER TABLE jobs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET seq = id;
CREATE INDEX jobs_seq ON jobs (seq);
-- Nothing reads by updated_at any more; every heartbeat would keep paying for this index.
DROP INDEX jobs_updated;

CREATE TRIGGER jobs_seq_on_insert AFTER INSERT ON jobs
BEGIN
  UPDATE jobs SET seq = (SELECT max(seq) FROM jobs) + 1 WHERE id = NEW.id;
END;

-- The guard skips the trigger's own update of seq.
CREATE TRIGGER jobs_seq_on_update AFTER UPDATE ON jobs WHEN NEW.seq = OLD.seq
BEGIN
  UPDATE jobs SET seq = (SELECT max(seq) FROM jobs) + 1 WHERE id = NEW.id;
END;
