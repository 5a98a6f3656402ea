"""What an operator sees: the demo's stage lines and money, and what the UI shows of the assets
(the top-10 table in place, the warehouse's kind)."""

import io
import logging
from datetime import timedelta

import dagster as dg
import pandas as pd

from assets.discovery.opportunities import INLINE_MARKDOWN_LIMIT, top_ten_markdown
from orchestration.demo import StageProgress, check_stages, money, progress_logger, stage_name


def test_money_shows_dollars_and_the_exact_cents():
    assert money(123456) == "$1,234.56 (123456 cents)"
    assert money(5) == "$0.05 (5 cents)"
    assert money(-1200) == "-$12.00 (-1200 cents)"
    assert money(0) == "$0.00 (0 cents)"
    # Past 2**53 a float division would round the cents away.
    assert money(12345678901234567891) == "$123,456,789,012,345,678.91 (12345678901234567891 cents)"


def test_top_ten_fits_the_asset_page_without_a_click_and_shows_leads_only():
    long_title = "An opportunity whose title | goes on " + "and on " * 40
    scored = pd.DataFrame(
        {
            "rank": range(1, 31),
            "score": [1 - i / 100 for i in range(30)],
            "source": ["feed_api_marketplaces"] * 30,
            "title": [f"{i} {long_title}" for i in range(30)],
            "is_cluster_lead": [i % 3 != 1 for i in range(30)],
        }
    )
    text = top_ten_markdown(scored)
    assert len(text) < INLINE_MARKDOWN_LIMIT
    rows = text.splitlines()[2:]
    assert len(rows) == 10
    ranks = [int(row.split("|")[1]) for row in rows]
    assert ranks == sorted(ranks) and 2 not in ranks and ranks[0] == 1  # rank 2 is not a cluster lead
    assert all(row.count("|") == 5 for row in rows)  # a "|" in a title does not break the table


def test_the_warehouse_kind_follows_warehouse_url(monkeypatch):
    from assets.discovery.raw import SOURCES, discovery_asset

    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://app@db:5432/ventureloop")
    assert discovery_asset(SOURCES[0]).specs_by_key[dg.AssetKey(["raw", SOURCES[0].name])].kinds == {
        "python",
        "postgres",
    }
    monkeypatch.setenv("WAREHOUSE_URL", "duckdb:///tmp/w.duckdb")
    assert "duckdb" in next(iter(discovery_asset(SOURCES[0]).specs)).kinds


def test_stage_progress_prints_one_line_per_finished_step_with_readable_names():
    @dg.asset(
        key=["raw", "demo_source"], check_specs=[dg.AssetCheckSpec("fetch_succeeded", asset=["raw", "demo_source"])]
    )
    def source():
        yield dg.Output(1)
        yield dg.AssetCheckResult(passed=True)

    @dg.asset(deps=[source])
    def broken():
        raise ValueError("bad input")

    @dg.asset_check(asset=source)
    def separately_checked():
        return dg.AssetCheckResult(passed=True)

    terminal = io.StringIO()
    progress = StageProgress(
        terminal, started=0.0, checks=check_stages([dg.AssetCheckKey(source.key, "separately_checked")])
    )
    defs = dg.Definitions(assets=[source, broken], asset_checks=[separately_checked])
    job = defs.resolve_implicit_global_asset_job_def().with_logger_defs({"stages": progress_logger(progress)})
    result = job.execute_in_process(run_config={"loggers": {"stages": {}}}, raise_on_error=False)
    assert not result.success
    lines = terminal.getvalue().splitlines()
    names = [line.split("s  ", 1)[1] for line in lines]
    assert sorted(names) == [
        "broken: FAILED (the log has why)",
        "check separately_checked on raw/demo_source: done",
        "raw/demo_source: done",
    ]
    assert progress.failed == ["broken"]
    assert stage_name("ledger_dbt_assets").startswith("dbt build")
    logging.getLogger("ventureloop.demo.stages").handlers = []


def test_a_check_of_several_assets_is_named_by_its_check_and_assets():
    """The freshness checks run as one step per definition under a generated name
    (freshness_check_<hash>): the stage line names the check and the assets instead."""

    @dg.asset
    def first():
        return 1

    @dg.asset
    def second():
        return 2

    (checks,) = dg.build_last_update_freshness_checks(assets=[first, second], lower_bound_delta=timedelta(hours=1))
    stages = check_stages(checks.check_keys, [checks])
    assert stages[checks.node_def.name] == "check freshness_check on first, second"
    assert stage_name(checks.node_def.name, stages) == "check freshness_check on first, second"
