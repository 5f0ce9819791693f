"""The `cei` command against the test database, and `cei up` as real processes."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner

from core.cli import main
from core.db import current_revision
from tests.factories import hourly_records, login, make_site, signup

CEI = [sys.executable, "-c", "from core.cli import main; main()"]


def test_db_upgrade_reports_the_revision(engine, settings):
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (
        f"database at revision {current_revision(settings.effective_database_url)}" in result.output
    )


def test_user_create_then_login_through_the_api(client):
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "user",
            "create",
            "--email",
            "boss@plant.example",
            "--new-org",
            "Factory Org A",
            "--password",
            "long-enough-pw",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "created admin boss@plant.example" in r.output
    r = runner.invoke(
        main,
        [
            "user",
            "create",
            "--email",
            "ana@plant.example",
            "--org",
            "Factory Org A",
            "--role",
            "viewer",
            "--password",
            "long-enough-pw",
        ],
    )
    assert r.exit_code == 0, r.output
    tokens = login(client, "ana@plant.example", "long-enough-pw")
    me = client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["user"]["role"] == "viewer"
    assert me.json()["organization"]["name"] == "Factory Org A"


def test_user_create_errors_are_messages_not_tracebacks(engine):
    r = CliRunner().invoke(
        main,
        [
            "user",
            "create",
            "--email",
            "x@y.z",
            "--org",
            "No Such Org",
            "--password",
            "long-enough-pw",
        ],
    )
    assert r.exit_code != 0
    assert "no organisation 'No Such Org'" in r.output
    assert "Traceback" not in r.output


def test_token_create_prints_a_working_token(client):
    runner = CliRunner()
    runner.invoke(
        main,
        [
            "user",
            "create",
            "--email",
            "boss@plant.example",
            "--new-org",
            "Org T",
            "--password",
            "long-enough-pw",
        ],
    )
    r = runner.invoke(main, ["token", "create", "--org", "Org T", "--name", "scada-line1"])
    assert r.exit_code == 0, r.output
    secret = r.output.strip().splitlines()[-1]
    assert secret.startswith("cei_int_")
    admin = login(client, "boss@plant.example", "long-enough-pw")
    listed = client.get(
        "/api/v1/integration-tokens", headers={"Authorization": f"Bearer {admin['access_token']}"}
    ).json()
    assert listed["data"][0]["name"] == "scada-line1"
    assert secret.startswith(listed["data"][0]["prefix"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow
def test_cei_up_serves_api_and_app_and_stops_both_on_ctrl_c(settings, engine, tmp_path):
    api_port, app_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{(tmp_path / 'up.db').as_posix()}",
        "CEI_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [*CEI, "up", "--api-port", str(api_port), "--app-port", str(app_port)],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        health = _wait_for(f"http://127.0.0.1:{api_port}/api/v1/health", deadline)
        assert health.status_code == 200
        assert (
            _wait_for(f"http://127.0.0.1:{api_port}/api/v1/health/db", deadline).status_code == 200
        )
        app = _wait_for(f"http://127.0.0.1:{app_port}/_stcore/health", deadline)
        assert app.status_code == 200
        page = httpx.get(f"http://127.0.0.1:{app_port}/", timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert (tmp_path / "up.db").exists()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=20)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{api_port}/api/v1/health", timeout=2)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{app_port}/_stcore/health", timeout=2)


def test_ingest_csv_loads_a_file_and_reports_failures(client, tmp_path):
    runner = CliRunner()
    runner.invoke(
        main,
        [
            "user",
            "create",
            "--email",
            "boss@plant.example",
            "--new-org",
            "Org C",
            "--password",
            "long-enough-pw",
        ],
    )
    admin = login(client, "boss@plant.example", "long-enough-pw")
    headers = {"Authorization": f"Bearer {admin['access_token']}"}
    client.post(
        "/api/v1/sites", json={"site_id": "site-c", "name": "C", "timezone": "UTC"}, headers=headers
    )
    client.post(
        "/api/v1/sites/site-c/meters",
        json={"meter_id": "main-incomer", "name": "M"},
        headers=headers,
    )
    good = tmp_path / "good.csv"
    good.write_text(
        "meter_id,timestamp_utc,value\n"
        + "".join(f"main-incomer,2025-12-01T{h:02d}:00:00Z,{h}\n" for h in range(24))
    )
    r = runner.invoke(main, ["ingest", "csv", str(good), "--org", "Org C", "--site", "site-c"])
    assert r.exit_code == 0, r.output
    assert '"ingested": 24' in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "site_id,meter_id,timestamp_utc,value\nsite-c,main-incomer,2025-12-02T00:00:00Z,x\n"
    )
    r = runner.invoke(main, ["ingest", "csv", str(bad), "--org", "Org C"])
    assert r.exit_code == 1
    assert '"line": 2' in r.output and "INVALID_VALUE" in r.output
    summary = client.get("/api/v1/timeseries/export?site_id=site-c", headers=headers)
    assert len(summary.text.strip().splitlines()) == 25


def test_cei_demo_prints_a_login_that_works_and_is_shown_again(client, settings):
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--days", "15"])
    assert first.exit_code == 0, first.output
    line = next(x for x in first.output.splitlines() if x.startswith("Sign in to the demo"))
    password = line.rsplit(" ", 1)[1]
    assert login(client, "demo@cei.local", password)["access_token"]
    again = runner.invoke(main, ["demo"])
    assert again.exit_code == 0
    assert password in again.output and "Demo ready" not in again.output
    assert (settings.data_dir / "demo_login.txt").stat().st_mode & 0o077 == 0


def test_db_backup_copies_a_consistent_sqlite_database(client, settings, tmp_path):
    from sqlalchemy import create_engine, text

    user = signup(client, org="Backup Works")
    make_site(client, user["headers"], "bk", meters=("main-incomer",))
    records = hourly_records("bk", "main-incomer", datetime(2025, 11, 1, tzinfo=UTC), 48)
    assert client.post("/api/v1/timeseries/batch", json=records, headers=user["headers"]).is_success
    target = tmp_path / "backup" / "cei-copy.db"
    result = CliRunner().invoke(main, ["db", "backup", str(target)])
    if settings.is_postgres:
        assert result.exit_code != 0 and "pg_dump" in result.output
        return
    assert result.exit_code == 0, result.output
    with create_engine(f"sqlite:///{target}").connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM reading")).scalar() == 48
    again = CliRunner().invoke(main, ["db", "backup", str(target)])
    assert again.exit_code != 0 and "exists" in again.output  # never overwrites a backup


def test_alerts_scan_and_reports_on_the_demo(client, settings, tmp_path):
    """The pilot's close-out on the demo factory: the scorecard passes, the HTML is written."""
    runner = CliRunner()
    assert runner.invoke(main, ["demo"]).exit_code == 0  # 90 days, scanned once already
    scan = runner.invoke(main, ["alerts", "scan"])
    assert scan.exit_code == 0, scan.output
    [line] = [x for x in scan.stdout.splitlines() if x.startswith("{")]
    counts = json.loads(line)
    assert counts["meters_scanned"] == 8 and counts["failed"] == []
    assert (counts["raised"], counts["updated"], counts["closed"]) == (0, 0, 0)

    out = tmp_path / "pilot.html"
    pilot = runner.invoke(main, ["report", "pilot", "--cost", "25000", "--out", str(out)])
    assert pilot.exit_code == 0, pilot.output
    marks = [x.split()[0] for x in pilot.stderr.splitlines() if x.startswith(("PASS", "FAIL"))]
    assert marks == ["PASS"] * 4, pilot.stderr
    page = out.read_text(encoding="utf-8")
    assert "Pilot close-out report" in page and "Simple payback of EUR 25,000" in page
    assert re.search(r"\d+–\d+ % avoidable kWh, EUR [\d,]+–[\d,]+ per year", page)

    weekly = runner.invoke(main, ["report", "weekly", "--site", "site-22", "--format", "md"])
    assert weekly.exit_code == 0, weekly.output
    assert weekly.stdout.startswith("# Weekly review ") and "## Next week's focus" in weekly.stdout
    bad = runner.invoke(main, ["report", "weekly", "--week", "2026-W60"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "week" in bad.output
