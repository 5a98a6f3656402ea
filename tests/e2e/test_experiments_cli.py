"""`ventureloop experiments ...` as a user types it, on a warehouse the test fills with proposals
made by core functions: list, show, approve, reject, pause, resume, cancel, open-gate, runs, and
refusals.

The commands run in-process through typer's runner (a process start costs about 2 s, and the
lifecycle takes 14 commands); one runs through the installed `ventureloop` entry point, so the
console script and the environment it reads are covered too."""

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.experiments.executor import LiveEnvironment, execute_experiment
from core.experiments.lifecycle import transition
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import fixed_clock
from core.ledger.verify import verify
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from orchestration.cli import app

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path) -> tuple[dict[str, str], Warehouse, list[str]]:
    """An environment whose default warehouse holds three proposals (none auto-approved)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_"))}
    env.update(VENTURELOOP_HOME=str(tmp_path / "home"), USER="operator")
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    scored = pd.DataFrame(
        {
            "opportunity_id": ["opp-a", "opp-b", "opp-c"],
            "score": [0.9, 0.8, 0.7],
            "opportunity_type": ["saas", "freelance_gig", "content"],
            "title": ["Invoice API for freelancers", "Logo design gig", "Newsletter on DuckDB"],
            "est_monthly_revenue_cents": [400_000, 120_000, 60_000],
            "is_cluster_lead": [True, True, True],
        }
    )
    clock = fixed_clock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    report = propose_from_scored(warehouse, scored, 3, ApprovalPolicy(max_budget_minor=0, min_score=1.0), clock)
    ids = warehouse.query("SELECT experiment_id FROM experiments.experiments ORDER BY opportunity_id")[
        "experiment_id"
    ].tolist()
    assert sorted(report.created) == sorted(ids)
    return env, warehouse, ids


@dataclass
class Ran:
    stdout: str
    stderr: str


def _cli(env: dict[str, str], args: list[str], expect: int = 0) -> Ran:
    # Variables the test's environment leaves out are unset for the command, as in a clean shell.
    unset = {k: None for k in os.environ if k.startswith(("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_"))}
    done = CliRunner().invoke(app, args, env={**unset, **env}, catch_exceptions=False)
    assert done.exit_code == expect, f"{args}: exit {done.exit_code}\n{done.stdout}\n{done.stderr}"
    return Ran(done.stdout, done.stderr)


def test_the_installed_command_lists_the_proposals(home):
    env, _warehouse, ids = home
    done = subprocess.run(
        [str(BIN / "ventureloop"), "experiments", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert all(i in done.stdout for i in ids)


def test_an_operator_moves_experiments_through_their_lifecycle(home):
    env, warehouse, (a, b, c) = home
    listed = _cli(env, ["experiments", "list", "--state", "proposed"]).stdout
    assert all(i in listed for i in (a, b, c)) and "Invoice API for freelancers" in listed and "400.00 USD" in listed

    shown = _cli(env, ["experiments", "show", a]).stdout
    assert "state       proposed (next: approved, cancelled)" in shown
    assert "actions     approve, reject, cancel" in shown
    assert "spend: spend" in shown and '"amount_minor": 2000' in shown
    assert "revenue_minor" in shown

    approved = _cli(env, ["experiments", "approve", a, "--by", "alice", "--reason", "worth a try"]).stdout
    assert f"{a}: proposed -> approved by alice (worth a try)" in approved
    rejected = _cli(env, ["experiments", "reject", b, "--reason", "needs a person we lack"]).stdout
    assert f"{b}: proposed -> cancelled by operator" in rejected

    # The executor's part of the lifecycle (queued, running) is not a shell command.
    transition(warehouse, a, "queued", actor="sensor", reason="launched")
    transition(warehouse, a, "running", actor="executor", reason="step launch started")
    assert "running -> paused" in _cli(env, ["experiments", "pause", a, "--reason", "waiting on a fix"]).stdout
    assert "paused -> running" in _cli(env, ["experiments", "resume", a]).stdout
    cancelled = _cli(env, ["experiments", "cancel", a, "--by", "alice", "--reason", "market moved"]).stdout
    assert f"{a}: running -> cancelled by alice (market moved)" in cancelled

    # Refusals: a terminal state, a resume of what is not paused, an unknown id, a missing reason.
    refused = _cli(env, ["experiments", "approve", a, "--reason", "again"], expect=1).stderr
    assert "cancelled -> approved is not allowed; from cancelled: none (cancelled is terminal)" in refused
    refused = _cli(env, ["experiments", "resume", c], expect=1).stderr
    assert f"experiment {c} is proposed, not paused" in refused
    assert "no experiment 'nope'" in _cli(env, ["experiments", "show", "nope"], expect=1).stderr
    assert "no experiment 'nope'" in _cli(env, ["experiments", "pause", "nope"], expect=1).stderr
    assert "--reason" in _cli(env, ["experiments", "cancel", c], expect=2).stderr

    shown = _cli(env, ["experiments", "show", a]).stdout
    for line in ("proposed", "approved", "alice", "worth a try", "waiting on a fix", "market moved"):
        assert line in shown
    assert "state       cancelled (next: none)" in shown
    assert "actions     none" in shown
    listed = _cli(env, ["experiments", "list"]).stdout
    assert listed.count("cancelled") == 2 and "proposed" in listed
    assert verify(warehouse).ok


def test_an_operator_opens_a_manual_gate_and_reads_the_runs(home):
    env, warehouse, (_a, gig, _c) = home  # the freelance gig's default playbook has a review gate
    for step in ("approved", "queued"):
        transition(warehouse, gig, step, actor="sensor", reason=f"to {step}")
    now = [datetime(2026, 11, 2, 10, 0, tzinfo=UTC)]
    environment = LiveEnvironment(clock=lambda: now[0], transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert execute_experiment(warehouse, gig, environment, run_id="run-1", attempt=1).state == "running"  # parked
    now[0] = datetime(2026, 11, 6, 10, 0, tzinfo=UTC)
    waiting = execute_experiment(warehouse, gig, environment, run_id="run-2", attempt=2)
    assert waiting.state == "paused" and f"experiments open-gate {gig} review" in waiting.message

    refused = _cli(env, ["experiments", "open-gate", gig, "launch"], expect=1).stderr
    assert f"experiment {gig} has no manual gate 'launch': its gates are review" in refused
    opened = _cli(env, ["experiments", "open-gate", gig, "review", "--by", "alice", "--reason", "looks good"]).stdout
    assert f"{gig}: gate review opened by alice (looks good); the experiment is running" in opened
    shown = _cli(env, ["experiments", "show", gig]).stdout
    assert "execution   started 2026-11-02 10:00:00+00:00, wake 20" in shown  # wake: when the gate opened

    done = subprocess.run(
        [str(BIN / "ventureloop"), "experiments", "runs", gig],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"experiment {gig}: running" in done.stdout
    assert "run-1" in done.stdout and "run-2" in done.stdout and "parked at step wait" in done.stdout
    for step in ("launch", "spend", "wait"):
        assert f"\n{step} " in done.stdout
    assert "review" not in done.stdout.split("completed steps")[1]
    assert verify(warehouse).ok
