"""Alert scan and report speed on the demo factory with a year of data. Prints figures;
asserts nothing. The reference, measured in the same run, is the analytics the scan builds on:
the opportunities of every energy meter over the same window.

    python bench/alerts.py [--days 365] [--database-url postgresql+psycopg://…]
"""

import argparse
import secrets
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from core import reports
from core.alerts import scan_org
from core.analytics import AnalyticsService
from core.db import get_engine, migrate, session_scope, utcnow
from core.demo import load_demo
from core.settings import Settings


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--database-url", default=None, help="an empty database to fill")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp, 'bench.db').as_posix()}"
        settings = Settings(
            _env_file=None,
            database_url=url,
            data_dir=Path(tmp),
            jwt_secret=secrets.token_urlsafe(48),
            bcrypt_rounds=4,
        )
        migrate(url)
        engine = get_engine(url)
        demo, load_s = timed(
            lambda: load_demo(engine, settings=settings, reset=True, days=args.days)
        )
        org_id = demo["org_id"]
        print(
            f"demo org: {demo['records']:,} readings ({args.days} days, 8 meters) in {load_s:.1f} s"
        )

        first, first_s = timed(lambda: scan_org(engine, org_id=org_id, lookback=timedelta(days=35)))
        print(f"scan, 35 days, first run : {first_s:.2f} s  raised {first.raised}")
        again, again_s = timed(lambda: scan_org(engine, org_id=org_id, lookback=timedelta(days=35)))
        print(
            f"scan, 35 days, again     : {again_s:.2f} s  raised {again.raised}, "
            f"updated {again.updated} (idempotent: {again.raised == again.updated == 0})"
        )
        hourly, hourly_s = timed(lambda: scan_org(engine, org_id=org_id))
        print(f"scan, 7 days (cron)      : {hourly_s:.2f} s  raised {hourly.raised}")

        end = utcnow()
        with session_scope(engine) as session:
            service = AnalyticsService(session, org_id=org_id)
            _, ref_s = timed(
                lambda: [
                    service.site_opportunities(site, end - timedelta(days=7), end)
                    for site in ("site-22", "site-23")
                ]
            )
        print(
            f"reference: opportunities of every energy meter, 7 days: {ref_s:.2f} s "
            f"-> scan/reference = {hourly_s / ref_s:.2f}"
        )

        with session_scope(engine) as session:
            weekly, weekly_s = timed(lambda: reports.weekly_report(session, org_id=org_id))
            _, weekly_html_s = timed(lambda: reports.render_html(weekly))
            pilot, pilot_s = timed(lambda: reports.pilot_report(session, org_id=org_id, cost=20000))
            html, html_s = timed(lambda: reports.render_html(pilot))
        print(f"weekly review {weekly['week']}: build {weekly_s:.2f} s, HTML {weekly_html_s:.2f} s")
        print(
            f"pilot report, {pilot['start_utc'][:10]} to {pilot['end_utc'][:10]}: build "
            f"{pilot_s:.2f} s, HTML {html_s:.2f} s ({len(html.encode()) / 1e6:.1f} MB)"
        )
        for m in pilot["scorecard"]["metrics"]:
            print(
                f"  {'PASS' if m['passed'] else 'FAIL'}  {m['label']}: {m['display']} "
                f"(target {m['target']})"
            )


if __name__ == "__main__":
    main()
