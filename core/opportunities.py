"""Waste opportunities: where, when and how much energy could be avoided, in kWh and money.

Args everywhere: hourly kWh on an hour-beginning UTC index (NaN = missing); the baseline band
from `BaselineFit.predict`; the site's time zone, operating schedule and holiday country.

Notes:
    Every hour above the band is waste candidate; its size is actual − expected (kWh above what
    the baseline predicts for that hour of the week, weather and production). Hours are sorted
    by when they happen, in the site's local time:

    - spike: events of at most 2 hours peaking at least 4 σ above expected, whenever they happen
      (shorter or smaller excursions are what a 95 % band lets through by chance);
    - night-load: longer events' hours outside the schedule on working days;
    - weekend-load: longer events' hours on weekends and public holidays;
    - baseline-deviation: longer events' hours inside the schedule (drift, process change).

    high-baseload (main incomers) compares the baseline's baseload (5th percentile of the
    expected hourly kWh) with its mean; above the sector benchmark's high end, the excess
    baseload over every hour is the opportunity. Using the expected load keeps the waste
    found by the other rules from being counted again here.

    Ranges: central = Σ(actual − expected); the half-width is 1.645 · √Σσ² (the band's noise
    over those hours, 90 % two-sided) plus 5 % of Σ expected, an allowance for the baseline's
    bias out of sample (ASHRAE Guideline 14's monthly NMBE limit; in sample OLS has none).
    Annualised values scale the window's kWh from the hours that have data to 8,760 hours
    (waste in missing hours is unknown, not zero); money uses the org's tariff.
"""

from dataclasses import dataclass, field
from datetime import time

import numpy as np
import pandas as pd

from core.anomalies import SPIKE_MAX_HOURS, detect_anomalies
from core.baselines import BaselineFit, holiday_mask

HOURS_PER_YEAR = 8760
BIAS_ALLOWANCE = 0.05
SPIKE_Z = 4.0  # a spike's peak must be this many band standard deviations above expected
RULES = ("night-load", "weekend-load", "spike", "baseline-deviation", "high-baseload")


@dataclass
class Opportunity:
    rule: str
    site_id: str
    meter_id: str
    window_hours: int
    observed_hours: int  # hours of the window with data: the base for annualising
    hours: int  # evidence hours in the window
    kwh_low: float
    kwh_high: float
    currency: str
    tariff_per_kwh: float
    confidence: str
    explanation: str
    evidence: dict = field(default_factory=dict)

    @property
    def kwh_central(self) -> float:
        return (self.kwh_low + self.kwh_high) / 2

    @property
    def annual_kwh_low(self) -> float:
        return self.kwh_low * HOURS_PER_YEAR / max(self.observed_hours, 1)

    @property
    def annual_kwh_high(self) -> float:
        return self.kwh_high * HOURS_PER_YEAR / max(self.observed_hours, 1)

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "site_id": self.site_id,
            "meter_id": self.meter_id,
            "window_hours": self.window_hours,
            "observed_hours": self.observed_hours,
            "hours": self.hours,
            "avoidable_kwh_low": round(self.kwh_low, 1),
            "avoidable_kwh_high": round(self.kwh_high, 1),
            "annual_kwh_low": round(self.annual_kwh_low),
            "annual_kwh_high": round(self.annual_kwh_high),
            "annual_money_low": round(self.annual_kwh_low * self.tariff_per_kwh),
            "annual_money_high": round(self.annual_kwh_high * self.tariff_per_kwh),
            "currency": self.currency,
            "confidence": self.confidence,
            "explanation": self.explanation,
            "evidence": {
                **self.evidence,
                "hours_utc": [
                    t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in self.evidence.get("hours_utc", [])
                ],
            },
        }


@dataclass(frozen=True)
class Schedule:
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    start: time = time(6)
    end: time = time(22)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Schedule":
        if not data:
            return cls()
        return cls(
            workdays=tuple(data.get("workdays", (0, 1, 2, 3, 4))),
            start=time.fromisoformat(data.get("start", "06:00")),
            end=time.fromisoformat(data.get("end", "22:00")),
        )


def time_classes(
    index: pd.DatetimeIndex, tz: str, schedule: Schedule, country: str | None
) -> np.ndarray:
    """Per hour: 'weekend' (rest day or holiday), 'night' (working day, off schedule), 'shift'."""
    local = index.tz_convert(tz)
    holiday = holiday_mask(local, country)
    rest = ~np.isin(local.day_of_week.to_numpy(), schedule.workdays) | holiday
    minutes = local.hour.to_numpy() * 60
    start = schedule.start.hour * 60 + schedule.start.minute
    end = schedule.end.hour * 60 + schedule.end.minute
    in_hours = (
        (minutes >= start) & (minutes < end)
        if start < end
        else ((minutes >= start) | (minutes < end))
    )
    return np.where(rest, "weekend", np.where(in_hours, "shift", "night"))


EXPLAIN = {
    "night-load": "{meter} draws {kwh} kWh more than usual outside operating hours on working "
    "days ({hours} h in this period): check what is left running overnight.",
    "weekend-load": "{meter} runs {kwh} kWh above its usual weekend and holiday level "
    "({hours} h): check schedules and equipment left on when the plant is shut.",
    "spike": "{meter} had {events} short spikes adding {kwh} kWh: check start-ups, faults or "
    "equipment switched on together.",
    "baseline-deviation": "{meter} used {kwh} kWh more than its baseline during operating hours "
    "({hours} h): look for drift, a process change or a failing component.",
    "high-baseload": "{meter}'s baseload is {ratio:.0%} of its average load, above the "
    "{benchmark:.0%} typical for the sector: idle consumption worth {kwh} kWh.",
}


def rule_hours(
    a: np.ndarray, band: pd.DataFrame, classes: np.ndarray, events: list
) -> tuple[np.ndarray, int]:
    """The rule each hour above the band counts towards ('' for none), and the spike count.

    `events` are the above-band AnomalyEvents over `band`'s index; `a` the actual kWh there.
    """
    index = band.index
    expected = band["expected"].to_numpy()
    sigma = (band["upper"] - band["expected"]).to_numpy() / 1.96
    rule_of_hour = np.full(len(index), "", dtype=object)
    spike_events = 0
    for e in events:
        span = (index >= e.start) & (index < e.end) & ~np.isnan(a)
        if e.hours <= SPIKE_MAX_HOURS:
            # A 95 % band lets 1 hour in 40 out by chance: a spike must stand far clear of it.
            z = (a[span] - expected[span]) / np.maximum(sigma[span], 1e-9)
            if z.size and z.max() >= SPIKE_Z:
                rule_of_hour[span] = "spike"
                spike_events += 1
        else:
            rule_of_hour[span & (classes == "night")] = "night-load"
            rule_of_hour[span & (classes == "weekend")] = "weekend-load"
            rule_of_hour[span & (classes == "shift")] = "baseline-deviation"
    return rule_of_hour, spike_events


def find_opportunities(
    actual: pd.Series,
    fit: BaselineFit,
    band: pd.DataFrame,
    *,
    site_id: str,
    meter_id: str,
    tz: str,
    schedule: Schedule,
    country: str | None,
    tariff_per_kwh: float,
    currency: str,
    baseload_benchmark: float | None = None,
    is_main_incomer: bool = False,
) -> list[Opportunity]:
    """Opportunities of one meter over the window covered by `band` (see module notes)."""
    index = band.index
    window_hours = len(index)
    a = actual.reindex(index).to_numpy(dtype=float)
    observed_hours = int((~np.isnan(a)).sum())
    expected = band["expected"].to_numpy()
    sigma = (band["upper"] - band["expected"]).to_numpy() / 1.96
    classes = time_classes(index, tz, schedule, country)
    events = [e for e in detect_anomalies(actual, band) if e.direction == "above"]
    rule_of_hour, spike_events = rule_hours(a, band, classes, events)
    nmbe = abs(fit.stats.nmbe_pct) / 100 if fit.stats else 0.0
    bias = max(nmbe if np.isfinite(nmbe) else 0.0, BIAS_ALLOWANCE)
    out: list[Opportunity] = []
    for rule in RULES[:4]:
        hours = rule_of_hour == rule
        if not hours.any():
            continue
        central = float((a[hours] - expected[hours]).sum())
        spread = 1.645 * float(np.sqrt((sigma[hours] ** 2).sum())) + bias * float(
            expected[hours].sum()
        )
        n = int(hours.sum())
        text = EXPLAIN[rule].format(
            meter=meter_id, kwh=f"{central:,.0f}", hours=n, events=spike_events
        )
        out.append(
            Opportunity(
                rule=rule,
                site_id=site_id,
                meter_id=meter_id,
                window_hours=window_hours,
                observed_hours=observed_hours,
                hours=n,
                kwh_low=max(central - spread, 0.0),
                kwh_high=central + spread,
                currency=currency,
                tariff_per_kwh=tariff_per_kwh,
                confidence=_confidence(fit, n, central, spread),
                explanation=text,
                evidence=_profile(index[hours], a[hours], expected[hours], tz),
            )
        )
    # Sector baseload ranges describe a whole site's load: judged on main incomers only.
    # Judged on the baseline's expected load, so waste already found above (which lifts the
    # actual low percentile) is not counted a second time as baseload.
    high = _high_baseload(expected, baseload_benchmark) if is_main_incomer else None
    if high is not None:
        excess, ratio = high
        kwh = excess * int((~np.isnan(a)).sum())
        out.append(
            Opportunity(
                rule="high-baseload",
                site_id=site_id,
                meter_id=meter_id,
                window_hours=window_hours,
                observed_hours=observed_hours,
                hours=int((~np.isnan(a)).sum()),
                kwh_low=kwh * 0.5,
                kwh_high=kwh,
                currency=currency,
                tariff_per_kwh=tariff_per_kwh,
                confidence="low",
                explanation=EXPLAIN["high-baseload"].format(
                    meter=meter_id, ratio=ratio, benchmark=baseload_benchmark, kwh=f"{kwh:,.0f}"
                ),
                evidence={"baseload_ratio": round(ratio, 3), "benchmark_high": baseload_benchmark},
            )
        )
    return out


def _confidence(fit: BaselineFit, hours: int, central: float, spread: float) -> str:
    good_model = bool(fit.stats and fit.stats.meets_hourly)
    if good_model and hours >= 6 and central > 2 * spread:
        return "high"
    if central > spread:
        return "medium"
    return "low"


def _profile(index: pd.DatetimeIndex, actual: np.ndarray, expected: np.ndarray, tz: str) -> dict:
    """Mean actual vs expected kWh by local hour of day over the evidence hours."""
    hours = index.tz_convert(tz).hour
    frame = pd.DataFrame({"actual": actual, "expected": expected, "hour": hours})
    prof = frame.groupby("hour").mean().round(2)
    return {
        "hours_utc": list(index),
        "first_utc": index.min().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last_utc": index.max().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "profile_by_local_hour": {
            int(h): {"actual_kwh": row.actual, "expected_kwh": row.expected}
            for h, row in prof.iterrows()
        },
    }


def _high_baseload(a: np.ndarray, benchmark: float | None) -> tuple[float, float] | None:
    values = a[~np.isnan(a)]
    if benchmark is None or len(values) < 168 or values.mean() <= 0:
        return None
    baseload = float(np.percentile(values, 5))
    ratio = baseload / float(values.mean())
    if ratio <= benchmark:
        return None
    return baseload - benchmark * float(values.mean()), ratio


def percent_range(low: float, high: float) -> str:
    """'9–12' — with one decimal when whole numbers would read as one value."""
    if round(low) == round(high):
        return f"{low:.1f}–{high:.1f}"
    return f"{low:.0f}–{high:.0f}"


def savings_range(main_kwh: float, opportunities: list[Opportunity], currency: str = "") -> dict:
    """'X–Y % avoidable kWh, A–B per year' from a site's (or org's) opportunities.

    Shares are of the main incomers' consumption over the same window, so sub-meter waste is
    counted inside it, never on top.
    """
    low = sum(o.kwh_low for o in opportunities)
    high = sum(o.kwh_high for o in opportunities)
    money_low = sum(o.annual_kwh_low * o.tariff_per_kwh for o in opportunities)
    money_high = sum(o.annual_kwh_high * o.tariff_per_kwh for o in opportunities)
    pct_low = 100 * low / main_kwh if main_kwh else 0.0
    pct_high = 100 * high / main_kwh if main_kwh else 0.0
    currency = opportunities[0].currency if opportunities else currency
    shown = percent_range(pct_low, pct_high)
    return {
        "consumption_kwh": round(main_kwh, 1),
        "avoidable_kwh_low": round(low, 1),
        "avoidable_kwh_high": round(high, 1),
        "avoidable_pct_low": round(pct_low, 1),
        "avoidable_pct_high": round(pct_high, 1),
        "annual_money_low": round(money_low),
        "annual_money_high": round(money_high),
        "currency": currency,
        "narrative": (
            f"CEI shows {shown} % avoidable kWh and "
            f"{currency} {money_low:,.0f}–{money_high:,.0f} per year savings potential."
            if opportunities
            else "No avoidable waste found in this period."
        ),
    }
