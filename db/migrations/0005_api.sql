-- HTTP API: bearer tokens (only their SHA-256 is kept) and the answers to Idempotency-Keys.

CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    token_hash    text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('agency', 'expert', 'coordinator', 'operator')),
    subject       text NOT NULL,
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- A key belongs to the token's holder (role + subject): the same key from two parties is two
-- keys. The first answer is kept and given again; a different request under it is refused.
CREATE TABLE idempotency_keys (
    role          text NOT NULL,
    subject       text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status_code   integer,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role, subject, key)
);
