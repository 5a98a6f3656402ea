"""The metrics collector on a small warehouse built by hand (money booked through the ledger's own
functions, experiments and outcomes as rows): every exported value, exactly; the budget numbers
against core.ledger.budgets.utilization; and the failure paths (no warehouse, a locked file, a
missing table) as ventureloop_warehouse_up 0 with the reason logged."""

import json
import logging
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.ledger.audit import fixed_clock
from core.ledger.booking import book, reverse
from core.ledger.budgets import expense, reverse_spend, set_budget, spend, utilization
from core.ledger.validation import Posting, TransactionRequest
from core.monitoring.metrics import METRICS, WarehouseCollector, read_families, registry_for
from core.platform.quarantine import Problem, quarantine
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse, run_sql

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _revenue(key: str, experiment: str | None, currency: str, amount: int, at: datetime) -> TransactionRequest:
    account = f"revenue:experiment:{experiment}" if experiment else "revenue:unattributed"
    return TransactionRequest(
        idempotency_key=key,
        kind="revenue",
        description=f"sale {key}",
        occurred_at=at,
        postings=[
            Posting(f"assets:cash:stripe:{currency.lower()}", currency, amount),
            Posting(account, currency, -amount),
        ],
        experiment_id=experiment,
        source="simulator",
    )


def _experiment(conn, experiment_id: str, state: str, started=None, finished=None) -> None:
    run_sql(
        conn,
        "INSERT INTO experiments.experiments (experiment_id, idempotency_key, content_hash, opportunity_id, title, "
        "hypothesis, category, score, currency, requested_budget_minor, success_criteria, playbook, state, "
        "state_seq, created_at, updated_at, started_at, finished_at) "
        "VALUES (%s, %s, 'h', 'opp', 't', 'h', 'saas', 0.5, 'USD', 1000, '{}', '{}', %s, 0, %s, %s, %s, %s)",
        [experiment_id, f"key-{experiment_id}", state, T - timedelta(days=30), T, started, finished],
    )


def build_small_warehouse(warehouse: Warehouse) -> None:
    """The hand-built warehouse every expected number below is computed from (see EXPECTED)."""
    ensure_schema(warehouse)
    at = fixed_clock(T)
    book(warehouse, _revenue("r1", "exp-a", "USD", 1000, T - timedelta(hours=3)), clock=at)
    refunded = book(warehouse, _revenue("r2", "exp-a", "USD", 300, T - timedelta(hours=2)), clock=at)
    reverse(warehouse, refunded.transaction_id, "r2-refund", "refund", occurred_at=T - timedelta(hours=1), clock=at)
    book(warehouse, _revenue("r3", "exp-a", "EUR", 250, T - timedelta(hours=3)), clock=at)
    book(warehouse, _revenue("r4", "exp-b", "JPY", 5000, T - timedelta(days=2)), clock=at)
    book(warehouse, _revenue("r5", None, "USD", 70, T - timedelta(days=2)), clock=at)
    fee = TransactionRequest(
        idempotency_key="fee-1",
        kind="fee",
        description="stripe fee",
        occurred_at=T - timedelta(hours=3),
        postings=[Posting("expenses:fees:stripe", "USD", 59), Posting("assets:cash:stripe:usd", "USD", -59)],
        source="stripe",
    )
    book(warehouse, fee, clock=at)

    for scope, key, period, limit in (
        ("global", "*", "day", 10_000),
        ("category", "ads", "month", 5_000),
        ("experiment", "exp-a", "month", 3_000),
        ("experiment", "exp-b", "day", 0),
    ):
        set_budget(
            warehouse, scope=scope, scope_key=key, period=period, currency="USD", limit_minor=limit,
            changed_by="test", at=T - timedelta(days=5),
        )  # fmt: skip
    set_budget(  # a second version: the current limit is the latest
        warehouse, scope="global", period="day", currency="USD", limit_minor=20_000, changed_by="test",
        at=T - timedelta(days=4),
    )  # fmt: skip

    def ads(key: str, amount: int, when: datetime):
        request = expense(
            key, "expenses:ads:experiment:exp-a", amount, "USD", when, paid_from="liabilities:card:amex",
            description="ads", experiment_id="exp-a",
        )  # fmt: skip
        result = spend(warehouse, request, clock=fixed_clock(when))
        assert result.ok, result.message
        return result

    ads("ads-1", 2500, T - timedelta(hours=2))
    ads("ads-yesterday", 100, T - timedelta(days=1))
    undone = ads("ads-undone", 400, T - timedelta(hours=1))
    reverse_spend(warehouse, undone.transaction_id, "ads-undone-rev", "cancelled", clock=at)

    with warehouse.connect() as conn:

        def execute(sql, params=None):
            run_sql(conn, sql, params)

        _experiment(conn, "e1", "running", started=T - timedelta(hours=5))
        _experiment(conn, "e2", "running", started=T - timedelta(hours=4))
        _experiment(conn, "e3", "completed", T - timedelta(days=10), T - timedelta(days=3))
        _experiment(conn, "e4", "failed")  # no executor stamps: its transitions give the times
        _experiment(conn, "e5", "proposed")
        _experiment(conn, "e6", "completed", T - timedelta(days=1), T - timedelta(days=1) + timedelta(minutes=30))
        for seq, (to_state, when) in enumerate(
            [
                ("proposed", T - timedelta(hours=3)),
                ("running", T - timedelta(hours=2)),
                ("failed", T - timedelta(hours=1)),
            ]
        ):
            execute(
                "INSERT INTO experiments.transitions VALUES (%s, %s, %s, %s, 'test', 'test', %s)",
                ["e4", seq, None, to_state, when],
            )
        for experiment_id, state, succeeded, roi in (
            ("e3", "completed", True, 0.5),
            ("e4", "failed", False, -1.0),
            ("e6", "completed", True, None),
        ):
            execute(
                "INSERT INTO experiments.outcomes VALUES (%s, %s, %s, %s, 0, 0, 0, %s, 1.0, 'USD', '{}', 'test')",
                [experiment_id, state, T, succeeded, roi],
            )
        execute(
            "INSERT INTO raw.responses VALUES ('resp-1', 'devto', 'snapshot', 'https://dev.to/api', 200, "
            "'application/json', 10, %s, NULL)",
            [T],
        )
    quarantine(
        warehouse,
        "hackernews",
        [
            Problem("fetch", "https://hn.algolia.com/a", "HTTP 503", b""),
            Problem("fetch", "https://hn.algolia.com/b", "timeout", b""),
        ],
    )
    quarantine(warehouse, "github", [Problem("parse", "https://api.github.com/x", "bad JSON", "{")])


# Every value the collector must export for build_small_warehouse at T (name without prefix, labels).
EXPECTED = {
    ("revenue_total_cents", (("currency", "USD"), ("experiment", "exp-a"))): 1000,  # 1000 + 300 - 300 refunded
    ("revenue_total_cents", (("currency", "EUR"), ("experiment", "exp-a"))): 250,
    ("revenue_total_cents", (("currency", "JPY"), ("experiment", "exp-b"))): 5000,
    ("revenue_total_cents", (("currency", "USD"), ("experiment", ""))): 70,
    ("cost_total_cents", (("currency", "USD"), ("experiment", "exp-a"))): 2600,  # 2500 + 100 + 400 - 400
    ("cost_total_cents", (("currency", "USD"), ("experiment", ""))): 59,
    ("active_experiments", ()): 2,
    ("experiments", (("state", "running"),)): 2,
    ("experiments", (("state", "completed"),)): 2,
    ("experiments", (("state", "failed"),)): 1,
    ("experiments", (("state", "proposed"),)): 1,
    ("experiments", (("state", "paused"),)): 0,
    ("experiments_finished", ()): 3,
    ("experiments_succeeded", ()): 2,
    ("experiment_success_ratio", ()): 2 / 3,
    ("source_fetch_errors_total", (("source", "hackernews"),)): 2,
    ("source_fetch_errors_total", (("source", "devto"),)): 0,
    ("source_fetch_errors_total", (("source", "github"),)): 0,
    ("quarantine_pending", (("source", "hackernews"), ("stage", "fetch"))): 2,
    ("quarantine_pending", (("source", "github"), ("stage", "parse"))): 1,
}
BUDGETS = {  # (scope, scope_key, period): (limit, spent in the window containing T)
    ("global", "*", "day"): (20_000, 2500),  # the fee is Stripe's, yesterday's ads another day
    ("category", "ads", "month"): (5_000, 2600),
    ("experiment", "exp-a", "month"): (3_000, 2600),
    ("experiment", "exp-b", "day"): (0, 0),
}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name.removeprefix("ventureloop_"), tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(collector: WarehouseCollector) -> dict[tuple[str, tuple], float]:
    return samples(generate_latest(registry_for(collector, process_metrics=False)).decode())


def assert_small_warehouse_values(found: dict[tuple[str, tuple], float]) -> None:
    assert found[("warehouse_up", ())] == 1
    for key, value in EXPECTED.items():
        name, labels = key
        assert found.get((name, tuple(sorted(labels)))) == pytest.approx(value), key
    money = {k: v for k, v in found.items() if k[0] in ("revenue_total_cents", "cost_total_cents")}
    assert len(money) == 6, money  # nothing else: transfers, assets and liabilities are not money earned or spent
    budgets = {}
    for (name, labels), value in found.items():
        if name.startswith("budget_"):
            lab = dict(labels)
            assert lab["currency"] == "USD" and lab["budget_id"]
            budgets.setdefault((lab["scope"], lab["scope_key"], lab["period"]), {})[name] = value
    assert budgets == {
        key: {"budget_limit_cents": limit, "budget_spent_cents": spent}
        | ({} if limit == 0 else {"budget_utilization_ratio": pytest.approx(spent / limit)})
        for key, (limit, spent) in BUDGETS.items()
    }
    duration = {
        (dict(lab)["state"], dict(lab).get("le")): v
        for (n, lab), v in found.items()
        if n.startswith("experiment_duration_seconds")
    }
    assert duration[("completed", "600.0")] == 0
    assert duration[("completed", "3600.0")] == 1  # e6: 30 minutes
    assert duration[("completed", "259200.0")] == 1
    assert duration[("completed", "604800.0")] == 2  # e3: 7 days, le is inclusive
    assert duration[("completed", "+Inf")] == 2
    assert found[("experiment_duration_seconds_sum", (("state", "completed"),))] == 7 * 86_400 + 1_800
    assert duration[("failed", "3600.0")] == 1  # e4 from its transitions: running to failed, one hour
    assert found[("experiment_duration_seconds_sum", (("state", "failed"),))] == 3_600
    assert duration[("rolled_back", "+Inf")] == 0
    roi = {dict(lab)["le"]: v for (n, lab), v in found.items() if n == "experiment_roi_bucket"}
    assert roi == {
        "-1.0": 1,
        "-0.75": 1,
        "-0.5": 1,
        "-0.25": 1,
        "0.0": 1,
        "0.25": 1,
        "0.5": 2,
        "1.0": 2,
        "2.0": 2,
        "5.0": 2,
        "10.0": 2,
        "+Inf": 2,
    }  # fmt: skip  (e6 booked no cost: no ROI)


def small_duckdb_file(build_once) -> Path:
    """build_small_warehouse's DuckDB file, built once per test run (shared: copy it, never write it)."""
    directory = build_once(
        "metrics-small", lambda d: build_small_warehouse(Warehouse(f"duckdb:///{d}/warehouse.duckdb"))
    )
    return directory / "warehouse.duckdb"


@pytest.fixture(scope="module")
def small_duckdb(build_once, tmp_path_factory) -> Warehouse:
    path = tmp_path_factory.mktemp("metrics") / "warehouse.duckdb"
    shutil.copyfile(small_duckdb_file(build_once), path)
    return Warehouse(f"duckdb:///{path}")


def test_every_value_on_the_small_duckdb_warehouse(small_duckdb):
    assert_small_warehouse_values(scrape(WarehouseCollector(small_duckdb, now=lambda: T)))


def test_budget_numbers_agree_with_the_ledger_s_own_utilization(small_duckdb):
    ledger = utilization(small_duckdb, at=T).set_index("budget_id")
    families = {f.name: f for f in read_families(small_duckdb, T)}
    spent = {s.labels["budget_id"]: s.value for s in families["ventureloop_budget_spent_cents"].samples}
    limits = {s.labels["budget_id"]: s.value for s in families["ventureloop_budget_limit_cents"].samples}
    assert spent == ledger["spent_minor"].to_dict()
    assert limits == ledger["limit_minor"].to_dict()


def test_every_exported_name_is_in_the_catalogue(small_duckdb):
    names = {f.name.removeprefix("ventureloop_") for f in read_families(small_duckdb, T)}
    assert names | {"warehouse_up", "metrics_read_seconds", "metrics_snapshot_age_seconds"} == set(METRICS)


@pytest.mark.postgres
def test_every_value_on_postgresql(postgres_url):
    warehouse = Warehouse(postgres_url)
    build_small_warehouse(warehouse)
    assert_small_warehouse_values(scrape(WarehouseCollector(warehouse, now=lambda: T)))


def test_a_missing_warehouse_is_up_0_with_the_reason_logged(tmp_path, caplog):
    path = tmp_path / "nowhere" / "warehouse.duckdb"
    collector = WarehouseCollector(Warehouse(f"duckdb:///{path}"))
    with caplog.at_level(logging.WARNING, logger="core.monitoring.metrics"):
        found = scrape(collector)
        scrape(collector)  # the same reason again: logged once
    assert found == {("warehouse_up", ()): 0}
    assert not path.parent.exists()  # a reader never creates the warehouse
    events = [json.loads(r.getMessage()) for r in caplog.records]
    assert len(events) == 1 and events[0]["event"] == "metrics_warehouse_unreadable"
    assert f"no warehouse at {path}" in events[0]["reason"]


def test_an_unreachable_postgresql_is_up_0():
    collector = WarehouseCollector(Warehouse("postgresql://nobody@127.0.0.1:1/none"))
    assert scrape(collector) == {("warehouse_up", ()): 0}
    assert "cannot read postgresql://nobody@127.0.0.1:1/none" in collector.last_error


def test_a_warehouse_without_the_tables_says_how_to_set_it_up(tmp_path):
    path = tmp_path / "empty.duckdb"
    import duckdb

    duckdb.connect(str(path)).close()
    collector = WarehouseCollector(Warehouse(f"duckdb:///{path}"))
    assert scrape(collector) == {("warehouse_up", ()): 0}
    assert "lacks a table the metrics read" in collector.last_error and "make demo" in collector.last_error


def test_a_file_another_process_writes_keeps_the_last_snapshot_with_its_age(small_duckdb):
    now = [0.0]
    collector = WarehouseCollector(small_duckdb, now=lambda: T, clock=lambda: now[0])
    first = scrape(collector)
    assert first[("warehouse_up", ())] == 1 and first[("metrics_snapshot_age_seconds", ())] == 0
    holder = subprocess.Popen(  # a pipeline run: a read-write connection held open by another process
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({small_duckdb.duckdb_path!r}); "
         "print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        now[0] = 9.5
        locked = scrape(collector)
    finally:
        holder.communicate("")
    assert locked[("warehouse_up", ())] == 0
    assert locked[("metrics_snapshot_age_seconds", ())] == 9.5  # read at 0, scraped at 9.5
    assert locked[("active_experiments", ())] == 2  # the last snapshot's values, not a gap
    assert "open for writing by another process" in collector.last_error
    again = scrape(collector)  # the writer is gone: read again
    assert again[("warehouse_up", ())] == 1 and collector.last_error is None


def test_a_writer_that_opens_the_file_during_a_read_waits_for_it_instead_of_failing(small_duckdb):
    from core.platform.warehouse import LOCK_WAIT_SECONDS

    reader = subprocess.Popen(  # a scrape's read, held longer than any real one (tens of milliseconds)
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({small_duckdb.duckdb_path!r}, "
         "read_only=True); print('reading', flush=True); time.sleep(0.25); c.close()"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert reader.stdout.readline().strip() == "reading"
    assert LOCK_WAIT_SECONDS > 0.25
    with small_duckdb.connect() as conn:  # a pipeline step's write connection: it waits out the read
        assert conn.execute("SELECT count(*) FROM experiments.experiments").fetchone()[0] == 6
    assert reader.wait(timeout=30) == 0


def test_with_a_cache_a_stale_read_is_served_once_while_the_next_is_read_in_the_background(small_duckdb, monkeypatch):
    import core.monitoring.metrics as metrics

    reads = []
    real = metrics.read_families
    monkeypatch.setattr(metrics, "read_families", lambda w, now=None: reads.append(1) or real(w, now))
    now = [0.0]
    collector = WarehouseCollector(small_duckdb, cache_seconds=5, now=lambda: T, clock=lambda: now[0])
    assert scrape(collector)[("active_experiments", ())] == 2  # the first scrape reads, and waits for it
    now[0] = 4.9
    assert scrape(collector)[("metrics_snapshot_age_seconds", ())] == pytest.approx(4.9)
    assert len(reads) == 1
    now[0] = 6.0
    stale = scrape(collector)  # answered from the old read at once; the next read starts behind it
    assert stale[("metrics_snapshot_age_seconds", ())] == pytest.approx(6.0)
    collector.wait_for_refresh(timeout=30)
    assert len(reads) == 2
    now[0] = 6.5
    fresh = scrape(collector)
    assert fresh[("metrics_snapshot_age_seconds", ())] == pytest.approx(0.5) and len(reads) == 2


# -- the Grafana dashboard, its provisioning and the Prometheus scrape config ---------------------------

GRAFANA = Path(__file__).resolve().parents[2] / "orchestration" / "grafana"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names (inside {...} or by (...)) or durations (inside [...])."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return {name for name in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr) if name not in PROMQL_WORDS}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "ventureloop.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_promql_reader_finds_metric_names_and_nothing_else():
    assert promql_metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(x_bucket{state="a b", le!="1"}[5m]))) / on(job) y_total offset 1h'
    ) == {"x_bucket", "y_total"}


def test_every_metric_the_dashboard_queries_is_exported(small_duckdb):
    exported = {name for name, _labels in scrape(WarehouseCollector(small_duckdb, now=lambda: T))}
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    used = set().union(*(promql_metric_names(e) for e in exprs))
    assert {"revenue_total_cents", "active_experiments", "experiment_success_ratio", "experiment_roi_bucket"} <= {
        n.removeprefix("ventureloop_") for n in used
    }  # the seed's four panels
    assert all(n.startswith("ventureloop_") for n in used), used
    assert not {n for n in used if n.removeprefix("ventureloop_") not in exported}, exported


def test_the_panels_the_provisioned_datasource_and_prometheus_agree():
    import yaml

    from core.monitoring.metrics import DEFAULT_PORT

    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    [source] = datasource["datasources"]
    dashboard = json.loads((GRAFANA / "dashboards" / "ventureloop.json").read_text())
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
            assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])

    compose = yaml.safe_load((GRAFANA.parents[1] / "compose.yaml").read_text())["services"]
    assert source["url"] == "http://prometheus:9090" and "9090:9090" in compose["prometheus"]["ports"]
    [provider] = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ventureloop.yaml").read_text())["providers"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in compose["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./orchestration/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./orchestration/grafana/provisioning"] == "/etc/grafana/provisioning"

    scrape_config = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    [job] = scrape_config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"metrics:{DEFAULT_PORT}"]
    assert f"--port {DEFAULT_PORT}" in compose["metrics"]["command"][-1]
    assert "--host 0.0.0.0" in compose["metrics"]["command"][-1]
    assert all(service.get("profiles") == ["monitoring"] for name, service in compose.items() if name in
               ("metrics", "prometheus", "grafana"))  # fmt: skip
