"""The main code location: discovery, opportunities, experiments, the ledger, learning, forecasting and
monitoring. Wiring only.

Loading it must stay fast (the webserver, the daemon and every multiprocess step import it), so
nothing here imports pandas, great_expectations or dbt; the dbt marts are a second code location,
orchestration/marts_definitions.py. A new domain is one more argument to `location`."""

from orchestration.instance import require_matching_storage

# Refuse loudly, before anything else loads, rather than keep runs where this environment's UI
# never looks (the instance file and DAGSTER_POSTGRES_URL disagree).
require_matching_storage()

from assets import discovery, experiments, forecasting, learning, ledger, monitoring  # noqa: E402
from orchestration.wiring import discovery_is_live, location  # noqa: E402

defs = location(
    discovery.definitions(live=discovery_is_live()),
    experiments.defs,
    ledger.defs,
    learning.defs,
    forecasting.defs,
    monitoring.defs,
)
