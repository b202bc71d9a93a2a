-- Matrices: uploaded by users, or the result of a job (job_id set: deleting the job deletes it).
-- AUTOINCREMENT so that an id is never given twice, even after the newest matrix was deleted: a client holding
-- an id can never be handed someone else's data under it.
-- `data` is the float64 little-endian, row-major bytes and comes last: reading the columns before it (listing,
-- metadata) never walks the blob's overflow pages.
CREATE TABLE matrices (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  name        TEXT    NOT NULL,
  rows        INTEGER NOT NULL CHECK (rows BETWEEN 1 AND 8192),
  cols        INTEGER NOT NULL CHECK (cols BETWEEN 1 AND 8192),
  sha256      TEXT    NOT NULL,                              -- hex, of the bytes in `data`
  bytes       INTEGER NOT NULL CHECK (bytes = rows * cols * 8),
  created_at  INTEGER NOT NULL,                              -- epoch ms
  job_id      INTEGER REFERENCES jobs (id) ON DELETE CASCADE, -- the job whose result this is, NULL for uploads
  -- The top-left corner, at most 32×32, float64 LE row-major: a preview reads this, never the whole matrix (SQLite
  -- loads a blob whole to take even a few bytes of it).
  corner      BLOB    NOT NULL,
  data        BLOB    NOT NULL CHECK (length(data) = bytes)
);

CREATE INDEX matrices_job ON matrices (job_id) WHERE job_id IS NOT NULL;
