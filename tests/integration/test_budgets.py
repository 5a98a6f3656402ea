import threading
from datetime import UTC, datetime, timedelta

import pytest

from core.ledger.audit import fixed_clock
from core.ledger.balances import balance
from core.ledger.booking import reverse
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
    assert spend(warehouse, ad_spend("ads:1", 1_000, at=datetime(2026, 11, 2, 10, 59, 59, tzinfo=UTC)), clock=CLOCK).ok
    assert not spend(warehouse, ad_spend("ads:2", 1, at=datetime(2026, 11, 2, 10, 0, tzinfo=UTC)), clock=CLOCK).ok
    assert spend(warehouse, ad_spend("ads:3", 1_000, at=datetime(2026, 11, 2, 11, 0, tzinfo=UTC)), clock=CLOCK).ok
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
    assert spend(warehouse, ad_spend("jp:1", 1_000, at=AT, currency="JPY"), clock=CLOCK).ok
    assert not spend(warehouse, ad_spend("jp:2", 1, at=tokyo_morning, currency="JPY"), clock=CLOCK).ok
    assert timedelta(0) == window("day", tokyo_morning)[0] - datetime(2026, 11, 2, tzinfo=UTC)
