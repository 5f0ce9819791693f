"""Load KPIs of a meter and their comparison with sector reference ranges.

Args: hourly kWh on an hour-beginning UTC index (NaN = missing), the site's time zone and
schedule. Shares are of the kWh actually received; completeness says how much that is.
"""

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from core.opportunities import Schedule, time_classes

BENCHMARKS = Path(__file__).resolve().parent / "data" / "benchmarks.json"


def compute_kpis(
    kwh: pd.Series, *, tz: str, schedule: Schedule | None = None, country: str | None = None
) -> dict:
    """Total, mean and peak kWh, load factor, baseload, night and weekend shares, completeness.

    Notes:
        baseload_kwh is the 5th percentile of hourly kWh (robust to a few near-zero hours);
        load_factor = mean / peak; night = working days outside the schedule; weekend = rest
        days and public holidays, both in the site's local time.
    """
    values = kwh.to_numpy(dtype=float)
    present = ~np.isnan(values)
    n = int(present.sum())
    out = {
        "hours": len(values),
        "hours_with_data": n,
        "completeness_pct": round(100 * n / len(values), 1) if len(values) else 0.0,
    }
    if n == 0:
        return {
            **out,
            "total_kwh": 0.0,
            "mean_kwh": None,
            "peak_kwh": None,
            "load_factor": None,
            "baseload_kwh": None,
            "baseload_ratio": None,
            "night_share": None,
            "weekend_share": None,
        }
    v = values[present]
    classes = time_classes(kwh.index, tz, schedule or Schedule(), country)[present]
    total, mean, peak = float(v.sum()), float(v.mean()), float(v.max())
    baseload = float(np.percentile(v, 5))
    return {
        **out,
        "total_kwh": round(total, 3),
        "mean_kwh": round(mean, 3),
        "peak_kwh": round(peak, 3),
        "load_factor": round(mean / peak, 4) if peak > 0 else None,
        "baseload_kwh": round(baseload, 3),
        "baseload_ratio": round(baseload / mean, 4) if mean > 0 else None,
        "night_share": round(float(v[classes == "night"].sum()) / total, 4) if total else None,
        "weekend_share": round(float(v[classes == "weekend"].sum()) / total, 4) if total else None,
    }


@cache
def _reference() -> dict:
    return json.loads(BENCHMARKS.read_text(encoding="utf-8"))


def sectors() -> list[str]:
    return sorted(_reference()["sectors"])


def benchmark_against_industry(kpis: dict, sector: str) -> dict:
    """Each KPI against the sector's reference range: below, within or above, with provenance."""
    ref = _reference()["sectors"]
    entry = ref.get(sector) or ref["general"]
    used = sector if sector in ref else "general"
    rows = []
    for name in ("baseload_ratio", "load_factor", "night_share", "weekend_share"):
        value = kpis.get(name)
        low, high = entry[name]
        verdict = (
            None
            if value is None
            else ("below" if value < low else "above" if value > high else "within")
        )
        rows.append({"kpi": name, "value": value, "range": [low, high], "verdict": verdict})
    indicative = entry["status"] != "sourced"
    return {
        "sector": used,
        "indicative": indicative,
        "source": entry["source"],
        "note": "Reference ranges are indicative estimates, not survey data."
        if indicative
        else "Reference ranges from the cited source.",
        "kpis": rows,
    }
