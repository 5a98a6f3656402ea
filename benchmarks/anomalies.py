"""Anomaly detection (ml/anomaly.py), measured two ways.

1. Injected anomalies in simulator series: revenue, refunds and ad cost of the market simulator's
   experiments (core.simulator.market.simulate, USD market, staggered starts, its weekday pattern,
   ramp-up and refunds), plus count and duration series in the shape the asset reads (experiment
   failures ~ Poisson(0.4), source errors ~ Poisson(2), run durations ~ lognormal around 40 s).
   Into each series go labelled events at random days after day 35: spikes (x3 to x6 of the day's
   expected value), drops (to 0 to 20% of it) and level shifts (x2 or x0.4 from that day on).
   An event is recalled when a detection falls in its window (its day; a level shift's first 14
   days, until the trailing 28-day median has moved to the new level); a detection is correct
   when it falls in some event's window. Precision and recall per
   method and for both combined (a day flagged by either).
2. AUC-PR (average precision) on a real series labelled by others: the UCR Anomaly Archive's
   InternalBleeding16 (KDD Cup 2021 TSAD, series 135; 7,501 points, 12 labelled anomalous), which
   the aeon wheel (aeon==1.6.0, BSD-3) ships in aeon/datasets/data/KDD-TSAD_135/. The benchmark
   reads it from an installed aeon if there is one, else from the wheel file itself: it runs
   `pip download --no-deps aeon==1.6.0` into benchmarks/.data/wheels/ once (PyPI only, ~6 MB) and
   reads the CSV out of the zip; aeon is never installed or imported. Points are scored by |robust
   z| and by the isolation score, against the share of anomalous points (AUC-PR of a random score).

    .venv/bin/python benchmarks/anomalies.py [--replicates 20] [--days 180] [--quick]
"""

import argparse
import csv
import importlib.util
import io
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from _common import DATA_DIR, machine

from ml.anomaly import METHODS, Settings, detect

AEON = "aeon==1.6.0"
AEON_MEMBER = "aeon/datasets/data/KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv"
WHEELS = DATA_DIR / "wheels"
START = date(2026, 1, 5)
SHIFT_WINDOW = 14  # until the trailing 28-day median has crossed to the new level
KINDS = ("spike", "drop", "level_shift")


# -- simulator series ---------------------------------------------------------------------------


def simulator_money(seed: int, days: int) -> dict[str, np.ndarray]:
    """revenue, refunds and cost (USD cents per day) of 6 simulated experiments starting over 3 weeks."""
    from core.simulator.ground_truth import truths
    from core.simulator.market import Experiment, simulate

    frame = pd.DataFrame(
        [
            {
                "opportunity_id": f"opp-{seed}-{n}",
                "source": "hackernews",
                "opportunity_type": ("saas", "api", "content")[n % 3],
                "est_monthly_revenue_cents": 1_500_000,
                "confidence": 0.9,
                "capability_match": 0.9,
                "age_days": 1.0,
            }
            for n in range(6)
        ]
    )
    experiments = [
        Experiment(f"exp-{seed}-{n}", f"opp-{seed}-{n}", START + timedelta(days=3 * n), "us") for n in range(6)
    ]
    revenue, refunds, cost = np.zeros(days), np.zeros(days), np.zeros(days)
    for offset, day in enumerate(simulate(seed, experiments, truths(seed, frame), START, days)):
        for obj in day.objects:
            if obj["type"] == "charge":
                revenue[offset] += obj["amount"]
            elif obj["type"] == "refund":
                refunds[offset] -= obj["amount"]
        cost[offset] = sum(c.amount_minor for c in day.costs)
    return {"revenue_minor": revenue, "refunds_minor": refunds, "cost_minor": cost}


def operational(seed: int, days: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weekday = np.array([(START + timedelta(days=n)).weekday() for n in range(days)])
    return {
        "experiment_failures": rng.poisson(0.4, days).astype(float),
        "source_errors": rng.poisson(np.where(weekday < 5, 2.0, 1.0)).astype(float),
        "run_duration_seconds": np.round(rng.lognormal(np.log(40), 0.15, days), 1),
    }


def inject(values: np.ndarray, rng: np.random.Generator, events: int) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """`events` labelled anomalies after day 35, at least 14 days apart: (kind, first day, last day)."""
    values = values.copy()
    days = len(values)
    candidates = list(range(35, days - SHIFT_WINDOW))
    chosen: list[int] = []
    while len(chosen) < events and candidates:
        day = int(rng.choice(candidates))
        chosen.append(day)
        candidates = [c for c in candidates if abs(c - day) >= 14]
    labelled = []
    for day in sorted(chosen):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        local = float(np.median(values[day - 28 : day]))
        if local <= 0:  # a drop or shift of a series at 0 is no event: make it a spike above its noise
            kind = "spike"
        if kind == "spike":
            base = max(local, float(np.std(values[day - 28 : day])), 1.0)
            values[day] = values[day] + base * rng.uniform(2.0, 5.0)
            labelled.append((kind, day, day))
        elif kind == "drop":
            values[day] = values[day] * rng.uniform(0.0, 0.2)
            labelled.append((kind, day, day))
        else:
            factor = 2.0 if rng.random() < 0.5 else 0.4
            values[day:] = values[day:] * factor
            labelled.append((kind, day, day + SHIFT_WINDOW - 1))
    return values, labelled


def evaluate(replicates: int, days: int, events: int) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    found_rows, event_rows, seconds = [], [], 0.0
    for replicate in range(replicates):
        rng = np.random.default_rng(1000 + replicate)
        clean = {**simulator_money(replicate, days), **operational(replicate, days)}
        rows = []
        for metric, values in clean.items():
            injected, labelled = inject(values, rng, events)
            event_rows += [(replicate, metric, *event) for event in labelled]
            rows += [(START + timedelta(days=n), metric, v) for n, v in enumerate(injected)]
        series = pd.DataFrame(rows, columns=["metric_date", "metric", "value"])
        started = time.perf_counter()
        anomalies = detect(series, Settings(seed=replicate)).anomalies
        seconds += time.perf_counter() - started
        for row in anomalies.itertuples(index=False):
            found_rows.append((replicate, row.metric, (row.metric_date - START).days, row.method, row.severity))
    found = pd.DataFrame(found_rows, columns=["replicate", "metric", "day", "method", "severity"])
    events_frame = pd.DataFrame(event_rows, columns=["replicate", "metric", "kind", "first", "last"])
    by_metric = pd.concat(
        [
            score(found[found["metric"] == metric], events_frame[events_frame["metric"] == metric])
            .query("method == 'combined'")
            .assign(method=metric)
            for metric in sorted(events_frame["metric"].unique())
        ]
    ).rename(columns={"method": "metric (combined)"})
    return score(found, events_frame), by_metric, seconds / max(replicates, 1)


def score(found: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    lines = []
    for method in (*METHODS, "combined"):
        flagged = found if method == "combined" else found[found["method"] == method]
        flagged = flagged.drop_duplicates(subset=["replicate", "metric", "day"])
        hits = flagged.merge(events, on=["replicate", "metric"], how="left")
        inside = hits[(hits["day"] >= hits["first"]) & (hits["day"] <= hits["last"])]
        correct = inside.drop_duplicates(subset=["replicate", "metric", "day"])
        recalled = inside.drop_duplicates(subset=["replicate", "metric", "first"])
        line = {
            "method": method,
            "detections": len(flagged),
            "precision": len(correct) / len(flagged) if len(flagged) else float("nan"),
            "recall": len(recalled) / len(events),
        }
        for kind in KINDS:
            of_kind = events[events["kind"] == kind]
            line[f"recall_{kind}"] = (recalled["kind"] == kind).sum() / max(len(of_kind), 1)
        lines.append(line)
    return pd.DataFrame(lines)


def false_alarms(seeds: int, days: int) -> dict[str, float]:
    """Share of judged days flagged per method on clean series: Poisson customers (3, 30 or 300 a
    day) x the simulator's weekday factor x 100 cents, nothing injected."""
    from core.simulator.market import WEEKDAY

    judged, flagged = 0, dict.fromkeys(METHODS, 0)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        dates = [START + timedelta(days=n) for n in range(days)]
        rate = float(rng.choice([3, 30, 300]))
        values = np.array([rng.poisson(rate * WEEKDAY[d.weekday()]) * 100 for d in dates], dtype=float)
        found = detect(pd.DataFrame({"metric_date": dates, "metric": "revenue_minor", "value": values}))
        judged += len(found.scored)
        for method, count in found.anomalies["method"].value_counts().items():
            flagged[str(method)] += int(count)
    return {method: count / judged for method, count in flagged.items()} | {"judged_days": judged}


# -- a real labelled series from a PyPI wheel --------------------------------------------------


def labelled_csv() -> tuple[str, str]:
    """(CSV text, where it came from): from an installed aeon, else from its wheel (downloaded once)."""
    spec = importlib.util.find_spec("aeon")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent.parent / AEON_MEMBER
        if path.is_file():
            return path.read_text(), f"installed aeon: {path}"
    WHEELS.mkdir(parents=True, exist_ok=True)
    wheels = sorted(WHEELS.glob("aeon-1.6.0-*.whl"))
    if not wheels:
        pip = [sys.executable, "-m", "pip"]
        if subprocess.run([*pip, "--version"], capture_output=True).returncode != 0:
            found = shutil.which("pip") or shutil.which("pip3")
            if not found:
                raise SystemExit("no pip to download the aeon wheel with: `python -m ensurepip` or install pip")
            pip = [found]
        command = [*pip, "download", "--no-deps", "--only-binary", ":all:", AEON, "-d", str(WHEELS)]
        print(f"  ... {' '.join(command[-6:])}", file=sys.stderr, flush=True)
        subprocess.run(command, check=True, capture_output=True)
        wheels = sorted(WHEELS.glob("aeon-1.6.0-*.whl"))
    with zipfile.ZipFile(wheels[0]) as archive:
        return archive.read(AEON_MEMBER).decode(), f"{wheels[0].name}:{AEON_MEMBER}"


def auc_pr() -> tuple[pd.DataFrame, str, int, int]:
    from sklearn.metrics import average_precision_score

    text, origin = labelled_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    values = np.array([float(r["value"]) for r in rows])
    labels = np.array([int(r["is_anomaly"]) for r in rows])
    # One point per "day": the detector reads dates only for the weekday profile, which the gain
    # test rejects on a series without a weekly cycle.
    series = pd.DataFrame(
        {"metric_date": [START + timedelta(days=n) for n in range(len(values))], "metric": "value", "value": values}
    )
    scored = detect(series, Settings(forest_min_days=28)).scored
    judged = labels[len(labels) - len(scored) :]
    lines = []
    for name, scores in (("robust_z", scored["robust_z"].abs()), ("isolation_forest", scored["isolation_score"])):
        lines.append({"score": name, "auc_pr": average_precision_score(judged, scores.to_numpy())})
    lines.append({"score": "random (share of anomalous points)", "auc_pr": judged.mean()})
    return pd.DataFrame(lines), origin, len(values), int(labels.sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--events", type=int, default=4, help="labelled events per series")
    parser.add_argument("--quick", action="store_true", help="5 replicates of 120 days")
    args = parser.parse_args()
    if args.quick:
        args.replicates, args.days = 5, 120
    print(f"anomalies: {machine()}")
    table, by_metric, per_replicate = evaluate(args.replicates, args.days, args.events)
    print(
        f"\ninjected anomalies: {args.replicates} replicates x 6 metrics x {args.days} days, "
        f"{args.events} events per series; detect() {per_replicate:.2f} s per replicate (6 series)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(by_metric.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    clean = false_alarms(5 if args.quick else 20, args.days)
    print(
        f"\nclean series ({clean['judged_days']:,} judged days): flagged "
        + ", ".join(f"{m} {clean[m]:.2%}" for m in METHODS)
    )
    real, origin, points, anomalous = auc_pr()
    print(f"\nAUC-PR on UCR InternalBleeding16 ({points:,} points, {anomalous} labelled anomalous), from {origin}")
    print(real.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
