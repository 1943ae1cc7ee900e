-- The web portal's sign-in: sessions, the single-use links already used, and sign-in
-- requests counted for the rate limits. All in PostgreSQL so that every API process shares
-- them: a link used through one process is used for all, a limit counts every process's sends.

-- A session's id is a random value known only to the browser's cookie; only its SHA-256 is
-- kept, so a copy of this table signs nobody in. `language` is the registry's for the person
-- as they signed in. A session ends after `idle` without a request, at `expires_at` in any
-- case, or when revoked (sign-out, an operator revoking every session of a person).
CREATE TABLE portal_sessions (
    id_hash       text PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('agency', 'expert', 'coordinator', 'operator')),
    code          text NOT NULL,
    email         text NOT NULL,
    language      text NOT NULL DEFAULT 'vi',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX portal_sessions_person_idx ON portal_sessions (role, code);

-- A link is signed and carries its own expiry; what makes it single-use is its digest here.
-- A row is needed only while the link could still be valid (`expires_at`), then purged.
CREATE TABLE portal_used_links (
    digest      text PRIMARY KEY,
    used_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Each sign-in request that was handled (not those refused by a limit), by address and by
-- client address, for the per-address and per-client limits over a sliding window.
CREATE TABLE portal_sign_in_requests (
    id            bigserial PRIMARY KEY,
    email         text NOT NULL,
    client        text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX portal_sign_in_requests_email_idx ON portal_sign_in_requests (email, requested_at);
CREATE INDEX portal_sign_in_requests_client_idx ON portal_sign_in_requests (client, requested_at);
