-- Counts filtered by a name ("name contains", /api/jobs/counts?name=…) are answered per status: with only
-- (status, id) or (status, created_at) to go on, each count read every row of its status from the table to test
-- its name (~35 ms at 100 000 jobs). On (status, name) the test runs on the index alone, which is a fraction of the
-- rows' size (~10 ms). Lists keep their (status, id) order; the planner uses this index for counts.
CREATE INDEX jobs_status_name ON jobs (status, name);
