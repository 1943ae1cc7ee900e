-- The read side at volume (benchmarks/read_side.py: 100,000 requests, a tenth of them open).
-- Each index serves a list people open often, in the order they read it, so a page is a short
-- index range and a LIMIT rather than a scan and a sort of every request.

-- GET /requests as the office reads it: newest first, keyed by (submitted_at, id) as its
-- cursor is, deep pages too. The kind and overdue filters, which keep many rows, walk it.
CREATE INDEX requests_submitted_idx ON requests (submitted_at, id);

-- GET /requests and the portal's "my requests" as an agency reads them: an agency that sends
-- little would otherwise have every other agency's requests read past.
CREATE INDEX requests_agency_submitted_idx ON requests (agency_code, submitted_at, id);

-- GET /requests?stage=…: one stage's requests, newest first. The open stages hold few of the
-- older requests, so a page past the first ones otherwise reads tens of thousands of rows.
CREATE INDEX requests_stage_submitted_idx ON requests (stage, submitted_at, id);

-- The office's board: the requests still open, in the board's order (deadline, then
-- submission), so it reads the rows it shows and stops. Its predicate is the board's filter,
-- word for word, or PostgreSQL would not know the index holds every row the board wants.
CREATE INDEX requests_open_idx ON requests (next_deadline, submitted_at, id)
    WHERE stage NOT IN ('closed', 'declined', 'withdrawn');

-- Requests overdue because one of their experts is (both lists show it, GET /requests filters
-- by it): few assignments are, and without this every assignment was read to find them.
CREATE INDEX assignments_overdue_idx ON assignments (request_id) WHERE overdue;

-- The board's "screened by": each request's last screening decision, and who took it, from
-- the index alone, instead of reading back through the request's audit trail.
CREATE INDEX audit_log_screening_idx ON audit_log (request_id, id) INCLUDE (actor)
    WHERE action IN ('screening_accepted', 'supplement_requested');
