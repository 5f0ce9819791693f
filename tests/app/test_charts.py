"""The app's figures: what a reader would misread if it went wrong."""

from app import charts


def test_daily_bars_keep_each_sites_meter_apart():
    # Both demo sites have a "main-incomer": one bar each per day, never two in one trace.
    rows = [
        {"site_id": site, "meter_id": "main-incomer", "date": day, "kwh": kwh}
        for site, kwh in (("site-22", 4500.0), ("site-23", 260.0))
        for day in ("2025-03-03", "2025-03-04")
    ]
    fig = charts.daily_bars(rows, "kWh per local day")
    assert [t.name for t in fig.data] == ["site-22/main-incomer", "site-23/main-incomer"]
    assert [list(t.y) for t in fig.data] == [[4500.0, 4500.0], [260.0, 260.0]]
    assert fig.layout.yaxis.title.text == "kWh per day"


def test_daily_bars_of_one_site_are_named_by_meter():
    rows = [
        {"site_id": "site-22", "meter_id": m, "date": "2025-03-03", "kwh": 1.0}
        for m in ("main-incomer", "compressor-bank")
    ]
    assert [t.name for t in charts.daily_bars(rows).data] == ["compressor-bank", "main-incomer"]
