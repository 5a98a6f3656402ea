"""The second code location: the dbt marts of the ledger. Its assets depend on the ledger's
assets in the main location by key, so the asset graph in the UI is one graph, and its
automation sensor rebuilds them when those change (assets/ledger_marts/__init__.py)."""

from assets import ledger_marts
from orchestration.wiring import location

defs = location(ledger_marts.defs)
