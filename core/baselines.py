"""Per-meter energy baselines: a statsmodels regression on local time-of-week and drivers.

Model (one per meter), fitted by ordinary least squares:

    kWh_t = Σ_h β_h · 1[how(t) = h]                      168 local hour-of-week terms
          + Σ_h η_h · 1[holiday(t), hour(t) = h]          24 public-holiday hour terms
          + Σ_s Σ_j γ_sj · f_j(T_t) · 1[segment(t) = s]   piecewise-linear temperature,
                                                         slopes per 6-hour day part on
                                                         working and on rest days
          + δ · P_t                                      production (units/h), linear
          + ε_t

`how` is the hour of the week in the site's local time, so a DST day (23 or 25 hours) keeps
the weekly profile on the wall clock. The temperature basis f_j is T and the hinges
max(T − k, 0) at the 10/30/50/70/90 % quantiles of the training temperatures, which lets the
data place heating and cooling balance points. Holidays come from the `holidays` package for
the site's country and are treated as their own day type.

Solving: the time terms are indicator columns of disjoint groups, so by the Frisch–Waugh–Lovell
theorem the driver slopes come from a statsmodels OLS of the within-group-demeaned kWh on the
within-group-demeaned driver columns, and each group's coefficient is the group mean of
kWh − drivers·slopes. The result is exactly the full OLS, at the cost of a 24-column regression
instead of a 200-column one.

Robustness: after a first fit, runs of 3 or more consecutive hours whose residuals exceed
3 standard deviations in the same direction are excluded and the model refitted once, so a
night or a week of past waste does not teach the baseline that waste is normal. Isolated hours
are kept: hourly meter noise is right-skewed, and cutting single high hours biased the
baseline low (by 6 % to 15 % on the reference data, with scales from the standard deviation
or the MAD). Single-hour spikes are found by the anomaly detector, and callers exclude the
anomalies it finds (`exclude`).

Prediction band: expected ± t(1 − α/2, n − p) · σ_cell, where σ_cell is the residual standard
deviation of the local hour of day on working days (Monday–Friday) or on rest days (weekends,
holidays): night and day, shift and idle hours are not equally noisy. The lower bound is
clipped at 0 kWh.

Fit statistics follow ASHRAE Guideline 14-2014: CV(RMSE) = √(SSE/(n − p)) / ȳ and
NMBE = Σ(y − ŷ) / ((n − p) · ȳ), in %. Hourly calibration limits: CV(RMSE) ≤ 30 %,
|NMBE| ≤ 10 %; monthly limits (checked on monthly totals when the training spans at least
three whole months): CV(RMSE) ≤ 15 %, |NMBE| ≤ 5 %.

Units: kWh per hour; the index is hour-beginning UTC; NaN marks a missing hour (never zero).
"""

import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

N_WEEK_HOURS = 168
N_GROUPS = N_WEEK_HOURS + 24  # hour-of-week groups, then holiday hour-of-day groups
MIN_TRAINING_HOURS = 14 * 24
DEFAULT_TRAINING_WEEKS = 8
MAX_TRAINING_WEEKS = 52
EXTRAPOLATION_MARGIN = 0.0  # of the training range, beyond which drivers are clamped
OUTLIER_SIGMAS = 3.0
OUTLIER_RUN_HOURS = 3
TEMPERATURE_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
SEGMENT_HOURS = 6
N_SEGMENTS = 2 * 24 // SEGMENT_HOURS  # day parts on working days, then on rest days
HOURLY_LIMITS = (30.0, 10.0)
MONTHLY_LIMITS = (15.0, 5.0)


@dataclass(frozen=True)
class FitStats:
    """Goodness of fit on the training hours (ASHRAE Guideline 14)."""

    n: int
    parameters: int
    r2: float
    cv_rmse_pct: float
    nmbe_pct: float
    meets_hourly: bool
    monthly_cv_rmse_pct: float | None
    monthly_nmbe_pct: float | None
    meets_monthly: bool | None
    excluded_hours: int

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "parameters": self.parameters,
            "r2": round(self.r2, 4),
            "cv_rmse_pct": round(self.cv_rmse_pct, 2),
            "nmbe_pct": round(self.nmbe_pct, 3),
            "ashrae_g14_hourly": {
                "limits": {"cv_rmse_pct": HOURLY_LIMITS[0], "nmbe_pct": HOURLY_LIMITS[1]},
                "meets": self.meets_hourly,
            },
            "ashrae_g14_monthly": {
                "limits": {"cv_rmse_pct": MONTHLY_LIMITS[0], "nmbe_pct": MONTHLY_LIMITS[1]},
                "cv_rmse_pct": _r(self.monthly_cv_rmse_pct, 2),
                "nmbe_pct": _r(self.monthly_nmbe_pct, 3),
                "meets": self.meets_monthly,
            },
            "excluded_hours": self.excluded_hours,
        }


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@cache
def _holiday_calendar(country: str | None):
    if not country:
        return None
    import holidays

    try:
        return holidays.country_holidays(country)
    except NotImplementedError:
        return None


def holiday_mask(local: pd.DatetimeIndex, country: str | None) -> np.ndarray:
    """True at the hours (a local-time index) that fall on the country's public holidays."""
    cal = _holiday_calendar(country)
    if cal is None or not len(local):
        return np.zeros(len(local), dtype=bool)
    # One calendar lookup per day, not per hour.
    days = local.normalize().tz_localize(None)
    unique, inverse = np.unique(days.to_numpy(), return_inverse=True)
    on_day = np.fromiter(
        (pd.Timestamp(d).date() in cal for d in unique), dtype=bool, count=len(unique)
    )
    return on_day[inverse]


@dataclass
class _Design:
    """How to turn timestamps and drivers into the model's columns."""

    tz: str
    country: str | None
    knots: tuple[float, ...] | None  # temperature hinge points; None without temperature
    production: bool

    def local(self, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
        return index.tz_convert(self.tz)

    def holiday_mask(self, local: pd.DatetimeIndex) -> np.ndarray:
        return holiday_mask(local, self.country)

    def groups(self, index: pd.DatetimeIndex) -> np.ndarray:
        """The time group of each hour: local hour of week 0..167, or 168 + hour on holidays."""
        local = self.local(index)
        hour = local.hour.to_numpy()
        how = local.day_of_week.to_numpy() * 24 + hour
        return np.where(self.holiday_mask(local), N_WEEK_HOURS + hour, how)

    def drivers(
        self,
        index: pd.DatetimeIndex,
        temperature: np.ndarray | None,
        production: np.ndarray | None,
    ) -> np.ndarray | None:
        """The driver columns (temperature basis per day segment, production), or None."""
        parts = []
        if self.knots is not None:
            t = np.asarray(temperature, dtype=float)
            basis = [t] + [np.maximum(t - k, 0.0) for k in self.knots]
            segment = _segments(self.groups(index))
            for s in range(N_SEGMENTS):
                in_seg = (segment == s).astype(float)
                parts.extend((b * in_seg)[:, None] for b in basis)
        if self.production:
            parts.append(np.asarray(production, dtype=float)[:, None])
        return np.hstack(parts) if parts else None


@dataclass
class BaselineFit:
    """A fitted baseline, or why there is none (`ok` False with a `reason`)."""

    ok: bool
    reason: str | None = None
    stats: FitStats | None = None
    training_start: pd.Timestamp | None = None
    training_end: pd.Timestamp | None = None
    uses_temperature: bool = False
    uses_production: bool = False
    alpha: float = 0.05
    _design: _Design | None = None
    _group_level: np.ndarray | None = None  # per time group; NaN where training had no hour
    _slopes: np.ndarray | None = None
    _group_count: np.ndarray | None = None
    _sigma_by_hour: np.ndarray | None = None
    _q: float = 1.96
    _driver_means: dict = field(default_factory=dict)
    _driver_range: dict = field(default_factory=dict)
    _fallback: np.ndarray | None = None

    def predict(
        self,
        index: pd.DatetimeIndex,
        temperature: pd.Series | None = None,
        production: pd.Series | None = None,
    ) -> pd.DataFrame:
        """Expected kWh and the prediction band at these hour-beginning UTC timestamps.

        Missing driver values are filled with the driver's training mean for the same local
        hour of week (e.g. a forecast without a weather forecast).
        Returns columns `expected`, `lower`, `upper` (kWh), indexed like `index`.
        """
        if not self.ok:
            raise ValueError(f"no baseline: {self.reason}")
        d = self._design
        temp = self._driver(index, temperature, "temperature") if d.knots is not None else None
        prod = self._driver(index, production, "production") if d.production else None
        level = self._group_level[d.groups(index)]
        hour = d.local(index).hour.to_numpy()
        # A time group never seen in training takes the mean level of that local hour of day.
        unseen = np.isnan(level)
        level[unseen] = self._fallback[hour[unseen]]
        x = d.drivers(index, temp, prod)
        expected = level if x is None else level + x @ self._slopes
        expected = np.maximum(expected, 0.0)
        groups = d.groups(index)
        sigma = self._sigma_by_hour[_sigma_cell(groups, hour)]
        # Predictive spread: the hour's noise plus the uncertainty of its group's mean.
        n_group = np.maximum(self._group_count[groups], 1)
        half = self._q * sigma * np.sqrt(1 + 1 / n_group)
        return pd.DataFrame(
            {
                "expected": expected,
                "lower": np.maximum(expected - half, 0.0),
                "upper": expected + half,
            },
            index=index,
        )

    def _driver(self, index: pd.DatetimeIndex, series: pd.Series | None, name: str) -> np.ndarray:
        means = self._driver_means[name]
        how = _how(self._design.local(index))
        fill = means[how]
        if series is None:
            return fill
        values = series.reindex(index).to_numpy(dtype=float)
        lo, hi = self._driver_range[name]
        # The outer slopes carry on a little past what training saw (a colder week than any
        # in the training weeks), but not indefinitely: there the slope is only a guess.
        margin = EXTRAPOLATION_MARGIN * (hi - lo)
        return np.clip(np.where(np.isnan(values), fill, values), lo - margin, hi + margin)


def _how(local: pd.DatetimeIndex) -> np.ndarray:
    return local.day_of_week.to_numpy() * 24 + local.hour.to_numpy()


def training_window(
    kwh: pd.Series, analysis_start: pd.Timestamp, weeks: int = DEFAULT_TRAINING_WEEKS
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the training data: the trailing `weeks` before the analysed period,
    extended back to a year when that much history exists (more data, steadier weekly
    profile and driver slopes)."""
    end = analysis_start
    history = kwh[kwh.index < end].dropna()
    if history.empty:
        return end, end
    longest = end - timedelta(weeks=MAX_TRAINING_WEEKS)
    start = max(history.index[0], longest)
    start = min(start, end - timedelta(weeks=weeks))
    return start, end


def fit_baseline(
    kwh: pd.Series,
    *,
    tz: str,
    temperature: pd.Series | None = None,
    production: pd.Series | None = None,
    country: str | None = None,
    exclude: pd.Series | None = None,
    alpha: float = 0.05,
) -> BaselineFit:
    """Fit the baseline on every non-missing hour of `kwh` (already cut to the training window).

    Args:
        kwh: hourly kWh, hour-beginning UTC index; NaN = missing.
        tz: the site's IANA time zone (time-of-week is local).
        temperature: outdoor temperature (°C) on the same index; used when it covers at least
            90 % of the training hours.
        production: production (units/h); same rule.
        country: ISO country code for public holidays (e.g. "IT"); None = no holidays.
        exclude: True at hours to leave out (known anomalies).
        alpha: 1 − coverage of the prediction band.
    """
    y_all = kwh.astype(float)
    mask = y_all.notna().to_numpy().copy()
    if exclude is not None:
        mask &= ~exclude.reindex(y_all.index, fill_value=False).to_numpy(dtype=bool)
    usable = int(mask.sum())
    if usable < MIN_TRAINING_HOURS:
        return BaselineFit(
            ok=False,
            reason=f"insufficient data: {usable} usable hours, at least {MIN_TRAINING_HOURS} "
            "(14 days) are needed",
        )
    if float(np.nanmean(y_all.to_numpy()[mask])) <= 0:
        return BaselineFit(ok=False, reason="no consumption in the training weeks (all zero)")
    index = y_all.index
    temp = _usable_driver(temperature, index, mask)
    prod = _usable_driver(production, index, mask)
    if temp is not None:
        mask &= ~np.isnan(temp)
    if prod is not None:
        mask &= ~np.isnan(prod)
    y = y_all.to_numpy()
    groups = _Design(tz=tz, country=country, knots=None, production=False).groups(index)
    # A driver enters the model only when it explains consumption: spurious slopes fitted on
    # noise would bend the baseline wherever the driver leaves its training range.
    temp = temp if temp is not None and _driver_helps(groups, temp, mask, y, "t") else None
    prod = prod if prod is not None and _driver_helps(groups, prod, mask, y, "p") else None
    knots = (
        tuple(float(q) for q in np.quantile(temp[mask], TEMPERATURE_QUANTILES))
        if temp is not None
        else None
    )
    design = _Design(tz=tz, country=country, knots=knots, production=prod is not None)
    x_all = design.drivers(index, temp, prod)
    keep_rows = mask.copy()
    if knots is not None:
        x_all = _prune_segments(x_all, groups, keep_rows, y, n_basis=len(knots) + 1)
    level, slopes, resid = _ols(groups[keep_rows], x_all, keep_rows, y)
    # One robust pass: leave out sustained deviations from the first fit, then refit.
    scale = resid.std()
    if scale > 0:
        deviating = np.zeros(len(y))
        deviating[np.flatnonzero(keep_rows)] = np.sign(resid) * (
            np.abs(resid) > OUTLIER_SIGMAS * scale
        )
        outliers = _sustained(deviating, OUTLIER_RUN_HOURS)
        if outliers.any():
            keep_rows &= ~outliers
            level, slopes, resid = _ols(groups[keep_rows], x_all, keep_rows, y)
    y_fit = y[keep_rows]
    n = len(y_fit)
    p = int((~np.isnan(level)).sum()) + (0 if slopes is None else int((slopes != 0).sum()))
    fitted = y_fit - resid
    local_hour = design.local(index[keep_rows]).hour.to_numpy()
    counts = np.bincount(local_hour, minlength=24)
    cells = _sigma_cell(groups[keep_rows], local_hour)
    n_cell = np.bincount(cells, minlength=48)
    ss_cell = np.bincount(cells, weights=resid**2, minlength=48)
    # Each time group spent one degree of freedom on its own mean.
    group_cells = np.unique(np.column_stack([cells, groups[keep_rows]]), axis=0)[:, 0]
    dof_cell = n_cell - np.bincount(group_cells, minlength=48)
    sigma_by_hour = np.where(dof_cell > 1, np.sqrt(ss_cell / np.maximum(dof_cell, 1)), np.nan)
    sigma_by_hour = np.where(np.isnan(sigma_by_hour), np.nanmean(sigma_by_hour), sigma_by_hour)
    fallback_sum = np.bincount(local_hour, weights=fitted, minlength=24)
    fallback = np.where(counts > 0, fallback_sum / np.maximum(counts, 1), fitted.mean())
    how_fit = _how(design.local(index[keep_rows]))
    driver_means, driver_range = {}, {}
    for name, values in (("temperature", temp), ("production", prod)):
        if values is not None:
            driver_range[name] = (
                float(np.nanmin(values[keep_rows])),
                float(np.nanmax(values[keep_rows])),
            )
            frame = pd.Series(values[keep_rows]).groupby(how_fit).mean()
            driver_means[name] = frame.reindex(range(N_WEEK_HOURS)).fillna(frame.mean()).to_numpy()
    stats_ = _fit_stats(y_fit, fitted, p, index[keep_rows], tz=tz, excluded=usable - n)
    return BaselineFit(
        ok=True,
        stats=stats_,
        training_start=index[mask][0],
        training_end=index[mask][-1] + pd.Timedelta(hours=1),
        uses_temperature=temp is not None,
        uses_production=prod is not None,
        alpha=alpha,
        _design=design,
        _group_level=level,
        _slopes=slopes,
        _group_count=np.bincount(groups[keep_rows], minlength=N_GROUPS),
        _sigma_by_hour=sigma_by_hour,
        _q=float(stats.t.ppf(1 - alpha / 2, max(n - p, 1))),
        _driver_means=driver_means,
        _driver_range=driver_range,
        _fallback=fallback,
    )


def _driver_helps(
    groups: np.ndarray, values: np.ndarray, mask: np.ndarray, y: np.ndarray, kind: str
) -> bool:
    """F-test of the driver's columns against the time-only model (p < 0.001, ≥ 2 % of SSE)."""
    rows = mask & ~np.isnan(values)
    if rows.sum() < MIN_TRAINING_HOURS:
        return False
    if kind == "t":
        knots = tuple(float(q) for q in np.quantile(values[rows], TEMPERATURE_QUANTILES))
        # Day segments only need the local hour, which the groups already encode.
        segment = _segments(groups)
        basis = [values] + [np.maximum(values - k, 0.0) for k in knots]
        x = np.column_stack([b * (segment == s) for s in range(N_SEGMENTS) for b in basis])
    else:
        x = values[:, None]
    return _block_helps(groups[rows], x[rows], y[rows])


def _block_helps(g: np.ndarray, x: np.ndarray, y: np.ndarray) -> bool:
    """F-test of columns `x` over time-group means (p < 0.001 and ≥ 2 % less SSE).

    A model-selection test only, so plain least squares on the within-group-demeaned data;
    the final fit is statsmodels'.
    """
    counts = np.maximum(np.bincount(g, minlength=N_GROUPS), 1)
    y_within = y - (np.bincount(g, weights=y, minlength=N_GROUPS) / counts)[g]
    means = np.column_stack(
        [np.bincount(g, weights=x[:, j], minlength=N_GROUPS) / counts for j in range(x.shape[1])]
    )
    x_within = x - means[g]
    beta, _, rank, _ = np.linalg.lstsq(x_within, y_within, rcond=None)
    resid = y_within - x_within @ beta
    sse_r, sse_f = float(y_within @ y_within), float(resid @ resid)
    dof = max(len(y) - int(np.unique(g).size) - int(rank), 1)
    if rank == 0 or sse_f <= 0 or sse_f >= 0.98 * sse_r:
        return False
    return bool(stats.f.sf(((sse_r - sse_f) / rank) / (sse_f / dof), rank, dof) < 1e-3)


def _prune_segments(
    x_all: np.ndarray, groups: np.ndarray, rows: np.ndarray, y: np.ndarray, n_basis: int
) -> np.ndarray:
    """Zero the temperature columns of day parts where temperature explains nothing.

    Time groups nest inside day parts, so the regression splits into one independent problem
    per day part, and each part's temperature block is F-tested on its own rows (p < 0.001,
    ≥ 2 % of that part's SSE). A heated office's weekend hours, flat whatever the weather,
    then keep a flat baseline instead of slopes fitted on noise.
    """
    x_all = x_all.copy()
    g, yy, xx = groups[rows], y[rows], x_all[rows]
    seg = _segments(g)
    for s in range(N_SEGMENTS):
        cols = slice(s * n_basis, (s + 1) * n_basis)
        in_seg = seg == s
        if in_seg.sum() < 3 * n_basis or not _block_helps(g[in_seg], xx[in_seg, cols], yy[in_seg]):
            x_all[:, cols] = 0.0
    return x_all


def _segments(groups: np.ndarray) -> np.ndarray:
    """Temperature-slope segment of each hour: 6-hour day part × working day or rest day."""
    hour = np.where(groups >= N_WEEK_HOURS, groups - N_WEEK_HOURS, groups % 24)
    rest_day = (groups >= N_WEEK_HOURS) | (groups >= 5 * 24)
    return hour // SEGMENT_HOURS + (24 // SEGMENT_HOURS) * rest_day


def _sigma_cell(groups: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Band cell of each hour: local hour of day, Monday-Friday vs weekend/holiday (48 cells)."""
    rest_day = (groups >= N_WEEK_HOURS) | (groups >= 5 * 24)
    return hour + 24 * rest_day


def _sustained(signs: np.ndarray, min_run: int) -> np.ndarray:
    """True where `signs` (+1/−1/0 per hour) holds the same non-zero sign for `min_run`+ hours."""
    out = np.zeros(len(signs), dtype=bool)
    start = 0
    for i in range(1, len(signs) + 1):
        if i == len(signs) or signs[i] != signs[start]:
            if signs[start] != 0 and i - start >= min_run:
                out[start:i] = True
            start = i
    return out


def _usable_driver(series: pd.Series | None, index: pd.DatetimeIndex, mask: np.ndarray):
    if series is None:
        return None
    values = series.reindex(index).to_numpy(dtype=float)
    covered = (~np.isnan(values) & mask).sum()
    return values if covered >= 0.9 * mask.sum() else None


def _ols(
    groups: np.ndarray, x_all: np.ndarray | None, rows: np.ndarray, y_all: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """OLS of kWh on time-group indicators and driver columns (see the module notes).

    Returns (level per time group, NaN where empty; driver slopes or None; residuals).
    """
    y = y_all[rows]
    counts = np.bincount(groups, minlength=N_GROUPS)
    safe = np.maximum(counts, 1)

    def group_means(v: np.ndarray) -> np.ndarray:
        return np.bincount(groups, weights=v, minlength=N_GROUPS) / safe

    slopes = None
    if x_all is not None:
        x = x_all[rows]
        x_means = np.column_stack([group_means(x[:, j]) for j in range(x.shape[1])])
        y_within = y - group_means(y)[groups]
        x_within = x - x_means[groups]
        informative = np.abs(x_within).sum(axis=0) > 0
        slopes = np.zeros(x.shape[1])
        if informative.any():
            # pinv: hinge columns can be collinear within a day segment (all hours above a knot).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # rank deficiency is expected and handled
                result = sm.OLS(y_within, x_within[:, informative]).fit(method="pinv")
            slopes[informative] = result.params
        y = y - x @ slopes
    level = np.where(counts > 0, group_means(y), np.nan)
    resid = y - level[groups]
    return level, slopes, resid


def _fit_stats(
    y: np.ndarray, fitted: np.ndarray, p: int, index: pd.DatetimeIndex, *, tz: str, excluded: int
) -> FitStats:
    n = len(y)
    mean = y.mean()
    resid = y - fitted
    sse = float(resid @ resid)
    sst = float(((y - mean) ** 2).sum())
    dof = max(n - p, 1)
    cv = float(np.sqrt(sse / dof) / mean * 100) if mean else float("inf")
    nmbe = float(resid.sum() / (dof * mean) * 100) if mean else float("inf")
    m_cv = m_nmbe = m_ok = None
    # Calendar months of the site: the months a monthly bill or report would use.
    monthly = (
        pd.DataFrame({"y": y, "f": fitted}, index=index.tz_convert(tz))
        .resample("MS")
        .agg(["sum", "count"])
    )
    whole = monthly[("y", "count")] >= 24 * 27
    if whole.sum() >= 3:
        ym = monthly.loc[whole, ("y", "sum")].to_numpy()
        fm = monthly.loc[whole, ("f", "sum")].to_numpy()
        k = len(ym)
        m_dof = max(k - 1, 1)
        m_cv = float(np.sqrt(((ym - fm) ** 2).sum() / m_dof) / ym.mean() * 100)
        m_nmbe = float((ym - fm).sum() / (m_dof * ym.mean()) * 100)
        m_ok = m_cv <= MONTHLY_LIMITS[0] and abs(m_nmbe) <= MONTHLY_LIMITS[1]
    return FitStats(
        n=n,
        parameters=p,
        r2=1 - sse / sst if sst else 0.0,
        cv_rmse_pct=cv,
        nmbe_pct=nmbe,
        meets_hourly=cv <= HOURLY_LIMITS[0] and abs(nmbe) <= HOURLY_LIMITS[1],
        monthly_cv_rmse_pct=m_cv,
        monthly_nmbe_pct=m_nmbe,
        meets_monthly=m_ok,
        excluded_hours=excluded,
    )
