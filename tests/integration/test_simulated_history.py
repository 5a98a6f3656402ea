"""The simulated back catalog goes through the product's own paths: its experiments are proposed,
moved and booked like any other, so record_outcomes judges them from the ledger, and booking it
twice books nothing new."""

from datetime import UTC, datetime

import pytest

from core.experiments.lifecycle import COMPLETED, history
from core.experiments.outcomes import record_outcomes
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse
from core.simulator.history import HISTORY_ACTOR, book_history, history_proposals
from core.simulator.population import realize

END = datetime(2026, 10, 20, tzinfo=UTC)


def test_history_experiments_finish_through_the_lifecycle_and_the_ledger(warehouse: Warehouse) -> None:
    report = book_history(warehouse, 5, 12, END, weeks=2)
    assert report.booked == 12 and report.already == 0
    assert report.last_finished_at <= END
    experiments = warehouse.query("SELECT * FROM experiments.experiments ORDER BY created_at")
    assert len(experiments) == 12
    assert set(experiments["state"]) == {COMPLETED}
    assert experiments["opportunity_id"].str.startswith("hist-").all()
    moves = history(warehouse, experiments["experiment_id"].iloc[0])
    assert moves["to_state"].tolist() == ["proposed", "approved", "queued", "running", "completed"]
    # Approved by the approval policy the history brings; every other move is the history's own.
    assert set(moves["actor"]) == {HISTORY_ACTOR, "policy"}
    assert "simulated history" in moves.loc[moves["to_state"] == "approved", "reason"].iloc[0]

    outcomes = record_outcomes(warehouse, clock=lambda: END).set_index("experiment_id")
    # The ledger holds exactly the population's 30-day sums: the outcomes read them back.
    expected = realize(5, history_proposals(5, 12, END, weeks=2)).set_index("experiment_id")
    assert outcomes["net_minor"].sort_index().tolist() == expected["net_minor"].sort_index().tolist()
    assert outcomes["succeeded"].sort_index().tolist() == expected["succeeded"].sort_index().tolist()
    assert verify(warehouse).ok

    again = book_history(warehouse, 5, 12, END, weeks=2)
    assert (again.booked, again.already) == (0, 12)
    assert "nothing new" in again.summary()
    assert warehouse.count("experiments.experiments") == 12


def test_history_needs_an_aware_end(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        book_history(warehouse, 5, 3, datetime(2026, 10, 20))
