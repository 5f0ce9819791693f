#!/usr/bin/env python3
"""CEI factory relay: read hourly kWh from the plant and deliver every reading to CEI once.

A single file with no dependencies beyond Python 3.9+, so it can be copied to the SCADA or
historian PC (Linux or Windows) and run from cron or Task Scheduler.

Configuration (environment variables):
    CEI_BASE_URL        CEI's address, e.g. https://cei.example.com              (required)
    CEI_INT_TOKEN       the integration token, cei_int_...       (required unless --dry-run)
    CEI_SOURCE          "fake" (a ramp, for trials; default) or "csv:PATH" (a historian
                        export file, or a folder of them; the columns of CEI's CSV upload,
                        in any order and any case)
    CEI_SITE_ID         site of the fake source (default site-22)
    CEI_METERS          comma-separated meter_ids of the fake source (default main-incomer)
    CEI_OUTBOX          the local outbox file (default cei_relay_outbox.sqlite3 next to this file)
    CEI_CATCHUP_HOURS   how many past hours each run reads again, for late hours (default 48)
    CEI_MAX_CATCHUP_DAYS  after a long stop, read back at most this far (default 30; older
                        hours are logged with the --backfill command that sends them)
    CEI_BATCH_SIZE      records per request (default 500; CEI accepts up to 10,000, and
                        lists at most 1,000 refusals per answer: more are sent again)
    CEI_STUCK_HOURS     exit 2 when a reading waits longer than this (default 6)
    CEI_MAX_ATTEMPTS    tries per batch within a run before leaving it for the next (default 6)
    CEI_BACKOFF_SECONDS first retry delay; doubles each try, with jitter (default 2)
    CEI_MAX_BACKOFF_SECONDS  the longest delay between two tries (default 300)
    CEI_TIMEOUT_SECONDS how long to wait for CEI's answer to one request (default 60)

Usage:
    python factory_client.py --once                  # one run (cron, Task Scheduler)
    python factory_client.py                         # run every --interval seconds (300)
    python factory_client.py --dry-run               # show what would be sent; send nothing
    python factory_client.py --backfill 2026-10-01 2026-11-01   # a past range (UTC, end excl.)
    python factory_client.py --requeue-rejected      # after fixing a mapping, resend refusals

--backfill takes UTC dates or ISO 8601 times; times between hours are rounded in to whole hours
(2026-10-01T00:30:00Z 2026-10-01T06:30:00Z sends the hours starting 01:00 to 05:00).

How it loses nothing: every reading read from the source goes into the outbox (a SQLite file)
before anything is sent, one per site, meter and hour. The outbox also keeps, per meter, the
newest hour read, so a run after the PC was off for days starts from there (up to
CEI_MAX_CATCHUP_DAYS back), not just CEI_CATCHUP_HOURS. A reading leaves the "pending" state only
when CEI has answered for it: stored or already there ("sent"), or refused with a validation
code ("rejected", logged, never retried unchanged). A CEI outage, a network cut, a crash or a
reboot leaves readings pending, and the next run sends them; CEI recognises anything it already
has, so a reading sent twice is stored once. A reading whose hour the outbox already holds with
another value (queued or sent) is not queued again: it is logged, because CEI would refuse it
(send corrections with mode=revise). Each reading goes with the idempotency key
site_id/meter_id/timestamp_utc: CEI's default, site_id-meter_id-timestamp_utc, is the same for
site "plant" with meter "north-main" and site "plant-north" with meter "main".

Only one relay runs at a time on an outbox (a lock next to it, released by the operating
system when the process ends, even when it is killed); a second one exits at once.

Exit codes: 0 done (or waiting to retry), 2 readings stuck longer than CEI_STUCK_HOURS, or a
whole batch refused (HTTP 400/404/413/415...: the address or the program needs fixing), or
another relay on the same outbox running longer than CEI_STUCK_HOURS; 3 configuration or
authorisation problem (token missing, revoked or out of scope; CEI_BASE_URL not an http:// or
https:// address; a CSV file without a column).
"""

import argparse
import contextlib
import csv
import email.utils
import http.client
import json
import logging
import math
import os
import random
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
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


CSV_COLUMNS = ("site_id", "meter_id", "timestamp_utc", "value")


class ConfigError(Exception):
    """A problem a person must fix (a CSV file without a needed column): exit 3."""


def read_csv_source(path, start, end):
    """Readings from historian exports: one CSV file, or every *.csv in a folder (by name).

    Columns site_id, meter_id, timestamp_utc, value[, unit] in any order and any case (as CEI's
    upload), with timestamp_utc as ISO 8601 UTC, e.g. 2026-11-30T13:00:00Z. Rows outside
    [start, end) are skipped. A file without one of the columns is reported and skipped (the
    run exits 3).
    """
    folder = Path(path)
    if folder.is_dir():  # *.csv and *.CSV alike, on Linux as on Windows
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() == ".csv" and f.is_file())
    else:
        files = [folder]
    if not files or not all(f.is_file() for f in files):
        raise ConfigError(f"CSV source {path}: no such file, or no *.csv in the folder")
    bad = []
    for file in files:
        with file.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [(h or "").strip().lower() for h in reader.fieldnames or []]
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                log.error(
                    "%s: no column %s; the header must be site_id,meter_id,timestamp_utc,"
                    "value[,unit] (found: %s); file skipped",
                    file, ", ".join(missing), ",".join(header) or "nothing",
                )  # fmt: skip
                bad.append(file.name)
                continue
            reader.fieldnames = header
            for line, row in enumerate(reader, start=2):
                try:
                    ts = parse_time(row["timestamp_utc"] or "")
                except ValueError:
                    log.warning("%s line %d: no valid timestamp_utc, skipped: %s", file, line, row)
                    continue
                if start <= ts < end:
                    yield {
                        "site_id": (row["site_id"] or "").strip(),
                        "meter_id": (row["meter_id"] or "").strip(),
                        "timestamp_utc": iso(ts),
                        "value": (row["value"] or "").strip(),
                        "unit": (row.get("unit") or "kWh").strip() or "kWh",
                    }
    if bad:
        raise ConfigError(f"CSV files without the needed columns: {', '.join(bad)}")


def read_source(config, ranges):
    """Every reading of the configured source, as CEI records.

    `ranges` maps each meter ("site_id/meter_id", or "*" for every meter of a CSV source) to
    the [start, end) to read.
    """
    source = config["source"]
    if source.startswith("csv:"):
        start, end = ranges["*"]
        for rec in read_csv_source(source[4:], start, end):
            # A value that is not a number is sent as it is: CEI refuses it with INVALID_VALUE
            # and the run logs the row.
            with contextlib.suppress(ValueError):
                rec["value"] = float(rec["value"])
            yield rec
        return
    if source != "fake":
        raise ConfigError(f"CEI_SOURCE must be 'fake' or 'csv:PATH', not {source!r}")
    for meter_id in config["meters"]:
        start, end = ranges[f"{config['site_id']}/{meter_id}"]
        for ts, value in sorted(read_scada(config["site_id"], meter_id, start, end).items()):
            yield {
                "site_id": config["site_id"],
                "meter_id": meter_id,
                "timestamp_utc": iso(ts),
                "value": value,
                "unit": "kWh",
            }


def meters_of(config):
    """The meters whose newest hour read is kept ("*": a CSV source, meters not known ahead)."""
    if config["source"].startswith("csv:"):
        return ["*"]
    return [f"{config['site_id']}/{m}" for m in config["meters"]]


# --- time helpers ----------------------------------------------------------------------------


def utcnow():
    return datetime.now(timezone.utc)


def floor_hour(ts):
    return ts.replace(minute=0, second=0, microsecond=0)


def ceil_hour(ts):
    start = floor_hour(ts)
    return start if start == ts else start + HOUR


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


MAX_KEY_LENGTH = 200  # CEI's limit; a longer key is left out (such ids are refused anyway)


def idempotency_key(site_id, meter_id, timestamp_utc):
    """The key sent with a reading: site_id/meter_id/timestamp_utc.

    Not CEI's default, site_id-meter_id-timestamp_utc: ids contain '-', so that one is the same
    for site "plant" with meter "north-main" and site "plant-north" with meter "main", and CEI
    would refuse the second reading. Ids never contain '/'."""
    return f"{site_id}/{meter_id}/{timestamp_utc}"


OUTBOX_TABLE = """CREATE TABLE IF NOT EXISTS outbox (
    site_id TEXT NOT NULL, meter_id TEXT NOT NULL, timestamp_utc TEXT NOT NULL,
    value, unit TEXT, queued_at REAL, attempts INTEGER DEFAULT 0,
    status TEXT DEFAULT 'pending', code TEXT, message TEXT, done_at REAL,
    PRIMARY KEY (site_id, meter_id, timestamp_utc))"""


def reading_of(record):
    return record["site_id"], record["meter_id"], record["timestamp_utc"]


class Outbox:
    """Readings waiting for CEI's answer, in a SQLite file that survives crashes and reboots:
    one row per site, meter and hour.

    Also the newest hour read per meter (`mark`), and running totals of CEI's answers."""

    def __init__(self, path):
        self.db = sqlite3.connect(str(path), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self._upgrade()
        self.db.execute(OUTBOX_TABLE)
        self.db.execute(
            "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, timestamp_utc)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS mark (meter TEXT PRIMARY KEY, next_hour TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, n INTEGER)")
        self.db.execute("CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY, pid, since)")
        self.db.commit()

    def _old_layout(self):
        """True for an outbox of relay 1.0, whose rows were keyed by site-meter-timestamp."""
        columns = {row[1]: row[5] for row in self.db.execute("PRAGMA table_info(outbox)")}
        return bool(columns.get("key"))

    def _upgrade(self):
        """Move a relay 1.0 outbox to one row per site, meter and hour, keeping every row."""
        if not self._old_layout():
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self._old_layout():  # not already done by another process meanwhile
                self.db.execute("ALTER TABLE outbox RENAME TO outbox_v1")
                self.db.execute(OUTBOX_TABLE)
                # The old key was unique, and one reading always had the same key: so was
                # (site, meter, hour), and every row moves across.
                self.db.execute(
                    "INSERT OR IGNORE INTO outbox (site_id, meter_id, timestamp_utc, value, unit, "
                    "queued_at, attempts, status, code, message, done_at) SELECT "
                    "COALESCE(site_id, ''), COALESCE(meter_id, ''), COALESCE(timestamp_utc, ''), "
                    "value, unit, queued_at, attempts, status, code, message, done_at "
                    "FROM outbox_v1"
                )
                moved = self.db.execute("SELECT changes()").fetchone()[0]
                # Refused for a key clash: the new keys cannot clash, so they go again.
                self.db.execute(
                    "UPDATE outbox SET status = 'pending', code = NULL, queued_at = ? "
                    "WHERE status = 'rejected' AND code = 'IDEMPOTENCY_CONFLICT'",
                    (time.time(),),
                )
                total = self.db.execute("SELECT COUNT(*) FROM outbox_v1").fetchone()[0]
                self.db.execute("DROP TABLE outbox_v1")  # and its index
                log.info("outbox upgraded to one row per site, meter and hour (%d rows)", moved)
                if moved != total:
                    log.warning("outbox upgrade: %d rows were duplicates, dropped", total - moved)
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    @staticmethod
    def read_marks(path):
        """The marks of an outbox file, read-only ({} when there is none yet)."""
        if not Path(path).exists():
            return {}
        db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute("SELECT meter, next_hour FROM mark").fetchall()
        except sqlite3.OperationalError:  # no mark table yet
            rows = []
        finally:
            db.close()
        return {m: parse_time(h) for m, h in rows}

    def marks(self):
        """{meter: the hour after the newest one read}."""
        return {m: parse_time(h) for m, h in self.db.execute("SELECT meter, next_hour FROM mark")}

    def queue(self, records, marks=None):
        """Add readings not seen before (and new values of refused ones), and move the marks,
        in one transaction; returns how many readings were new or changed.

        A reading for an hour the outbox holds with another value, pending or sent, is not
        queued (the first value stays: CEI would refuse another one without mode=revise), and
        is logged; so is a second value for one hour within a run (e.g. two export files)."""
        now = time.time()
        queued = 0
        dropped = []
        with self.db:
            for r in records:
                reading = reading_of(r)
                held = self.db.execute(
                    "SELECT value, unit, status FROM outbox "
                    "WHERE site_id = ? AND meter_id = ? AND timestamp_utc = ?",
                    reading,
                ).fetchone()
                if held is None:
                    self.db.execute(
                        "INSERT INTO outbox (site_id, meter_id, timestamp_utc, value, unit, "
                        "queued_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (*reading, r["value"], r["unit"], now),
                    )
                elif held[:2] == (r["value"], r["unit"]):
                    continue  # read again, unchanged: the common case
                elif held[2] == "rejected":  # refused, now with another value: send that
                    self.db.execute(
                        "UPDATE outbox SET value = ?, unit = ?, status = 'pending', code = NULL, "
                        "queued_at = ? WHERE site_id = ? AND meter_id = ? AND timestamp_utc = ?",
                        (r["value"], r["unit"], now, *reading),
                    )
                else:
                    dropped.append((r, held))
                    continue
                queued += 1
            for meter, next_hour in (marks or {}).items():
                self.db.execute(
                    "INSERT INTO mark (meter, next_hour) VALUES (?, ?) ON CONFLICT (meter) "
                    "DO UPDATE SET next_hour = MAX(next_hour, excluded.next_hour)",
                    (meter, iso(next_hour)),
                )
        if dropped:
            log.warning(
                "%d reading(s) not queued: the outbox holds their hour with another value, "
                "which is kept (CEI would refuse the new one; correct CEI with mode=revise): %s",
                len(dropped),
                "; ".join(
                    f"{r['site_id']}/{r['meter_id']} {r['timestamp_utc']}: {r['value']!r} "
                    f"{r['unit']}, kept {held[0]!r} {held[1]} ({held[2]})"
                    for r, held in dropped[:5]
                ),
            )
        return queued

    def pending(self, limit):
        rows = self.db.execute(
            "SELECT site_id, meter_id, timestamp_utc, value, unit FROM outbox "
            "WHERE status = 'pending' ORDER BY timestamp_utc, site_id, meter_id LIMIT ?",
            (limit,),
        ).fetchall()
        records = []
        for s, m, t, v, u in rows:
            record = {"site_id": s, "meter_id": m, "timestamp_utc": t, "value": v, "unit": u}
            key = idempotency_key(s, m, t)
            if len(key) <= MAX_KEY_LENGTH:
                record["idempotency_key"] = key
            records.append(record)
        return records

    def settle(self, records, body):
        """Record CEI's answer to a batch. Returns the records whose fate is unknown.

        Listed refusals are 'rejected' with their code. CEI lists the refusals with the 1,000
        lowest indexes and counts all of them in `failed`: when some are not listed, the
        records after the last listed one may be refused too, so they stay pending and go
        again (CEI answers "skipped_duplicate" for the ones it stored)."""
        now = time.time()
        errors = [e for e in body.get("errors") or [] if isinstance(e.get("index"), int)]
        refused = {e["index"]: e for e in errors}
        failed = body.get("failed", len(refused))
        last_known = len(records) - 1
        if failed > len(refused):
            last_known = max(refused, default=-1)
        with self.db:
            for i, rec in enumerate(records[: last_known + 1]):
                err = refused.get(i)
                self.db.execute(
                    "UPDATE outbox SET status = ?, code = ?, message = ?, done_at = ?, "
                    "attempts = attempts + 1 WHERE site_id = ? AND meter_id = ? AND "
                    "timestamp_utc = ?",
                    (
                        "rejected" if err else "sent",
                        err.get("code") if err else None,
                        err.get("message") if err else None,
                        now,
                        *reading_of(rec),
                    ),
                )
            for name, n in (
                ("sent", len(records)),
                ("ingested", body.get("ingested", 0)),
                ("duplicates", body.get("skipped_duplicate", 0)),
                ("rejected", failed),
            ):
                self.db.execute(
                    "INSERT INTO totals (name, n) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET n = n + excluded.n",
                    (name, n),
                )
        return records[last_known + 1 :]

    def attempted(self, records, message):
        with self.db:
            self.db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, message = ? "
                "WHERE site_id = ? AND meter_id = ? AND timestamp_utc = ?",
                ((message, *reading_of(r)) for r in records),
            )

    def requeue_rejected(self):
        """Refused readings back to pending, as if queued now: the stuck-hours clock restarts."""
        with self.db:
            return self.db.execute(
                "UPDATE outbox SET status = 'pending', code = NULL, queued_at = ? "
                "WHERE status = 'rejected'",
                (time.time(),),
            ).rowcount

    def stats(self):
        pending, oldest = self.db.execute(
            "SELECT COUNT(*), MIN(queued_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return pending, oldest

    def totals(self):
        return dict(self.db.execute("SELECT name, n FROM totals"))

    def forget_old(self, days):
        """Keep the file small: answered readings older than `days` are dropped."""
        with self.db:
            self.db.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND done_at < ?",
                (time.time() - days * 86400,),
            )


class RunLock:
    """One relay at a time per outbox: an exclusive SQLite transaction on `OUTBOX.lock`.

    Works the same on Windows and Linux, and cannot go stale: the operating system releases
    it when the process ends, however it ends."""

    def __init__(self, outbox_path):
        self.db = sqlite3.connect(str(outbox_path) + ".lock", timeout=0, isolation_level=None)

    def acquire(self):
        try:
            self.db.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            return False
        return True


# --- talking to CEI --------------------------------------------------------------------------

NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


class Unauthorized(Exception):
    pass


def retry_after_seconds(value):
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((email.utils.parsedate_to_datetime(value) - utcnow()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def post_batch(config, records):
    """POST one batch; returns (status, parsed body or None, Retry-After seconds or None).

    Raises one of NETWORK_ERRORS when no complete answer came back (refused connection,
    timeout, a connection dropped before or during the answer, an answer that is not JSON)."""
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
        except NETWORK_ERRORS:
            parsed = None
        if not isinstance(parsed, dict):
            parsed = None
        wait = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
        return exc.code, parsed, wait


def describe(status, body):
    body = body or {}
    text = f"HTTP {status}"
    if body.get("code"):
        text += f" {body['code']}"
    return f"{text}: {body.get('detail') or body.get('title') or ''}".strip().rstrip(":")


def log_refusals(batch, body, counts):
    """A line per refused record (the first 20 of a run), then a summary by code."""
    for err in body.get("errors") or []:
        code = err.get("code")
        counts["codes"][code] = counts["codes"].get(code, 0) + 1
        counts["logged"] += 1
        if counts["logged"] > 20:
            continue
        rec = batch[err["index"]] if isinstance(err.get("index"), int) else {}
        log.warning(
            "refused by CEI, not retried: %s %s/%s %s: %s",
            code,
            rec.get("site_id"),
            rec.get("meter_id"),
            rec.get("timestamp_utc"),
            err.get("message"),
        )


def deliver(config, outbox, counts):
    """Send pending readings oldest first until none is left or CEI cannot be reached.

    Returns "done", "unreachable" (tries used up; the next run goes on) or "refused" (CEI
    refused a whole batch: retrying will not help)."""
    size = config["batch_size"]
    while True:
        batch = outbox.pending(size)
        if not batch:
            return "done"
        for attempt in range(1, config["max_attempts"] + 1):
            try:
                status, body, retry_after = post_batch(config, batch)
            except NETWORK_ERRORS as exc:
                status, body, retry_after = None, None, None
                problem = f"network: {type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                problem = describe(status, body)
            if status == 200 and isinstance(body, dict):
                uncertain = outbox.settle(batch, body)
                counts["sent"] += len(batch)
                counts["ingested"] += body.get("ingested", 0)
                counts["duplicates"] += body.get("skipped_duplicate", 0)
                counts["rejected"] += body.get("failed", 0)
                log_refusals(batch, body, counts)
                answer = {k: body.get(k) for k in ("ingested", "skipped_duplicate", "failed")}
                log.debug("batch of %d answered: %s", len(batch), answer)
                if uncertain:
                    if len(uncertain) == len(batch):
                        log.error("CEI's answer accounts for no record of the batch: %s", body)
                        return "refused"
                    log.info(
                        "CEI listed only the first refusals; sending the %d records after "
                        "them again", len(uncertain),
                    )  # fmt: skip
                break
            if status in (401, 403):
                outbox.attempted(batch, problem)
                raise Unauthorized(problem)
            if status == 413 and size > 1:
                size = max(size // 2, 1)  # too big for this server: halve and go on
                log.info("batch too large, sending %d records at a time", size)
                break
            retryable = status is None or status == 429 or status >= 500
            outbox.attempted(batch, problem)
            if not retryable:
                hint = " (is CEI_BASE_URL the API's address?)" if status in (404, 405) else ""
                log.error(
                    "CEI refused the whole batch of %d (%s)%s; it stays pending, and the relay "
                    "exits 2 until this is fixed",
                    len(batch), problem, hint,
                )  # fmt: skip
                return "refused"
            if attempt == config["max_attempts"]:
                log.warning("giving up for this run after %d tries: %s", attempt, problem)
                return "unreachable"
            if retry_after is not None:
                # Never sooner than CEI asked; a little later, so relays do not return together.
                delay = retry_after * random.uniform(1.0, 1.2) + random.uniform(0, 0.5)
                why = f"Retry-After {retry_after:g} s"
            else:
                delay = min(config["backoff"] * 2 ** (attempt - 1), config["max_backoff"])
                delay *= random.uniform(0.5, 1.5)
                why = "backoff"
            log.info("try %d failed (%s); retrying in %.1f s (%s)", attempt, problem, delay, why)
            time.sleep(delay)


# --- one run ---------------------------------------------------------------------------------


def plan(config, args, marks, now):
    """What to read: {meter: (start, end)}. Logs what is left out."""
    end = floor_hour(now)  # the current hour is not complete yet
    if args.backfill:
        asked = parse_time(args.backfill[0]), parse_time(args.backfill[1])
        start, stop = ceil_hour(asked[0]), floor_hour(asked[1])  # whole hours only
        if (start, stop) != asked:
            log.info(
                "--backfill %s %s: reading the whole hours from %s up to %s (end excluded)",
                iso(asked[0]), iso(asked[1]), iso(start), iso(stop),
            )  # fmt: skip
        if stop > end:
            log.warning(
                "--backfill ends at %s, after the last complete hour: reading up to %s only",
                iso(stop), iso(end),
            )  # fmt: skip
            stop = end
        return {m: (start, max(stop, start)) for m in meters_of(config)}
    window = end - timedelta(hours=config["catchup_hours"])
    cap = end - timedelta(days=config["max_catchup_days"])
    ranges = {}
    meters = meters_of(config)
    for meter in meters:
        if meter == "*":  # a CSV source: from the oldest mark of its meters
            seen = [t for m, t in marks.items() if m != "*"]
            start = min([window, *seen])
        else:
            start = min(window, floor_hour(marks.get(meter, window)))
        if start < cap:
            log.warning(
                "%s: the hours from %s to %s are older than the catch-up limit of %d days "
                "and are not read; send them with --backfill %s %s",
                "every meter" if meter == "*" else meter, iso(start), iso(cap),
                config["max_catchup_days"], iso(start), iso(cap),
            )  # fmt: skip
            start = cap
        ranges[meter] = (start, end)
    return ranges


def new_marks(config, records, ranges):
    """After a run: per meter, the hour after the newest one read."""
    marks = {}
    for rec in records:
        meter = f"{rec['site_id']}/{rec['meter_id']}"
        try:
            next_hour = parse_time(rec["timestamp_utc"]) + HOUR
        except ValueError:
            continue
        if meter not in marks or next_hour > marks[meter]:
            marks[meter] = next_hour
    if config["source"].startswith("csv:"):
        return marks
    return {m: t for m, t in marks.items() if m in ranges}


def run_once(config, args):
    """Read, queue, deliver, report. Returns the process exit code."""
    path = Path(config["outbox"])
    if args.dry_run:  # reads the marks only: the file is not changed (nor upgraded)
        marks = Outbox.read_marks(path)
    else:
        lock = RunLock(path)
        outbox = Outbox(path)
        if not lock.acquire():
            holder = outbox.db.execute("SELECT pid, since FROM holder").fetchone()
            pid, since = holder if holder else ("?", time.time())
            hours = (time.time() - since) / 3600
            log.warning(
                "another relay (pid %s) is running on %s since %.1f h; this one exits",
                pid, path, hours,
            )  # fmt: skip
            return 2 if hours > config["stuck_hours"] else 0
        with outbox.db:
            outbox.db.execute(
                "INSERT OR REPLACE INTO holder (id, pid, since) VALUES (1, ?, ?)",
                (os.getpid(), time.time()),
            )
        marks = outbox.marks()
    ranges = plan(config, args, marks, utcnow())
    records = []
    try:
        for rec in read_source(config, ranges):
            rec["idempotency_key"] = idempotency_key(*reading_of(rec))  # shown by --dry-run
            records.append(rec)
        problem = None
    except ConfigError as exc:
        problem = str(exc)
    start = min(r[0] for r in ranges.values())
    end = max(r[1] for r in ranges.values())
    if args.dry_run:
        print(f"dry run: {len(records)} readings from {iso(start)} to {iso(end)}; nothing sent")
        for rec in records[:5]:
            print(json.dumps(rec))
        if problem:
            log.error("%s", problem)
        return 3 if problem else 0
    marks = {} if args.backfill or problem else new_marks(config, records, ranges)
    counts = {"read": len(records), "queued": outbox.queue(records, marks), "sent": 0,
              "ingested": 0, "duplicates": 0, "rejected": 0, "codes": {}, "logged": 0}  # fmt: skip
    if args.requeue_rejected:
        log.info("requeued %d rejected readings", outbox.requeue_rejected())
    code = 3 if problem else 0
    outcome = "done"
    try:
        outcome = deliver(config, outbox, counts)
    except Unauthorized as exc:
        log.error("CEI refused the token (%s): check CEI_INT_TOKEN and its site scope", exc)
        code = 3
    pending, oldest = outbox.stats()
    waited = (time.time() - oldest) / 3600 if oldest else 0.0
    outbox.forget_old(max(30, config["max_catchup_days"] + 7))
    if counts["codes"]:
        log.warning(
            "refused by CEI this run: %s",
            ", ".join(f"{c} {n}" for c, n in sorted(counts["codes"].items(), key=str)),
        )
    log.info(
        "relay run: read=%d queued=%d sent=%d ingested=%d duplicates=%d rejected=%d "
        "pending=%d oldest_pending_hours=%.1f",
        counts["read"], counts["queued"], counts["sent"], counts["ingested"],
        counts["duplicates"], counts["rejected"], pending, waited,
    )  # fmt: skip
    if problem:
        log.error("%s", problem)
    if code == 0 and outcome == "refused":
        code = 2
    elif code == 0 and pending and waited > config["stuck_hours"]:
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
        "base_url": env.get("CEI_BASE_URL", "").strip(),
        "token": env.get("CEI_INT_TOKEN", ""),
        "source": args.source or env.get("CEI_SOURCE", "fake"),
        "site_id": env.get("CEI_SITE_ID", "site-22"),
        "meters": [
            m.strip() for m in env.get("CEI_METERS", "main-incomer").split(",") if m.strip()
        ],
        "outbox": env.get("CEI_OUTBOX", str(here / "cei_relay_outbox.sqlite3")),
    }
    numbers = {
        "catchup_hours": ("CEI_CATCHUP_HOURS", "48", int),
        "max_catchup_days": ("CEI_MAX_CATCHUP_DAYS", "30", int),
        "batch_size": ("CEI_BATCH_SIZE", "500", int),
        "stuck_hours": ("CEI_STUCK_HOURS", "6", float),
        "max_attempts": ("CEI_MAX_ATTEMPTS", "6", int),
        "backoff": ("CEI_BACKOFF_SECONDS", "2", float),
        "max_backoff": ("CEI_MAX_BACKOFF_SECONDS", "300", float),
        "timeout": ("CEI_TIMEOUT_SECONDS", "60", float),
    }
    for key, (name, default, kind) in numbers.items():
        try:
            config[key] = kind(env.get(name) or default)
        except ValueError:
            log.error("%s must be a number, not %r", name, env.get(name))
            raise SystemExit(3) from None
    if args.max_catchup_days is not None:
        config["max_catchup_days"] = args.max_catchup_days
    config["batch_size"] = max(config["batch_size"], 1)
    config["max_attempts"] = max(config["max_attempts"], 1)
    if not args.dry_run:
        missing = [n for n in ("CEI_BASE_URL", "CEI_INT_TOKEN") if not env.get(n, "").strip()]
        if missing:
            log.error("set %s (see the top of this file)", " and ".join(missing))
            raise SystemExit(3)
    if config["base_url"] and not web_address(config["base_url"]):
        log.error(
            "CEI_BASE_URL must be an http:// or https:// address such as "
            "https://cei.example.com, not %r",
            config["base_url"],
        )
        raise SystemExit(3)
    return config


def web_address(text):
    """True for an http:// or https:// URL with a host (what urllib can send to)."""
    try:
        url = urllib.parse.urlsplit(text)
        port_ok = url.port is None or url.port > 0  # a port that is not a number: ValueError
    except ValueError:
        return False
    return url.scheme.lower() in ("http", "https") and bool(url.hostname) and port_ok


def main(argv=None):
    parser = argparse.ArgumentParser(description="Send hourly kWh to CEI; loses nothing.")
    parser.add_argument("--once", action="store_true", help="one run, then exit (for cron)")
    parser.add_argument("--interval", type=float, default=300, help="seconds between runs")
    parser.add_argument("--dry-run", action="store_true", help="read and show; send nothing")
    parser.add_argument("--backfill", nargs=2, metavar=("FROM", "TO"), help="UTC range to send")
    parser.add_argument("--source", help="overrides CEI_SOURCE")
    parser.add_argument("--max-catchup-days", type=int, help="overrides CEI_MAX_CATCHUP_DAYS")
    parser.add_argument("--requeue-rejected", action="store_true", help="resend refused readings")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.backfill:
        try:
            [parse_time(t) for t in args.backfill]
        except ValueError:
            parser.error("--backfill takes two UTC dates or times, e.g. 2026-10-01 2026-11-01")
    # A Windows console or log file may not take every character CEI's messages contain.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    config = load_config(args)
    if args.once or args.dry_run or args.backfill:
        return run_once(config, args)
    try:
        while True:
            code = run_once(config, args)
            if code == 3:
                return code
            args.requeue_rejected = False  # once is enough
            time.sleep(args.interval)
    except KeyboardInterrupt:  # Ctrl+C: the outbox keeps whatever was not answered
        return 130


if __name__ == "__main__":
    sys.exit(main())
