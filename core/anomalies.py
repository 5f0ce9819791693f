"""Anomalies: hours outside the baseline's prediction band, merged into events.

Args everywhere: `actual` is hourly kWh on an hour-beginning UTC index (NaN = missing, never
an anomaly); `band` is `BaselineFit.predict(...)` on the same index (columns expected, lower,
upper, kWh).

Notes:
    An hour is anomalous when actual > upper (excess) or actual < lower (deficit). Consecutive
    anomalous hours with the same direction form one event; a single missing hour inside a run
    does not split it. An event's excess kWh is Σ(actual − expected) over its hours. Events of
    at most SPIKE_MAX_HOURS hours are spikes; longer ones are sustained deviations.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPIKE_MAX_HOURS = 2


@dataclass(frozen=True)
class AnomalyEvent:
    start: pd.Timestamp  # first hour (UTC, hour-beginning)
    end: pd.Timestamp  # exclusive
    hours: int
    direction: str  # "above" or "below"
    peak_kwh: float  # the highest (above) or lowest (below) hourly reading
    excess_kwh: float  # Σ(actual − expected); negative below the band
    expected_kwh: float  # Σ expected over the event
    severity: str  # "low", "medium", "high"
    kind: str  # "spike" or "sustained"

    def to_dict(self) -> dict:
        return {
            "start_utc": self.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end_utc": self.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hours": self.hours,
            "direction": self.direction,
            "kind": self.kind,
            "severity": self.severity,
            "peak_kwh": round(self.peak_kwh, 3),
            "excess_kwh": round(self.excess_kwh, 3),
            "expected_kwh": round(self.expected_kwh, 3),
        }


def flag_hours(actual: pd.Series, band: pd.DataFrame) -> pd.Series:
    """+1 above the band, −1 below, 0 inside or missing, per hour."""
    a = actual.reindex(band.index).to_numpy(dtype=float)
    above = a > band["upper"].to_numpy()
    below = a < band["lower"].to_numpy()
    return pd.Series(np.where(above, 1, np.where(below, -1, 0)), index=band.index)


def _severity(excess: float, expected: float, hours: int) -> str:
    relative = abs(excess) / max(expected, 1e-9)
    if relative >= 1.0 or (hours >= 24 and relative >= 0.3):
        return "high"
    if relative >= 0.3:
        return "medium"
    return "low"


def detect_anomalies(
    actual: pd.Series, band: pd.DataFrame, *, min_excess_kwh: float = 0.0
) -> list[AnomalyEvent]:
    """Events of hours outside the band, in time order, dropping those below `min_excess_kwh`."""
    flags = flag_hours(actual, band).to_numpy()
    a = actual.reindex(band.index).to_numpy(dtype=float)
    missing = np.isnan(a)
    expected = band["expected"].to_numpy()
    index = band.index
    events: list[AnomalyEvent] = []
    i, n = 0, len(flags)
    while i < n:
        sign = flags[i]
        if sign == 0:
            i += 1
            continue
        j = i + 1
        while j < n and (flags[j] == sign or (missing[j] and j + 1 < n and flags[j + 1] == sign)):
            j += 1
        hours = [k for k in range(i, j) if not missing[k]]
        excess = float(sum(a[k] - expected[k] for k in hours))
        exp_sum = float(sum(expected[k] for k in hours))
        if abs(excess) >= min_excess_kwh:
            peak = float(max(a[k] for k in hours) if sign > 0 else min(a[k] for k in hours))
            events.append(
                AnomalyEvent(
                    start=index[i],
                    end=index[j - 1] + pd.Timedelta(hours=1),
                    hours=len(hours),
                    direction="above" if sign > 0 else "below",
                    peak_kwh=peak,
                    excess_kwh=excess,
                    expected_kwh=exp_sum,
                    severity=_severity(excess, exp_sum, len(hours)),
                    kind="spike" if len(hours) <= SPIKE_MAX_HOURS else "sustained",
                )
            )
        i = j
    return events


def anomaly_mask(events: list[AnomalyEvent], index: pd.DatetimeIndex) -> pd.Series:
    """True at the hours covered by events (to exclude them from later training)."""
    mask = pd.Series(False, index=index)
    for e in events:
        mask[(index >= e.start) & (index < e.end)] = True
    return mask
