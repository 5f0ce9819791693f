"""Concurrent relays against a real server on the configured database (SQLite in the first CI
run, PostgreSQL in the second): every reading stored once, no 5xx, counts add up."""

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from tests.liveapi import Api

pytestmark = pytest.mark.slow
START = datetime(2023, 1, 2, tzinfo=UTC)  # 20,000 hours later is still in the past


def _records(meter: str, hours: int, offset: int = 0) -> list[dict]:
    return [
        {
            "site_id": "site-22",
            "meter_id": meter,
            "timestamp_utc": (START + timedelta(hours=offset + h)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": round(10 + (offset + h) % 24 * 1.5, 3),
        }
        for h in range(hours)
    ]


@pytest.fixture(name="server")
def server_fixture(tmp_path, settings, engine):
    # The configured database (its tables are emptied after the test), or a fresh SQLite file.
    # Two worker processes, as behind a load balancer: writers race across processes too.
    api = Api(tmp_path, settings.effective_database_url, workers=2).start()
    meters = (*(f"line-{i:02d}" for i in range(16)), "shared")
    org = api.factory(meters)
    yield api, {"Authorization": f"Bearer {org['token']}"}
    api.stop()


def _post(base: str, headers: dict, records: list[dict]) -> dict:
    r = httpx.post(f"{base}/api/v1/timeseries/batch", json=records, headers=headers, timeout=120)
    assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
    assert r.json()["failed"] == 0, r.json()["errors"][:3]
    return r.json()


def _stored(engine, meter_prefix: str) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT COUNT(*), COUNT(DISTINCT r.meter_pk || '-' || r.ts) FROM reading r "
                "JOIN meter m ON m.id = r.meter_pk WHERE m.meter_id LIKE :p"
            ),
            {"p": f"{meter_prefix}%"},
        ).one()
    return row[0], row[1]


def test_sixteen_relays_each_batch_three_times_with_a_concurrent_pair(server, engine):
    api, headers = server

    def relay(i: int) -> list[dict]:
        batch = _records(f"line-{i:02d}", 500)
        with ThreadPoolExecutor(2) as pair:  # the same batch twice at once (a timeout retry)
            answers = list(pair.map(lambda _: _post(api.base, headers, batch), range(2)))
        answers.append(_post(api.base, headers, batch))  # and once more later
        return answers

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(relay, range(16)))
    for answers in results:
        assert sum(a["ingested"] for a in answers) == 500
        assert sum(a["skipped_duplicate"] for a in answers) == 1000
        assert all(a["failed"] == 0 for a in answers)
    assert _stored(engine, "line-") == (16 * 500, 16 * 500)
    print(f"16 relays: sent {16 * 3 * 500}, stored {16 * 500}, duplicates {16 * 1000}")  # noqa: T201


def test_eight_relays_sending_the_same_records_with_retries(server, engine):
    api, headers = server
    records = _records("shared", 20_000)
    batches = [records[i : i + 1000] for i in range(0, len(records), 1000)]

    def relay(seed: int) -> tuple[int, int, int]:
        rng = random.Random(seed)
        sent = ingested = skipped = 0
        order = list(range(len(batches)))
        rng.shuffle(order)
        for b in order:
            for _ in range(2 if rng.random() < 0.3 else 1):  # 30 % of batches retried
                answer = _post(api.base, headers, batches[b])
                sent += len(batches[b])
                ingested += answer["ingested"]
                skipped += answer["skipped_duplicate"]
        return sent, ingested, skipped

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(relay, range(8)))
    sent = sum(r[0] for r in results)
    assert sum(r[1] for r in results) == 20_000, (
        results
    )  # each record stored by exactly one request
    assert sum(r[2] for r in results) == sent - 20_000
    assert sent > 8 * 20_000  # the retries happened
    assert _stored(engine, "shared") == (20_000, 20_000)
    skipped = sum(r[2] for r in results)
    print(f"8 relays: sent {sent}, stored 20000, duplicates {skipped}")  # noqa: T201
