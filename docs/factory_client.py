#!/usr/bin/env python3
"""CEI factory relay: read hourly kWh from the plant and deliver every reading to CEI once.

A single file with no dependencies beyond Python 3.9+, so it can be copied to the SCADA or
historian PC (Linux or Windows) and run from cron or Task Scheduler.

Configuration (environment variables):
    CEI_BASE_URL        CEI's address, e.g. https://cei.example.com              (required)
    CEI_INT_TOKEN       the integration token, cei_int_...       (required unless --dry-run)
    CEI_SOURCE          "fake" (a ramp, for trials; default) or "csv:PATH" (a historian
                        export file, or a folder of them)
    CEI_SITE_ID         site of the fake source (default site-22)
    CEI_METERS          comma-separated meter_ids of the fake source (default main-incomer)
    CEI_OUTBOX          the local outbox file (default cei_relay_outbox.sqlite3 next to this file)
    CEI_CATCHUP_HOURS   how many past hours each run looks at (default 48)
    CEI_BATCH_SIZE      records per request (default 500; CEI accepts up to 10,000)
    CEI_STUCK_HOURS     exit 2 when a reading waits longer than this (default 6)
    CEI_MAX_ATTEMPTS    tries per batch within a run before leaving it for the next (default 6)
    CEI_BACKOFF_SECONDS first retry delay; doubles each try, with jitter (default 2)

Usage:
    python factory_client.py --once                  # one run (cron, Task Scheduler)
    python factory_client.py                         # run every --interval seconds (300)
    python factory_client.py --dry-run               # show what would be sent; send nothing
    python factory_client.py --backfill 2026-10-01 2026-11-01   # a past range (UTC, end excl.)
    python factory_client.py --requeue-rejected      # after fixing a mapping, resend refusals

How it loses nothing: every reading read from the source goes into the outbox (a SQLite file)
before anything is sent, keyed site-meter-timestamp. A reading leaves the "pending" state only
when CEI has answered for it: stored or already there ("sent"), or refused with a validation
code ("rejected", logged, never retried unchanged). A CEI outage, a network cut, a crash or a
reboot leaves readings pending, and the next run sends them; CEI recognises anything it already
has, so a reading sent twice is stored once.

Exit codes: 0 done (or waiting to retry), 2 readings stuck longer than CEI_STUCK_HOURS,
3 configuration or authorisation problem (token missing, revoked or out of scope).
"""

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import random
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

log = logging.getLogger("cei-relay")
HOUR = timedelta(hours=1)
USER_AGENT = "cei-factory-relay/1.0"


# --- the plant side: replace read_scada with your SCADA or historian query -------------------


def read_scada(site_id, meter_id, start, end):
    """Return {hour_start_utc: kWh} for the whole hours in [start, end) this meter has.

    >>> REPLACE THIS FUNCTION with the query of your SCADA, BMS or historian. <<<
    `start` and `end` are timezone-aware UTC datetimes on the hour. Return the energy of each
    complete hour (kWh consumed from that hour's start to the next), keyed by the hour's
    start in UTC. Leave out hours you do not have; never return a partial hour.
    This stand-in is the "fake" ramp source: a repeatable daily shape per meter.
    """
    out = {}
    seed = sum(ord(c) for c in site_id + meter_id) % 50
    t = start
    while t < end:
        shape = 1.0 + math.sin((t.hour - 6) / 24 * 2 * math.pi)  # busy by day, quiet at night
        out[t] = round(40 + seed + 60 * shape + (t.day % 7), 3)
        t += HOUR
    return out


def read_csv_source(path, start, end):
    """Readings from historian exports: one CSV file, or every *.csv in a folder.

    Columns site_id, meter_id, timestamp_utc, value[, unit] (the same as CEI's upload), with
    timestamp_utc as ISO 8601 UTC, e.g. 2026-11-30T13:00:00Z. Rows outside [start, end) are
    skipped.
    """
    files = sorted(Path(path).glob("*.csv")) if Path(path).is_dir() else [Path(path)]
    for file in files:
        with file.open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                try:
                    ts = parse_time(row["timestamp_utc"])
                except (KeyError, ValueError):
                    log.warning("%s: skipping a row without a valid timestamp_utc: %s", file, row)
                    continue
                if start <= ts < end:
                    yield {
                        "site_id": row["site_id"].strip(),
                        "meter_id": row["meter_id"].strip(),
                        "timestamp_utc": iso(ts),
                        "value": row["value"].strip(),
                        "unit": (row.get("unit") or "kWh").strip() or "kWh",
                    }


def read_source(config, start, end):
    """Every reading of the configured source in [start, end), as CEI records."""
    source = config["source"]
    if source.startswith("csv:"):
        for rec in read_csv_source(source[4:], start, end):
            # A value that is not a number is sent as it is: CEI refuses it with INVALID_VALUE
            # and the run logs the row.
            with contextlib.suppress(ValueError):
                rec["value"] = float(rec["value"])
            yield rec
        return
    if source != "fake":
        raise SystemExit(f"CEI_SOURCE must be 'fake' or 'csv:PATH', not {source!r}")
    for meter_id in config["meters"]:
        for ts, value in sorted(read_scada(config["site_id"], meter_id, start, end).items()):
            yield {
                "site_id": config["site_id"],
                "meter_id": meter_id,
                "timestamp_utc": iso(ts),
                "value": value,
                "unit": "kWh",
            }


# --- time helpers ----------------------------------------------------------------------------


def utcnow():
    return datetime.now(timezone.utc)


def floor_hour(ts):
    return ts.replace(minute=0, second=0, microsecond=0)


def iso(ts):
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    """A UTC date (YYYY-MM-DD) or ISO 8601 time (a trailing Z is accepted)."""
    text = text.strip()
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


# --- the outbox ------------------------------------------------------------------------------


class Outbox:
    """Readings waiting for CEI's answer, in a SQLite file that survives crashes and reboots."""

    def __init__(self, path):
        self.db = sqlite3.connect(str(path), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS outbox (
                key TEXT PRIMARY KEY, site_id TEXT, meter_id TEXT, timestamp_utc TEXT,
                value, unit TEXT, queued_at REAL, attempts INTEGER DEFAULT 0,
                status TEXT DEFAULT 'pending', code TEXT, message TEXT, done_at REAL)"""
        )
        self.db.execute(
            "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, timestamp_utc)"
        )
        self.db.commit()

    def queue(self, records):
        """Add readings not seen before; returns how many were new."""
        now = time.time()
        before = self.db.total_changes
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO outbox (key, site_id, meter_id, timestamp_utc, value, "
                "unit, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        r["idempotency_key"],
                        r["site_id"],
                        r["meter_id"],
                        r["timestamp_utc"],
                        r["value"],
                        r["unit"],
                        now,
                    )
                    for r in records
                ),
            )
        return self.db.total_changes - before

    def pending(self, limit):
        rows = self.db.execute(
            "SELECT key, site_id, meter_id, timestamp_utc, value, unit FROM outbox "
            "WHERE status = 'pending' ORDER BY timestamp_utc, key LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {
                "site_id": s,
                "meter_id": m,
                "timestamp_utc": t,
                "value": v,
                "unit": u,
                "idempotency_key": k,
            }
            for k, s, m, t, v, u in rows
        ]

    def settle(self, records, errors):
        """Record CEI's answer: refused ones are 'rejected' with their code, the rest 'sent'."""
        now = time.time()
        refused = {e["index"]: e for e in errors if isinstance(e.get("index"), int)}
        with self.db:
            for i, rec in enumerate(records):
                err = refused.get(i)
                self.db.execute(
                    "UPDATE outbox SET status = ?, code = ?, message = ?, done_at = ?, "
                    "attempts = attempts + 1 WHERE key = ?",
                    (
                        "rejected" if err else "sent",
                        err.get("code") if err else None,
                        err.get("message") if err else None,
                        now,
                        rec["idempotency_key"],
                    ),
                )

    def attempted(self, records, message):
        with self.db:
            self.db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, message = ? WHERE key = ?",
                ((message, r["idempotency_key"]) for r in records),
            )

    def requeue_rejected(self):
        with self.db:
            return self.db.execute(
                "UPDATE outbox SET status = 'pending', code = NULL WHERE status = 'rejected'"
            ).rowcount

    def stats(self):
        pending, oldest = self.db.execute(
            "SELECT COUNT(*), MIN(queued_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return pending, oldest

    def forget_old(self, days=30):
        """Keep the file small: answered readings older than `days` are dropped."""
        with self.db:
            self.db.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND done_at < ?",
                (time.time() - days * 86400,),
            )


# --- talking to CEI --------------------------------------------------------------------------


class Unauthorized(Exception):
    pass


def post_batch(config, records):
    """POST one batch; returns (status, parsed body or None, Retry-After seconds or None)."""
    body = json.dumps({"records": records}).encode("utf-8")
    request = urllib.request.Request(
        config["base_url"].rstrip("/") + "/api/v1/timeseries/batch",
        data=body,
        method="POST",
        headers={
            "Authorization": "Bearer " + config["token"],
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=config["timeout"]) as response:
            return response.status, json.loads(response.read() or b"{}"), None
    except urllib.error.HTTPError as exc:
        try:
            parsed = json.loads(exc.read() or b"{}")
        except ValueError:
            parsed = None
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        try:
            wait = float(retry_after) if retry_after else None
        except ValueError:
            wait = None
        return exc.code, parsed, wait


def deliver(config, outbox, counts):
    """Send pending readings oldest first until none is left or CEI cannot be reached."""
    size = config["batch_size"]
    while True:
        batch = outbox.pending(size)
        if not batch:
            return True
        for attempt in range(1, config["max_attempts"] + 1):
            try:
                status, body, retry_after = post_batch(config, batch)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                status, body, retry_after = None, None, None
                problem = f"network: {getattr(exc, 'reason', exc)}"
            else:
                problem = f"HTTP {status}: {(body or {}).get('detail', '')}".strip()
            if status == 200:
                outbox.settle(batch, body.get("errors", []))
                counts["sent"] += len(batch)
                counts["ingested"] += body.get("ingested", 0)
                counts["duplicates"] += body.get("skipped_duplicate", 0)
                counts["rejected"] += body.get("failed", 0)
                for err in body.get("errors", []):
                    rec = batch[err["index"]] if isinstance(err.get("index"), int) else {}
                    log.warning(
                        "refused by CEI, not retried: %s %s/%s %s: %s",
                        err.get("code"),
                        rec.get("site_id"),
                        rec.get("meter_id"),
                        rec.get("timestamp_utc"),
                        err.get("message"),
                    )
                break
            if status in (401, 403):
                outbox.attempted(batch, problem)
                raise Unauthorized(problem)
            if status == 413 and size > 1:
                size = max(size // 2, 1)  # too big for this server: halve and go on
                log.info("batch too large, sending %d records at a time", size)
                break
            retryable = status is None or status == 429 or status >= 500
            if not retryable:
                outbox.attempted(batch, problem)
                log.error("CEI refused the whole batch (%s); leaving it pending", problem)
                return False
            outbox.attempted(batch, problem)
            if attempt == config["max_attempts"]:
                log.warning("giving up for this run after %d tries: %s", attempt, problem)
                return False
            delay = (
                retry_after
                if retry_after is not None
                else min(config["backoff"] * 2 ** (attempt - 1), config["max_backoff"])
                * random.uniform(0.5, 1.5)
            )
            log.info("try %d failed (%s); retrying in %.1f s", attempt, problem, delay)
            time.sleep(delay)


# --- one run ---------------------------------------------------------------------------------


def run_once(config, args):
    """Read, queue, deliver, report. Returns the process exit code."""
    now = utcnow()
    if args.backfill:
        start, end = parse_time(args.backfill[0]), parse_time(args.backfill[1])
    else:
        end = floor_hour(now)  # the current hour is not complete yet
        start = end - timedelta(hours=config["catchup_hours"])
    records = []
    for rec in read_source(config, start, end):
        rec["idempotency_key"] = f"{rec['site_id']}-{rec['meter_id']}-{rec['timestamp_utc']}"
        records.append(rec)
    if args.dry_run:
        print(f"dry run: {len(records)} readings from {iso(start)} to {iso(end)}; nothing sent")
        for rec in records[:5]:
            print(json.dumps(rec))
        return 0
    outbox = Outbox(config["outbox"])
    counts = {"read": len(records), "queued": outbox.queue(records), "sent": 0,
              "ingested": 0, "duplicates": 0, "rejected": 0}  # fmt: skip
    if args.requeue_rejected:
        log.info("requeued %d rejected readings", outbox.requeue_rejected())
    code = 0
    try:
        deliver(config, outbox, counts)
    except Unauthorized as exc:
        log.error("CEI refused the token (%s): check CEI_INT_TOKEN and its site scope", exc)
        code = 3
    pending, oldest = outbox.stats()
    waited = (time.time() - oldest) / 3600 if oldest else 0.0
    outbox.forget_old()
    log.info(
        "relay run: read=%d queued=%d sent=%d ingested=%d duplicates=%d rejected=%d "
        "pending=%d oldest_pending_hours=%.1f",
        counts["read"], counts["queued"], counts["sent"], counts["ingested"],
        counts["duplicates"], counts["rejected"], pending, waited,
    )  # fmt: skip
    if code == 0 and pending and waited > config["stuck_hours"]:
        log.error(
            "%d readings have waited %.1f h (limit %s h): CEI is unreachable or refusing them",
            pending, waited, config["stuck_hours"],
        )  # fmt: skip
        code = 2
    return code


def load_config(args):
    env = os.environ
    here = Path(__file__).resolve().parent
    config = {
        "base_url": env.get("CEI_BASE_URL", ""),
        "token": env.get("CEI_INT_TOKEN", ""),
        "source": args.source or env.get("CEI_SOURCE", "fake"),
        "site_id": env.get("CEI_SITE_ID", "site-22"),
        "meters": [
            m.strip() for m in env.get("CEI_METERS", "main-incomer").split(",") if m.strip()
        ],
        "outbox": env.get("CEI_OUTBOX", str(here / "cei_relay_outbox.sqlite3")),
        "catchup_hours": int(env.get("CEI_CATCHUP_HOURS", "48")),
        "batch_size": int(env.get("CEI_BATCH_SIZE", "500")),
        "stuck_hours": float(env.get("CEI_STUCK_HOURS", "6")),
        "max_attempts": int(env.get("CEI_MAX_ATTEMPTS", "6")),
        "backoff": float(env.get("CEI_BACKOFF_SECONDS", "2")),
        "max_backoff": float(env.get("CEI_MAX_BACKOFF_SECONDS", "300")),
        "timeout": float(env.get("CEI_TIMEOUT_SECONDS", "60")),
    }
    if not args.dry_run:
        missing = [n for n in ("CEI_BASE_URL", "CEI_INT_TOKEN") if not env.get(n)]
        if missing:
            log.error("set %s (see the top of this file)", " and ".join(missing))
            raise SystemExit(3)
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description="Send hourly kWh to CEI; loses nothing.")
    parser.add_argument("--once", action="store_true", help="one run, then exit (for cron)")
    parser.add_argument("--interval", type=float, default=300, help="seconds between runs")
    parser.add_argument("--dry-run", action="store_true", help="read and show; send nothing")
    parser.add_argument("--backfill", nargs=2, metavar=("FROM", "TO"), help="UTC range to send")
    parser.add_argument("--source", help="overrides CEI_SOURCE")
    parser.add_argument("--requeue-rejected", action="store_true", help="resend refused readings")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    config = load_config(args)
    if args.once or args.dry_run or args.backfill:
        return run_once(config, args)
    while True:
        code = run_once(config, args)
        if code == 3:
            return code
        args.requeue_rejected = False  # once is enough
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
