"""The second code location: the dbt marts of the ledger. Its assets depend on the ledger's
assets in the main location by key, so the asset graph in the UI is one graph, and its
automation sensor rebuilds them when those change (assets/ledger_marts/__init__.py)."""

from orchestration.instance import require_matching_storage

# Before dbt is imported: as orchestration/definitions.py, refuse loudly and at once.
require_matching_storage()

from assets import ledger_marts  # noqa: E402
from orchestration.wiring import location  # noqa: E402

defs = location(ledger_marts.defs)
