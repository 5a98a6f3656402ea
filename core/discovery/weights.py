"""The scoring formula's weights (core/discovery/scoring.py). Kept apart from the formula, which
needs pandas, so that run config can validate weights when the code location loads cheaply."""

from dataclasses import asdict, dataclass

FACTORS = ("revenue", "confidence", "time_to_revenue", "capability", "timing")


@dataclass(frozen=True)
class Weights:
    revenue: float = 0.40
    confidence: float = 0.20
    time_to_revenue: float = 0.15
    capability: float = 0.15
    timing: float = 0.10

    def __post_init__(self) -> None:
        values = asdict(self)
        if any(v < 0 for v in values.values()):
            raise ValueError(f"scoring weights must be non-negative, got {values}")
        if abs(sum(values.values()) - 1.0) > 1e-9:
            raise ValueError(f"scoring weights must sum to 1 so scores stay in [0, 1], got {sum(values.values())}")
