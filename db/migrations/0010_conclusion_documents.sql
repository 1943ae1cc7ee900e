-- The approved conclusion is a document of its request: a PDF numbered once, on approval, from
-- the Union's sequence (a yearly count, as Decree 30/2020/NĐ-CP numbers a body's documents).
-- A number is never reused: rows are never deleted, and a returned draft never gets one.

ALTER TABLE documents ADD COLUMN kind text NOT NULL DEFAULT 'submitted'
    CHECK (kind IN ('submitted', 'conclusion'));

CREATE TABLE conclusion_numbers (
    request_id   text PRIMARY KEY REFERENCES requests (id),
    year         integer NOT NULL,
    seq          integer NOT NULL,
    number       text NOT NULL,        -- as printed: "12/LHH-TVPB"
    document_id  text NOT NULL REFERENCES documents (id),
    issued_at    timestamptz NOT NULL,
    UNIQUE (year, seq)
);
