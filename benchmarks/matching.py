"""Council proposal time: 1,000 experts, 100 simultaneous requests solved as one batch
(min-cost flow), plus one request at a time against the same registry.

    .venv/bin/python -m benchmarks.matching [--experts 1000] [--requests 100] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import date, timedelta

from domain.matching import Candidate, MatchRequest, propose_councils
from domain.models import identities

FIELDS = [f"field-{i:02d}" for i in range(40)]
ASSOCIATIONS = [f"Hội {i}" for i in range(25)]
ORGS = [f"Tổ chức {i}" for i in range(120)]


def registry(n: int, rng: random.Random) -> list[Candidate]:
    experts = []
    for i in range(n):
        expertise = {f: rng.randint(1, 5) for f in rng.sample(FIELDS, rng.randint(1, 4))}
        start = date(2027, 1, 1) + timedelta(days=rng.randint(0, 120))
        experts.append(
            Candidate(
                code=f"E-{i:04d}",
                organisation=rng.choice(ORGS),
                member_association=rng.choice(ASSOCIATIONS),
                expertise=expertise,
                load=rng.randint(0, 2),
                load_limit=rng.randint(3, 5),
                active=rng.random() > 0.05,
                conflicts=tuple(rng.sample(ORGS, 1)) if rng.random() < 0.1 else (),
                unavailable=((start, start + timedelta(days=14)),) if rng.random() < 0.1 else (),
            )
        )
    return experts


def requests(n: int, rng: random.Random) -> list[MatchRequest]:
    return [
        MatchRequest(
            request_id=f"R-{i:04d}",
            requester=identities(f"A{i % 30}", rng.choice(ORGS), []),
            fields=tuple(rng.sample(FIELDS, rng.randint(1, 3))),
            council_size=rng.choice([3, 5, 5, 7]),
            alternates=3,
            window=(date(2027, 2, 1), date(2027, 3, 15)),
        )
        for i in range(n)
    ]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--experts", type=int, default=1000)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    rng = random.Random(a.seed)
    experts, reqs = registry(a.experts, rng), requests(a.requests, rng)
    batch_times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        result = propose_councils(reqs, experts)
        batch_times.append(time.perf_counter() - t)
    seats = sum(r.council_size for r in reqs)
    filled = sum(len(p.members) for p in result.values())
    short = sum(1 for p in result.values() if p.shortfall)
    single = []
    for r in reqs[:20]:
        t = time.perf_counter()
        propose_councils([r], experts)
        single.append(time.perf_counter() - t)
    print(f"registry: {a.experts} experts; {a.requests} simultaneous requests, {seats} seats")
    print(
        f"batch proposal (one min-cost flow): median {statistics.median(batch_times):.3f} s, "
        f"best {min(batch_times):.3f} s over {a.repeat} runs"
    )
    print(f"seats filled: {filled}/{seats}; requests short of experts: {short}")
    print(
        f"one request alone: median {statistics.median(single) * 1000:.1f} ms "
        f"(p max {max(single) * 1000:.1f} ms over {len(single)})"
    )


if __name__ == "__main__":
    main()
