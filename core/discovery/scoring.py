"""The seed's scoring formula as the baseline, vectorized, with one column per weighted factor.

score = 0.40 * min(monthly_usd / 10000, 1)       expected revenue
      + 0.20 * confidence                         in [0, 1]
      + 0.15 * 1 / (1 + days_to_revenue / 30)     time to first dollar
      + 0.15 * matched / required                 capability match (guarded: see features)
      + 0.10 * 1 / (1 + age_days / 7)             market timing
"""

from dataclasses import asdict

import numpy as np
import pandas as pd

from core.discovery.weights import FACTORS, Weights


def factors(features: pd.DataFrame, success_probability: pd.Series | None = None) -> pd.DataFrame:
    """Each factor in [0, 1] before weighting. `success_probability` (aligned with `features`; the
    champion success model's, see assets/discovery/opportunities.py) is the confidence factor where
    given; rows without one, or no such column at all, keep the seed's confidence."""
    monthly_usd = features["est_monthly_revenue_cents"] / 100
    confidence = features["confidence"]
    if success_probability is not None:
        confidence = success_probability.reindex(features.index).fillna(confidence)
    return pd.DataFrame(
        {
            "revenue": (monthly_usd / 10_000).clip(lower=0, upper=1.0),
            "confidence": confidence.clip(0, 1),
            "time_to_revenue": 1.0 / (1.0 + features["days_to_revenue"].clip(lower=0) / 30),
            "capability": features["capability_match"].clip(0, 1),
            "timing": 1.0 / (1.0 + features["age_days"].clip(lower=0) / 7),
        },
        index=features.index,
    )


def score(features: pd.DataFrame, weights: Weights, success_probability: pd.Series | None = None) -> pd.DataFrame:
    """The features with each weighted factor, their sum (`score`, rounded to 6 places), `why`, and
    `rank`: 1 for the highest score, then by descending score; equal scores rank in the order of
    `features` (the earlier row first). Returned in rank order. `success_probability`: see `factors`."""
    weighted = factors(features, success_probability).mul(pd.Series(asdict(weights)))
    scored = features.join(weighted.add_prefix("factor_")).assign(score=weighted.sum(axis=1).round(6))
    scored["why"] = explain(scored)
    scored["rank"] = scored["score"].rank(method="first", ascending=False).astype("int64")
    scored = scored.sort_values("rank").reset_index(drop=True)
    # Near-duplicates stay in the table; the best-scored row of each cluster speaks for it.
    scored["is_cluster_lead"] = ~scored["cluster_id"].duplicated()
    return scored


def explain(scored: pd.DataFrame) -> pd.Series:
    """A short human reason: the two strongest weighted factors and the revenue signal behind them."""
    weighted = scored[[f"factor_{f}" for f in FACTORS]]
    top = weighted.to_numpy().argsort(axis=1)[:, ::-1][:, :2]
    names = np.array([f.replace("_", " ") for f in FACTORS], dtype=object)
    signal = scored["revenue_signal"].map(
        {
            "stated_revenue": "states revenue",
            "budget": "has a budget",
            "price": "has a price",
            "none": "no $ signal",
        }
    )
    # Built column-wise (a million f-strings took seconds); each distinct amount is formatted once.
    dollars, where = np.unique((scored["est_monthly_revenue_cents"] // 100).to_numpy(), return_inverse=True)
    monthly = np.array([f"${d:,}/mo" for d in dollars.tolist()], dtype=object)[where.reshape(-1)]
    parts = [
        names[top[:, 0]],
        " + ",
        names[top[:, 1]],
        "; ",
        signal.fillna("nan").to_numpy(dtype=object),
        " (~",
        monthly,
        "); ",
        scored["opportunity_type"].astype(str).to_numpy(dtype=object),
    ]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + part
    return pd.Series(joined, index=scored.index, dtype="str")


def weighted_score(features: pd.DataFrame, weights: Weights) -> pd.Series:
    """The score alone, unrounded: the sum of the weighted factors (for rows that need no `why`)."""
    return factors(features).mul(pd.Series(asdict(weights))).sum(axis=1)
