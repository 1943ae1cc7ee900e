-- The expert registry in full (expertise levels, languages, declared conflicts, unavailable
-- periods), the policy numbers matching needs on each request, and each request's council
-- proposal with its explanation: members of a proposal not yet confirmed count against
-- their load, so concurrent proposals never over-commit an expert.

ALTER TABLE experts ADD COLUMN expertise jsonb NOT NULL DEFAULT '{}';
ALTER TABLE experts ADD COLUMN languages text[] NOT NULL DEFAULT '{vi}';
ALTER TABLE experts ADD COLUMN conflicts text[] NOT NULL DEFAULT '{}';
ALTER TABLE experts ADD COLUMN unavailable jsonb NOT NULL DEFAULT '[]';
UPDATE experts SET expertise = (SELECT jsonb_object_agg(f, 3) FROM unnest(fields) f)
    WHERE expertise = '{}';

ALTER TABLE requests ADD COLUMN council_size integer;
ALTER TABLE requests ADD COLUMN alternates integer;
ALTER TABLE requests ADD COLUMN review_window_days integer;

CREATE TABLE councils (
    request_id    text PRIMARY KEY REFERENCES requests (id),
    proposal      jsonb NOT NULL,
    status        text NOT NULL CHECK (status IN ('proposed', 'confirmed')),
    proposed_at   timestamptz NOT NULL,
    confirmed_at  timestamptz,
    confirmed_by  text
);
