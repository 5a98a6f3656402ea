"""What a user types: the ventureloop CLI, the dagster CLI, and the webserver, as subprocesses."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.platform.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_"))}
    env.update(VENTURELOOP_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "home" / "dagster"), **extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _cli(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """`ventureloop ARGS` in this process, with exactly `env` as its environment (typer's runner)."""
    from typer.testing import CliRunner

    from orchestration.cli import app

    unset = {k: None for k in os.environ if k not in env}
    done = CliRunner().invoke(app, args, env={**unset, **env}, catch_exceptions=False)
    assert not check or done.exit_code == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return subprocess.CompletedProcess(args, done.exit_code, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def demo(build_once) -> Path:
    """`ventureloop demo` run once per test run (about 30 s), not once per test: its directory holds the
    home it filled (home/) and what it printed (stdout.txt). Tests copy the home (`_demoed`)."""

    def run_demo(directory: Path) -> None:
        # A generous limit: the demo takes two to three minutes alone, and shares the machine with the
        # other test worker here.
        demo = _run([str(BIN / "ventureloop"), "demo"], _env(directory), timeout=900)
        (directory / "stdout.txt").write_text(demo.stdout)

    return build_once("demo", run_demo)


def _demoed(demo: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a home just like the one the demo left, for this test alone to change."""
    shutil.copytree(demo / "home", tmp_path / "home")
    return _env(tmp_path)


def test_demo_prints_every_family_and_the_top_ten(demo):
    out = (demo / "stdout.txt").read_text()
    for family in (
        "web_search",
        "api_marketplaces",
        "freelance",
        "affiliate",
        "product_hunt",
        "reddit",
        "twitter",
        "github_trending",
        "hacker_news",
        "indie_hackers",
    ):
        assert family in out
    assert "Top 10 opportunities" in out
    top = out.split("Top 10 opportunities", 1)[1].split("\n\n", 1)[0]  # that table, not the ones after it
    assert len([line for line in top.splitlines() if line.strip()[:2].strip().isdigit()]) == 10
    proposed = re.search(r"Experiments: (\d+) proposed from the top leads \(0 already were\), (\d+) auto-approved", out)
    assert proposed and int(proposed[1]) > 0 and int(proposed[2]) <= int(proposed[1]), out[-3000:]
    # The run is in the persistent instance the UI reads.
    assert (demo / "home" / "dagster" / "dagster.yaml").exists()
    assert (demo / "home" / "warehouse.duckdb").exists()


def test_demo_plays_ten_experiments_for_four_simulated_weeks(demo, tmp_path):
    """The issue's done-when: proposals, approvals, at least 10 experiments executed on the simulated
    market for at least four simulated weeks, their outcomes in the ledger and in revenue_summary."""
    out = (demo / "stdout.txt").read_text()
    played = re.search(r"Experiments on the simulated market: (\d+) of (\d+) ran", out)
    assert played and int(played[1]) >= 10, out[-4000:]
    span = re.search(r"simulated time: \S+ to \S+, (\d+) days \(([\d.]+) weeks\)", out)
    assert span and int(span[1]) >= 28, out[-4000:]
    _demoed(demo, tmp_path)  # a copy: DuckDB allows one process per file, and other tests read it too
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")
    outcomes = warehouse.query(
        "SELECT e.experiment_id, e.state, o.revenue_minor, o.cost_minor, o.succeeded FROM experiments.experiments e "
        "JOIN experiments.outcomes o USING (experiment_id)"
    )
    assert len(outcomes) >= 10 and (outcomes["state"] == "completed").sum() >= 10
    # Every experiment spent; one that sold nothing is a real outcome of the market (it depends on the
    # day the demo runs, which sets the simulated start), so only most must have earned.
    assert (outcomes["cost_minor"] > 0).all() and (outcomes["revenue_minor"] >= 0).all()
    assert (outcomes["revenue_minor"] > 0).mean() > 0.5
    # Every experiment of revenue_summary came from a scored opportunity, and its money is the outcome's.
    summary = warehouse.query(
        "SELECT r.experiment_id, r.total_revenue_cents, o.revenue_minor, e.opportunity_id "
        "FROM analytics.revenue_summary r LEFT JOIN experiments.experiments e USING (experiment_id) "
        "LEFT JOIN experiments.outcomes o USING (experiment_id)"
    )
    assert len(summary) == len(outcomes) and summary["opportunity_id"].notna().all()
    assert (summary["total_revenue_cents"] == summary["revenue_minor"]).all()
    # The simulated history the demo starts from is in the mart too, and labelled as such.
    played = summary[~summary["opportunity_id"].str.startswith("hist-")]
    assert len(played) >= 10 and len(summary) - len(played) == 300
    scored = set(warehouse.query("SELECT opportunity_id FROM core.scored_opportunities")["opportunity_id"])
    assert set(played["opportunity_id"]) <= scored
    # Each experiment ran as Dagster runs of experiment_run, launched by the sensor's run keys.
    assert re.search(r"experiment '.+' \(attempt 1\): completed", out)
    from dagster import DagsterInstance, RunsFilter

    with DagsterInstance.from_config(str(tmp_path / "home" / "dagster")) as instance:
        runs = instance.get_runs(filters=RunsFilter(job_name="experiment_run"))
    assert len({run.tags["ventureloop/experiment"] for run in runs}) >= 10
    assert all(run.tags["dagster/run_key"].startswith("experiment:") for run in runs)


def test_the_oracle_of_the_demo_names_every_experiment_it_played(demo, tmp_path):
    import csv
    import io

    env = _demoed(demo, tmp_path)
    rows = list(csv.DictReader(io.StringIO(_cli(["simulator", "oracle"], env).stdout)))
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")
    # The simulated history's experiments started too, but on the fast population, not this market.
    started = warehouse.query(
        "SELECT experiment_id FROM experiments.experiments "
        "WHERE started_at IS NOT NULL AND opportunity_id NOT LIKE 'hist-%'"
    )
    assert sorted(r["experiment_id"] for r in rows) == sorted(started["experiment_id"]) and len(rows) >= 10
    assert {r["succeeded"] for r in rows} <= {"True", "False"} and {r["currency"] for r in rows} > {"USD"}
    written = _cli(["simulator", "oracle", "--out", str(tmp_path / "oracle.csv")], env).stdout
    assert f"wrote {len(rows)} experiments" in written and (tmp_path / "oracle.csv").exists()


def test_demo_prints_stages_and_a_clean_summary_and_logs_the_rest(demo):
    out = (demo / "stdout.txt").read_text()
    # One line per finished stage, with the time since the start; nothing of Dagster's or dbt's own chatter.
    assert re.search(r"^ +\d+\.\d s  raw/hackernews: done$", out, re.MULTILINE), out[:3000]
    assert re.search(r"^ +\d+\.\d s  dbt build of the ledger marts .*: done$", out, re.MULTILINE)
    assert re.search(r"^ +\d+\.\d s  check ledger_verifies on ledger_entries: done$", out, re.MULTILINE)
    assert "DEBUG" not in out and "STEP_SUCCESS" not in out and "\x1b[" not in out
    # Money in major units with the exact cents beside it; rank and quarantine explained.
    assert re.search(r"revenue \$[\d,]+\.\d\d \((\d+) cents\), cost", out)
    assert "rank: position by score among all" in out
    assert "quarantined: 10 records from the recorded snapshots that failed validation" in out
    assert "`ventureloop quarantine list`" in out and "`ventureloop quarantine replay`" in out
    # The detail is in the log file the demo names, under the home.
    named = re.search(r"^full log \(Dagster events, dbt output\): (.+)$", out, re.MULTILINE)
    log = Path(named[1])
    assert log.parent == demo / "home" / "logs" and log.name.startswith("demo-"), named[1]
    detail = log.read_text()
    assert "DEBUG" in detail and "STEP_SUCCESS" in detail and "RUN_SUCCESS" in detail
    assert "Completed successfully" in detail or "PASS=" in detail  # dbt's own summary line


def test_demo_ends_with_the_report_it_wrote(demo):
    out = (demo / "stdout.txt").read_text()
    last = out.rstrip().splitlines()[-1]
    named = re.fullmatch(r"report \(open it in a browser; it works offline\): (.+)", last)
    assert named, last
    report = Path(named[1])
    assert report.parent == demo / "home" / "reports" and report.name.startswith("report-")
    document = report.read_text(encoding="utf-8")
    assert document == (report.parent / "latest.html").read_text(encoding="utf-8")
    # The demo's warehouse fills these sections (the others wait for their issue-9 assets).
    for title in ("Revenue and cost over time", "Experiment funnel by state", "ROI distribution", "Source bandit"):
        assert re.search(rf"{title}[^<]*</a>: drawn", document), title


def test_dagster_cli_validates_and_materializes_everything(tmp_path):
    env = _env(tmp_path)
    _run([str(BIN / "ventureloop"), "instance", "init"], env)
    _run([str(BIN / "dagster"), "definitions", "validate", "-m", "orchestration.definitions"], env)
    done = _run([str(BIN / "dagster"), "asset", "materialize", "--select", "*", "-m", "orchestration.definitions"], env)
    assert "RUN_SUCCESS" in done.stderr + done.stdout


def test_the_forecast_and_the_anomalies_materialize_again_from_the_shell(demo, tmp_path):
    """docs/forecasting.md and docs/anomalies.md's commands, word for word, on a copy of the demo's home:
    a second forecast is appended beside the first, and the anomalies found before are kept."""
    env = _demoed(demo, tmp_path)
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")
    anomalies = warehouse.count("monitoring.metric_anomalies")
    dagster = str(BIN / "dagster")
    forecast = ["asset", "materialize", "-m", "orchestration.definitions", "--select", "cash_flow_forecast"]
    done = _run([dagster, *forecast], env)
    assert "RUN_SUCCESS" in done.stderr + done.stdout
    watched = ["asset", "materialize", "-m", "orchestration.definitions", "--select", "metric_anomalies"]
    done = _run([dagster, *watched], env)
    assert "RUN_SUCCESS" in done.stderr + done.stdout
    assert warehouse.scalar("SELECT count(DISTINCT forecast_id) FROM forecasting.cash_flow_forecast") == 2
    assert warehouse.count("monitoring.metric_anomalies") >= anomalies


def test_quarantine_commands_list_and_replay(demo, tmp_path):
    env = _demoed(demo, tmp_path)
    listed = _run([str(BIN / "ventureloop"), "quarantine", "list"], env).stdout
    assert "pending" in listed and "normalize" in listed
    replayed = _run([str(BIN / "ventureloop"), "quarantine", "replay"], env).stdout
    # The bundled bad items are still bad: replay reports them, nothing is lost or double-counted.
    assert "replayed 0" in replayed and "still failing" in replayed
    # On the same copy of the demo's home (saving a copy): with no --head and no `ledger head` run,
    # `ledger verify` checks against the head the demo's ledger_entries materialization published.
    verified = _run([str(BIN / "ventureloop"), "ledger", "verify"], env).stdout
    assert re.search(r"checked against the last published head \d+:[0-9a-f]{64} \(1 known\)", verified), verified
    assert "ledger verified" in verified


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_dev_serves_both_code_locations_as_one_graph(tmp_path):
    """`make dev` runs `ventureloop dev`: the webserver and daemon over workspace.yaml."""
    env = _env(tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "ventureloop"), "dev", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # dagster dev starts a daemon and code servers: stop them all at the end
    )
    try:
        query = {
            "query": "{ assetNodes { assetKey { path } groupName dependencyKeys { path } "
            "assetChecksOrError { ... on AssetChecks { checks { name } } } } }"
        }
        deadline, keys, nodes = time.monotonic() + 180, set(), []
        while time.monotonic() < deadline and not {"scored_opportunities", "marts/revenue_summary"} <= keys:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", json.dumps(query).encode(), {"content-type": "application/json"}
                )
                nodes = json.load(urllib.request.urlopen(request, timeout=10))["data"]["assetNodes"]
                keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
            except Exception:  # noqa: BLE001 - still starting
                pass
            time.sleep(1)
        assert {"raw/hackernews", "opportunities", "scored_opportunities", "ledger_entries"} <= keys, keys
        assert {"staging/stg_postings", "marts/revenue_summary", "marts/trial_balance"} <= keys, keys
        checks = {c["name"] for n in nodes for c in (n["assetChecksOrError"] or {}).get("checks", [])}
        assert {"fetch_succeeded", "scores_within_unit_interval", "trial_balance_nets_to_zero"} <= checks
        # One graph: the marts location's staging model hangs off the main location's writer.
        postings = next(n for n in nodes if n["assetKey"]["path"] == ["staging", "stg_postings"])
        assert ["ledger_entries"] in [d["path"] for d in postings["dependencyKeys"]]
        assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()  # the instance `demo` uses
    finally:
        # Ctrl-C, as a user stops `make dev`; a loaded machine may need longer than the wait to
        # shut the daemon and code servers down, and then the whole process group is killed.
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def test_ledger_commands_import_review_and_verify(tmp_path):
    # The first command through the installed entry point; the rest in-process (about 2 s saved each).
    env = _env(tmp_path)
    fixtures = ROOT / "tests" / "fixtures" / "imports"
    vl = str(BIN / "ventureloop")
    out = _run(
        [vl, "ledger", "import", str(fixtures / "stripe_export.csv"), str(fixtures / "generic_events_bad.csv")], env
    ).stdout
    assert "7 booked" in out and "2 booked" in out
    assert "generic_events_bad.csv:5" in out and "unknown currency 'XYZ'" in out  # file:line and why
    again = _cli(["ledger", "import", str(fixtures / "stripe_export.csv")], env).stdout
    assert "0 booked, 7 duplicates" in again
    assert "no holds to review" in _cli(["ledger", "review"], env).stdout
    head = _cli(["ledger", "head"], env).stdout.strip()  # printed and recorded under VENTURELOOP_HOME
    verified = _cli(["ledger", "verify"], env).stdout
    assert f"checked against the last published head {head}" in verified and "ledger verified" in verified
    ahead = f"{int(head.split(':')[0]) + 1}:{'0' * 64}"  # a head the chain never reached: as if cut off
    cut = _cli(["ledger", "verify", "--head", ahead], env, check=False)
    assert cut.returncode == 1 and "the newest records were removed" in cut.stdout
    malformed = _cli(["ledger", "verify", "--head", "7"], env, check=False)
    assert malformed.returncode == 2 and "should be SEQ:HASH" in malformed.stderr
    assert "revenue:" in _cli(["ledger", "balances", "--prefix", "revenue:"], env).stdout
    kwd = tmp_path / "kwd.csv"
    kwd.write_text("Date,KWD,\n2026-11-02,0.35670,\n")
    assert "1 new rates of 1 (KWD)" in _cli(["ledger", "fx-load", str(kwd)], env).stdout
    assert "0 new rates of 1 (KWD)" in _cli(["ledger", "fx-load", str(kwd)], env).stdout
    kwd.write_text("Date,KWD\n2026-11-02,lots\n")
    bad_rate = _cli(["ledger", "fx-load", str(kwd)], env, check=False)
    assert bad_rate.returncode == 1 and "line 2 KWD: rate 'lots' is not a number" in bad_rate.stderr

    _cli(
        [
            "ledger",
            "budget-set",
            "--scope",
            "category",
            "--key",
            "ads",
            "--period",
            "day",
            "--limit",
            "50.00",
            "--by",
            "ops",
            "--reason",
            "launch week",
        ],
        env,
    )
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    spend = [
        "ledger",
        "spend",
        "expenses:ads:experiment:exp-1",
        "30.00",
        "--experiment",
        "exp-1",
        "--at",
        now,
        "--key",
    ]
    assert "booked" in _cli([*spend, "ad-1"], env).stdout
    assert "duplicate" in _cli([*spend, "ad-1"], env).stdout  # the same key never spends twice
    refused = _cli([*spend, "ad-2"], env, check=False)
    assert refused.returncode == 1
    assert "category:ads" in refused.stdout and "over by 1000 (10.00 USD)" in refused.stdout
    # Spent in the window of the spend's --at, even when UTC midnight passed since it was taken.
    assert "3000" in _cli(["ledger", "budgets", "--at", now], env).stdout

    import duckdb

    with duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb")) as conn:
        conn.execute(
            "UPDATE ledger.postings SET amount_minor = amount_minor + 1 WHERE line = 1 "
            "AND transaction_id = (SELECT min(transaction_id) FROM ledger.transactions)"
        )
    broken = _cli(["ledger", "verify"], env, check=False)
    assert broken.returncode == 1
    assert "BROKEN" in broken.stdout
