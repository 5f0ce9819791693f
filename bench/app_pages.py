"""App page speed: every page's full script run with AppTest, on 10 meters x 1 year of hourly
data. Each page is run cold (caches cleared) and warm (the cached reads a rerun gets, e.g.
after a click); the reference is a run of the login page. With `--limit S` it exits 1 when any
page's full script run (cold or warm) takes longer than S seconds, naming the pages.

The app package is imported first, as `cei up` does, so the page runs get the app's BLAS
settings (app/__init__.py).

    python bench/app_pages.py [--days 365] [--repeat 3] [--limit 2.0]
"""

import argparse
import logging
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "Dashboard": "views/dashboard.py",
    "Site view": "views/site.py",
    "Data health": "views/health.py",
    "Alerts": "views/alerts.py",
    "Opportunities & savings": "views/opportunities.py",
    "Reports": "views/reports.py",
    "Upload CSV": "views/upload.py",
    "Settings": "views/settings.py",
}


def build(days: int) -> dict:
    """The demo factory over `days`, plus two more meters at the warehouse: 10 meters."""
    import pandas as pd

    from core.accounts import Principal
    from core.alerts import scan_org
    from core.db import get_engine, migrate, session_scope
    from core.demo import load_demo
    from core.ingestion import ingest_records
    from core.models import MeterCreate, Role
    from core.readings import hourly_values
    from core.settings import get_settings
    from core.sites import create_meter, get_meter

    settings = get_settings()
    migrate()
    engine = get_engine()
    out = load_demo(engine, settings=settings, reset=True, days=days)
    principal = Principal(org_id=out["org_id"], role=Role.admin, kind="user")
    with session_scope(engine) as session:
        _, main = get_meter(
            session, org_id=out["org_id"], site_id="site-23", meter_id="main-incomer"
        )
        end = pd.Timestamp.now(tz="UTC").floor("h")
        base = hourly_values(
            session, meter_pk=main.id, start=end - pd.Timedelta(days=days), end=end
        )
        for meter_id in ("lighting", "racking-chillers"):
            create_meter(
                session,
                org_id=out["org_id"],
                site_id="site-23",
                data=MeterCreate(meter_id=meter_id, name=meter_id, kind="sub_meter"),
            )
    for meter_id, share in (("lighting", 0.3), ("racking-chillers", 0.5)):
        records = [
            {
                "site_id": "site-23",
                "meter_id": meter_id,
                "timestamp_utc": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "value": round(float(v) * share, 3),
            }
            for ts, v in base.dropna().items()
        ]
        for i in range(0, len(records), 5000):
            with session_scope(engine) as session:
                ingest_records(session, principal=principal, records=records[i : i + 5000])
    scan_org(engine, org_id=out["org_id"])
    return out


def timed_run(at) -> float:
    started = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--limit", type=float, default=None, help="fail when a page run takes longer (seconds)"
    )
    args = ap.parse_args()
    import app  # noqa: F401  # before numpy: the served app's process settings

    slow = []

    def record(label: str, cold: float, warm: float) -> None:
        if args.limit is not None and max(cold, warm) > args.limit:
            slow.append(f"{label.strip()} ({max(cold, warm):.2f} s)")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DATABASE_URL"] = f"sqlite:///{Path(tmp, 'bench.db').as_posix()}"
        os.environ["CEI_DATA_DIR"] = tmp
        os.environ["CEI_JWT_SECRET"] = secrets.token_urlsafe(48)
        os.environ["CEI_BCRYPT_ROUNDS"] = "4"
        import streamlit as st
        from streamlit.testing.v1 import AppTest

        logging.disable(logging.WARNING)  # no bare-mode warnings between the figures

        started = time.perf_counter()
        demo = build(args.days)
        print(f"data: 10 meters x {args.days} days, built in {time.perf_counter() - started:.1f} s")
        at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=120)
        login = timed_run(at)
        at.text_input[0].input(demo["email"])
        at.text_input[1].input(demo["password"])
        at.button[0].click()
        timed_run(at)
        print(f"reference: login page run {login:.2f} s")
        print(f"{'page':<26}{'cold (s)':>10}{'warm median (s)':>18}{'warm/ref':>10}")
        for title, path in PAGES.items():
            st.cache_data.clear()
            at.switch_page(path)
            cold = timed_run(at)
            warm = statistics.median(timed_run(at) for _ in range(args.repeat))
            shown = at.title[0].value if at.title else "?"
            print(f"{title:<26}{cold:>10.2f}{warm:>18.2f}{warm / login:>10.1f}  ({shown})")
            record(title, cold, warm)
            if title == "Reports":
                for section in ("Weekly review", "Pilot report"):
                    st.cache_data.clear()
                    at.radio(key="reports-section").set_value(section)
                    cold = timed_run(at)
                    warm = statistics.median(timed_run(at) for _ in range(args.repeat))
                    label = f"  {section}"
                    print(f"{label:<26}{cold:>10.2f}{warm:>18.2f}{warm / login:>10.1f}")
                    record(f"Reports, {section}", cold, warm)
                at.radio(key="reports-section").set_value("7-day tables")
    if slow:
        print(f"over the {args.limit:.1f} s limit: " + ", ".join(slow))
        raise SystemExit(1)
    if args.limit is not None:
        print(f"every page run within {args.limit:.1f} s")


if __name__ == "__main__":
    main()
