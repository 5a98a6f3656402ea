"""The asset graph, one package per domain; each exposes its own dg.Definitions."""

import warnings

import dagster as dg


def with_code_references(assets: list) -> list:
    """The assets with a link to the file and line that defines each, shown on the asset page.
    Dagster 1.13 marks the API beta and warns once per asset; the link itself is stable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return list(dg.with_source_code_references(assets))
