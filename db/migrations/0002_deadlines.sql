-- Deadlines: a request is flagged overdue when a deadline escalates (cleared when the work is
-- done or the deadline extended); outbox rows carry a topic so the reminders of a deadline
-- that is met, extended or cancelled can be withdrawn before they are delivered.

ALTER TABLE requests ADD COLUMN overdue boolean NOT NULL DEFAULT false;
CREATE INDEX requests_overdue_idx ON requests (overdue) WHERE overdue;

ALTER TABLE assignments ADD COLUMN overdue boolean NOT NULL DEFAULT false;

ALTER TABLE outbox ADD COLUMN topic text;
CREATE INDEX outbox_topic_pending_idx ON outbox (topic) WHERE status = 'pending';
