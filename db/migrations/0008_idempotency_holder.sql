-- Which API process holds an Idempotency-Key claim in progress: its process lock id
-- (db/liveness.py), an advisory lock that process holds for as long as it lives. A claim whose
-- holder's lock is free belongs to a process that died, and a retry with the key takes it over
-- at once. Claims without a holder (written before this) are taken over after five minutes.
ALTER TABLE idempotency_keys ADD COLUMN holder bigint;
