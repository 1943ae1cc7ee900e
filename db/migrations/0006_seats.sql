-- A seat held for an expert on a request before their assignment exists. The check that admits
-- an expert (an alternate, an expert the coordinator adds or swaps in) writes it in the same
-- transaction, under the same advisory lock as council proposals, so two requests can never
-- both take an expert's last free seat. Once the assignment row exists its state alone counts,
-- and a request that has ended holds no seats: nothing needs releasing in the normal course.
CREATE TABLE seats (
    request_id   text NOT NULL REFERENCES requests (id),
    expert_code  text NOT NULL REFERENCES experts (code),
    reserved_at  timestamptz NOT NULL,
    PRIMARY KEY (request_id, expert_code)
);
