"""Analytics speed: baselines, anomalies and opportunities for every demo meter, and per
meter-year. Prints figures; asserts nothing.

    python bench/analytics.py [--database-url postgresql+psycopg://…]
"""

import argparse
import secrets
import tempfile
import time
from pathlib import Path

import pandas as pd

from core.analytics import AnalyticsService, analyse_series
from core.db import get_engine, migrate, session_scope
from core.demo import COUNTRY, TZ, generate_plant, load_demo
from core.settings import Settings


def demo_site_analysis(url: str, workdir: Path) -> None:
    settings = Settings(
        _env_file=None,
        database_url=url,
        data_dir=workdir,
        jwt_secret=secrets.token_urlsafe(48),
        bcrypt_rounds=4,
    )
    migrate(url)
    engine = get_engine(url)
    started = time.perf_counter()
    out = load_demo(engine, settings=settings, reset=True)
    load_s = time.perf_counter() - started
    with session_scope(engine) as session:
        service = AnalyticsService(session, org_id=out["org_id"])
        started = time.perf_counter()
        savings = service.savings()
        elapsed = time.perf_counter() - started
        meters = 6  # site-22: main incomer + 4 sub-meters; site-23: main incomer
    print(f"demo org: {out['records']:,} readings loaded in {load_s:.1f} s")
    print(
        f"baselines + anomalies + opportunities for all {meters} energy meters (2 sites, "
        f"28-day window, up to 52 weeks of training): {elapsed:.2f} s "
        f"= {elapsed / meters * 1000:.0f} ms per meter"
    )
    print(f"  -> {savings['narrative']}")


def per_meter_year() -> None:
    end = pd.Timestamp("2025-11-03", tz="UTC")
    plant = generate_plant(1, end=end, days=730)
    split = plant.index[365 * 24]
    timings = []
    for meter in ("main-incomer", "compressor-bank", "chiller-01", "hvac-floor1", "process-line"):
        kwh = plant.kwh[meter]
        started = time.perf_counter()
        analyse_series(
            kwh,
            analysis_start=split,
            tz=TZ,
            meter_id=meter,
            temperature=plant.temperature,
            production=plant.production,
            country=COUNTRY,
            tariff_per_kwh=0.2,
            currency="EUR",
        )
        timings.append(time.perf_counter() - started)
    print(
        f"per meter-year (fit on 365 days, predict and find opportunities on the next 365): "
        f"median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms, max "
        f"{max(timings) * 1000:.0f} ms over {len(timings)} meters (reference: baseline "
        f"fit+predict target 250 ms per meter-year)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cei-bench-") as tmp:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite:///{(workdir / 'analytics.db').as_posix()}"
        demo_site_analysis(url, workdir)
    per_meter_year()


if __name__ == "__main__":
    main()
