"""The ledger's Dagster side: assets, the verification check and the inbox sensor, on both backends."""

import csv
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from assets import ledger
from assets.ledger.entries import budgets, fx_rates, ledger_entries, ledger_verifies
from assets.ledger.inbox import inbox_files
from assets.resources import LedgerInputsResource, WarehouseResource
from core.platform.warehouse import Warehouse
from core.simulator.ground_truth import truth
from core.simulator.market import Experiment, simulate_experiment_day

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
LEDGER = [fx_rates, budgets, ledger_entries, ledger_verifies]


def _recent_generic_events(path: Path) -> None:
    """generic_events.csv with every occurred_at moved so its latest row is an hour ago: the assets
    import on the wall clock, and its cost rows must lie within the budgets' 7-day spend window."""
    with (FIXTURES / "generic_events.csv").open(newline="") as source:
        rows = list(csv.DictReader(source))
    shift = datetime.now(UTC) - timedelta(hours=1) - max(datetime.fromisoformat(r["occurred_at"]) for r in rows)
    with path.open("w", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "occurred_at": (datetime.fromisoformat(row["occurred_at"]) + shift).isoformat()})


def _market_file(directory: Path, days: int) -> str:
    """The market simulator's Stripe objects of one running experiment over `days` days, as the JSON
    lines a Stripe API dump holds (what the inbox receives); the same file every time."""
    opportunity = {"opportunity_id": "opp-1", "opportunity_type": "saas", "est_monthly_revenue_cents": 2_000_000}
    experiment = Experiment("exp-1", "opp-1", date(2026, 10, 1))
    objects = [
        obj
        for n in range(days)
        for obj in simulate_experiment_day(7, experiment, truth(7, opportunity), date(2026, 11, 2 + n)).objects
    ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"stripe-{days}-days.jsonl"
    path.write_text("".join(json.dumps(obj) + "\n" for obj in objects), encoding="utf-8")
    return str(path)


def _entries_metadata(result: dg.ExecuteInProcessResult) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == ledger_entries.key:
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError("ledger_entries was not materialized")


def test_inbox_payments_book_once_and_the_ledger_verifies(warehouse: Warehouse, asset_resources, tmp_path):
    resources = asset_resources

    def config() -> dict:  # the file again: the first import archived it
        return {"ops": {"ledger_entries": {"config": {"inbox_files": [_market_file(tmp_path / "inbox", 2)]}}}}

    first = dg.materialize(LEDGER, resources=resources, run_config=config())
    assert first.success
    booked = _entries_metadata(first)
    assert booked["booked"] > 0 and booked["quarantined"] == 0
    assert all(e.passed for e in first.get_asset_check_evaluations())
    assert warehouse.count("ledger.fx_rates") > 0 and warehouse.count("ledger.budgets") == 4

    again = dg.materialize(LEDGER, resources=resources, run_config=config())
    replay = _entries_metadata(again)
    assert replay["booked"] == 0
    assert replay["duplicates"] == booked["booked"] + booked["held"]
    assert warehouse.count("ledger.budget_limits") == 4  # re-applying the same budgets changes nothing


def test_the_check_compares_the_chain_with_heads_published_by_earlier_runs(
    warehouse: Warehouse, asset_resources, tmp_path
):
    resources = asset_resources
    config = {"ops": {"ledger_entries": {"config": {"inbox_files": [_market_file(tmp_path / "inbox", 1)]}}}}
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize(LEDGER, resources=resources, run_config=config, instance=instance)
    seq = int(_entries_metadata(first)["audit_chain_head"].split(":")[0])
    # Cut off the newest audit record together with the transaction it describes.
    newest = warehouse.scalar("SELECT payload FROM audit.events WHERE seq = %s", [seq])
    tid = json.loads(newest)["transaction_id"]
    warehouse.execute("DELETE FROM ledger.postings WHERE transaction_id = %s", [tid])
    warehouse.execute("DELETE FROM ledger.transactions WHERE transaction_id = %s", [tid])
    warehouse.execute("DELETE FROM audit.events WHERE seq = %s", [seq])

    nothing_new = {"ops": {"ledger_entries": {"config": {}}}}
    again = dg.materialize(LEDGER, resources=resources, run_config=nothing_new, instance=instance, raise_on_error=False)
    [evaluation] = again.get_asset_check_evaluations()
    assert not evaluation.passed
    assert f"a head was published at seq {seq}" in evaluation.description
    # Another warehouse's heads are not compared: a fresh ledger under the same instance verifies.
    other = Warehouse(warehouse.url.replace(".duckdb", "-other.duckdb")) if warehouse.backend == "duckdb" else None
    if other is not None:
        fresh = dg.materialize(
            LEDGER,
            resources={**resources, "warehouse": WarehouseResource(url=other.url)},
            run_config={"ops": {"ledger_entries": {"config": {"inbox_files": [_market_file(tmp_path / "again", 1)]}}}},
            instance=instance,
        )
        assert all(e.passed for e in fresh.get_asset_check_evaluations())


def test_fx_rates_add_the_extra_rates_file_once(warehouse: Warehouse, tmp_path, asset_resources):
    kwd = tmp_path / "kwd.csv"
    kwd.write_text("Date,KWD,\n2026-11-02,0.35670,\n")
    inbox = str(tmp_path / "inbox")
    resources = {
        **asset_resources,
        "ledger_inputs": LedgerInputsResource(inbox_dir=inbox, fx_extra_rates_file=str(kwd)),
    }
    assert dg.materialize([fx_rates], resources=resources).success
    stored = warehouse.query("SELECT currency, per_eur, source FROM ledger.fx_rates WHERE currency = 'KWD'")
    assert stored.to_dict("records") == [{"currency": "KWD", "per_eur": 0.3567, "source": "file:kwd.csv"}]
    again = dg.materialize([fx_rates], resources=resources)
    assert again.get_asset_materialization_events()[0].materialization.metadata["new_rates"].value == 0
    missing = LedgerInputsResource(inbox_dir=inbox, fx_extra_rates_file=str(tmp_path / "missing.csv"))
    failed = dg.materialize([fx_rates], resources={**resources, "ledger_inputs": missing}, raise_on_error=False)
    assert not failed.success
    assert "missing.csv" in str(failed.failure_data_for_node("fx_rates").error)


def test_inbox_sensor_imports_each_drop_once_and_archives_it(warehouse: Warehouse, asset_resources):
    inbox = asset_resources["ledger_inputs"].inbox
    inbox.mkdir()
    shutil.copy(FIXTURES / "stripe_export.csv", inbox / "stripe_export.csv")
    (inbox / "still-downloading.csv.part").write_text("id,Type\n")
    assert [p.name for p in inbox_files(inbox)] == ["stripe_export.csv"]

    defs = dg.Definitions.merge(ledger.defs, dg.Definitions(resources=asset_resources))  # the shipped sensor and job
    sensor = defs.resolve_sensor_def("inbox_sensor")
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources=asset_resources))
        assert len(first.run_requests) == 1
        again = sensor(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs, resources=asset_resources)
        )
        assert again.run_requests == []  # the cursor remembers the drop

        request = first.run_requests[0]
        result = defs.resolve_job_def("ledger_import_job").execute_in_process(
            run_config=request.run_config, instance=instance, tags=request.tags
        )
        assert result.success
        assert _entries_metadata(result)["booked"] == 7
        assert not (inbox / "stripe_export.csv").exists()
        assert len(list((inbox / "archive").rglob("*stripe_export.csv"))) == 1

        # The same content dropped again is a new drop: imported, books nothing, archived.
        shutil.copy(FIXTURES / "stripe_export.csv", inbox / "stripe_export.csv")
        third = sensor(
            dg.build_sensor_context(instance=instance, cursor=again.cursor, definitions=defs, resources=asset_resources)
        )
        assert len(third.run_requests) == 1
        rerun = defs.resolve_job_def("ledger_import_job").execute_in_process(
            run_config=third.run_requests[0].run_config, instance=instance
        )
        assert _entries_metadata(rerun)["booked"] == 0
        assert _entries_metadata(rerun)["duplicates"] == 7
    assert warehouse.count("ledger.transactions") == 7


def test_inbox_sensor_launches_one_run_for_all_files_of_a_poll(warehouse: Warehouse, asset_resources):
    inbox = asset_resources["ledger_inputs"].inbox
    inbox.mkdir()
    shutil.copy(FIXTURES / "stripe_export.csv", inbox / "stripe_export.csv")
    _recent_generic_events(inbox / "generic_events.csv")
    defs = dg.Definitions.merge(ledger.defs, dg.Definitions(resources=asset_resources))
    sensor = defs.resolve_sensor_def("inbox_sensor")
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources=asset_resources))
        [request] = first.run_requests
        files = request.run_config["ops"]["ledger_entries"]["config"]["inbox_files"]
        assert sorted(Path(f).name for f in files) == ["generic_events.csv", "stripe_export.csv"]
        # The run key is the files' keys: the same poll evaluated again asks for the same run.
        assert (
            sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources=asset_resources))
            .run_requests[0]
            .run_key
            == request.run_key
        )
        result = defs.resolve_job_def("ledger_import_job").execute_in_process(
            run_config=request.run_config, instance=instance
        )
        metadata = _entries_metadata(result)
        assert result.success and metadata["files"] == 2
        assert (metadata["booked"], metadata["quarantined"]) == (13, 0)  # 7 Stripe rows, 6 generic ones
        assert inbox_files(inbox) == []


def test_a_file_whose_name_is_at_the_limit_is_imported_archived_and_the_next_file_too(
    duckdb_url, tmp_path, monkeypatch
):
    from assets.ledger import entries
    from core.ledger.imports.archive import NAME_MAX
    from core.platform.schema import ensure_schema

    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    long_name = inbox / ("s" * 246 + ".csv")  # legal (250 bytes), but not with the archive's digest prefix
    locked = inbox / "locked.csv"  # one the archive cannot move (a permission, a full disk)
    shutil.copy(FIXTURES / "stripe_export.csv", long_name)
    shutil.copy(FIXTURES / "generic_events_bad.csv", locked)
    _recent_generic_events(inbox / "generic_events.csv")
    real_archive = entries.archive

    def archive(path: Path) -> Path:
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_archive(path)

    monkeypatch.setattr(entries, "archive", archive)
    resources = {
        "warehouse": WarehouseResource(url=duckdb_url),
        "ledger_inputs": LedgerInputsResource(inbox_dir=str(inbox)),
    }
    files = [str(long_name), str(locked), str(inbox / "generic_events.csv")]
    config = {"ops": {"ledger_entries": {"config": {"inbox_files": files}}}}
    result = dg.materialize(LEDGER, resources=resources, run_config=config, selection=[ledger_entries])
    assert result.success
    metadata = _entries_metadata(result)
    assert metadata["files"] == 3
    assert metadata["not_archived"] == [f"{locked}: [Errno 13] Permission denied: '{locked}'"]
    assert inbox_files(inbox) == [locked]
    archived = sorted(p.name for p in (inbox / "archive").rglob("*.csv"))
    assert len(archived) == 2 and max(len(n.encode()) for n in archived) == NAME_MAX
    last = str(inbox / "generic_events.csv")
    assert warehouse.scalar("SELECT count(*) FROM ledger.transactions WHERE source = 'csv'") > 0
    assert warehouse.scalar("SELECT count(*) FROM quarantine.records WHERE origin LIKE %s", [f"{last}:%"]) == 0


def test_inbox_sensor_launches_a_failed_runs_files_again_up_to_a_limit(tmp_path, duckdb_url):
    from dagster._core.test_utils import create_run_for_test

    from assets.ledger.inbox import MAX_ATTEMPTS, RUN_KEY_TAG

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(FIXTURES / "stripe_export.csv", inbox / "stripe_export.csv")
    resources = {
        "warehouse": WarehouseResource(url=duckdb_url),
        "ledger_inputs": LedgerInputsResource(inbox_dir=str(inbox)),
    }
    defs = dg.Definitions.merge(ledger.defs, dg.Definitions(resources=resources))
    sensor = defs.resolve_sensor_def("inbox_sensor")
    with dg.instance_for_test() as instance:

        def tick(cursor):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=resources)
            return sensor(context)

        def ended(status, run_key):
            create_run_for_test(instance, "ledger_import_job", status=status, tags={RUN_KEY_TAG: run_key})

        result = tick(None)
        launches = [result.run_requests[0]]
        assert tick(result.cursor).run_requests == []  # its run has not ended: nothing to do
        for _attempt in range(MAX_ATTEMPTS):
            ended(dg.DagsterRunStatus.FAILURE, launches[-1].run_key)
            result = tick(result.cursor)
            launches += result.run_requests
        # Launched again after each failure, under a new key, the same file, until the limit.
        assert len(launches) == MAX_ATTEMPTS and len({r.run_key for r in launches}) == MAX_ATTEMPTS
        assert {tuple(r.run_config["ops"]["ledger_entries"]["config"]["inbox_files"]) for r in launches} == {
            (str(inbox / "stripe_export.csv"),)
        }
        assert tick(result.cursor).run_requests == []

        # A success ends it: its file was archived, and nothing is launched again.
        shutil.copy(FIXTURES / "generic_events.csv", inbox / "generic_events.csv")
        result = tick(result.cursor)
        [fresh] = result.run_requests
        (inbox / "generic_events.csv").unlink()
        ended(dg.DagsterRunStatus.SUCCESS, fresh.run_key)
        assert tick(result.cursor).run_requests == []
