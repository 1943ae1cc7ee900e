-- What a person is writing in a portal form (an expert's opinion, a chair's conclusion), kept
-- on the server on every save so that a closed tab or a refused action loses nothing; one
-- draft per person, request and action, replaced on each save, removed once the action is
-- taken.
CREATE TABLE portal_drafts (
    person      text NOT NULL,          -- as the audit log names them: "expert:E-017"
    request_id  text NOT NULL REFERENCES requests (id),
    action      text NOT NULL,          -- the catalogue's name: "opinion", "draft"
    fields      jsonb NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person, request_id, action)
);
