-- Notifications: every outbox row is delivered once per channel (inbox, e-mail, webhook), each
-- attempt recorded; agencies register a webhook endpoint with a signing secret.

ALTER TABLE outbox DROP CONSTRAINT outbox_recipient_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_recipient_kind_check
    CHECK (recipient_kind IN ('agency', 'expert', 'coordinator', 'operator'));
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled'));
-- The language the recipient reads (templates exist in each).
ALTER TABLE outbox ADD COLUMN language text NOT NULL DEFAULT 'vi'
    CHECK (language IN ('vi', 'en'));
-- Inbox: read/unread, per recipient.
ALTER TABLE outbox ADD COLUMN read_at timestamptz;
-- How many times an operator asked to deliver a failed row again.
ALTER TABLE outbox ADD COLUMN retries integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN updated_at timestamptz;

-- Agency rows name their agency, so an agency's inbox is one index lookup.
UPDATE outbox o SET recipient_code = r.agency_code
  FROM requests r WHERE r.id = o.request_id AND o.recipient_kind = 'agency'
   AND o.recipient_code IS NULL;
CREATE INDEX outbox_inbox_idx ON outbox (recipient_kind, recipient_code, id);
CREATE INDEX outbox_failed_idx ON outbox (id) WHERE status = 'failed';

CREATE TABLE deliveries (
    outbox_id     bigint NOT NULL REFERENCES outbox (id),
    channel       text NOT NULL CHECK (channel IN ('inbox', 'email', 'webhook')),
    target        text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    delivered_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (outbox_id, channel)
);

CREATE TABLE delivery_attempts (
    id           bigserial PRIMARY KEY,
    outbox_id    bigint NOT NULL,
    channel      text NOT NULL,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL CHECK (outcome IN ('delivered', 'error')),
    status_code  integer,
    error        text,
    FOREIGN KEY (outbox_id, channel) REFERENCES deliveries (outbox_id, channel)
);
CREATE INDEX delivery_attempts_row_idx ON delivery_attempts (outbox_id, channel, id);

-- One endpoint per agency. The secret signs (HMAC) so it is kept, not hashed; during a
-- rotation the previous secret signs too, until previous_until.
CREATE TABLE webhook_endpoints (
    agency_code      text PRIMARY KEY,
    url              text NOT NULL,
    secret           text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    previous_secret  text,
    previous_until   timestamptz,
    enabled          boolean NOT NULL DEFAULT true,
    disabled_at      timestamptz,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
