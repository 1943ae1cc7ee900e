-- Operators: the people who keep the engine running (the Temporal UI, deliveries, registries).
-- They read everything and act on no request; a registry entry lets them sign in to the
-- portal (and, through its session, read the Temporal UI in clear). API tokens may still name
-- an operator who is not registered.
CREATE TABLE operators (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    language    text NOT NULL DEFAULT 'vi',
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
