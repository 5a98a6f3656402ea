"""What `verify` catches: one small ledger per backend (built once, copied per test), tampered with
raw SQL the way someone with write access to the warehouse could, one row of TAMPERS per way.

Every column that budgets, balances and the dbt marts read is edited here at least once. Two tampers
leave a self-consistent ledger behind (the newest write cut off, the chain recomputed after an
edit): the chain alone cannot see them, a head published before them can, and the tests say so."""

import json
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.ledger.audit import (
    PublishedHead,
    append_events,
    chain_head,
    chain_id,
    fixed_clock,
    read_events,
    record_hash,
    utc_iso,
    write_transaction,
)
from core.ledger.booking import book, get_transaction
from core.ledger.budgets import expense, set_budget, spend
from core.ledger.fx import FX_RATES_LOADED, store_rates
from core.ledger.holds import HOLD_DECIDED, expire_holds, hold, post_hold, void_hold
from core.ledger.validation import HoldError, LedgerError, Posting, TransactionRequest, content_hash
from core.ledger.verify import verify
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse, run_sql

AT = datetime(2026, 11, 2, 12, tzinfo=UTC)
CLOCK = fixed_clock(AT)


def sale(key: str, amount: int = 1_000) -> TransactionRequest:
    return TransactionRequest(
        key,
        "revenue",
        "stripe charge",
        AT,
        [Posting("assets:cash:stripe:usd", "USD", amount), Posting("revenue:experiment:exp-1", "USD", -amount)],
        experiment_id="exp-1",
        source="stripe",
    )


def build_ledger(warehouse: Warehouse) -> None:
    """An FX load, a budget, a sale, a spend within the budget, and a fraud hold rejected last."""
    ensure_schema(warehouse)
    rates = pd.DataFrame(
        {
            "rate_date": [date(2026, 11, 2)] * 2,
            "currency": ["USD", "JPY"],
            "per_eur": [1.1562, 177.05],
            "source": ["ecb"] * 2,
        }
    )
    assert store_rates(warehouse, rates) == 2
    set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="day",
        currency="USD",
        limit_minor=5_000,
        changed_by="ops",
        at=AT - timedelta(days=1),
    )
    book(warehouse, sale("stripe:txn_1"), clock=CLOCK)
    ad = expense(
        "ad-1", "expenses:ads:experiment:exp-1", 3_000, "USD", AT, paid_from="assets:cash:bank:usd", description="ads"
    )
    assert spend(warehouse, ad, clock=CLOCK).status == "booked"
    fraud = hold(warehouse, sale("stripe:fraud", 9_000), reason="fraud", expires_at=AT + timedelta(days=1), clock=CLOCK)
    void_hold(warehouse, fraud.hold_id, decided_by="alice", at=AT, clock=CLOCK)
    assert verify(warehouse).ok


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request, tmp_path) -> Warehouse:
    """A copy of the small ledger, on each backend."""
    if request.param == "duckdb":
        built = request.getfixturevalue("build_once")(
            "tamper-ledger", lambda d: build_ledger(Warehouse(f"duckdb:///{d}/warehouse.duckdb"))
        )
        shutil.copy(built / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
        return Warehouse(f"duckdb:///{tmp_path}/warehouse.duckdb")
    template = request.getfixturevalue("postgres_template")("tamper_ledger", lambda url: build_ledger(Warehouse(url)))
    return Warehouse(request.getfixturevalue("postgres_database")(template))


def spend_id(w: Warehouse) -> str:
    return w.scalar("SELECT transaction_id FROM ledger.transactions WHERE idempotency_key = 'ad-1'")


def rewrite_chain_from(w: Warehouse, seq: int) -> None:
    """Recompute every hash from `seq` on, as a forger who knows the hash rule would."""
    with w.connect() as conn:
        events = read_events(conn)
    prev = events[seq - 2][5] if seq > 1 else "0" * 64
    for number, event_id, event_type, payload, _prev, _hash, recorded_at in events[seq - 1 :]:
        digest = record_hash(prev, number, event_id, event_type, json.loads(payload), utc_iso(recorded_at))
        w.execute("UPDATE audit.events SET prev_hash = %s, hash = %s WHERE seq = %s", [prev, digest, number])
        prev = digest


def forge_spend_and_recompute(w: Warehouse) -> None:
    """Double the spend, make its content hash and audit record agree, and rehash the chain."""
    tid = spend_id(w)
    w.execute("UPDATE ledger.postings SET amount_minor = amount_minor * 2 WHERE transaction_id = %s", [tid])
    digest = content_hash(get_transaction(w, tid))
    w.execute("UPDATE ledger.transactions SET content_hash = %s WHERE transaction_id = %s", [digest, tid])
    seq = w.scalar("SELECT seq FROM audit.events WHERE payload LIKE %s", [f'%"transaction_id":"{tid}"%'])
    old = w.scalar("SELECT payload FROM audit.events WHERE seq = %s", [seq])
    forged = old.replace(old.split('"content_hash":"')[1].split('"')[0], digest)
    w.execute("UPDATE audit.events SET payload = %s WHERE seq = %s", [forged, seq])
    rewrite_chain_from(w, int(seq))


def rewrite_chain_from_its_first_record(w: Warehouse) -> None:
    """Forge the spend, then give seq 1 a new event id and rehash everything: a new chain_id."""
    forge_spend_and_recompute(w)
    w.execute("UPDATE audit.events SET event_id = '00000000-0000-4000-8000-000000000001' WHERE seq = 1")
    rewrite_chain_from(w, 1)


def edit_a_rate_then_load_more(w: Warehouse) -> None:
    """Edit a rate, then try a legitimate load: it is refused, so its digest cannot cover the edit."""
    sql("UPDATE ledger.fx_rates SET per_eur = per_eur * 1.01 WHERE currency = 'JPY'")(w)
    events = w.count("audit.events")
    more = pd.DataFrame({"rate_date": [date(2026, 11, 3)], "currency": ["USD"], "per_eur": [1.16], "source": ["ecb"]})
    with pytest.raises(LedgerError, match=r"ledger.fx_rates no longer matches .*ventureloop ledger verify"):
        store_rates(w, more)
    assert w.count("audit.events") == events and w.count("ledger.fx_rates") == 2  # nothing loaded


def sql(*statements: str) -> Callable[[Warehouse], None]:
    def tamper(w: Warehouse) -> None:
        tid = spend_id(w) if any("{spend}" in s for s in statements) else ""
        w.execute_script([statement.replace("{spend}", tid) for statement in statements])

    return tamper


NEWEST = "(SELECT max(seq) FROM audit.events)"
# (tamper, what it does, a phrase of the problem verify reports, whether the chain alone shows it)
TAMPERS: list[tuple[str, Callable[[Warehouse], None], str, bool]] = [
    (
        "delete-newest",  # the fraud hold's rejection and its audit record: the hold looks pending again
        sql("DELETE FROM ledger.hold_decisions", f"DELETE FROM audit.events WHERE seq = {NEWEST}"),
        "the newest records were removed",
        False,
    ),
    (
        "posting-amount",
        sql("UPDATE ledger.postings SET amount_minor = amount_minor * 2 WHERE transaction_id = '{spend}'"),
        "no longer match its content_hash",
        True,
    ),
    (
        "posting-occurred-at",  # moved out of the budget's day: the day's spend looks lower
        sql("UPDATE ledger.postings SET occurred_at = occurred_at - INTERVAL '1 day' WHERE transaction_id = '{spend}'"),
        "occurred_at",
        True,
    ),
    (
        "posting-experiment-id",  # moved to another experiment's budget
        sql("UPDATE ledger.postings SET experiment_id = 'exp-2' WHERE transaction_id = '{spend}'"),
        "experiment_id 'exp-2', its transaction says 'exp-1'",
        True,
    ),
    (
        "posting-recorded-at",  # the marts' incremental watermark
        sql("UPDATE ledger.postings SET recorded_at = recorded_at + INTERVAL '1 day' WHERE transaction_id = '{spend}'"),
        "recorded_at",
        True,
    ),
    (
        "transaction-recorded-at",
        sql("UPDATE ledger.transactions SET recorded_at = recorded_at + INTERVAL '1 hour' WHERE kind = 'spend'"),
        "differs from its audit record",
        True,
    ),
    (
        "budget-limit",  # the limit in force, raised
        sql("UPDATE ledger.budget_limits SET limit_minor = 1000000"),
        "limit_minor differ from its audit record",
        True,
    ),
    (
        "budget-created-limit",
        sql("UPDATE ledger.budgets SET limit_minor = 1000000"),
        "limit_minor differ from its budget.created audit record",
        True,
    ),
    (
        "budget-changed-at",  # which version budget_utilization takes as in force
        sql("UPDATE ledger.budget_limits SET changed_at = changed_at + INTERVAL '30 day'"),
        "changed_at differ",
        True,
    ),
    (
        "budget-limit-deleted",
        sql("DELETE FROM ledger.budget_limits"),
        "which is not in ledger.budget_limits",
        True,
    ),
    (
        "fx-rate",
        sql("UPDATE ledger.fx_rates SET per_eur = per_eur * 1.01 WHERE currency = 'JPY'"),
        "table digest",
        True,
    ),
    ("fx-rate-then-load", edit_a_rate_then_load_more, "table digest", True),
    ("fx-rate-deleted", sql("DELETE FROM ledger.fx_rates WHERE currency = 'JPY'"), "1 rows, but", True),
    ("hold-decision-deleted", sql("DELETE FROM ledger.hold_decisions"), "has no row for it", True),
    ("hold-decision-edited", sql("UPDATE ledger.hold_decisions SET decided_by = 'mallory'"), "decided_by", True),
    (
        "hold-expires-at",
        sql("UPDATE ledger.holds SET expires_at = expires_at + INTERVAL '365 day'"),
        "expires_at differ",
        True,
    ),
    (
        "reorder",
        sql(
            "UPDATE audit.events SET seq = 100 WHERE seq = 2",
            "UPDATE audit.events SET seq = 2 WHERE seq = 3",
            "UPDATE audit.events SET seq = 3 WHERE seq = 100",
        ),
        "reordered",
        True,
    ),
    ("recompute-chain", forge_spend_and_recompute, "cut and rewritten after it was published", False),
    ("rewrite-from-first-record", rewrite_chain_from_its_first_record, "rewritten from its first record", False),
]


@pytest.mark.parametrize(
    ("tamper", "expected", "chain_shows_it"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS]
)
def test_verify_catches_the_tamper(ledger: Warehouse, tamper, expected: str, chain_shows_it: bool):
    # As ledger_entries publishes it before anyone tampers (build_ledger verified): with its chain and warehouse.
    published = PublishedHead(chain_head(ledger), chain_id(ledger), ledger.describe())
    tamper(ledger)
    with_head = verify(ledger, [published])
    assert not with_head.ok and expected in with_head.summary(), with_head.summary()
    chain_only = verify(ledger)
    assert chain_only.ok is not chain_shows_it, chain_only.summary()


def test_a_rejected_hold_whose_decision_row_is_deleted_stays_rejected(warehouse: Warehouse):
    fraud = hold(warehouse, sale("stripe:fraud", 9_000), reason="fraud", expires_at=AT + timedelta(days=1), clock=CLOCK)
    void_hold(warehouse, fraud.hold_id, decided_by="alice", at=AT, clock=CLOCK)
    warehouse.execute("DELETE FROM ledger.hold_decisions")
    with pytest.raises(HoldError, match=r"already voided \(audit seq 2\) but its ledger.hold_decisions row is missing"):
        post_hold(warehouse, fraud.hold_id, decided_by="bob", at=AT, clock=CLOCK)
    assert expire_holds(warehouse, AT + timedelta(days=2)) == []  # not expired a second time either
    assert warehouse.count("ledger.transactions") == 0 and warehouse.count("audit.events") == 2
    problem = verify(warehouse).first
    assert problem.record == "audit.events seq 2" and "voided" in problem.message and "has no row" in problem.message


def test_a_hold_decided_twice_is_refused_by_the_database_and_reported(warehouse: Warehouse):
    fraud = hold(warehouse, sale("stripe:fraud", 9_000), reason="fraud", expires_at=AT + timedelta(days=1), clock=CLOCK)
    void_hold(warehouse, fraud.hold_id, decided_by="alice", at=AT, clock=CLOCK)
    with pytest.raises(Exception, match="(?i)duplicate key|unique"):
        warehouse.execute(
            "INSERT INTO ledger.hold_decisions VALUES (%s, 'posted', 'bob', %s, NULL, NULL)", [fraud.hold_id, AT]
        )
    # A second decision that reached the chain anyway (a writer that skipped the checks) is reported.
    with write_transaction(warehouse) as conn:
        append_events(conn, warehouse.backend, [(HOLD_DECIDED, {"hold_id": fraud.hold_id, "decision": "posted"})])
    problem = verify(warehouse).first
    assert problem.record == "audit.events seq 3"
    assert f"hold {fraud.hold_id} is decided twice: voided at seq 2, posted at seq 3" in problem.message


def test_ledgers_written_before_the_audit_records_carried_more_still_verify(duckdb_url: str):
    """FX loads and budget records from before table_digest and changed_at still verify; what they
    record is still checked (rate counts, limits)."""
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    with write_transaction(warehouse) as conn:
        run_sql(conn, "INSERT INTO ledger.fx_rates VALUES ('2026-11-02', 'USD', 1.1562, 'ecb')", None)
        append_events(conn, "duckdb", [(FX_RATES_LOADED, {"rows": 1, "digest": "x"})])
        run_sql(conn, "INSERT INTO ledger.budgets VALUES ('b1', 'global', '*', 'day', 'USD', 100, %s)", [AT])
        run_sql(conn, "INSERT INTO ledger.budget_limits VALUES ('b1', 1, 100, %s, 'ops', '')", [AT])
        legacy = {"budget_id": "b1", "scope": "global", "scope_key": "*", "period": "day", "currency": "USD"}
        legacy |= {"limit_minor": 100, "version": 1, "changed_by": "ops", "reason": ""}  # no changed_at
        append_events(conn, "duckdb", [("budget.created", legacy)])
    assert verify(warehouse).ok
    warehouse.execute("UPDATE ledger.budget_limits SET limit_minor = 900")
    assert "limit_minor differ from its audit record" in verify(warehouse).summary()
    warehouse.execute("UPDATE ledger.budget_limits SET limit_minor = 100")
    warehouse.execute("DELETE FROM ledger.fx_rates")
    assert "0 rows, but its fx.rates_loaded audit records added 1" in verify(warehouse).summary()
    # A rate added by hand after the legacy load, then a load that records the table (which the
    # legacy record cannot refuse): the new load's table_rows names the load the hand edit preceded.
    warehouse.execute("INSERT INTO ledger.fx_rates VALUES ('2026-11-02', 'USD', 1.1562, 'ecb')")
    warehouse.execute("INSERT INTO ledger.fx_rates VALUES ('2026-11-02', 'JPY', 177.05, 'ecb')")
    more = pd.DataFrame({"rate_date": [date(2026, 11, 3)], "currency": ["USD"], "per_eur": [1.16], "source": ["ecb"]})
    assert store_rates(warehouse, more) == 1
    assert "this FX load recorded a table of 3 rows, but the loads up to it added 2" in verify(warehouse).summary()


def test_cli_verify_checks_against_the_last_head_it_knows(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from orchestration.cli import app

    monkeypatch.chdir(tmp_path)  # no ./.env
    monkeypatch.setenv("VENTURELOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no-instance"))
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    warehouse = Warehouse(f"duckdb:///{tmp_path}/home/warehouse.duckdb")
    (tmp_path / "home").mkdir()
    build_ledger(warehouse)
    runner = CliRunner()
    plain = runner.invoke(app, ["ledger", "verify"])
    assert plain.exit_code == 0 and "no published head known; checked the chain only" in plain.stdout
    head = runner.invoke(app, ["ledger", "head"]).stdout.strip()
    assert (tmp_path / "home" / "audit_heads.jsonl").read_text().count(head) == 1
    checked = runner.invoke(app, ["ledger", "verify"])
    assert checked.exit_code == 0 and f"checked against the last published head {head} (1 known)" in checked.stdout
    # The rejection of the fraud hold cut off with its audit record: only the recorded head shows it.
    warehouse.execute("DELETE FROM ledger.hold_decisions")
    warehouse.execute(f"DELETE FROM audit.events WHERE seq = {NEWEST}")
    assert verify(warehouse).ok
    cut = runner.invoke(app, ["ledger", "verify"])
    assert cut.exit_code == 1 and "the newest records were removed" in cut.stdout
    # Rehashed from seq 1, the chain has a new chain_id: the recorded head still names this warehouse.
    rewrite_chain_from_its_first_record(warehouse)
    assert verify(warehouse).ok
    rewritten = runner.invoke(app, ["ledger", "verify"])
    assert rewritten.exit_code == 1 and "the chain was rewritten from its first record" in rewritten.stdout


def test_cli_verify_says_when_it_cannot_read_the_dagster_instance(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from orchestration.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VENTURELOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("storage: [not, a, mapping]\n")
    (tmp_path / "home").mkdir()
    warehouse = Warehouse(f"duckdb:///{tmp_path}/home/warehouse.duckdb")
    ensure_schema(warehouse)
    book(warehouse, sale("stripe:txn_1"), clock=CLOCK)
    failed = CliRunner().invoke(app, ["ledger", "verify"])
    assert failed.exit_code == 2
    assert "cannot read the heads published in the Dagster instance" in failed.stderr and "--head" in failed.stderr
