-- The people and bodies who act are registry entries, never text typed in a request.
--
-- Agencies: the official name, the organisation names under which the agency's staff appear
-- in the expert registry (conflict rules compare these, not a submission's wording), the
-- language its notifications are written in, its contacts, and whether it may submit.
-- Coordinators: the Union's office staff, who screen, form councils and sign conclusions.
-- Read marks belong to the person who read: the office's shared notifications are read by
-- each coordinator on their own.

ALTER TABLE agencies ADD COLUMN aliases text[] NOT NULL DEFAULT '{}';
ALTER TABLE agencies ADD COLUMN language text NOT NULL DEFAULT 'vi';
ALTER TABLE agencies ADD COLUMN contacts jsonb NOT NULL DEFAULT '[]';
ALTER TABLE agencies ADD COLUMN active boolean NOT NULL DEFAULT true;
ALTER TABLE agencies ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE coordinators (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    title       text NOT NULL,
    email       text NOT NULL,
    language    text NOT NULL DEFAULT 'vi',
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The signer's title as the registry had it when they signed.
ALTER TABLE conclusions ADD COLUMN approver_title text;

-- reader: role:code of the person (an agency's or an expert's code, a coordinator's code,
-- an operator's name).
CREATE TABLE inbox_reads (
    outbox_id  bigint NOT NULL REFERENCES outbox (id),
    reader     text NOT NULL,
    read_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (outbox_id, reader)
);
INSERT INTO inbox_reads (outbox_id, reader, read_at)
    SELECT id, recipient_kind || ':' || recipient_code, read_at
    FROM outbox WHERE read_at IS NOT NULL AND recipient_code IS NOT NULL;
ALTER TABLE outbox DROP COLUMN read_at;
