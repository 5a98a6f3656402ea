import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.ledger.audit import fixed_clock, utc_now
from core.ledger.balances import balance
from core.ledger.booking import book, reverse
from core.ledger.budgets import BudgetError, expense, list_budgets, set_budget, spend, utilization, window
from core.ledger.validation import LedgerError, Posting, TransactionRequest
from core.ledger.verify import verify
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

AT = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
# Budget changes happen at AT and spends are recorded by this clock, so no test reads the wall clock.
CLOCK = fixed_clock(AT)


def ad_spend(
    key: str,
    amount: int,
    *,
    at: datetime = AT,
    experiment: str | None = "exp-1",
    account: str = "expenses:ads:google",
    currency: str = "USD",
) -> TransactionRequest:
    return expense(
        key,
        account,
        amount,
        currency,
        at,
        paid_from="liabilities:card:amex",
        description="ad spend",
        experiment_id=experiment,
    )


def test_budget_changes_are_versioned_and_audited(warehouse: Warehouse):
    created = set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="day",
        currency="USD",
        limit_minor=1_000,
        changed_by="alice",
        reason="initial allocation",
        at=AT,
    )
    assert created.version == 1
    same = set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="day",
        currency="USD",
        limit_minor=1_000,
        changed_by="alice",
        at=AT,
    )
    assert same == created
    raised = set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="day",
        currency="USD",
        limit_minor=2_500,
        changed_by="bob",
        reason="good results",
        at=AT,
    )
    assert (raised.budget_id, raised.version, raised.limit_minor) == (created.budget_id, 2, 2_500)
    assert list_budgets(warehouse) == [raised]
    events = warehouse.read("audit.events", "ORDER BY seq")
    assert list(events.event_type) == ["budget.created", "budget.changed"]
    assert '"previous_limit_minor":1000' in events.payload.iloc[1] and '"changed_by":"bob"' in events.payload.iloc[1]
    current = warehouse.read("ledger.budget_current")
    assert current.limit_minor.item() == 2_500 and current.version.item() == 2
    assert warehouse.read("ledger.budgets").limit_minor.item() == 1_000  # the row itself is never updated
    assert verify(warehouse).ok


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scope="team", scope_key="x"), "unknown budget scope"),
        (dict(scope="global", scope_key="ads"), "global budget has scope_key"),
        (dict(scope="category", scope_key="ads:x"), "account segment"),
        (dict(scope="category", scope_key="ads", period="week"), "unknown budget period"),
        (dict(scope="category", scope_key="ads", limit_minor=-1), "negative"),
    ],
)
def test_bad_budget_definitions_are_refused(warehouse: Warehouse, kwargs, message):
    arguments = dict(period="day", currency="USD", limit_minor=100, changed_by="alice") | kwargs
    with pytest.raises(BudgetError, match=message):
        set_budget(warehouse, **arguments, at=AT)


def test_a_refusal_names_the_budget_and_by_how_much(warehouse: Warehouse):
    budget = set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="day",
        currency="USD",
        limit_minor=1_000,
        changed_by="alice",
        at=AT,
    )
    accepted = spend(warehouse, ad_spend("ads:1", 900), clock=CLOCK)
    assert accepted.status == "booked" and accepted.message == "Within budget"
    refused = spend(warehouse, ad_spend("ads:2", 300), clock=CLOCK)
    assert refused.status == "refused" and refused.transaction_id is None
    assert refused.message == (
        f"Experiment budget exceeded (1200 > 1000): daily USD budget experiment:exp-1 "
        f"[{budget.budget_id}] would be over by 200 (2.00 USD); 900 already spent, "
        f"300 requested"
    )
    assert refused.refusals[0].over_by == 200
    assert spend(warehouse, ad_spend("ads:1", 900), clock=CLOCK).status == "duplicate"  # a retry is not re-checked
    assert spend(warehouse, ad_spend("ads:3", 100), clock=CLOCK).status == "booked"  # exactly at the limit is allowed
    assert balance(warehouse, "expenses:ads:google", "USD") == 1_000
    assert verify(warehouse).ok


def test_every_applicable_budget_is_checked(warehouse: Warehouse):
    common = dict(currency="USD", changed_by="alice")
    set_budget(warehouse, scope="global", period="month", limit_minor=5_000, **common, at=AT)
    set_budget(warehouse, scope="category", scope_key="ads", period="hour", limit_minor=1_000, **common, at=AT)
    set_budget(warehouse, scope="experiment", scope_key="exp-1", period="day", limit_minor=800, **common, at=AT)
    set_budget(warehouse, scope="category", scope_key="infra", period="day", limit_minor=1, **common, at=AT)
    set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="day",
        currency="EUR",
        limit_minor=1,
        changed_by="alice",
        at=AT,
    )
    refused = spend(warehouse, ad_spend("ads:1", 6_000), clock=CLOCK)
    assert [r.budget.scope for r in refused.refusals] == ["global", "category", "experiment"]
    assert "Global budget exceeded (6000 > 5000)" in refused.message
    assert "Category budget exceeded (6000 > 1000)" in refused.message
    assert "Experiment budget exceeded (6000 > 800)" in refused.message
    # Not applicable: another category, another currency, another experiment.
    assert spend(warehouse, ad_spend("ads:2", 700), clock=CLOCK).status == "booked"
    assert spend(warehouse, ad_spend("ads:3", 200, experiment="exp-2"), clock=CLOCK).status == "booked"
    hit = spend(warehouse, ad_spend("ads:4", 200), clock=CLOCK).refusals
    assert [(r.budget.scope, r.spent_minor) for r in hit] == [("category", 900), ("experiment", 700)]


def test_windows_are_utc_hour_day_and_month(warehouse: Warehouse):
    set_budget(
        warehouse,
        scope="category",
        scope_key="ads",
        period="hour",
        currency="USD",
        limit_minor=1_000,
        changed_by="alice",
        at=AT,
    )
    later = fixed_clock(datetime(2026, 11, 2, 11, 30, tzinfo=UTC))  # every spend below lies in its past
    assert spend(warehouse, ad_spend("ads:1", 1_000, at=datetime(2026, 11, 2, 10, 59, 59, tzinfo=UTC)), clock=later).ok
    assert not spend(warehouse, ad_spend("ads:2", 1, at=datetime(2026, 11, 2, 10, 0, tzinfo=UTC)), clock=later).ok
    assert spend(warehouse, ad_spend("ads:3", 1_000, at=datetime(2026, 11, 2, 11, 0, tzinfo=UTC)), clock=later).ok
    assert window("day", datetime(2026, 11, 2, 23, 30, tzinfo=UTC))[1] == datetime(2026, 11, 3, tzinfo=UTC)
    assert window("month", datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    local = datetime(2026, 11, 2, 0, 30, tzinfo=UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert window("day", local)[0] == datetime(2026, 11, 2, tzinfo=UTC)


def test_a_reversed_spend_frees_its_budget(warehouse: Warehouse):
    set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="month",
        currency="USD",
        limit_minor=1_000,
        changed_by="alice",
        at=AT,
    )
    first = spend(warehouse, ad_spend("ads:1", 1_000), clock=CLOCK)
    assert not spend(warehouse, ad_spend("ads:2", 500), clock=CLOCK).ok
    reverse(warehouse, first.transaction_id, "ads:1:refund", "campaign cancelled", occurred_at=AT, clock=CLOCK)
    assert spend(warehouse, ad_spend("ads:2", 500), clock=CLOCK).ok
    usage = utilization(warehouse, AT).iloc[0]
    assert (usage.spent_minor, usage.remaining_minor) == (500, 500)


def test_a_zero_budget_stops_spend_and_non_spend_is_refused(warehouse: Warehouse):
    set_budget(
        warehouse,
        scope="global",
        period="day",
        currency="USD",
        limit_minor=0,
        changed_by="alice",
        reason="freeze",
        at=AT,
    )
    assert "Global budget exceeded (1 > 0)" in spend(warehouse, ad_spend("ads:1", 1), clock=CLOCK).message
    sale = TransactionRequest(
        "sale:1", "revenue", "sale", AT, [Posting("assets:cash:x", "USD", 5), Posting("revenue:x", "USD", -5)]
    )
    with pytest.raises(LedgerError, match="no expense posting"):
        spend(warehouse, sale, clock=CLOCK)
    assert warehouse.count("ledger.transactions") == 0


def test_a_spend_tagged_with_an_unbudgeted_source_is_refused(warehouse: Warehouse):
    _daily(warehouse, 0)  # budgets never count a Stripe row: tagged "stripe", any spend would pass
    with pytest.raises(LedgerError, match="has source 'stripe', which budgets never count"):
        spend(warehouse, replace(ad_spend("ads:1", 500), source="stripe"), clock=CLOCK)
    assert warehouse.count("ledger.transactions") == 0


def _race(url: str, spenders: int = 40, attempts: int = 2, limit: int = 10_000, amount: int = 333) -> None:
    """`spenders` threads, each with its own connections, race `attempts` spends each for one budget."""
    warehouse = Warehouse(url)
    ensure_schema(warehouse)
    budget = set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="day",
        currency="USD",
        limit_minor=limit,
        changed_by="alice",
        at=AT,
    )
    start = threading.Barrier(spenders)
    results, errors = [], []

    def spender(number: int) -> None:
        start.wait()
        for attempt in range(attempts):
            try:
                results.append(spend(warehouse, ad_spend(f"race:{number}:{attempt}", amount), clock=CLOCK))
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=spender, args=(n,)) for n in range(spenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    accepted = [r for r in results if r.status == "booked"]
    refused = [r for r in results if r.status == "refused"]
    assert len(accepted) == limit // amount and len(refused) == spenders * attempts - limit // amount
    assert all(budget.budget_id in r.message and "Experiment budget exceeded" in r.message for r in refused)
    assert balance(warehouse, "expenses:ads:google", "USD") == amount * (limit // amount) <= limit
    seqs = list(warehouse.read("audit.events", "ORDER BY seq").seq)
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free under concurrency
    report = verify(warehouse)
    assert report.ok, report.summary()


@pytest.mark.postgres
def test_concurrent_spenders_never_overspend_on_postgres(postgres_url: str):
    _race(postgres_url)


def test_concurrent_spenders_never_overspend_on_duckdb(duckdb_url: str):
    _race(duckdb_url, spenders=32)


def test_budgets_in_other_time_zones_use_utc_windows(warehouse: Warehouse):
    set_budget(warehouse, scope="global", period="day", currency="JPY", limit_minor=1_000, changed_by="alice", at=AT)
    tokyo_morning = datetime(2026, 11, 3, 8, 0, tzinfo=__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))  # Nov 2 UTC
    evening = fixed_clock(datetime(2026, 11, 2, 23, 30, tzinfo=UTC))
    assert spend(warehouse, ad_spend("jp:1", 1_000, at=AT, currency="JPY"), clock=evening).ok
    refused = spend(warehouse, ad_spend("jp:2", 1, at=tokyo_morning, currency="JPY"), clock=evening)
    assert "Global budget exceeded (1001 > 1000)" in refused.message
    assert timedelta(0) == window("day", tokyo_morning)[0] - datetime(2026, 11, 2, tzinfo=UTC)


# -- budgets cannot be bypassed (issue 11) -----------------------------------------------------------


def _daily(warehouse: Warehouse, limit: int, **extra) -> None:
    set_budget(
        warehouse,
        scope="experiment",
        scope_key="exp-1",
        period="day",
        currency="USD",
        limit_minor=limit,
        changed_by="alice",
        at=AT,
        **extra,
    )


def test_a_negative_spend_is_refused_and_frees_no_budget(warehouse: Warehouse):
    _daily(warehouse, 1_500)
    assert spend(warehouse, ad_spend("ads:1", 1_500), clock=CLOCK).status == "booked"
    with pytest.raises(LedgerError, match=r"credits expenses:ads:google by -20.00 USD: a spend is a positive amount"):
        spend(warehouse, ad_spend("ads:credit", -2_000), clock=CLOCK)
    refused = spend(warehouse, ad_spend("ads:2", 2_000), clock=CLOCK)  # 35.00 against 15.00 stays refused
    assert refused.status == "refused" and "Experiment budget exceeded (3500 > 1500)" in refused.message
    assert utilization(warehouse, AT).iloc[0].spent_minor == 1_500
    assert warehouse.count("ledger.transactions") == 1


def test_a_reversal_frees_only_the_window_of_its_spend_and_only_once(warehouse: Warehouse):
    from core.ledger.budgets import reverse_spend

    _daily(warehouse, 1_000)
    yesterday = AT - timedelta(days=1)
    old = spend(warehouse, ad_spend("ads:old", 1_000, at=yesterday), clock=fixed_clock(yesterday))
    assert spend(warehouse, ad_spend("ads:today", 1_000), clock=CLOCK).ok
    # Reversed today, yesterday's spend gives yesterday's budget back, never today's.
    reverse_spend(warehouse, old.transaction_id, "ads:old:undo", "campaign cancelled", clock=CLOCK)
    refused = spend(warehouse, ad_spend("ads:more", 1_000), clock=CLOCK)
    assert "Experiment budget exceeded (2000 > 1000)" in refused.message
    assert utilization(warehouse, AT).iloc[0].spent_minor == 1_000
    assert utilization(warehouse, yesterday).iloc[0].spent_minor == 0
    with pytest.raises(LedgerError, match="already reversed"):
        reverse_spend(warehouse, old.transaction_id, "ads:old:undo-again", "twice", clock=CLOCK)
    today = warehouse.scalar("SELECT transaction_id FROM ledger.transactions WHERE idempotency_key = 'ads:today'")
    bigger = TransactionRequest(
        "ads:today:undo",
        "reversal",
        "more than was spent",
        AT,
        [Posting("expenses:ads:google", "USD", -5_000), Posting("liabilities:card:amex", "USD", 5_000)],
        experiment_id="exp-1",
        reverses_transaction_id=today,
    )
    with pytest.raises(LedgerError, match="must mirror the original"):
        book(warehouse, bigger, clock=CLOCK)
    with pytest.raises(LedgerError, match="undo a spend with reverse_spend"):
        spend(warehouse, bigger, clock=CLOCK)
    sale = book(
        warehouse,
        TransactionRequest(
            "sale:1", "revenue", "sale", AT, [Posting("assets:cash:x", "USD", 5), Posting("revenue:x", "USD", -5)]
        ),
        clock=CLOCK,
    )
    with pytest.raises(LedgerError, match="not a spend counted against budgets"):
        reverse_spend(warehouse, sale.transaction_id, "sale:1:undo", "not a spend", clock=CLOCK)
    assert verify(warehouse).ok


def test_a_spend_dated_outside_the_spend_window_is_refused(warehouse: Warehouse):
    from core.ledger.budgets import SpendWindow

    _daily(warehouse, 1_000)
    assert spend(warehouse, ad_spend("ads:1", 1_000), clock=CLOCK).ok  # today's window is full
    future = spend(warehouse, ad_spend("ads:future", 1_000, at=AT + timedelta(days=30)), clock=CLOCK)
    assert future.status == "refused" and future.refusals == ()
    assert "is more than 0:05:00 after now: " in future.message
    assert future.message.endswith("(now was 2026-11-02T10:30:00+00:00)") and "now was" not in future.reason
    past = spend(warehouse, ad_spend("ads:past", 1_000, at=AT - timedelta(days=30)), clock=CLOCK)
    assert "is more than 7 days, 0:00:00 before now" in past.message and "spend_window.past_days" in past.message
    wide = SpendWindow(past=timedelta(days=31), future=timedelta(0))
    assert spend(warehouse, ad_spend("ads:past", 1_000, at=AT - timedelta(days=30)), clock=CLOCK, spend_window=wide).ok
    # A retry of a booked spend is the original, however old it has become.
    assert spend(warehouse, ad_spend("ads:1", 1_000), clock=fixed_clock(AT + timedelta(days=60))).status == "duplicate"
    assert warehouse.count("ledger.transactions") == 2


def test_the_budgets_file_holds_the_spend_window(tmp_path):
    from core.ledger import budget_config
    from core.ledger.budgets import SpendWindow

    assert budget_config.load_spend_window() == SpendWindow() == SpendWindow(timedelta(days=7), timedelta(minutes=5))
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets: []\nspend_window: {past_days: 2}\n")
    assert budget_config.load_spend_window(path) == SpendWindow(timedelta(days=2), timedelta(minutes=5))
    path.write_text("spend_window: {past_days: 1.5}\n")
    with pytest.raises(ValueError, match=r"spend_window.past_days must be a whole number >= 0, got 1.5"):
        budget_config.load_spend_window(path)
    path.write_text("spend_window: {past: 1}\n")
    with pytest.raises(ValueError, match=r"unknown keys \['past'\]"):
        budget_config.load_spend_window(path)


def test_the_cli_spend_parses_amounts_like_the_imports(duckdb_url: str, tmp_path, monkeypatch):
    """Parsing happens before any backend is touched, so one backend is enough."""
    from typer.testing import CliRunner

    from orchestration.cli import app

    warehouse = Warehouse(duckdb_url)
    monkeypatch.chdir(tmp_path)  # no ./.env
    monkeypatch.setenv("WAREHOUSE_URL", warehouse.url)
    monkeypatch.delenv("VENTURELOOP_BUDGETS_FILE", raising=False)
    now = utc_now().strftime("%Y-%m-%dT%H:%M:%S+0000")

    def run(amount: str):
        args = ["ledger", "spend", "--key", f"cli:{amount}", "--at", now, "--", "expenses:ads:google", amount]
        return CliRunner().invoke(app, args)

    exponent = run("1e1")
    assert exponent.exit_code == 1 and "'1e1' is not a decimal number like 29.00" in exponent.output
    negative = run("-35.00")
    assert negative.exit_code == 1 and "a spend is a positive amount" in negative.output
    assert run("10.00").exit_code == 0
    assert list(warehouse.read("ledger.postings").amount_minor.abs()) == [1_000, 1_000]


HEADER = (
    "event_id,occurred_at,kind,amount,currency,experiment_id,account,cash_account,counterparty,description,"
    "customer_country\n"
)


def test_generic_csv_costs_go_through_the_budgets_and_a_refused_row_replays(warehouse: Warehouse, tmp_path):
    from core.ledger.imports import import_file, import_objects
    from core.ledger.imports.replay import replay_imports

    set_budget(
        warehouse,
        scope="category",
        scope_key="ads",
        period="day",
        currency="USD",
        limit_minor=5_000,
        changed_by="alice",
        at=AT,
    )
    set_budget(
        warehouse,
        scope="category",
        scope_key="fees",
        period="day",
        currency="USD",
        limit_minor=0,
        changed_by="alice",
        at=AT,
    )
    path = tmp_path / "costs.csv"
    path.write_text(
        HEADER
        + "ads-1,2026-11-02T08:00:00Z,cost,40.00,USD,exp-1,expenses:ads:google,,Google,,\n"
        + "ads-2,2026-11-02T09:00:00Z,cost,20.00,USD,exp-1,expenses:ads:google,,Google,,\n"
        + "ads-old,2026-10-01T09:00:00Z,cost,1.00,USD,exp-1,expenses:ads:google,,Google,,\n"
        + "sale-1,2026-11-02T09:30:00Z,revenue,15.00,USD,exp-1,,,buyer@example.com,,\n"
    )
    report = import_file(warehouse, path, now=AT)
    assert [(row.origin.rsplit(":", 1)[1], row.status) for row in report.rows] == [
        ("2", "booked"),
        ("3", "quarantined"),
        ("4", "quarantined"),
        ("5", "booked"),
    ]
    refused, old = report.messages("quarantined")
    assert "refused by the budgets: Category budget exceeded: daily USD budget category:ads" in refused
    assert "more than 7 days, 0:00:00 before now" in old and "spend_window.past_days" in old
    assert utilization(warehouse, AT).set_index("scope_key").spent_minor.to_dict() == {"ads": 4_000, "fees": 0}

    # Stripe fees do not count against budgets: a fees budget of 0 refuses nothing Stripe withheld.
    charge = {
        "id": "txn_fee_1",
        "object": "balance_transaction",
        "amount": 2_900,
        "fee": 114,
        "net": 2_786,
        "currency": "usd",
        "created": int(AT.timestamp()),
        "type": "charge",
        "metadata": {},
    }
    assert import_objects(warehouse, [charge], now=AT).booked == 1
    assert utilization(warehouse, AT).set_index("scope_key").spent_minor.to_dict() == {"ads": 4_000, "fees": 0}

    set_budget(
        warehouse,
        scope="category",
        scope_key="ads",
        period="day",
        currency="USD",
        limit_minor=6_000,
        changed_by="alice",
        reason="more room",
        at=AT,
    )
    replayed = replay_imports(warehouse, now=AT)
    assert (replayed.replayed, replayed.still_failing) == (1, 1), replayed.reasons
    assert balance(warehouse, "expenses:ads:google", "USD") == 6_000
    pending = warehouse.query("SELECT origin FROM quarantine.records WHERE replayed_at IS NULL")
    assert pending.origin.tolist() == [f"{path}:4"]
    assert verify(warehouse).ok


def test_a_refused_cost_row_imported_again_is_quarantined_once(warehouse: Warehouse, tmp_path):
    from core.ledger.imports import import_file

    _daily(warehouse, 1_000)
    path = tmp_path / "costs.csv"
    path.write_text(
        HEADER
        + "ads-old,2026-10-01T09:00:00Z,cost,1.00,USD,exp-1,expenses:ads:google,,Google,,\n"
        + "ads-big,2026-11-02T09:00:00Z,cost,20.00,USD,exp-1,expenses:ads:google,,Google,,\n"
    )
    first = import_file(warehouse, path, now=AT)
    assert spend(warehouse, ad_spend("ads:between", 300), clock=CLOCK).ok  # the window's total moves on
    again = import_file(warehouse, path, now=AT + timedelta(minutes=7))  # another clock, same refusals
    assert (first.quarantined, again.quarantined) == (2, 2)
    assert first.messages("quarantined") == again.messages("quarantined")
    assert warehouse.count("quarantine.records") == 2  # the reasons name no clock and no running total
