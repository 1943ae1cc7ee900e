-- The reports' tables: each request as the measures count it (domain.reports.request_rows),
-- local dates and working days worked out once, so that a period's report is sums and
-- percentiles over indexed rows rather than a reading of every audit event. The transaction
-- that records a transition rewrites its request's rows (db.reports.refresh); rows are never
-- the record, only a reading of it, and `advisory migrate` rebuilds any that are missing.
-- Every table carries the request's agency, kind and fields (lower-cased, as filters match
-- them), so that a filtered report reads one table per measure, without a join.

CREATE TABLE report_requests (
    request_id       text PRIMARY KEY REFERENCES requests (id),
    agency_code      text NOT NULL,
    kind             text NOT NULL,
    fields           text[] NOT NULL,
    received_at      timestamptz NOT NULL,
    received_on      date NOT NULL,
    delivered_at     timestamptz,
    delivered_on     date,
    turnaround_days  integer,
    ending           text,           -- withdrawn, declined, lapsed
    ended_at         timestamptz,
    ended_on         date,
    adoption_status  text,           -- the agency's answer, if it gave one
    adoption_due     timestamptz,
    answered_late    boolean NOT NULL
);
CREATE INDEX report_requests_received_idx ON report_requests (received_on);
CREATE INDEX report_requests_delivered_idx ON report_requests (delivered_on)
    WHERE delivered_on IS NOT NULL;
CREATE INDEX report_requests_ended_idx ON report_requests (ended_on) WHERE ended_on IS NOT NULL;
CREATE INDEX report_requests_fields_idx ON report_requests USING gin (fields);

-- A stage the request left: how long it stayed, and how it left.
CREATE TABLE report_visits (
    request_id  text NOT NULL REFERENCES report_requests ON DELETE CASCADE,
    agency_code text NOT NULL,
    kind        text NOT NULL,
    fields      text[] NOT NULL,
    stage       text NOT NULL,
    left_at     timestamptz NOT NULL,
    left_on     date NOT NULL,
    left_by     text NOT NULL,
    days        integer NOT NULL
);
CREATE INDEX report_visits_left_idx ON report_visits (left_on);
CREATE INDEX report_visits_request_idx ON report_visits (request_id);

-- A party's deadline that counts (or will, once due): on time or late, on which day.
CREATE TABLE report_deadlines (
    request_id   text NOT NULL REFERENCES report_requests ON DELETE CASCADE,
    agency_code text NOT NULL,
    kind        text NOT NULL,
    fields      text[] NOT NULL,
    party        text NOT NULL,
    deadline     text NOT NULL,
    expert_code  text,
    due          timestamptz NOT NULL,
    counted_at   timestamptz NOT NULL,
    counted_on   date NOT NULL,
    on_time      boolean NOT NULL,
    settled      boolean NOT NULL   -- false: still open, late once `due` has passed
);
CREATE INDEX report_deadlines_counted_idx ON report_deadlines (counted_on);
CREATE INDEX report_deadlines_request_idx ON report_deadlines (request_id);

CREATE TABLE report_extensions (
    request_id  text NOT NULL REFERENCES report_requests ON DELETE CASCADE,
    agency_code text NOT NULL,
    kind        text NOT NULL,
    fields      text[] NOT NULL,
    party       text NOT NULL,
    deadline    text NOT NULL,
    at          timestamptz NOT NULL,
    on_day      date NOT NULL,
    days        integer NOT NULL
);
CREATE INDEX report_extensions_day_idx ON report_extensions (on_day);
CREATE INDEX report_extensions_request_idx ON report_extensions (request_id);

-- An expert's invitation and how it was answered; open from `invited_at` to `closed_at`.
CREATE TABLE report_assignments (
    request_id   text NOT NULL REFERENCES report_requests ON DELETE CASCADE,
    agency_code text NOT NULL,
    kind        text NOT NULL,
    fields      text[] NOT NULL,
    expert_code  text NOT NULL,
    invited_at   timestamptz NOT NULL,
    invited_on   date NOT NULL,
    answer       text,           -- accepted, declined, expired, cancelled; none yet: NULL
    closed_at    timestamptz
);
CREATE INDEX report_assignments_invited_idx ON report_assignments (invited_on);
CREATE INDEX report_assignments_open_idx ON report_assignments (invited_at);
CREATE INDEX report_assignments_request_idx ON report_assignments (request_id);
CREATE INDEX report_assignments_expert_idx ON report_assignments (expert_code, invited_at);
CREATE INDEX report_assignments_closed_idx ON report_assignments (closed_at)
    WHERE closed_at IS NOT NULL;

-- Each expert's load in each month over every request: the most assignments open at once
-- (the measure "expert load"), from the month of their first invitation to the month of
-- their latest opening or closing. A report without filters over whole months reads it;
-- db.reports.recount rewrites an expert's months whenever one of their assignments changes.
CREATE TABLE report_expert_months (
    expert_code  text NOT NULL,
    month        date NOT NULL,   -- its first day
    peak         integer NOT NULL,
    PRIMARY KEY (expert_code, month)
);
