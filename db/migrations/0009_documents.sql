-- Documents live in the engine. File contents are stored once per SHA-256 (blobs), in chunks
-- of rows rather than large objects: plain SQL that every API process and worker reads the
-- same way, written in the uploading transaction (an upload that fails leaves nothing), kept
-- by pg_dump, and streamed a chunk at a time in both directions.
--
-- A document is a named file of a request's round (0: intake, n: the n-th supplement), or an
-- upload not yet part of a request (request_id NULL, owned by its uploader). A document an
-- agency references by URI and digest has no blob: the engine records what it was told.

CREATE TABLE blobs (
    sha256        text PRIMARY KEY,
    size          bigint NOT NULL CHECK (size > 0),
    content_type  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE blob_chunks (
    sha256  text NOT NULL REFERENCES blobs (sha256),
    n       integer NOT NULL,
    data    bytea NOT NULL,
    PRIMARY KEY (sha256, n)
);

CREATE TABLE documents (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    sha256        text NOT NULL,
    size          bigint,
    content_type  text,
    uri           text,          -- a document the agency's own system keeps
    stored        boolean NOT NULL,  -- its bytes are in blobs
    uploaded_by   text NOT NULL,     -- role:code
    uploaded_at   timestamptz NOT NULL,
    request_id    text REFERENCES requests (id),
    round         integer,
    CHECK (stored = (uri IS NULL)),
    CHECK ((request_id IS NULL) = (round IS NULL))
);
CREATE INDEX documents_request_idx ON documents (request_id, round);
