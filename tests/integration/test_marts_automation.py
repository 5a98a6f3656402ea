"""The dbt marts follow the ledger by themselves. ledger_entries, fx_rates and budgets are written
in the main code location and the marts in their own, so no job holds both: each dbt asset is
eager, and the marts location's automation sensor (declared running) requests them.

Evaluated here as the daemon's sensor evaluates them, on the marts location's own Definitions:
the ledger writers are the external assets of that location, and their materializations are
reported to the instance as the main location's runs would write them."""

import dagster as dg
import pytest

from assets.ledger_marts import ledger_marts_automation
from orchestration.marts_definitions import defs

LEDGER_WRITERS = ("ledger_entries", "fx_rates", "budgets")


def dbt_keys() -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return {key for key in graph.get_all_asset_keys() if graph.get(key).is_executable}


def requested(result: dg.EvaluateAutomationConditionsResult) -> set[dg.AssetKey]:
    return {key for key in dbt_keys() if result.get_num_requested(key)}


def downstream_of(key: str) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    below, todo = set(), [dg.AssetKey(key)]
    while todo:
        for child in graph.get(todo.pop()).child_keys - below:
            below.add(child)
            todo.append(child)
    return below


def materialize(instance: dg.DagsterInstance, *keys: dg.AssetKey | str) -> None:
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))


@pytest.fixture
def instance():
    """An instance where the ledger and every mart were materialized once, and the sensor has
    evaluated since: the state of a deployment after `ventureloop demo` or a first build."""
    with dg.instance_for_test() as instance:
        materialize(instance, *LEDGER_WRITERS, *dbt_keys())
        yield instance


def test_the_marts_location_runs_its_own_automation_sensor():
    # Dagster 1.13 would add a default_automation_condition_sensor, stopped until switched on.
    assert [sensor.name for sensor in defs.sensors] == ["ledger_marts_automation"]
    assert ledger_marts_automation.default_status == dg.DefaultSensorStatus.RUNNING
    assert set(ledger_marts_automation.asset_selection.resolve(defs.resolve_asset_graph())) == dbt_keys()
    graph = defs.resolve_asset_graph()
    assert all(graph.get(key).automation_condition is not None for key in dbt_keys())


def test_an_update_of_ledger_entries_requests_the_marts_below_it_once(instance):
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing changed since everything was built

    materialize(instance, "ledger_entries")
    after_booking = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert requested(after_booking) == downstream_of("ledger_entries")
    assert {
        dg.AssetKey(["staging", "stg_postings"]),
        dg.AssetKey(["marts", "revenue_summary"]),
        dg.AssetKey(["marts", "trial_balance"]),
        dg.AssetKey(["marts", "budget_utilization"]),
    } <= requested(after_booking)
    # Not below ledger_entries: the seed and the FX rates' staging view.
    assert dg.AssetKey(["seeds", "currencies"]) not in requested(after_booking)
    assert dg.AssetKey(["staging", "stg_fx_rates"]) not in requested(after_booking)
    # Each requested once: the next tick, with no new booking, requests nothing.
    again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after_booking.cursor)
    assert again.total_requested == 0


def test_no_update_requests_nothing(instance):
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    for _ in range(2):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.total_requested == 0


def test_an_update_of_fx_rates_requests_what_converts_money():
    with dg.instance_for_test() as instance:
        materialize(instance, *LEDGER_WRITERS, *dbt_keys())
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        materialize(instance, "fx_rates")
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert requested(result) == downstream_of("fx_rates")
    assert {
        dg.AssetKey(["staging", "stg_fx_rates"]),
        dg.AssetKey(["marts", "fct_postings"]),
        dg.AssetKey(["marts", "revenue_summary"]),
    } <= requested(result)
    # Native-currency marts do not read rates.
    assert dg.AssetKey(["marts", "trial_balance"]) not in requested(result)
    assert dg.AssetKey(["staging", "stg_postings"]) not in requested(result)
