"""Baseline accuracy on public reference data (and, later, synthetic plants with ground truth).

Prints figures next to the peers' published on the same split; asserts nothing.

    python bench/accuracy.py --data ../shared/data
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.baselines import fit_baseline

# Peers measured on the same split (issue 4): CV(RMSE) % out of sample, NMBE % vs the true
# counterfactual, estimated savings %, fit+predict seconds per meter.
PEERS = {
    "eemeter 4.1.1 hourly": (124.8, -1.06, 10.95, 0.70),
    "opendsm 1.2.7 default": (129.0, -0.49, 10.44, 0.70),
    "statsmodels TOW+temp OLS": (125.7, -0.70, 10.62, 0.24),
}
TARGETS = "targets: CV(RMSE) <= 124.8 %, |NMBE| <= 0.5 %, savings 10 +/- 0.5 %, <= 0.25 s"


def load_il(data: Path) -> tuple[pd.Series, pd.Series]:
    folder = data / "opendsm-samples"
    meter = pd.read_csv(folder / "il-electricity-cdd-hdd-hourly.csv.gz")
    temp = pd.read_csv(folder / "il-tempF.csv.gz")
    kwh = pd.Series(meter["value"].to_numpy(), index=pd.to_datetime(meter["start"], utc=True))
    temp_c = pd.Series(
        (temp["tempF"].to_numpy() - 32) * 5 / 9, index=pd.to_datetime(temp["dt"], utc=True)
    )
    return kwh.sort_index(), temp_c.sort_index()


def il_benchmark(data: Path) -> None:
    """Baseline: the 365 days before the blackout; reporting: the 365 days after it.

    The sample is simulated with every load component x 0.9 in the reporting year, so the
    true counterfactual is observed / 0.9 and the true savings are 10 %.
    """
    kwh, temp = load_il(data)
    tz = "America/Chicago"
    blackout_start = pd.Timestamp("2016-12-26", tz=tz).tz_convert("UTC")
    blackout_end = pd.Timestamp("2017-01-04", tz=tz).tz_convert("UTC")
    year = pd.Timedelta(days=365)
    base = kwh[(kwh.index >= blackout_start - year) & (kwh.index < blackout_start)]
    report = kwh[(kwh.index >= blackout_end) & (kwh.index < blackout_end + year)]
    started = time.perf_counter()
    fit = fit_baseline(base, tz=tz, temperature=temp)
    predicted = fit.predict(report.index, temperature=temp)["expected"].to_numpy()
    seconds = time.perf_counter() - started
    observed = report.to_numpy()
    counterfactual = observed / 0.9
    cv = np.sqrt(np.mean((counterfactual - predicted) ** 2)) / counterfactual.mean() * 100
    nmbe = (counterfactual - predicted).sum() / counterfactual.sum() * 100
    savings = (1 - observed.sum() / predicted.sum()) * 100
    print(f"IL hourly sample ({len(base):,} baseline h, {len(report):,} reporting h); {TARGETS}")
    print(f"{'model':28s} {'CV(RMSE) %':>11s} {'NMBE %':>8s} {'savings %':>10s} {'seconds':>8s}")
    for name, (p_cv, p_nmbe, p_sav, p_s) in PEERS.items():
        print(f"{name:28s} {p_cv:11.1f} {p_nmbe:8.2f} {p_sav:10.2f} {p_s:8.2f}")
    print(f"{'CEI baseline':28s} {cv:11.1f} {nmbe:8.2f} {savings:10.2f} {seconds:8.2f}")
    print(f"  in-sample: {fit.stats.to_dict()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the shared reference data folder")
    args = ap.parse_args()
    il_benchmark(args.data)


if __name__ == "__main__":
    main()
