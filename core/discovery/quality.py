"""Data-quality suites, run with great-expectations 1.x on a DataFrame batch.

Framework-free: the Dagster checks in assets/checks.py turn the outcomes into AssetCheckResults.
great_expectations takes seconds to import, so it is imported only when a suite runs."""

import logging
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

URL_PATTERN = r"^https?://[^/\s?#]+\.[^/\s?#]+"


@dataclass(frozen=True)
class Outcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    examples: list[Any]

    def describe(self) -> str:
        where = f" on {self.column}" if self.column else ""
        outcome = "ok" if self.success else f"{self.unexpected_count} bad, e.g. {self.examples[:3]}"
        return f"{self.expectation}{where}: {outcome}"


def _expectations(suite: str, frame: pd.DataFrame) -> list[Any]:
    import great_expectations as gx

    e = gx.expectations
    if suite == "opportunities":
        return [
            *[
                e.ExpectColumnValuesToNotBeNull(column=c)
                for c in ("fingerprint", "opportunity_id", "source", "url", "title", "created_at", "cluster_id")
            ],
            e.ExpectColumnValuesToBeUnique(column="fingerprint"),
            e.ExpectColumnValuesToBeUnique(column="opportunity_id"),
            e.ExpectColumnValuesToMatchRegex(column="url", regex=URL_PATTERN),
            e.ExpectColumnValuesToBeBetween(column="points", min_value=0),
            e.ExpectColumnValuesToBeBetween(column="comments", min_value=0),
        ]
    if suite == "scored_opportunities":
        return [
            e.ExpectColumnValuesToNotBeNull(column="opportunity_id"),
            e.ExpectColumnValuesToBeUnique(column="opportunity_id"),
            e.ExpectColumnValuesToNotBeNull(column="score"),
            e.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1),
            *[
                e.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1)
                for c in frame.columns
                if c.startswith("factor_")
            ],
            e.ExpectColumnValuesToMatchRegex(column="url", regex=URL_PATTERN),
        ]
    raise ValueError(f"unknown suite {suite!r}")


def validate(suite: str, frame: pd.DataFrame) -> list[Outcome]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from a data platform
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    batch = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(name=suite)
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    expectations = gx.ExpectationSuite(name=suite, expectations=_expectations(suite, frame))
    result = batch.validate(expectations)
    return [
        Outcome(
            r.expectation_config.type,
            r.expectation_config.kwargs.get("column"),
            bool(r.success),
            int(r.result.get("unexpected_count") or 0),
            list(r.result.get("partial_unexpected_list") or []),
        )
        for r in result.results
    ]


def rows_per_source(frame: pd.DataFrame, expected_sources: list[str]) -> dict[str, int]:
    counts = frame["source"].value_counts() if not frame.empty else pd.Series(dtype=int)
    return {name: int(counts.get(name, 0)) for name in expected_sources}
