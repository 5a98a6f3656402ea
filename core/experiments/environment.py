"""Where an experiment runs: the world its playbook acts on.

The executor (core.experiments.executor) is the same in production and in simulation; what differs
is the Environment it is given:

- LiveEnvironment (core.experiments.executor): wall-clock time, real HTTP. A `wait_until` that is
  not yet due parks the experiment; the launch sensor starts it again when it is.
- SimulatedMarket (core.simulator.environment): simulated time per experiment. `wait_until`
  advances that experiment's time to the moment and books the market's events of the days it
  passed (payments through the import path, costs through the budgets), so weeks play in seconds.

OUTCOMES_SOURCE chooses one: `simulator` (the default, offline) or anything else (live).
"""

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # httpx costs import time; only the http step needs it
    import httpx

Clock = Callable[[], datetime]


class Environment(Protocol):
    name: str  # "live" or "simulator", recorded with every checkpoint

    def clock_for(self, experiment: Mapping[str, Any], resume_at: datetime | None) -> Clock:
        """The clock of one run of `experiment`. `resume_at` is the time its latest checkpoint was
        written (None on its first run): a simulated clock continues from there."""
        ...

    def wait_until(self, experiment: Mapping[str, Any], clock: Clock, at: datetime) -> bool:
        """True once `at` has been reached on `clock`. A simulated environment first advances the
        clock to `at`, booking what the market did on the way; a live one only compares."""
        ...

    def http_client(self) -> "httpx.Client":
        """The client the http step sends webhooks with (the caller closes it)."""
        ...
