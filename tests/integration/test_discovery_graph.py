"""The discovery graph materialized for real, on DuckDB and on PostgreSQL, from the snapshots."""

import json
import shutil
import tempfile
import uuid

import dagster as dg
import pytest

from assets.discovery.checks import (
    every_source_has_opportunities,
    opportunities_pass_quality_suite,
    scores_within_unit_interval,
)
from assets.discovery.opportunities import (
    INLINE_MARKDOWN_LIMIT,
    opportunities,
    opportunity_features,
    scored_opportunities,
)
from assets.discovery.raw import SOURCES, raw_assets
from assets.resources import DiscoveryResource, MlflowResource, WarehouseResource
from core.discovery.sources.base import FAMILIES
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

GRAPH = [
    *raw_assets,
    opportunities,
    opportunity_features,
    scored_opportunities,
    opportunities_pass_quality_suite,
    every_source_has_opportunities,
    scores_within_unit_interval,
]


# An MLflow store that was never written: scoring keeps the seed's formula (no champion model).
NO_MODELS = MlflowResource(tracking_uri=f"sqlite:///{tempfile.gettempdir()}/ventureloop-{uuid.uuid4().hex}/mlflow.db")


def _materialize(url: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        GRAPH,
        resources={
            "warehouse": WarehouseResource(url=url),
            "discovery": DiscoveryResource(mode="snapshot"),
            "mlflow": NO_MODELS,
        },
    )


def _materialize_into_new(url: str) -> None:
    ensure_schema(Warehouse(url))  # as the warehouse fixture does
    result = _materialize(url)
    assert result.success, [e.message for e in result.all_events if e.is_failure]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def materialized_warehouse(request, tmp_path, build_once) -> Warehouse:
    """A new warehouse holding one materialization of the graph: a copy of a template materialized once
    per test run and backend (a materialization takes seconds, a copy milliseconds). A test of what the
    first materialization does takes the empty `warehouse` instead."""
    if request.param == "duckdb":
        template = build_once("discovery-duckdb", lambda d: _materialize_into_new(f"duckdb:///{d}/warehouse.duckdb"))
        shutil.copytree(template, tmp_path / "materialized")
        return Warehouse(f"duckdb:///{tmp_path}/materialized/warehouse.duckdb")
    template = request.getfixturevalue("postgres_template")("discovery", _materialize_into_new)
    return Warehouse(request.getfixturevalue("postgres_database")(template))


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == key:
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"{key} was not materialized")


def test_ten_families_flow_to_scored_opportunities_and_reruns_add_nothing(warehouse: Warehouse):
    first = _materialize(warehouse.url)
    assert first.success
    assert {s.family for s in SOURCES} == set(FAMILIES)
    for source in SOURCES:
        meta = _metadata(first, f"raw/{source.name}")
        assert meta["status"] == "ok", meta["message"]
        assert meta["items"] > 0
    checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
    assert all(checks.values()), checks

    opportunities_table = warehouse.read("core.opportunities")
    assert set(opportunities_table["source"]) == {s.name for s in SOURCES}
    assert opportunities_table["fingerprint"].is_unique
    scored = warehouse.read("core.scored_opportunities")
    assert len(scored) == len(opportunities_table)
    assert scored["score"].between(0, 1).all()
    # Rank 1 is the highest score, ranks follow descending score, and equal scores keep the order in
    # which score() read the features (core.scoring's rule), read here the same way.
    features_order = {o: i for i, o in enumerate(warehouse.read("core.opportunity_features")["opportunity_id"])}
    by_rank = scored.sort_values("rank")
    assert by_rank["rank"].tolist() == list(range(1, len(scored) + 1))
    expected = scored.assign(read_at=scored["opportunity_id"].map(features_order)).sort_values(
        ["score", "read_at"], ascending=[False, True]
    )
    assert by_rank["opportunity_id"].tolist() == expected["opportunity_id"].tolist()
    assert by_rank["score"].iloc[0] == scored["score"].max()

    # What the asset pages show: row counts of the tables written, the top 10 without a click.
    assert _metadata(first, "opportunities")["dagster/row_count"] == len(opportunities_table)
    scored_meta = _metadata(first, "scored_opportunities")
    assert scored_meta["dagster/row_count"] == len(scored)
    assert len(scored_meta["top_10"]) < INLINE_MARKDOWN_LIMIT and scored_meta["top_10"].count("\n") == 11
    raw_rows = warehouse.query("SELECT source, count(*) AS n FROM raw.records GROUP BY source")
    assert {s.name: _metadata(first, f"raw/{s.name}")["dagster/row_count"] for s in SOURCES} == dict(
        zip(raw_rows["source"], raw_rows["n"].astype(int), strict=True)
    )

    # The same launch on several sites is one cluster, not dropped.
    invoicebolt = opportunities_table[opportunities_table["canonical_url"].str.startswith("https://invoicebolt.io")]
    assert invoicebolt["source"].nunique() >= 3
    assert invoicebolt["cluster_id"].nunique() == 1

    # Every deliberately bad item in the snapshots is quarantined with a reason, not dropped.
    quarantined = warehouse.read("quarantine.records")
    assert not quarantined.empty
    assert quarantined["reason"].str.len().gt(0).all()

    second = _materialize(warehouse.url)
    assert second.success
    again = _metadata(second, "opportunities")
    assert again["new"] == 0
    assert again["duplicates"] == sum(_metadata(second, f"raw/{s.name}")["items"] for s in SOURCES) - sum(
        v["quarantined"] for v in again["per_source_json"].values()
    )
    assert warehouse.count("core.opportunities") == len(opportunities_table)
    assert warehouse.count("core.opportunity_sightings") > len(opportunities_table)


def test_a_failing_source_does_not_fail_the_others(warehouse: Warehouse, tmp_path, monkeypatch):
    broken = next(a for a in raw_assets if a.key.path[-1] == "hackernews")
    source = next(s for s in SOURCES if s.name == "hackernews")
    monkeypatch.setattr(type(source), "snapshot_dir", property(lambda self: tmp_path / "nothing-recorded"))
    result = dg.materialize(
        [broken, *raw_assets[1:2], opportunities],
        resources={"warehouse": WarehouseResource(url=warehouse.url), "discovery": DiscoveryResource(mode="snapshot")},
    )
    assert result.success
    meta = _metadata(result, "raw/hackernews")
    assert meta["status"] == "failed" and "no snapshot" in meta["message"]
    check = next(e for e in result.get_asset_check_evaluations() if e.asset_key == broken.key)
    assert not check.passed
    assert warehouse.count("core.opportunities") > 0  # the other source still landed
    fetch_problem = warehouse.read("quarantine.records", "WHERE stage = 'fetch'")
    assert fetch_problem["source"].tolist() == ["hackernews"]


def test_live_mode_without_credentials_skips_with_a_message(warehouse: Warehouse, monkeypatch):
    reddit = next(a for a in raw_assets if a.key.path[-1] == "reddit")
    # Credentials in the process environment are not what the asset reads: the resource is.
    monkeypatch.setenv("REDDIT_CLIENT_ID", "from-the-environment")
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", "from-the-environment")
    result = dg.materialize(
        [reddit],
        resources={"warehouse": WarehouseResource(url=warehouse.url), "discovery": DiscoveryResource(mode="live")},
    )
    assert result.success
    meta = _metadata(result, "raw/reddit")
    assert meta["status"] == "skipped"
    assert "REDDIT_CLIENT_ID" in meta["message"] and "REDDIT_CLIENT_SECRET" in meta["message"]
    assert warehouse.count("raw.records") == 0


@pytest.mark.parametrize("weights", [{"revenue_weight": 0.9}])
def test_scoring_config_is_validated(materialized_warehouse: Warehouse, weights):
    warehouse = materialized_warehouse
    with pytest.raises(Exception, match="sum to 1"):
        dg.materialize(
            [scored_opportunities],
            resources={"warehouse": WarehouseResource(url=warehouse.url), "mlflow": NO_MODELS},
            run_config={"ops": {"scored_opportunities": {"config": weights}}},
            selection=[scored_opportunities],
        )


def test_replay_across_several_sources_ingests_and_marks_rows(materialized_warehouse: Warehouse):
    from datetime import UTC, datetime

    import pandas as pd

    from core.discovery.replay import replay

    warehouse = materialized_warehouse
    # Quarantine rows for good raw records of two sources, as a connector bug would have left them.
    # Only records that normalized: the snapshots also hold deliberately bad ones, which would stay failing.
    records = warehouse.query(
        "SELECT r.record_id, r.source, r.payload FROM raw.records r "
        "JOIN core.opportunities o ON o.record_id = r.record_id "
        "WHERE r.source IN ('hackernews', 'reddit') ORDER BY r.record_id"
    )
    picked = records.groupby("source").head(1)
    warehouse.append(
        "quarantine.records",
        pd.DataFrame(
            {
                "quarantine_id": [f"q-{i}" for i in range(len(picked))],
                "stage": "normalize",
                "source": picked["source"],
                "origin": [f"raw.records/{r} (test)" for r in picked["record_id"]],
                "reason": "connector bug (fixed)",
                "payload": picked["payload"],
                "payload_encoding": "utf-8",
                "quarantined_at": datetime.now(UTC),
                "replayed_at": None,
                "run_id": None,
            }
        ),
    )
    report = replay(warehouse, SOURCES)
    assert report.replayed == 2
    replayed = warehouse.read("quarantine.records", "WHERE quarantine_id IN ('q-0', 'q-1')")
    assert replayed["replayed_at"].notna().all()


def test_the_discovery_job_refuses_bad_weights_at_launch_before_fetching_anything(warehouse, asset_resources):
    from assets import discovery

    defs = dg.Definitions.merge(discovery.definitions(live=False), dg.Definitions(resources=asset_resources))
    job = defs.resolve_job_def("discovery_job")
    with dg.instance_for_test() as instance:
        with pytest.raises(dg.DagsterConfigMappingFunctionError) as refused:
            job.execute_in_process(run_config={"revenue_weight": 0.9}, instance=instance)
        assert "sum to 1" in str(refused.value.__cause__)
        assert instance.get_runs_count() == 0  # no run was started, so no source was fetched
    assert warehouse.count("raw.records") == 0


def test_experiment_proposals_come_from_the_top_scored_leads_once(materialized_warehouse: Warehouse):
    from assets.experiments.proposals import experiment_proposals
    from core.experiments.proposals import load_policy

    warehouse = materialized_warehouse
    resources = {"warehouse": WarehouseResource(url=warehouse.url)}
    config = {"ops": {"experiment_proposals": {"config": {"top_n": 5}}}}
    first = _metadata(
        dg.materialize([experiment_proposals], resources=resources, run_config=config), "experiment_proposals"
    )
    leads = warehouse.query(
        "SELECT opportunity_id FROM core.scored_opportunities WHERE is_cluster_lead ORDER BY rank LIMIT 5"
    )["opportunity_id"].tolist()
    proposed = warehouse.query(
        "SELECT opportunity_id, score, requested_budget_minor, state FROM experiments.experiments"
    )
    assert first["created"] == len(proposed) == 5 and sorted(proposed["opportunity_id"]) == sorted(leads)
    policy = load_policy()
    cheap_and_good = (proposed["requested_budget_minor"] <= policy.max_budget_minor) & (
        proposed["score"] >= policy.min_score
    )
    assert (proposed["state"] == "approved").tolist() == cheap_and_good.tolist()
    assert first["auto_approved"] + first["waiting_for_approval"] == 5

    again = _metadata(
        dg.materialize([experiment_proposals], resources=resources, run_config=config), "experiment_proposals"
    )
    assert (again["created"], again["unchanged"]) == (0, 5)
    assert warehouse.count("experiments.experiments") == 5


def test_a_response_nested_100000_deep_is_quarantined_and_the_others_still_build(
    warehouse: Warehouse, tmp_path, monkeypatch
):
    hackernews = next(a for a in raw_assets if a.key.path[-1] == "hackernews")
    source = next(s for s in SOURCES if s.name == "hackernews")
    recorded = tmp_path / "hackernews"
    shutil.copytree(source.snapshot_dir, recorded)
    # The first Show HN page: json.loads gives up at ~1,000 levels with RecursionError, not JSONDecodeError.
    first_page = recorded / "2e9ffe01b038bd2d.json"
    snapshot = json.loads(first_page.read_text(encoding="utf-8"))
    snapshot["response"].pop("body_json")
    snapshot["response"]["body"] = "[" * 100_000 + "]" * 100_000
    first_page.write_text(json.dumps(snapshot), encoding="utf-8")
    monkeypatch.setattr(type(source), "snapshot_dir", property(lambda self: recorded))

    result = dg.materialize(
        [hackernews, *raw_assets[1:2], opportunities],
        resources={"warehouse": WarehouseResource(url=warehouse.url), "discovery": DiscoveryResource(mode="snapshot")},
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    parse_problems = warehouse.read("quarantine.records", "WHERE source = 'hackernews' AND stage = 'parse'")
    deep = parse_problems[parse_problems["reason"].str.contains("nested")]
    assert len(deep) == 1, parse_problems[["origin", "reason"]]
    assert "search_by_date?tags=show_hn" in deep["origin"].item() and "page=0" in deep["origin"].item()
    assert deep["payload"].item().startswith("[[[")  # kept verbatim, for replay
    other = raw_assets[1].key.path[-1]
    landed = set(warehouse.read("core.opportunities")["source"])
    assert other in landed and "hackernews" in landed  # ask_hn and the front page still landed


def test_a_nul_byte_in_a_record_never_fails_the_batch(warehouse: Warehouse, tmp_path, monkeypatch):
    # PostgreSQL TEXT and JSONB cannot hold NUL: a record carrying one must not break the source's writes.
    hackernews = next(a for a in raw_assets if a.key.path[-1] == "hackernews")
    source = next(s for s in SOURCES if s.name == "hackernews")
    recorded = tmp_path / "hackernews"
    shutil.copytree(source.snapshot_dir, recorded)
    first_page = recorded / "2e9ffe01b038bd2d.json"
    snapshot = json.loads(first_page.read_text(encoding="utf-8"))
    hit = snapshot["response"]["body_json"]["hits"][0]
    hit["title"] = "Show HN: a\x00title with a NUL byte"
    first_page.write_text(json.dumps(snapshot), encoding="utf-8")
    monkeypatch.setattr(type(source), "snapshot_dir", property(lambda self: recorded))

    result = dg.materialize(
        [hackernews, opportunities],
        resources={"warehouse": WarehouseResource(url=warehouse.url), "discovery": DiscoveryResource(mode="snapshot")},
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    titles = warehouse.read("core.opportunities", "WHERE source = 'hackernews'")["title"]
    assert len(titles) > 1 and not titles.str.contains("\x00").any()
    problems = warehouse.read("quarantine.records", "WHERE source = 'hackernews' AND stage = 'normalize'")
    nul = problems[problems["reason"].str.contains("NUL")]
    assert len(nul) == 1 and "field 'title'" in nul["reason"].item()  # kept, with why, for replay
