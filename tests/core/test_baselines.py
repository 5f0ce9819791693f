"""Baselines on hand-made series with known structure."""

import numpy as np
import pandas as pd
import pytest

from core.baselines import fit_baseline

TZ = "Europe/Rome"


def _plant(start: str, days: int, seed: int = 1, temp: pd.Series | None = None) -> pd.Series:
    """Shift plant: 100 kWh Mon-Fri 06-22 local, 20 kWh otherwise, 3 % noise (+ 5/°C above 18)."""
    index = pd.date_range(start, periods=days * 24, freq="h", tz="UTC")
    local = index.tz_convert(TZ)
    on = (local.day_of_week < 5) & (local.hour >= 6) & (local.hour < 22)
    level = np.where(on, 100.0, 20.0)
    if temp is not None:
        level = level + 5.0 * np.maximum(temp.to_numpy() - 18, 0)
    rng = np.random.default_rng(seed)
    return pd.Series(level * rng.normal(1, 0.03, len(index)), index=index)


def test_weekly_profile_is_learned_and_the_band_covers_about_95_percent():
    train = _plant("2025-01-06", 56)
    fit = fit_baseline(train, tz=TZ)
    assert fit.ok and fit.stats.meets_hourly
    assert fit.stats.cv_rmse_pct < 10 and abs(fit.stats.nmbe_pct) < 0.5
    test = _plant("2025-03-03", 14, seed=2)
    pred = fit.predict(test.index)
    assert np.abs(pred["expected"] - test).mean() < 3
    inside = ((test >= pred["lower"]) & (test <= pred["upper"])).mean()
    assert 0.9 < inside < 0.99


def test_dst_change_keeps_the_local_profile():
    # Spring forward in Rome on 2025-03-30: shifts still start at 06:00 local afterwards.
    fit = fit_baseline(_plant("2025-02-03", 56), tz=TZ)
    monday = pd.date_range("2025-03-31 03:00", "2025-03-31 06:00", freq="h", tz="UTC")
    expected = fit.predict(monday)["expected"].round(-1).tolist()
    # 03:00Z = 05:00 local (off), 04:00Z = 06:00 local (on)
    assert expected[0] == pytest.approx(20, abs=10) and expected[1] == pytest.approx(100, abs=10)


def test_public_holidays_are_their_own_day_type():
    train = _plant("2025-11-03", 60)
    local = train.index.tz_convert(TZ)
    holidays = pd.Index(local.date).isin(
        pd.to_datetime(["2025-12-08", "2025-12-25", "2025-12-26"]).date
    )
    train[holidays] = 20.0  # the plant is closed on holidays
    fit = fit_baseline(train, tz=TZ, country="IT")
    epiphany = pd.date_range("2026-01-06 10:00", periods=3, freq="h", tz="UTC")  # a Tuesday
    assert fit.predict(epiphany)["expected"].max() < 40
    ordinary = pd.date_range("2026-01-07 10:00", periods=3, freq="h", tz="UTC")
    assert fit.predict(ordinary)["expected"].min() > 80


def test_missing_hours_are_tolerated_and_too_little_data_is_a_clear_result():
    train = _plant("2025-01-06", 28)
    train.iloc[::5] = np.nan
    assert fit_baseline(train, tz=TZ).ok
    short = fit_baseline(_plant("2025-01-06", 10), tz=TZ)
    assert not short.ok and "insufficient data" in short.reason
    with pytest.raises(ValueError, match="insufficient data"):
        short.predict(train.index)


def test_a_past_week_of_night_waste_does_not_become_the_baseline():
    train = _plant("2025-01-06", 56)
    local = train.index.tz_convert(TZ)
    waste_week = (train.index >= "2025-02-10") & (train.index < "2025-02-17")
    nights = (local.hour < 6) | (local.hour >= 22)
    train[waste_week & nights] += 60.0
    fit = fit_baseline(train, tz=TZ)
    night = pd.date_range("2025-03-04 01:00", periods=3, freq="h", tz="UTC")
    assert fit.predict(night)["expected"].max() < 26
    assert fit.stats.excluded_hours >= 40


def test_temperature_driver_is_used_when_present():
    index = pd.date_range("2025-05-05", periods=56 * 24, freq="h", tz="UTC")
    rng = np.random.default_rng(3)
    temp = pd.Series(
        20 + 8 * np.sin(np.arange(len(index)) / 37) + rng.normal(0, 1, len(index)), index=index
    )
    train = _plant("2025-05-05", 56, temp=temp)
    fit = fit_baseline(train, tz=TZ, temperature=temp)
    assert fit.uses_temperature
    hot = pd.date_range("2025-07-01 10:00", periods=2, freq="h", tz="UTC")
    warm = fit.predict(hot, temperature=pd.Series(30.0, index=hot))["expected"]
    mild = fit.predict(hot, temperature=pd.Series(18.0, index=hot))["expected"]
    assert (warm - mild).mean() == pytest.approx(60, abs=8)
