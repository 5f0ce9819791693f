"""Plotly figures for the pages, one look everywhere: actual in teal, the baseline grey with its
band, waste in red, the forecast violet; times on the site's local clock."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go

ACTUAL = "#0F766E"
EXPECTED = "#6B7280"
BAND = "rgba(107, 114, 128, 0.18)"
WASTE = "#C62828"
FORECAST = "#7C3AED"
GOOD, WARN, BAD = "#2E7D32", "#F9A825", "#C62828"
LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 10, "r": 10, "t": 60, "b": 10},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    "hovermode": "x unified",
    "height": 420,
}


def _frame(rows: list[dict], tz: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["ts"] = pd.to_datetime(frame["timestamp_utc"], utc=True).dt.tz_convert(tz)
    return frame


def aggregate_band(frame: pd.DataFrame, resolution: str) -> pd.DataFrame:
    """Hourly band rows summed to local days or ISO weeks; the band's half-width adds in
    quadrature (independent hourly noise), not linearly."""
    f = frame.copy()
    local = f["ts"].dt.tz_localize(None)
    day = local.dt.normalize()
    monday = day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    f["bucket"] = monday if resolution == "week" else day
    f["var"] = ((f["upper_kwh"] - f["expected_kwh"]) / 1.96) ** 2
    has = "actual_kwh" in f
    agg = {"expected_kwh": "sum", "var": "sum"}
    if has:
        f["actual_kwh"] = f["actual_kwh"].astype(float)
        agg["actual_kwh"] = lambda s: s.sum() if s.notna().any() else np.nan
    out = f.groupby("bucket").agg(agg).reset_index()
    half = 1.96 * np.sqrt(out["var"])
    out["lower_kwh"] = (out["expected_kwh"] - half).clip(lower=0)
    out["upper_kwh"] = out["expected_kwh"] + half
    out["ts"] = out["bucket"]
    return out


def trend(
    baseline: dict,
    *,
    events: list[dict] | None = None,
    resolution: str = "hour",
    title: str = "",
) -> go.Figure:
    """Actual kWh against the baseline and its band, waste events marked, and the forecast."""
    tz = baseline.get("timezone", "UTC")
    fig = go.Figure()
    rows = _frame(baseline.get("series", []), tz)
    forecast = _frame(baseline.get("forecast", []), tz)
    if resolution != "hour" and not rows.empty:
        rows = aggregate_band(rows, resolution)
        forecast = aggregate_band(forecast, resolution) if not forecast.empty else forecast
    unit = {"hour": "kWh per hour", "day": "kWh per day", "week": "kWh per week"}[resolution]
    for frame, colour, name in (
        (rows, BAND, "baseline band"),
        (forecast, "rgba(124,58,237,0.12)", "forecast band"),
    ):
        if frame.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=frame["ts"],
                y=frame["upper_kwh"],
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=frame["ts"],
                y=frame["lower_kwh"],
                fill="tonexty",
                fillcolor=colour,
                line={"width": 0},
                name=name,
                hoverinfo="skip",
            )
        )
    if not rows.empty:
        fig.add_trace(
            go.Scatter(
                x=rows["ts"],
                y=rows["expected_kwh"],
                name="baseline",
                line={"color": EXPECTED, "dash": "dot"},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=rows["ts"],
                y=rows["actual_kwh"],
                name="actual",
                line={"color": ACTUAL, "width": 2},
            )
        )
    if not forecast.empty:
        fig.add_trace(
            go.Scatter(
                x=forecast["ts"],
                y=forecast["expected_kwh"],
                name="forecast",
                line={"color": FORECAST, "dash": "dash"},
            )
        )
    if events and resolution == "hour" and not rows.empty:
        marked = rows.set_index("timestamp_utc")
        xs, ys = [], []
        for e in events:
            if e.get("direction") != "above":
                continue
            span = pd.date_range(e["start_utc"], e["end_utc"], freq="h", inclusive="left")
            for ts in span.strftime("%Y-%m-%dT%H:%M:%SZ"):
                if ts in marked.index and pd.notna(marked.at[ts, "actual_kwh"]):
                    xs.append(marked.at[ts, "ts"])
                    ys.append(marked.at[ts, "actual_kwh"])
        if xs:
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="markers",
                    name="above the band",
                    marker={"color": WASTE, "size": 6},
                )
            )
    fig.update_layout(**LAYOUT, title=title, yaxis_title=unit, xaxis_title=f"local time ({tz})")
    return fig


def readings_only(points: list[dict], tz: str, resolution: str) -> go.Figure:
    """A meter's kWh as stored, for when there is no baseline yet."""
    frame = pd.DataFrame(points)
    fig = go.Figure()
    if not frame.empty:
        when = frame["timestamp_utc"] if "timestamp_utc" in frame else frame["start_utc"]
        x = pd.to_datetime(when, utc=True).dt.tz_convert(tz)
        fig.add_trace(go.Scatter(x=x, y=frame["kwh"], name="actual", line={"color": ACTUAL}))
    unit = {"hour": "kWh per hour", "day": "kWh per day", "week": "kWh per week"}[resolution]
    fig.update_layout(**LAYOUT, yaxis_title=unit, xaxis_title=f"local time ({tz})")
    return fig


def evidence(hours: list[dict], tz: str, title: str = "") -> go.Figure:
    """An alert's hours: actual vs expected, the excess shaded."""
    frame = pd.DataFrame(hours)
    fig = go.Figure()
    if frame.empty:
        return fig
    index = pd.to_datetime(frame["timestamp_utc"], utc=True)
    # Every hour between the first and the last, so lines break where the alert paused.
    full = pd.date_range(index.min(), index.max(), freq="h")
    frame = frame.set_index(index).reindex(full)
    frame["ts"] = full.tz_convert(tz)
    fig.add_trace(
        go.Bar(
            x=frame["ts"],
            y=frame["actual_kwh"] - frame["expected_kwh"],
            name="excess kWh",
            marker_color=WASTE,
            opacity=0.35,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=frame["ts"],
            y=frame["expected_kwh"],
            mode="lines+markers",
            name="baseline",
            line={"color": EXPECTED, "dash": "dot"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=frame["ts"],
            y=frame["actual_kwh"],
            mode="lines+markers",
            name="actual",
            line={"color": ACTUAL},
        )
    )
    fig.update_layout(
        **LAYOUT, title=title, yaxis_title="kWh per hour", xaxis_title=f"local time ({tz})"
    )
    return fig


def profile(evidence_: dict, title: str = "") -> go.Figure:
    """An opportunity's evidence: mean actual vs baseline kWh by local hour of day."""
    prof = evidence_.get("profile_by_local_hour") or {}
    hours = sorted(int(h) for h in prof)
    fig = go.Figure()
    if not hours:
        return fig
    actual = [prof.get(h, prof.get(str(h)))["actual_kwh"] for h in hours]
    expected = [prof.get(h, prof.get(str(h)))["expected_kwh"] for h in hours]
    fig.add_trace(go.Bar(x=hours, y=expected, name="baseline", marker_color=EXPECTED, opacity=0.5))
    fig.add_trace(go.Bar(x=hours, y=actual, name="actual", marker_color=ACTUAL))
    fig.update_layout(
        **{**LAYOUT, "hovermode": "x"},
        title=title,
        barmode="group",
        xaxis_title="hour of day (site local time)",
        yaxis_title="mean kWh per hour",
        xaxis={"tickmode": "linear", "dtick": 1},
    )
    return fig


def heatmap(matrix: pd.DataFrame, bucket: str) -> go.Figure:
    """Completeness % per meter (rows) and day or hour (columns)."""
    frame = matrix.copy()
    frame["meter"] = frame["site_id"] + "/" + frame["meter_id"]
    frame["pct"] = 100.0 * frame["points"] / frame["expected"].where(frame["expected"] > 0)
    grid = frame.pivot(index="meter", columns="bucket_utc", values="pct")
    labels = [c[:10] if bucket == "day" else c[5:16].replace("T", " ") for c in grid.columns]
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=labels,
            y=list(grid.index),
            zmin=0,
            zmax=100,
            colorscale=[[0, BAD], [0.9, BAD], [0.9, WARN], [0.95, WARN], [0.95, GOOD], [1, GOOD]],
            # Three colours, so no colour bar (its 90/95/100 ticks pile up): the page says
            # which is which, as the widget does.
            showscale=False,
            hovertemplate="%{y}<br>%{x}<br>%{z:.1f} % complete<extra></extra>",
        )
    )
    fig.update_layout(
        **{
            **LAYOUT,
            "hovermode": "closest",
            "height": max(220, 36 * len(grid) + 90),
            "margin": {**LAYOUT["margin"], "t": 10},
        },
        xaxis_title="UTC " + ("day" if bucket == "day" else "hour"),
    )
    return fig


def errors_by_day(frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for code, part in frame.groupby("code"):
        fig.add_trace(go.Bar(x=part["day"], y=part["count"], name=code))
    fig.update_layout(
        **{**LAYOUT, "hovermode": "x"},
        barmode="stack",
        yaxis_title="refused records",
        xaxis_title="UTC day",
    )
    return fig


def daily_bars(rows: list[dict], title: str = "") -> go.Figure:
    """kWh per local day, one bar per meter; named site/meter when there are several sites
    (every site has its own main-incomer: one trace each, never two sites' bars in one)."""
    frame = pd.DataFrame(rows)
    if "site_id" not in frame:
        frame["site_id"] = ""
    several = frame["site_id"].nunique() > 1
    fig = go.Figure()
    for (site, meter), part in frame.groupby(["site_id", "meter_id"], sort=True):
        name = f"{site}/{meter}" if several else meter
        fig.add_trace(
            go.Bar(
                x=part["date"],
                y=part["kwh"],
                name=name,
                hovertemplate="%{y:,.0f} kWh<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        **{**LAYOUT, "hovermode": "x"},
        title=title,
        yaxis_title="kWh per day",
        yaxis_tickformat=",",
        xaxis_title="local day",
    )
    return fig


def baseload_levels(series: list[dict]) -> dict:
    """The numbers a high-baseload finding rests on, from a baseline's hourly rows: the
    baseload (5th percentile of the expected load), the mean expected load and their ratio."""
    expected = np.array([r["expected_kwh"] for r in series], dtype=float)
    expected = expected[~np.isnan(expected)]
    if not len(expected) or expected.mean() <= 0:
        return {"baseload_kwh": None, "mean_kwh": None, "ratio": None}
    baseload = float(np.percentile(expected, 5))
    mean = float(expected.mean())
    return {"baseload_kwh": baseload, "mean_kwh": mean, "ratio": baseload / mean}


def baseload_profile(
    series: list[dict], tz: str, benchmark: float | None, title: str = ""
) -> go.Figure:
    """Evidence of a high baseload: the load by local hour of day (mean and lowest) against
    the baseload level and the sector's typical ceiling for it."""
    frame = _frame(series, tz)
    fig = go.Figure()
    if frame.empty:
        return fig
    frame["hour"] = frame["ts"].dt.hour
    frame["actual_kwh"] = frame["actual_kwh"].astype(float)
    by_hour = frame.groupby("hour").agg(
        mean=("actual_kwh", "mean"), low=("actual_kwh", "min"), expected=("expected_kwh", "mean")
    )
    levels = baseload_levels(series)
    fig.add_trace(
        go.Bar(
            x=by_hour.index,
            y=by_hour["mean"],
            name="mean load",
            marker_color=ACTUAL,
            opacity=0.55,
            hovertemplate="%{y:,.1f} kWh/h<extra>mean load</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=by_hour.index,
            y=by_hour["low"],
            mode="lines+markers",
            name="lowest hour",
            line={"color": ACTUAL, "width": 2},
            hovertemplate="%{y:,.1f} kWh/h<extra>lowest hour</extra>",
        )
    )
    if levels["baseload_kwh"] is not None:
        fig.add_hline(
            y=levels["baseload_kwh"],
            line={"color": EXPECTED, "width": 2},
            annotation_text=f"baseload {levels['baseload_kwh']:,.1f} kWh/h "
            f"({100 * levels['ratio']:.0f} % of mean)",
            annotation_position="top left",
        )
        if benchmark:
            ceiling = benchmark * levels["mean_kwh"]
            fig.add_hline(
                y=ceiling,
                line={"color": WASTE, "dash": "dash", "width": 2},
                annotation_text=f"sector typical up to {ceiling:,.1f} kWh/h "
                f"({100 * benchmark:.0f} % of mean)",
                annotation_position="bottom right",
            )
    fig.update_layout(
        **{**LAYOUT, "hovermode": "x"},
        title=title,
        xaxis_title=f"hour of day ({tz})",
        yaxis_title="kWh per hour",
        xaxis={"tickmode": "linear", "dtick": 1},
    )
    return fig
