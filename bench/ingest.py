"""Ingest benchmark: the real API server against a raw driver insert, CSV backfill, ingest_health.

Prints figures; asserts nothing. Each phase starts its own uvicorn on 127.0.0.1 with a fresh
database (a temporary SQLite file, or a throw-away database created on the PostgreSQL server
named by --database-url and dropped afterwards).

    python bench/ingest.py                       # SQLite
    python bench/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/ingest.py --records 50000 --csv-rows 100000 --health-meters 100   # quick run
"""

import argparse
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.db import get_engine, migrate
from core.ingestion import sqlite_timestamp

T0 = datetime(2023, 1, 2, tzinfo=UTC)
PASSWORD = "bench-password-123"
WORKERS = int(os.environ.get("CEI_BENCH_WORKERS", "1"))


def ts_text(i: int) -> str:
    return (T0 + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(base_url: str | None, workdir: Path, name: str) -> Iterator[str]:
    """A new, migrated, empty database; PostgreSQL ones are dropped afterwards."""
    if not base_url:
        url = f"sqlite:///{(workdir / f'{name}.db').as_posix()}"
        migrate(url)
        yield url
        return
    server = make_url(base_url)
    dbname = f"cei_bench_{name}_{os.getpid()}"
    admin = get_engine(base_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}"'))
        conn.execute(text(f'CREATE DATABASE "{dbname}"'))
    url = server.set(database=dbname).render_as_string(hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def api_server(url: str, workdir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CEI_DATA_DIR": str(workdir),
        "CEI_JWT_SECRET": secrets.token_urlsafe(48),
        "CEI_BCRYPT_ROUNDS": "4",
        "CEI_MAX_BODY_BYTES": str(50_000_000),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(WORKERS),
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("the API server did not start")
        time.sleep(0.2)
    try:
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process (Linux VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def setup_org(base: str, sites: dict[str, list[str]]) -> tuple[dict, dict]:
    """Sign up, register sites and meters; returns (admin headers, token headers)."""
    email = f"bench-{secrets.token_hex(4)}@bench.example"
    with httpx.Client(base_url=base, timeout=60) as c:
        r = c.post(
            "/api/v1/auth/signup",
            json={"email": email, "password": PASSWORD, "organization_name": "Bench"},
        )
        r.raise_for_status()
        tok = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
        admin = {"Authorization": f"Bearer {tok['access_token']}"}
        for site_id, meters in sites.items():
            c.post(
                "/api/v1/sites",
                json={"site_id": site_id, "name": site_id, "timezone": "Europe/Rome"},
                headers=admin,
            )
            for m in meters:
                c.post(
                    f"/api/v1/sites/{site_id}/meters",
                    json={"meter_id": m, "name": m},
                    headers=admin,
                ).raise_for_status()
        token = c.post("/api/v1/integration-tokens", json={"name": "bench"}, headers=admin).json()
    return admin, {"Authorization": f"Bearer {token['token']}"}


# --- phase 1: batch API vs raw driver --------------------------------------------------------


def make_batches(site: str, meters: list[str], records: int, size: int) -> list[list[dict]]:
    per_meter = records // len(meters)
    batches = []
    for m in meters:
        for start in range(0, per_meter, size):
            batches.append(
                [
                    {
                        "site_id": site,
                        "meter_id": m,
                        "timestamp_utc": ts_text(i),
                        "value": round(50 + 10 * random.random(), 3),
                        "unit": "kWh",
                        "idempotency_key": f"{site}-{m}-{ts_text(i)}",
                    }
                    for i in range(start, min(start + size, per_meter))
                ]
            )
    random.shuffle(batches)
    return batches


def post_batches(
    base: str, headers: dict, batches: list[list[dict]], clients: int, resend: float
) -> tuple[float, dict]:
    work = list(batches) + random.sample(batches, int(len(batches) * resend))
    random.shuffle(work)
    # Bodies are encoded before the clock starts: a relay encodes on its own machine, and here
    # the clients share the server's two cores.
    bodies = [json.dumps(batch).encode() for batch in work]
    lock = threading.Lock()
    totals = {"ingested": 0, "skipped_duplicate": 0, "failed": 0, "requests": 0, "errors": 0}
    send_headers = {**headers, "content-type": "application/json"}

    def worker(mine: list[bytes]) -> None:
        with httpx.Client(base_url=base, headers=send_headers, timeout=120) as c:
            for body in mine:
                r = c.post("/api/v1/timeseries/batch", content=body)
                with lock:
                    totals["requests"] += 1
                    if r.status_code != 200:
                        totals["errors"] += 1
                        continue
                    result = r.json()
                    for k in ("ingested", "skipped_duplicate", "failed"):
                        totals[k] += result[k]

    threads = [threading.Thread(target=worker, args=(bodies[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, totals


def raw_insert(
    url: str, batches: list[list[dict]], meter_pks: dict[str, int], org_id: int
) -> float:
    """The same rows straight through the DB driver: executemany, one transaction per batch."""
    engine = get_engine(url)
    dialect = engine.dialect.name
    conflict = "ON CONFLICT DO NOTHING"
    sql = (
        "INSERT {verb} INTO reading (org_id, meter_pk, ts, value, idempotency_key, source, "
        "ingested_at) VALUES ({p}) {tail}"
    )
    if dialect == "sqlite":
        stmt = sql.format(verb="OR IGNORE", p=",".join("?" * 7), tail="")
    else:
        stmt = sql.format(verb="", p=",".join(["%s"] * 7), tail=conflict)
    now = datetime.now(UTC)
    rows = [
        [
            (
                org_id,
                meter_pks[r["meter_id"]],
                _db_ts(r["timestamp_utc"], dialect),
                r["value"],
                r["idempotency_key"],
                "api",
                _db_ts(now, dialect),
            )
            for r in batch
        ]
        for batch in batches
    ]
    raw = engine.raw_connection()
    try:
        started = time.perf_counter()
        for chunk in rows:
            cur = raw.cursor()
            _begin(cur, dialect)
            cur.executemany(stmt, chunk)
            raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


def _begin(cursor, dialect: str) -> None:
    # CEI's engine runs pysqlite without implicit transactions (it issues BEGIN itself), so a
    # raw cursor must open one too, or every row would commit on its own.
    if dialect == "sqlite":
        cursor.execute("BEGIN")


def _db_ts(value, dialect: str):
    if isinstance(value, str):
        value = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return sqlite_timestamp(value) if dialect == "sqlite" else value


def meter_ids(url: str) -> tuple[int, dict[str, int]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT org_id, id, meter_id FROM meter")).all()
    return rows[0][0], {m: pk for _, pk, m in rows}


def phase_batch(args, workdir: Path) -> None:
    meters = [f"meter-{i:02d}" for i in range(args.meters)]
    batches = make_batches("site-bench", meters, args.records, args.batch_size)
    unique = sum(len(b) for b in batches)
    with (
        fresh_database(args.database_url, workdir, "api") as url,
        api_server(url, workdir) as (base, _pid),
    ):
        _, token = setup_org(base, {"site-bench": meters})
        elapsed, totals = post_batches(base, token, batches, args.clients, args.resend)
    with fresh_database(args.database_url, workdir, "raw") as url:
        with api_server(url, workdir) as (base, _pid):
            setup_org(base, {"site-bench": meters})
        org_id, pks = meter_ids(url)
        raw_s = raw_insert(url, batches, pks, org_id)
    api_rate, raw_rate = unique / elapsed, unique / raw_s
    print(
        f"batch API   : {unique:,} unique records ({totals['requests']:,} requests, "
        f"{int(args.resend * 100)} % re-sent) from {args.clients} clients in {elapsed:.1f} s "
        f"= {api_rate:,.0f} records/s"
    )
    print(
        f"              ingested {totals['ingested']:,}, skipped_duplicate "
        f"{totals['skipped_duplicate']:,}, failed {totals['failed']:,}, "
        f"non-200 responses {totals['errors']}; stored once: {totals['ingested'] == unique}"
    )
    print(
        f"raw driver  : {unique:,} records, executemany, 1 transaction per "
        f"{args.batch_size:,} in {raw_s:.1f} s = {raw_rate:,.0f} records/s"
    )
    print(f"ratio       : API/raw = {api_rate / raw_rate:.2f}  (target >= 0.25 on SQLite)")


# --- phase 2: CSV upload -------------------------------------------------------------------------


def phase_csv(args, workdir: Path) -> None:
    meters = [f"csv-{i:02d}" for i in range(50)]
    per_meter = args.csv_rows // len(meters)
    path = workdir / "backfill.csv"
    with path.open("w") as fh:
        fh.write("site_id,meter_id,timestamp_utc,value,unit\n")
        for m in meters:
            for i in range(per_meter):
                fh.write(f"site-csv,{m},{ts_text(i)},{50 + (i % 17) * 0.5},kWh\n")
    rows = per_meter * len(meters)
    size_mb = path.stat().st_size / 1e6
    with (
        fresh_database(args.database_url, workdir, "csv") as url,
        api_server(url, workdir) as (base, pid),
    ):
        _, token = setup_org(base, {"site-csv": meters})
        with path.open("rb") as fh:
            started = time.perf_counter()
            r = httpx.post(
                f"{base}/api/v1/timeseries/upload",
                content=fh,
                headers={**token, "content-type": "text/csv"},
                timeout=3600,
            )
            elapsed = time.perf_counter() - started
        body = r.json()
        rss = peak_rss_mb(pid)
    print(
        f"CSV upload  : {rows:,} rows ({size_mb:.0f} MB) in {elapsed:.1f} s = "
        f"{rows / elapsed:,.0f} rows/s; ingested {body.get('ingested'):,}, failed "
        f"{body.get('failed')}; server peak RSS {rss:.0f} MB "
        f"(targets: < 30 s, < 500 MB for 1,000,000 rows)"
    )


# --- phase 3: ingest_health ---------------------------------------------------------------------


def phase_health(args, workdir: Path) -> None:
    sites = {
        f"site-h{s:02d}": [f"m-{i:02d}" for i in range(50)]
        for s in range(max(args.health_meters // 50, 1))
    }
    hours = args.health_days * 24
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    with (
        fresh_database(args.database_url, workdir, "health") as url,
        api_server(url, workdir) as (base, _pid),
    ):
        admin, _token = setup_org(base, sites)
        engine = get_engine(url)
        dialect = engine.dialect.name
        with engine.connect() as conn:
            meters = conn.execute(text("SELECT org_id, id FROM meter")).all()
        p = "?" if dialect == "sqlite" else "%s"
        stmt = (
            f"INSERT INTO reading (org_id, meter_pk, ts, value, idempotency_key, source, "
            f"ingested_at) VALUES ({','.join([p] * 7)})"
        )
        loaded = time.perf_counter()
        raw = engine.raw_connection()
        try:
            for org_id, pk in meters:
                rows = []
                for h in range(hours):
                    ts = start + timedelta(hours=h)
                    rows.append(
                        (
                            org_id,
                            pk,
                            _db_ts(ts, dialect),
                            10.0,
                            f"{pk}-{h}",
                            "api",
                            _db_ts(ts + timedelta(minutes=5), dialect),
                        )
                    )
                cur = raw.cursor()
                _begin(cur, dialect)
                cur.executemany(stmt, rows)
                raw.commit()
        finally:
            raw.close()
        loaded = time.perf_counter() - loaded
        if dialect == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("ANALYZE reading"))
                conn.commit()
        times = []
        with httpx.Client(base_url=base, headers=admin, timeout=60) as c:
            c.get("/api/v1/timeseries/ingest_health?window_hours=168").raise_for_status()
            for _ in range(20):
                t = time.perf_counter()
                r = c.get("/api/v1/timeseries/ingest_health?window_hours=168")
                times.append(time.perf_counter() - t)
            n = len(r.json()["meters"])
    print(
        f"ingest_health: {n:,} meters x {args.health_days} days ({n * hours:,} readings, "
        f"loaded in {loaded:.0f} s), window 168 h: median {statistics.median(times) * 1000:.0f} ms"
        f" over 20 calls (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; "
        f"target < 200 ms)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default=None, help="PostgreSQL server to benchmark on")
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--resend", type=float, default=0.2)
    ap.add_argument("--csv-rows", type=int, default=1_000_000)
    ap.add_argument("--health-meters", type=int, default=1000)
    ap.add_argument("--health-days", type=int, default=90)
    ap.add_argument("--phases", default="batch,csv,health")
    args = ap.parse_args()
    random.seed(7)
    engine_name = "PostgreSQL" if args.database_url else "SQLite"
    print(f"CEI ingest benchmark on {engine_name}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="cei-bench-") as tmp:
        workdir = Path(tmp)
        phases = args.phases.split(",")
        if "batch" in phases:
            phase_batch(args, workdir)
        if "csv" in phases:
            phase_csv(args, workdir)
        if "health" in phases:
            phase_health(args, workdir)


if __name__ == "__main__":
    main()
