"""Features per opportunity, vectorized over the whole table: type, capability match, revenue
signals parsed from text, engagement and its velocity, age. Plain pandas, plus
core.discovery.text_patterns for the keyword and amount patterns (the same `re` results, from Arrow
kernels over all texts at once)."""

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from core.discovery.text_patterns import Texts

CONFIG_DIR = Path(__file__).parent / "config"
TYPES = ("saas", "api", "freelance_gig", "affiliate", "content", "marketplace", "open_source_tool", "other")

# Ordered: the first rule that matches decides the type (a freelance post mentioning an API is a gig).
TYPE_RULES: list[tuple[str, str]] = [
    (
        "freelance_gig",
        r"\b(?:hiring|looking for (?:a |an )?(?:developer|freelancer|designer|writer|expert)|"
        r"need (?:a |an )?(?:developer|freelancer)|budget:|fixed price|hourly rate|\[for hire\]|gig)\b",
    ),
    ("affiliate", r"\b(?:affiliate|commission|referral program|partner program|cpa|revenue share)\b"),
    ("marketplace", r"\b(?:marketplace|buyers and sellers|two-sided|listings? for sale)\b"),
    ("api", r"\b(?:api|apis|endpoint|sdk|webhooks?)\b"),
    ("saas", r"\b(?:saas|subscription|mrr|arr|per month|/mo|/month|b2b|pricing|free trial)\b"),
    (
        "open_source_tool",
        r"\b(?:open[- ]source|self[- ]hosted|mit licen[cs]e|apache[- ]2|github\.com|cli tool|library)\b",
    ),
    ("content", r"\b(?:newsletter|blog|youtube|podcast|course|ebook|guide|tutorial|substack)\b"),
]
# A source family is a stronger hint than any word in the text.
FAMILY_TYPES = {
    "freelance": "freelance_gig",
    "affiliate": "affiliate",
    "github_trending": "open_source_tool",
    "api_marketplaces": "api",
}

_AMOUNT = r"\$\s?(\d[\d,]*(?:\.\d+)?)\s?([kKmM])?"
REVENUE_PATTERNS = {
    "mrr": [
        _AMOUNT + r"\s*(?:in\s+)?(?:/\s?mo(?:nth)?\s+)?mrr\b",
        r"\bmrr\b(?:\s+(?:of|is|at|hit|reached))?[:\s]+" + _AMOUNT,
    ],
    "arr": [_AMOUNT + r"\s*(?:in\s+)?arr\b", r"\barr\b(?:\s+(?:of|is|at|hit|reached))?[:\s]+" + _AMOUNT],
    "price": [_AMOUNT + r"\s*(?:/|per\s+|a\s+)\s*(?:user|seat)\s*(?:/|per\s+|a\s+)\s*(?:mo|month)\b"],
    "monthly": [_AMOUNT + r"\s*(?:/|per\s+|a\s+)\s*(?:mo|month)\b"],
    "budget": [r"\bbudget\b[^$\d]{0,20}" + _AMOUNT + r"(?:\s*(?:-|–|to)\s*\$?\s?(\d[\d,]*(?:\.\d+)?)([kKmM])?)?"],
}


@dataclass(frozen=True)
class CapabilityProfile:
    have: frozenset[str]
    catalogue: dict[str, list[str]]
    baseline: dict[str, list[str]]
    score_when_nothing_required: float

    @classmethod
    def load(cls, path: Path | None = None) -> "CapabilityProfile":
        data = _load_yaml(path or CONFIG_DIR / "capabilities.yaml")
        unknown = set(data["have"]) - set(data["catalogue"])
        if unknown:
            raise ValueError(f"capability profile: 'have' lists {sorted(unknown)} which are not in 'catalogue'")
        return cls(
            frozenset(data["have"]),
            data["catalogue"],
            data["baseline"],
            float(data.get("score_when_nothing_required", 0.5)),
        )


@dataclass(frozen=True)
class ScoringAssumptions:
    weights: dict[str, float]
    customers_at_price: int
    by_type: dict[str, dict[str, int]]
    confidence: dict[str, float]

    @classmethod
    def load(cls, path: Path | None = None) -> "ScoringAssumptions":
        data = _load_yaml(path or CONFIG_DIR / "scoring.yaml")
        missing = set(TYPES) - set(data["by_type"])
        if missing:
            raise ValueError(f"scoring assumptions: by_type lacks {sorted(missing)}")
        return cls(data["weights"], int(data["customers_at_price"]), data["by_type"], data["confidence"])


@cache
def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"configuration file {path} does not exist") from None


def classify(text: pd.Series, family: pd.Series) -> pd.Series:
    return _classify(Texts(_lowered(text)).contains_each(_type_patterns()), family)


def _classify(hits: dict[str, np.ndarray], family: pd.Series) -> pd.Series:
    by_text = np.select(
        [hits[f"type:{name}"] for name, _ in TYPE_RULES], [name for name, _ in TYPE_RULES], default="other"
    )
    by_family = _mapped(family, FAMILY_TYPES)
    return by_family.fillna(pd.Series(by_text, index=family.index)).astype(str)


def _mapped(values: pd.Series, mapping: pd.Series | dict) -> pd.Series:
    """`values.map(mapping)` with Arrow's hash lookup: pandas maps Arrow strings one at a time
    (the five maps of a million features took ~5 s)."""
    mapping = pd.Series(mapping)
    keys = pa.array(values, from_pandas=True)
    at = pc.index_in(keys, value_set=pa.array(mapping.index, type=keys.type)).fill_null(-1).to_numpy()
    return pd.Series(pd.api.extensions.take(mapping.to_numpy(), at, allow_fill=True), index=values.index)


def _lowered(text: pd.Series) -> pd.Series:
    return text.str.lower()


def _type_patterns() -> dict[str, str]:
    return {f"type:{name}": pattern for name, pattern in TYPE_RULES}


def _capability_patterns(profile: "CapabilityProfile") -> dict[str, str]:
    return {
        f"capability:{name}": r"\b(?:" + "|".join(re.escape(k) for k in keywords) + r")\b"
        for name, keywords in profile.catalogue.items()
    }


def _amount_cents(number: pd.Series, suffix: pd.Series) -> pd.Series:
    # Floats, as when this ran on whole columns with NaN for the texts without a match: on matched
    # rows alone pd.to_numeric gives int64, or Python ints for 20-digit numbers.
    value = pd.to_numeric(number.str.replace(",", "", regex=False), errors="coerce").astype(float)
    suffix = suffix.str.lower()
    scale = np.select([suffix == "k", suffix == "m"], [1_000.0, 1_000_000.0], default=1.0)
    return (value * scale * 100).round()


# "$430/month" is revenue in "making $430/month" and a price in "plans from $29/month". With
# neither kind of word nearby, small amounts are read as prices (typical SaaS price points).
INCOME_WORDS = r"\b(?:making|made|earning|earns?|does|doing|revenue|profit|income|retainers?|clients?|payouts?|sales)\b"
PRICE_WORDS = r"\b(?:from|only|just|costs?|priced|pricing|plans?|starts?|starting|tier|subscription)\b[^$.]{0,12}\$"
PRICE_CEILING_CENTS = 100_00
# A monthly revenue read from text above this is a typo or a joke ("MRR $99999999999999999999"),
# and as int64 cents it wrapped to -2**63: a negative revenue that scored as none. It is capped
# here instead (the row keeps its other features, revenue_note says so): $1 billion a month, far
# above the $10,000 a month at which scoring's revenue factor is already 1, so no score changes.
MAX_MONTHLY_REVENUE_CENTS = 1_000_000_000_00


def _capped_note(cents: float) -> str:
    estimate = f"${cents / 100:,.0f}/month" if np.isfinite(cents) else "an amount too large to read"
    return f"{estimate} read from the text is above the ${MAX_MONTHLY_REVENUE_CENTS // 100:,}/month ceiling: capped"


def revenue_signals(text: pd.Series) -> pd.DataFrame:
    """Per row: the strongest revenue signal in the text and its amount in USD cents per month.
    Stated MRR beats ARR/12 beats a monthly amount said to be income beats a freelance budget
    beats a price (which is not revenue yet). Only dollar amounts are read."""
    texts = Texts(_lowered(text))
    return _revenue_signals(texts, text.index, texts.contains_each({"income": INCOME_WORDS})["income"])


def _revenue_signals(texts: Texts, index: pd.Index, income: np.ndarray) -> pd.DataFrame:
    found: dict[str, pd.Series] = {}
    for kind, patterns in REVENUE_PATTERNS.items():
        amount = np.full(len(texts), np.nan)
        for pattern in patterns:
            parts = texts.extract(pattern)  # only the texts it matches
            cents = _amount_cents(parts[0], parts[1])
            if kind == "budget":  # a range: the buyer's upper bound
                upper = _amount_cents(parts[2], parts[3])
                cents = upper.where(upper.notna(), cents)
            rows = parts.index.to_numpy()
            unset = np.isnan(amount[rows])  # an earlier pattern's amount stands
            amount[rows[unset]] = cents.to_numpy()[unset]
        found[kind] = pd.Series(amount, index=index)
    income = pd.Series(income, index=index)
    priced = pd.Series(texts.contains(PRICE_WORDS), index=index)
    income = income & ~priced | ~priced & (found["monthly"] >= PRICE_CEILING_CENTS)
    earned = found["monthly"].where(income)
    price = found["price"].fillna(found["monthly"].where(~income))
    monthly = found["mrr"].fillna(found["arr"] / 12).fillna(earned).fillna(found["budget"])
    kind = np.select(
        [found["mrr"].notna() | found["arr"].notna() | earned.notna(), found["budget"].notna(), price.notna()],
        ["stated_revenue", "budget", "price"],
        default="none",
    )
    return pd.DataFrame({"revenue_signal": kind, "stated_monthly_cents": monthly, "price_cents": price}, index=index)


def capability_match(text: pd.Series, types: pd.Series, profile: CapabilityProfile) -> pd.DataFrame:
    return _capability_match(Texts(_lowered(text)).contains_each(_capability_patterns(profile)), types, profile)


def _capability_match(hits: dict[str, np.ndarray], types: pd.Series, profile: CapabilityProfile) -> pd.DataFrame:
    detected = pd.DataFrame({name: hits[f"capability:{name}"] for name in profile.catalogue}, index=types.index)
    for type_name, needs in profile.baseline.items():
        for capability in needs:
            detected.loc[types == type_name, capability] = True
    names = np.array(detected.columns)
    have = np.array([name in profile.have for name in names])
    matrix = detected.to_numpy(dtype=bool)
    required_count = matrix.sum(axis=1)
    matched_count = (matrix & have).sum(axis=1)
    match = np.where(
        required_count > 0, matched_count / np.maximum(required_count, 1), profile.score_when_nothing_required
    )
    return pd.DataFrame(
        {
            "required_capabilities": _joined_names(matrix, names),
            "matched_capabilities": _joined_names(matrix & have, names),
            "required_count": required_count,
            "matched_count": matched_count,
            "capability_match": match,
        },
        index=types.index,
    )


def _joined_names(matrix: np.ndarray, names: np.ndarray) -> list[str]:
    """ ",".join(names[row]) per row; rows share a few distinct combinations, so join each once."""
    if matrix.shape[1] > 62:
        return [",".join(names[row]) for row in matrix]
    codes = matrix.astype(np.int64) @ (np.int64(1) << np.arange(matrix.shape[1], dtype=np.int64))
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    joined = np.array([",".join(names[matrix[i]]) for i in first], dtype=object)
    return joined[inverse.reshape(-1)].tolist()


def build_features(
    opportunities: pd.DataFrame,
    as_of: datetime,
    profile: CapabilityProfile,
    assumptions: ScoringAssumptions,
    cluster_sizes: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per opportunity with everything the score needs and a human can read."""
    frame = opportunities.reset_index(drop=True)
    text = frame["title"].fillna("") + "\n" + frame["body"].fillna("")
    texts = Texts(_lowered(text))
    # Every keyword pattern (types, capabilities, income words) in one pass over the texts.
    hits = texts.contains_each({**_type_patterns(), **_capability_patterns(profile), "income": INCOME_WORDS})
    types = _classify(hits, frame["family"])
    signals = _revenue_signals(texts, frame.index, hits["income"])
    capabilities = _capability_match(hits, types, profile)

    defaults = pd.DataFrame(assumptions.by_type).T
    default_revenue = _mapped(types, defaults["monthly_revenue_cents"]).astype(float)
    from_price = signals["price_cents"] * assumptions.customers_at_price
    est_monthly = signals["stated_monthly_cents"].fillna(from_price).fillna(default_revenue)
    capped = est_monthly > MAX_MONTHLY_REVENUE_CENTS
    revenue_note = pd.Series(None, index=frame.index, dtype="str")  # "str": DuckDB types an all-None object column NULL
    revenue_note[capped] = [_capped_note(cents) for cents in est_monthly[capped]]
    est_monthly = est_monthly.clip(upper=MAX_MONTHLY_REVENUE_CENTS)

    created = pd.to_datetime(frame["created_at"], utc=True)
    age_hours = ((pd.Timestamp(as_of) - created).dt.total_seconds() / 3600).clip(lower=0)
    velocity = frame["points"] / age_hours.clip(lower=1)
    sizes = _mapped(frame["cluster_id"], cluster_sizes).fillna(1).astype(int) if cluster_sizes is not None else 1

    conf = assumptions.confidence
    engagement = np.log10(1 + frame["points"] + frame["comments"]) / 4  # 10k interactions ~ full bonus
    confidence = (
        _mapped(signals["revenue_signal"], conf).astype(float)
        + (engagement.clip(upper=1) * conf["engagement_bonus_max"])
    ).clip(0, 1)

    return pd.DataFrame(
        {
            "opportunity_id": frame["opportunity_id"],
            "fingerprint": frame["fingerprint"],
            "source": frame["source"],
            "family": frame["family"],
            "title": frame["title"],
            "url": frame["url"],
            "cluster_id": frame["cluster_id"],
            "cluster_size": sizes,
            "opportunity_type": types,
            **{c: capabilities[c] for c in capabilities.columns},
            "revenue_signal": signals["revenue_signal"],
            "est_monthly_revenue_cents": est_monthly.round().astype("int64"),
            "revenue_note": revenue_note,
            "confidence": confidence.round(4),
            "days_to_revenue": _mapped(types, defaults["days_to_revenue"]).astype("int64"),
            "points": frame["points"].astype("int64"),
            "comments": frame["comments"].astype("int64"),
            "engagement_velocity": velocity.round(4),
            "age_days": (age_hours / 24).round(4),
            "created_at": created,
            "as_of": pd.Timestamp(as_of),
        }
    )
