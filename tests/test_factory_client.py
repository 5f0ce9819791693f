"""docs/factory_client.py against the real API over real HTTP: outages, kills and restarts lose
nothing and store nothing twice, and the relay's counts add up."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.liveapi import Api

RELAY = Path(__file__).resolve().parents[1] / "docs" / "factory_client.py"
METERS = ("main-incomer", "compressor-bank", "chiller-01")
RUN_LINE = re.compile(r"relay run: (.*)")

pytestmark = pytest.mark.slow


def _relay(env: dict, *args: str, background: bool = False):
    cmd = [sys.executable, str(RELAY), *args]
    if background:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _counts(stderr: str) -> dict:
    [line] = RUN_LINE.findall(stderr)[-1:]
    return {k: float(v) for k, v in (pair.split("=") for pair in line.split())}


@pytest.fixture(name="world")
def world_fixture(tmp_path, settings):
    api = Api(tmp_path).start()
    org = api.factory(METERS)
    env = {
        **os.environ,
        "CEI_BASE_URL": api.base,
        "CEI_INT_TOKEN": org["token"],
        "CEI_SOURCE": "fake",
        "CEI_SITE_ID": "site-22",
        "CEI_METERS": ",".join(METERS),
        "CEI_OUTBOX": str(tmp_path / "outbox.sqlite3"),
        "CEI_MAX_ATTEMPTS": "2",
        "CEI_BACKOFF_SECONDS": "0.05",
        "CEI_TIMEOUT_SECONDS": "10",
    }
    yield {
        "api": api,
        "env": env,
        "db": api.db,
        "outbox": tmp_path / "outbox.sqlite3",
        "headers": org["headers"],
    }
    api.stop()


def _stored(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT COUNT(*) FROM reading").fetchone()[0]
        distinct = conn.execute("SELECT COUNT(DISTINCT meter_pk || ts) FROM reading").fetchone()[0]
    return total, distinct


def _outbox(path: Path) -> dict:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())


def test_outages_kills_and_restarts_lose_nothing_and_store_nothing_twice(world):
    env, api = world["env"], world["api"]
    totals = {"ingested": 0, "duplicates": 0}

    def account(result) -> dict:
        counts = _counts(result.stderr if hasattr(result, "stderr") else result)
        totals["ingested"] += counts["ingested"]
        totals["duplicates"] += counts["duplicates"]
        return counts

    # 1. Two days (3 meters x 48 hours) straight through.
    first = _relay(env, "--backfill", "2026-11-01", "2026-11-03")
    assert first.returncode == 0, first.stderr
    c = account(first)
    assert (c["read"], c["ingested"], c["pending"]) == (144, 144, 0)

    # 2. CEI is down: the next two days wait in the outbox; the run is not an alarm yet.
    api.stop()
    down = _relay(env, "--backfill", "2026-11-03", "2026-11-05")
    assert down.returncode == 0, down.stderr
    c = account(down)
    assert (c["queued"], c["sent"], c["pending"]) == (144, 0, 144)
    assert "network" in down.stderr
    # ...and a long outage makes the relay exit 2, so cron or Task Scheduler raises it.
    stuck = _relay({**env, "CEI_STUCK_HOURS": "0"}, "--backfill", "2026-11-03", "2026-11-05")
    assert stuck.returncode == 2 and "have waited" in stuck.stderr
    account(stuck)

    # 3. CEI is back; the relay is killed half-way through a slow catch-up of two more days.
    api.start()
    slow = {**env, "CEI_BATCH_SIZE": "4"}
    proc = _relay(slow, "--backfill", "2026-11-05", "2026-11-07", background=True)
    deadline = time.monotonic() + 60
    while _outbox(world["outbox"]).get("sent", 0) < 144 + 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    mid = _outbox(world["outbox"])
    assert mid.get("pending", 0) > 0, "the relay finished before it could be killed"

    # 4. Restarted: it sends what is left, including batches CEI stored but never confirmed.
    again = _relay(env, "--once", "--backfill", "2026-11-05", "2026-11-07")
    assert again.returncode == 0, again.stderr
    c = account(again)
    assert c["pending"] == 0

    # Every reading stored exactly once, and the relay's counts add up to what is stored: the
    # killed run printed nothing, but its answered batches are "sent" in the outbox, and the
    # batch it had in flight (stored by CEI, never confirmed) came back as duplicates.
    total, distinct = _stored(world["db"])
    assert total == distinct == 3 * 144
    killed_confirmed = mid["sent"] - 144
    assert 0 <= c["duplicates"] <= 4  # at most the one batch of 4 in flight
    assert totals["ingested"] + killed_confirmed + c["duplicates"] == total
    assert _outbox(world["outbox"]) == {"sent": 3 * 144}
    # A re-run of everything is all duplicates and stores nothing.
    rerun = _relay(
        {**env, "CEI_OUTBOX": str(world["outbox"]) + ".fresh"},
        "--backfill",
        "2026-11-01",
        "2026-11-07",
    )
    c = _counts(rerun.stderr)
    assert (c["ingested"], c["duplicates"]) == (0, 3 * 144)
    assert _stored(world["db"]) == (total, total)


def test_refused_readings_are_logged_and_not_retried(world):
    env = {**world["env"], "CEI_METERS": "main-incomer,ghost-meter"}
    run = _relay(env, "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 0, run.stderr
    c = _counts(run.stderr)
    assert (c["ingested"], c["rejected"], c["pending"]) == (24, 24, 0)
    assert "UNKNOWN_METER site-22/ghost-meter" in run.stderr
    # The next run sends nothing again; after the meter is registered, a requeue delivers them.
    again = _counts(_relay(env, "--backfill", "2026-11-01", "2026-11-02").stderr)
    assert again["sent"] == 0
    c = httpx.Client(base_url=world["api"].base)
    r = c.post(
        "/api/v1/sites/site-22/meters",
        json={"meter_id": "ghost-meter", "name": "found"},
        headers=world["headers"],
    )
    assert r.is_success
    fixed = _counts(
        _relay(env, "--requeue-rejected", "--backfill", "2026-11-01", "2026-11-02").stderr
    )
    assert (fixed["ingested"], fixed["rejected"]) == (24, 0)


def test_a_revoked_token_stops_the_relay_with_exit_3(world):
    c = httpx.Client(base_url=world["api"].base)
    [token] = c.get("/api/v1/integration-tokens", headers=world["headers"]).json()["data"]
    assert (
        c.delete(f"/api/v1/integration-tokens/{token['id']}", headers=world["headers"]).status_code
        == 204
    )
    run = _relay(world["env"], "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 3 and "refused the token" in run.stderr
    assert _outbox(world["outbox"]) == {"pending": 24 * 3}  # kept for when a new token is set


def test_dry_run_sends_nothing(world):
    run = _relay(world["env"], "--dry-run", "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 0
    assert "dry run: 72 readings" in run.stdout
    assert not world["outbox"].exists()
    assert _stored(world["db"]) == (0, 0)
