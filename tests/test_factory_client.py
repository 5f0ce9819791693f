"""docs/factory_client.py against the real API over real HTTP: outages, kills and restarts lose
nothing and store nothing twice, and the relay's counts add up."""

import importlib.util
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.liveapi import Api, free_port

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


def _world(tmp_path: Path, **api_env: str) -> dict:
    api = Api(tmp_path, **api_env).start()
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
    return {
        "api": api,
        "env": env,
        "db": api.db,
        "outbox": tmp_path / "outbox.sqlite3",
        "headers": org["headers"],
    }


@pytest.fixture(name="world")
def world_fixture(tmp_path, settings):
    world = _world(tmp_path)
    yield world
    world["api"].stop()


def _stored(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT COUNT(*) FROM reading").fetchone()[0]
        distinct = conn.execute("SELECT COUNT(DISTINCT meter_pk || ts) FROM reading").fetchone()[0]
    return total, distinct


def _outbox(path: Path) -> dict:
    if not path.exists():
        return {}
    with sqlite3.connect(path) as conn:
        try:
            rows = conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        except sqlite3.OperationalError:  # the relay is creating it
            return {}
    return dict(rows)


def _totals(path: Path) -> dict:
    """The relay's own running totals of CEI's answers, over every run (killed ones too)."""
    with sqlite3.connect(path) as conn:
        totals = dict(conn.execute("SELECT name, n FROM totals").fetchall())
    return {k: totals.get(k, 0) for k in ("sent", "ingested", "duplicates", "rejected")}


def _wait(condition, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _canned(status: str, content_type: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}", "Connection: close", *headers]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# Answers the proxy gives itself, without passing the request on: what CEI answers when its
# database is away, and what a reverse proxy in front of CEI answers while CEI restarts.
CANNED = {
    "503": _canned(
        "503 Service Unavailable",
        "application/problem+json",
        b'{"status":503,"title":"Service Unavailable","detail":"the database is not '
        b'answering; retry later","code":"database_unavailable"}',
        "Retry-After: 1",
    ),
    "502": _canned(
        "502 Bad Gateway", "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    ),
}


class LossyProxy:
    """Between the relay and CEI: passes each request (urllib sends one per connection) to the
    API and, for chosen request numbers, loses CEI's answer after CEI has stored the batch:
    "cut" sends half of it (IncompleteRead), "drop" closes the connection (RemoteDisconnected),
    "hold" keeps it until `release` (the test kills the relay meanwhile). "503" and "502"
    answer from CANNED instead, without passing the request to CEI."""

    def __init__(self, upstream_port: int, faults: dict[int, str]) -> None:
        self.upstream, self.faults, self.count = upstream_port, faults, 0
        self.holding, self.release = threading.Event(), threading.Event()
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            while length and len(body) < int(length.group(1)):
                body += client.recv(65536)
            with self.lock:
                self.count += 1
                number = self.count
            fault = self.faults.get(number)
            if fault in CANNED:
                client.sendall(CANNED[fault])
                return
            with socket.create_connection(("127.0.0.1", self.upstream), timeout=30) as up:
                up.sendall(head + b"\r\n\r\n" + body)
                answer = b""
                while chunk := up.recv(65536):  # the request says Connection: close
                    answer += chunk
            if fault == "cut":
                client.sendall(answer[: len(answer) - 20])
            elif fault == "hold":
                self.holding.set()
                self.release.wait(30)
            elif fault != "drop":
                client.sendall(answer)

    def close(self) -> None:
        self.release.set()
        self.server.close()


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
    proc.kill()
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
    t = _totals(world["outbox"])  # every answer the relay got, including the killed run's
    assert t["sent"] == t["ingested"] + t["duplicates"] + t["rejected"]
    # CEI stored each reading once: confirmed then, or (the batch in flight at the kill)
    # confirmed later as a duplicate.
    assert (t["ingested"] + t["duplicates"], t["rejected"]) == (total, 0)
    assert t["duplicates"] == c["duplicates"]
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
    # Requeued readings wait from the requeue, not from when they were first read: refused 10
    # hours ago and requeued while CEI is unreachable, they are not "stuck" (exit 0, not 2).
    with sqlite3.connect(world["outbox"]) as conn:
        conn.execute("UPDATE outbox SET queued_at = ?", (time.time() - 10 * 3600,))
    away = {**env, "CEI_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    run = _relay(away, "--requeue-rejected", "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 0, run.stderr
    assert "requeued 24 rejected readings" in run.stderr and "have waited" not in run.stderr
    c = _counts(run.stderr)
    assert c["pending"] == 24 and c["oldest_pending_hours"] < 1
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


def _network_tries(outbox: Path) -> int:
    with sqlite3.connect(outbox) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND message LIKE 'network%'"
        ).fetchone()[0]


def test_the_api_killed_during_a_run_and_restarted_the_same_run_finishes(world):
    """CEI dies in the middle of a relay run; the run's own retries carry it over the restart."""
    env = {**world["env"], "CEI_BATCH_SIZE": "2", "CEI_MAX_ATTEMPTS": "12",
           "CEI_BACKOFF_SECONDS": "0.25", "CEI_MAX_BACKOFF_SECONDS": "2"}  # fmt: skip
    api, outbox = world["api"], world["outbox"]
    proc = _relay(env, "--backfill", "2026-11-01", "2026-11-04", background=True)  # 216 readings
    _wait(lambda: _outbox(outbox).get("sent", 0) >= 20, what="20 stored")
    api.proc.kill()  # no goodbye: a crash or a power cut
    api.proc.wait(timeout=10)
    assert _outbox(outbox).get("pending", 0) > 0, "the relay finished before CEI was killed"
    _wait(lambda: _network_tries(outbox) > 0, what="a failed try")
    api.start()  # same port, same database
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "network" in err and "retrying in" in err
    assert len(RUN_LINE.findall(err)) == 1  # one run did it all
    c = _counts(err)
    assert (c["read"], c["sent"], c["pending"]) == (216, 216, 0)
    total, distinct = _stored(world["db"])
    assert total == distinct == 216
    t = _totals(outbox)
    print("relay totals over the outage:", t, "stored:", total)  # noqa: T201
    assert t["sent"] == t["ingested"] + t["duplicates"] + t["rejected"] == 216
    # The batch in flight when CEI died was stored whole (then re-sent: 2 duplicates) or not at all.
    assert t["duplicates"] in (0, 2) and t["ingested"] + t["duplicates"] == total


def test_answers_lost_after_cei_stored_the_batch_come_back_as_duplicates(world):
    """CEI stores three batches whose answers never reach the relay: one cut short, one
    dropped (the run retries both), one held while the relay is killed (the next run resends
    it). Each comes back as 8 duplicates; nothing is stored twice or lost."""
    api, outbox = world["api"], world["outbox"]
    proxy = LossyProxy(api.port, {3: "cut", 6: "drop", 10: "hold"})
    env = {**world["env"], "CEI_BASE_URL": proxy.base, "CEI_BATCH_SIZE": "8"}
    try:
        proc = _relay(env, "--backfill", "2026-11-01", "2026-11-03", background=True)  # 144
        assert proxy.holding.wait(30), proc.stderr.read() if proc.poll() is not None else ""
        assert _stored(world["db"])[0] == 8 * 8  # the held batch is stored: 8 batches of 8
        proc.kill()
        proc.wait(timeout=10)
    finally:
        proxy.close()
    err = proc.stderr.read()
    assert "IncompleteRead" in err and "RemoteDisconnected" in err
    mid = _totals(outbox)
    assert mid == {"sent": 7 * 8, "ingested": 5 * 8, "duplicates": 2 * 8, "rejected": 0}
    again = _relay(env | {"CEI_BASE_URL": api.base}, "--backfill", "2026-11-01", "2026-11-03")
    assert again.returncode == 0, again.stderr
    c = _counts(again.stderr)
    assert (c["sent"], c["ingested"], c["duplicates"], c["pending"]) == (88, 80, 8, 0)
    total, distinct = _stored(world["db"])
    assert total == distinct == 144
    t = _totals(outbox)
    assert t == {"sent": 144, "ingested": 120, "duplicates": 24, "rejected": 0}
    assert t["sent"] == t["ingested"] + t["duplicates"] + t["rejected"]
    assert t["ingested"] + t["duplicates"] == total


def test_429_retry_after_is_honoured_and_everything_lands(tmp_path, settings):
    world = _world(tmp_path, CEI_RATE_LIMIT_TOKEN_PER_MINUTE="3")
    try:
        if time.time() % 60 > 54:  # the first three batches inside one rate-limit minute
            time.sleep(61 - time.time() % 60)
        env = {**world["env"], "CEI_BATCH_SIZE": "15", "CEI_MAX_ATTEMPTS": "3"}
        began = time.monotonic()
        run = _relay(env, "--backfill", "2026-11-01", "2026-11-02")  # 72 readings, 5 batches
        took = time.monotonic() - began
    finally:
        world["api"].stop()
    assert run.returncode == 0, run.stderr
    [waited] = re.findall(r"HTTP 429 rate_limited.*\(Retry-After (\d+) s\)", run.stderr)
    assert took >= float(waited)
    c = _counts(run.stderr)
    assert (c["sent"], c["ingested"], c["pending"]) == (72, 72, 0)
    assert _stored(world["db"]) == (72, 72)


def _hour(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_relay_off_for_days_catches_up_from_its_mark_up_to_the_cap(world):
    env = {**world["env"], "CEI_METERS": "main-incomer", "CEI_MAX_CATCHUP_DAYS": "3"}
    now = datetime.now(UTC)
    if now.minute == 59 and now.second > 40:  # all runs within one hour
        time.sleep(25)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    c = _counts(_relay(env, "--once").stderr)
    assert (c["read"], c["ingested"]) == (48, 48)  # no mark yet: the 48-hour window

    def off_since(hours: int):
        with sqlite3.connect(world["outbox"]) as conn:
            conn.execute("UPDATE mark SET next_hour = ?", (_hour(end - timedelta(hours=hours)),))

    off_since(60)  # the PC was off for 60 hours: the run reads from its mark, not 48 h back
    run = _relay(env, "--once")
    c = _counts(run.stderr)
    assert (c["read"], c["queued"], c["ingested"]) == (60, 12, 12)
    assert "older than the catch-up limit" not in run.stderr
    off_since(5 * 24)  # off for 5 days, the limit is 3: the rest is named, with its command
    run = _relay(env, "--once")
    c = _counts(run.stderr)
    assert (c["read"], c["ingested"]) == (72, 12)
    cap, since = end - timedelta(days=3), end - timedelta(days=5)
    assert f"--backfill {_hour(since)} {_hour(cap)}" in run.stderr
    assert _stored(world["db"]) == (72, 72)
    with sqlite3.connect(world["db"]) as conn:
        first = conn.execute("SELECT MIN(ts) FROM reading").fetchone()[0]
    assert first.startswith(cap.strftime("%Y-%m-%d %H:%M:%S"))


def test_bad_inputs_and_answers_are_reported_and_never_loop(world, tmp_path):
    env, outbox = world["env"], world["outbox"]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

    # --backfill into the future reads complete hours only: no future reading enters the outbox.
    run = _relay(
        env, "--backfill", _hour(end - timedelta(hours=2)), _hour(end + timedelta(hours=5))
    )
    assert run.returncode == 0, run.stderr
    assert "after the last complete hour" in run.stderr
    assert (_counts(run.stderr)["ingested"], _outbox(outbox)) == (6, {"sent": 6})

    # A CSV export without a column: a clear line and exit 3, not a traceback.
    bad = tmp_path / "export.csv"
    bad.write_text(
        "site_id,meter_id,timestamp_utc,kwh\nsite-22,main-incomer,2026-11-01T00:00:00Z,5\n"
    )
    run = _relay(env, "--source", f"csv:{bad}", "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 3 and "no column value" in run.stderr
    assert "Traceback" not in run.stderr

    # A whole batch refused (a wrong address: 404) is logged with its code, kept, and exits 2.
    wrong = {**env, "CEI_BASE_URL": world["api"].base + "/cei", "CEI_OUTBOX": str(tmp_path / "w")}
    began = time.monotonic()
    run = _relay(wrong, "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 2 and "HTTP 404" in run.stderr, run.stderr
    assert "is CEI_BASE_URL the API's address" in run.stderr and "retrying" not in run.stderr
    assert time.monotonic() - began < 20 and _outbox(tmp_path / "w") == {"pending": 72}

    # Two relays on one outbox: the second exits at once (2 when the first has run too long).
    holder = sqlite3.connect(str(outbox) + ".lock", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    run = _relay(env, "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 0 and "another relay" in run.stderr
    assert _outbox(outbox) == {"sent": 6}
    run = _relay({**env, "CEI_STUCK_HOURS": "0"}, "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 2 and "another relay" in run.stderr
    holder.close()
    assert _relay(env, "--backfill", "2026-11-01", "2026-11-02").returncode == 0

    # More refusals than CEI lists (1,000): the unlisted ones are not taken as stored.
    export = tmp_path / "big.csv"
    start = datetime(2026, 9, 1, tzinfo=UTC)
    rows = ["site_id,meter_id,timestamp_utc,value"]
    rows += [f"site-22,compressor-bank,{_hour(start + timedelta(hours=h))},7" for h in range(100)]
    rows += [f"site-22,ghost,{_hour(start + timedelta(hours=h))},7" for h in range(1400)]
    export.write_text("\n".join(rows) + "\n")
    big = {**env, "CEI_BATCH_SIZE": "1500", "CEI_OUTBOX": str(tmp_path / "big.sqlite3")}
    run = _relay(big, "--source", f"csv:{export}", "--backfill", "2026-09-01", "2026-11-01")
    assert run.returncode == 0, run.stderr
    assert "sending the" in run.stderr and "UNKNOWN_METER 1400" in run.stderr
    assert _outbox(tmp_path / "big.sqlite3") == {"sent": 100, "rejected": 1400}
    t = _totals(tmp_path / "big.sqlite3")
    assert t["sent"] == t["ingested"] + t["duplicates"] + t["rejected"]
    assert t["ingested"] == 100


def _relay_module():
    """docs/factory_client.py imported, to compute what its fake source reads."""
    spec = importlib.util.spec_from_file_location("factory_client", RELAY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_5xx_answers_are_retried_and_everything_lands(world):
    """A reverse proxy's 502 (an HTML page) and CEI's 503 with Retry-After: the run retries the
    batch, backing off and honouring Retry-After, and every reading is stored once."""
    api, outbox = world["api"], world["outbox"]
    proxy = LossyProxy(api.port, {1: "502", 2: "503", 5: "503"})
    env = {**world["env"], "CEI_BASE_URL": proxy.base, "CEI_BATCH_SIZE": "24"}
    env["CEI_MAX_ATTEMPTS"] = "3"
    try:
        began = time.monotonic()
        run = _relay(env, "--backfill", "2026-11-01", "2026-11-02")  # 72 readings, 3 batches
        took = time.monotonic() - began
    finally:
        proxy.close()
    assert run.returncode == 0, run.stderr
    assert "HTTP 502" in run.stderr and "HTTP 503 database_unavailable" in run.stderr
    assert len(re.findall(r"retrying in .* \(backoff\)", run.stderr)) == 1  # the 502
    assert len(re.findall(r"retrying in .* \(Retry-After 1 s\)", run.stderr)) == 2
    assert took >= 2  # two Retry-After waits of at least 1 s
    assert proxy.count == 3 + 3  # three batches, three of them tried again
    c = _counts(run.stderr)
    assert (c["sent"], c["ingested"], c["duplicates"], c["pending"]) == (72, 72, 0, 0)
    assert _stored(world["db"]) == (72, 72)
    assert _outbox(outbox) == {"sent": 72}


def test_a_base_url_without_http_is_a_configuration_error(tmp_path):
    env = {
        **os.environ,
        "CEI_BASE_URL": "cei.example.com",
        "CEI_INT_TOKEN": "cei_int_x",
        "CEI_OUTBOX": str(tmp_path / "outbox.sqlite3"),
        "CEI_MAX_ATTEMPTS": "2",
        "CEI_BACKOFF_SECONDS": "0.05",
    }
    run = _relay(env, "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 3, run.stderr
    assert "CEI_BASE_URL must be an http:// or https:// address" in run.stderr
    assert "retrying" not in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "outbox.sqlite3").exists()
    for wrong in ("ftp://cei.example.com", "https://", "http://cei.example.com:port"):
        run = _relay({**env, "CEI_BASE_URL": wrong}, "--once")
        assert run.returncode == 3 and "CEI_BASE_URL must be" in run.stderr, (wrong, run.stderr)


def test_backfill_times_off_the_hour_are_rounded_in_to_whole_hours(world):
    env = {**world["env"], "CEI_METERS": "main-incomer"}
    args = ("--backfill", "2026-11-01T00:30:00Z", "2026-11-01T05:30:00Z")
    dry = _relay(env, "--dry-run", *args)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 4 readings from 2026-11-01T01:00:00Z to 2026-11-01T05:00:00Z" in dry.stdout
    stamps = re.findall(r'"timestamp_utc": "([^"]+)"', dry.stdout)
    assert stamps == [f"2026-11-01T0{h}:00:00Z" for h in (1, 2, 3, 4)]
    run = _relay(env, *args)
    assert run.returncode == 0, run.stderr
    assert (_counts(run.stderr)["ingested"], _counts(run.stderr)["rejected"]) == (4, 0)
    assert "whole hours from 2026-11-01T01:00:00Z up to 2026-11-01T05:00:00Z" in run.stderr


def _write(path: Path, header: str, rows: list[str]) -> None:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def test_a_folder_of_csv_exports_any_header_case_and_conflicting_values(world, tmp_path):
    """Several historian exports in a folder: every *.csv (any case) is read, headers match in
    any case and order, an hour exported twice with the same value is sent once, and one
    exported with another value is logged and not sent."""
    env, outbox = world["env"], world["outbox"]
    folder = tmp_path / "exports"
    folder.mkdir()
    hour = "2026-11-01T{:02d}:00:00Z".format
    header = "site_id,meter_id,timestamp_utc,value,unit"
    line1 = [f"site-22,main-incomer,{hour(h)},{10 + h},kWh" for h in range(6)]
    _write(folder / "a-line1.csv", header, line1)
    # Another order, another case, no unit (kWh), and an upper-case extension.
    line2 = [f"{hour(h)},{20 + h},compressor-bank,site-22" for h in range(6)]
    _write(folder / "b-line2.CSV", "Timestamp_UTC,VALUE,Meter_ID,SITE_ID", line2)
    overlap = [
        f"site-22,main-incomer,{hour(3)},13,kWh",  # the same as in a-line1.csv: fine
        f"site-22,main-incomer,{hour(4)},99,kWh",  # another value: logged, not sent
    ]
    _write(folder / "c-overlap.csv", header, overlap)
    (folder / "notes.txt").write_text("not an export\n")
    source = ("--source", f"csv:{folder}")
    run = _relay(env, *source, "--backfill", "2026-11-01", "2026-11-02")
    assert run.returncode == 0, run.stderr
    c = _counts(run.stderr)
    assert (c["read"], c["queued"], c["ingested"], c["rejected"]) == (14, 12, 12, 0)
    assert "1 reading(s) not queued" in run.stderr
    assert f"site-22/main-incomer {hour(4)}: 99.0 kWh, kept 14.0 kWh" in run.stderr
    assert _stored(world["db"]) == (12, 12)
    with sqlite3.connect(world["db"]) as conn:
        values = conn.execute("SELECT value FROM reading ORDER BY meter_pk, ts").fetchall()
    assert sorted(v for (v,) in values) == sorted([*range(10, 16), *range(20, 26)])

    # A new export arrives: only its readings are sent; the conflict is still named.
    later = [f"site-22,main-incomer,{hour(h)},{10 + h},kWh" for h in (6, 7)]
    _write(folder / "d-line1.csv", header.upper(), later)
    run = _relay(env, *source, "--backfill", "2026-11-01", "2026-11-02")
    c = _counts(run.stderr)
    assert (c["read"], c["queued"], c["ingested"]) == (16, 2, 2)
    assert "1 reading(s) not queued" in run.stderr
    assert _outbox(outbox) == {"sent": 14}


def test_ids_that_run_together_with_dashes_are_two_readings(tmp_path, settings):
    """Site `plant` with meter `north-main` and site `plant-north` with meter `main` have the
    same site-meter-timestamp: both readings are kept, sent and stored."""
    api = Api(tmp_path).start()
    try:
        org = api.factory(("north-main",), site_id="plant")
        c, headers = org["client"], org["headers"]
        site = {"site_id": "plant-north", "name": "North", "timezone": "Europe/Rome"}
        assert c.post("/api/v1/sites", json=site, headers=headers).is_success
        meter = {"meter_id": "main", "name": "main"}
        assert c.post("/api/v1/sites/plant-north/meters", json=meter, headers=headers).is_success
        export = tmp_path / "export.csv"
        rows = [
            f"{site},{meter},2026-11-01T0{h}:00:00Z,{value + h}"
            for site, meter, value in (("plant", "north-main", 10), ("plant-north", "main", 50))
            for h in range(3)
        ]
        _write(export, "site_id,meter_id,timestamp_utc,value", rows)
        env = {
            **os.environ,
            "CEI_BASE_URL": api.base,
            "CEI_INT_TOKEN": org["token"],
            "CEI_SOURCE": f"csv:{export}",
            "CEI_OUTBOX": str(tmp_path / "outbox.sqlite3"),
        }
        run = _relay(env, "--backfill", "2026-11-01", "2026-11-02")
        assert run.returncode == 0, run.stderr
        c = _counts(run.stderr)
        assert (c["read"], c["queued"], c["ingested"], c["rejected"]) == (6, 6, 6, 0)
        assert "not queued" not in run.stderr
        assert _stored(api.db) == (6, 6)
        with sqlite3.connect(api.db) as conn:
            keys = {k for (k,) in conn.execute("SELECT idempotency_key FROM reading")}
        assert "plant/north-main/2026-11-01T00:00:00Z" in keys
        assert "plant-north/main/2026-11-01T00:00:00Z" in keys
    finally:
        api.stop()


OLD_OUTBOX = """CREATE TABLE outbox (
    key TEXT PRIMARY KEY, site_id TEXT, meter_id TEXT, timestamp_utc TEXT,
    value, unit TEXT, queued_at REAL, attempts INTEGER DEFAULT 0,
    status TEXT DEFAULT 'pending', code TEXT, message TEXT, done_at REAL);
CREATE INDEX outbox_pending ON outbox (status, timestamp_utc);
CREATE TABLE mark (meter TEXT PRIMARY KEY, next_hour TEXT);
CREATE TABLE totals (name TEXT PRIMARY KEY, n INTEGER);
CREATE TABLE holder (id INTEGER PRIMARY KEY, pid, since);"""


def test_an_outbox_of_the_previous_version_is_upgraded_in_place(world):
    """Relay 1.0 keyed its outbox by site-meter-timestamp. Its file is moved to one row per
    site, meter and hour on the next run: what was pending is sent, what was sent is not."""
    env, outbox = {**world["env"], "CEI_METERS": "main-incomer"}, world["outbox"]
    relay = _relay_module()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    values = relay.read_scada("site-22", "main-incomer", start, start + timedelta(hours=3))
    statuses = ("pending", "sent", "rejected")
    rows = [
        (
            f"site-22-main-incomer-{_hour(ts)}",
            "site-22",
            "main-incomer",
            _hour(ts),
            value,
            "kWh",
            time.time(),
            status,
        )
        for (ts, value), status in zip(sorted(values.items()), statuses, strict=True)
    ]
    with sqlite3.connect(outbox) as conn:
        conn.executescript(OLD_OUTBOX)
        conn.executemany(
            "INSERT INTO outbox (key, site_id, meter_id, timestamp_utc, value, unit, queued_at, "
            "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        # Hour 2 was refused for a clash of old-style keys.
        conn.execute("UPDATE outbox SET code = 'IDEMPOTENCY_CONFLICT' WHERE status = 'rejected'")
    dry = _relay(env, "--dry-run", "--backfill", "2026-11-01T00:00:00Z", "2026-11-01T04:00:00Z")
    assert dry.returncode == 0, dry.stderr
    with sqlite3.connect(outbox) as conn:  # a dry run changes nothing, the layout neither
        assert "key" in [r[1] for r in conn.execute("PRAGMA table_info(outbox)")]
    run = _relay(env, "--backfill", "2026-11-01T00:00:00Z", "2026-11-01T04:00:00Z")
    assert run.returncode == 0, run.stderr
    assert "outbox upgraded to one row per site, meter and hour (3 rows)" in run.stderr
    c = _counts(run.stderr)
    # Hour 0 was pending, hour 2 refused for a key clash and hour 3 is new: all sent.
    # Hour 1 was sent already.
    assert (c["read"], c["queued"], c["sent"], c["ingested"]) == (4, 1, 3, 3)
    assert _outbox(outbox) == {"sent": 4}
    with sqlite3.connect(outbox) as conn:
        columns = [(r[1], r[5]) for r in conn.execute("PRAGMA table_info(outbox)")]
        indexes = [r[1] for r in conn.execute("PRAGMA index_list(outbox)")]
    assert "key" not in dict(columns)
    assert [name for name, pk in sorted(columns, key=lambda c: c[1]) if pk] == [
        "site_id", "meter_id", "timestamp_utc"
    ]  # fmt: skip
    assert "outbox_pending" in indexes
    again = _relay(env, "--backfill", "2026-11-01T00:00:00Z", "2026-11-01T04:00:00Z")
    assert "upgraded" not in again.stderr and _counts(again.stderr)["sent"] == 0
