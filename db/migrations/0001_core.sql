-- The durable record of every request. Temporal's history says where a request is in its
-- process; these tables are the record and the read model. Every transition writes its state,
-- one audit event and its outbox rows in one transaction, keyed by an idempotency key.

CREATE TABLE agencies (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE experts (
    code                text PRIMARY KEY,
    name                text NOT NULL,
    email               text NOT NULL,
    organisation        text NOT NULL,
    member_association  text NOT NULL,
    fields              text[] NOT NULL,
    load_limit          integer NOT NULL CHECK (load_limit > 0),
    active              boolean NOT NULL DEFAULT true,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX experts_fields_idx ON experts USING gin (fields);

CREATE TABLE requests (
    id                text PRIMARY KEY,
    workflow_id       text NOT NULL UNIQUE,
    agency_code       text NOT NULL REFERENCES agencies (code),
    agency_reference  text NOT NULL,
    kind              text NOT NULL,
    title             text NOT NULL,
    summary           text NOT NULL,
    expertise_fields  text[] NOT NULL,
    documents         jsonb NOT NULL,
    requested_by      jsonb NOT NULL,
    stage             text NOT NULL,
    next_deadline     timestamptz,
    submitted_at      timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    closed_at         timestamptz,
    UNIQUE (agency_code, agency_reference)
);
CREATE INDEX requests_stage_idx ON requests (stage, next_deadline);

CREATE TABLE assignments (
    request_id      text NOT NULL REFERENCES requests (id),
    expert_code     text NOT NULL REFERENCES experts (code),
    role            text NOT NULL CHECK (role IN ('chair', 'member')),
    state           text NOT NULL,
    invited_at      timestamptz NOT NULL,
    respond_by      timestamptz,
    responded_at    timestamptz,
    due_at          timestamptz,
    decline_reason  text,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (request_id, expert_code)
);
CREATE INDEX assignments_expert_idx ON assignments (expert_code, state);

CREATE TABLE opinions (
    request_id           text NOT NULL REFERENCES requests (id),
    expert_code          text NOT NULL REFERENCES experts (code),
    recommendation       text NOT NULL,
    summary              text NOT NULL,
    comments_for_agency  text NOT NULL,
    confidential_note    text NOT NULL DEFAULT '',
    submitted_at         timestamptz NOT NULL,
    PRIMARY KEY (request_id, expert_code)
);

CREATE TABLE conclusions (
    request_id        text NOT NULL REFERENCES requests (id),
    version           integer NOT NULL,
    recommendation    text NOT NULL,
    text              text NOT NULL,
    drafted_by        text NOT NULL,
    drafted_at        timestamptz NOT NULL,
    returned_comments text,
    returned_at       timestamptz,
    approved_by       text,
    approved_at       timestamptz,
    PRIMARY KEY (request_id, version)
);

CREATE TABLE adoption_answers (
    request_id   text PRIMARY KEY REFERENCES requests (id),
    status       text NOT NULL,
    explanation  text NOT NULL,
    answered_by  jsonb NOT NULL,
    answered_at  timestamptz NOT NULL
);

CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    request_id       text NOT NULL REFERENCES requests (id),
    at               timestamptz NOT NULL,
    actor            text NOT NULL,
    action           text NOT NULL,
    stage            text,
    details          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_request_idx ON audit_log (request_id, id);

-- Append-only: the audit trail is evidence, so the database itself refuses to rewrite it.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    request_id       text NOT NULL REFERENCES requests (id),
    recipient_kind   text NOT NULL CHECK (recipient_kind IN ('agency', 'expert', 'coordinator')),
    recipient_code   text,
    address          text NOT NULL,
    event            text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_pending_idx ON outbox (status, id);
