"""The hidden ground truth of the simulated market: per opportunity, the chance that an experiment
on it succeeds and the revenue it then earns, as documented functions of the opportunity's features
(core.discovery.features: est_monthly_revenue_cents, confidence, capability_match, age_days,
opportunity_type, source), its source's quality and noise. Deterministic for (seed, opportunity_id);
the experiments never see it, the evaluation does (`oracle`).

    logit(p)  = -0.6 + 2.5 (confidence - 0.5) + 2.0 (capability_match - 0.5)
                + ln(source_quality) - 0.02 min(age_days, 60) + TYPE_EFFECT[type] + N(0, 0.5)
    monthly revenue if successful ~ lognormal(median, sigma 0.6), median =
                clip(est_monthly_revenue_cents x REALISM x source_quality, 1 000.00, 30 000.00 USD)
    price     = TYPE_PRICE[type] x U(0.7, 1.3), rounded to a whole USD, within 9.00 .. 89.00 USD

Source quality is one draw per source name in [0.5, 1.5] (log-uniform), shared by every opportunity
of that source. Prices stay within 10x of each other so the amount-outlier fraud rule (10x the
median of a currency) never fires on ordinary sales across experiments.
"""

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

# Claimed revenue overstates what a new entrant earns: the simulated market pays 30% of it.
REALISM_PERCENT = 30
MIN_MONTHLY_CENTS = 1_000_00
MAX_MONTHLY_CENTS = 30_000_00
REVENUE_SIGMA = 0.6
MIN_PRICE_CENTS, MAX_PRICE_CENTS = 9_00, 89_00
TYPE_PRICE_CENTS = {
    "saas": 29_00,
    "api": 49_00,
    "freelance_gig": 79_00,
    "affiliate": 19_00,
    "content": 12_00,
    "marketplace": 25_00,
    "open_source_tool": 15_00,
    "other": 20_00,
}
TYPE_EFFECT = {
    "saas": 0.3,
    "api": 0.2,
    "freelance_gig": 0.4,
    "affiliate": -0.3,
    "content": 0.0,
    "marketplace": -0.4,
    "open_source_tool": -0.2,
    "other": -0.5,
}
# Monthly churn of the customers of recurring products (a renewal 30 days after each purchase).
TYPE_CHURN_PERCENT = {"saas": 8, "api": 6, "content": 12}
DEFAULTS = {
    "source": "unknown",
    "opportunity_type": "other",
    "est_monthly_revenue_cents": 0,
    "confidence": 0.5,
    "capability_match": 0.5,
    "age_days": 0.0,
}
ORACLE_COLUMNS = (
    "opportunity_id",
    "source",
    "opportunity_type",
    "source_quality",
    "success_probability",
    "monthly_revenue_median_cents",
    "revenue_sigma",
    "price_cents",
    "refund_rate",
    "monthly_churn",
    "fraud_burst_rate",
)


@dataclass(frozen=True)
class Truth:
    """What the market will do with an opportunity. Amounts in USD cents: the market converts them."""

    opportunity_id: str
    source: str
    opportunity_type: str
    source_quality: float
    success_probability: float
    monthly_revenue_median_cents: int
    revenue_sigma: float
    price_cents: int
    refund_rate: float  # share of charges refunded
    monthly_churn: float  # 0 for one-off products: no renewals
    fraud_burst_rate: float  # chance per running day of a card-testing burst


def _rng(seed: int, *parts: object) -> random.Random:
    # A string seed is hashed (SHA-512), so every (seed, part) stream is independent and stable.
    return random.Random(":".join(["ventureloop-market", str(seed), *map(str, parts)]))


def source_quality(seed: int, source: str) -> float:
    """One draw per (seed, source) in [0.5, 1.5], log-uniform: a good source doubles a bad one's odds."""
    return round(math.exp(_rng(seed, "source", source).uniform(math.log(0.5), math.log(1.5))), 4)


def _number(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(number) else number


def truth(seed: int, features: Mapping[str, Any]) -> Truth:
    """The ground truth of one opportunity (a row of core.opportunity_features or scored_opportunities)."""
    row = {**DEFAULTS, **{k: v for k, v in features.items() if v is not None}}
    opportunity_id = str(row["opportunity_id"])
    source = str(row["source"])
    kind = row["opportunity_type"] if row["opportunity_type"] in TYPE_PRICE_CENTS else "other"
    confidence = min(max(_number(row["confidence"], 0.5), 0.0), 1.0)
    capability = min(max(_number(row["capability_match"], 0.5), 0.0), 1.0)
    age = max(_number(row["age_days"], 0.0), 0.0)
    quality = source_quality(seed, source)
    rng = _rng(seed, "opportunity", opportunity_id)
    logit = (
        -0.6
        + 2.5 * (confidence - 0.5)
        + 2.0 * (capability - 0.5)
        + math.log(quality)
        - 0.02 * min(age, 60.0)
        + TYPE_EFFECT[kind]
        + rng.gauss(0.0, 0.5)
    )
    claimed = max(int(_number(row["est_monthly_revenue_cents"], 0.0)), 0)
    median = claimed * REALISM_PERCENT // 100 * round(quality * 100) // 100
    price = round(TYPE_PRICE_CENTS[kind] * rng.uniform(0.7, 1.3) / 100) * 100
    return Truth(
        opportunity_id=opportunity_id,
        source=source,
        opportunity_type=kind,
        source_quality=quality,
        success_probability=round(1.0 / (1.0 + math.exp(-logit)), 6),
        monthly_revenue_median_cents=min(max(median, MIN_MONTHLY_CENTS), MAX_MONTHLY_CENTS),
        revenue_sigma=REVENUE_SIGMA,
        price_cents=min(max(price, MIN_PRICE_CENTS), MAX_PRICE_CENTS),
        refund_rate=round(rng.uniform(0.02, 0.08) * (1.5 - quality / 2), 4),  # bad sources refund more
        monthly_churn=TYPE_CHURN_PERCENT.get(kind, 0) / 100,
        fraud_burst_rate=round(rng.uniform(0.0, 0.015), 4),
    )


def truths(seed: int, features: pd.DataFrame) -> dict[str, Truth]:
    """opportunity_id -> Truth for every row of a features (or scored) frame."""
    return {str(row["opportunity_id"]): truth(seed, row) for row in features.to_dict("records")}


def oracle(seed: int, features: pd.DataFrame) -> pd.DataFrame:
    """The ground truth as a table, one row per opportunity (ORACLE_COLUMNS), for evaluating what the
    learning loop inferred. Never an input to the experiments themselves."""
    rows = [asdict(t) for t in truths(seed, features).values()]
    return pd.DataFrame(rows, columns=list(ORACLE_COLUMNS))
