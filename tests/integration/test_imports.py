"""Payment imports on both backends: formats, the Stripe mapping, idempotency, quarantine, the API."""

import base64
import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.ledger.balances import balance
from core.ledger.booking import get_transaction
from core.ledger.fraud import FraudRules
from core.ledger.imports import detect_format, import_bytes, import_file, import_objects, import_stripe_api
from core.ledger.imports.detect import iter_json
from core.ledger.imports.stripe import StripeAPIError
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse
from core.simulator.ground_truth import truths
from core.simulator.market import MARKETS, Experiment, SimulatedDay, simulate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
NOW = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
CHARGE = "stripe:txn_3PbQ2nK4rT8aZ0aA0b1c2d3e"
EPOCH = int(datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp())


def bt(
    txn_id: str,
    kind: str,
    amount: int,
    fee: int = 0,
    *,
    currency: str = "usd",
    created: int = EPOCH,
    category: str | None = None,
    metadata: dict | None = None,
    **extra,
) -> dict:
    """A balance transaction in the API's shape."""
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created + 172_800,
        "created": created,
        "currency": currency,
        "description": None,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [
            {
                "amount": fee,
                "application": None,
                "currency": currency,
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ]
        if fee
        else [],
        "net": amount - fee,
        "reporting_category": category or kind,
        "source": None,
        "status": "available",
        "type": kind,
        "metadata": metadata or {},
        **extra,
    }


def postings(warehouse: Warehouse, key: str) -> list[tuple[str, str, int]]:
    tid = warehouse.scalar("SELECT transaction_id FROM ledger.transactions WHERE idempotency_key = %s", [key])
    assert tid, f"{key} is not booked"
    return [(a, c, int(m)) for a, c, m in get_transaction(warehouse, tid)["postings"]]


def quarantined(warehouse: Warehouse) -> dict[str, dict]:
    frame = warehouse.read("quarantine.records", "ORDER BY origin")
    return {row["origin"]: row for row in frame.to_dict("records")}


def run(warehouse: Warehouse, name: str, **kwargs):
    return import_file(warehouse, FIXTURES / name, now=NOW, **kwargs)


# -- formats and the mapping ---------------------------------------------------------------------


def test_stripe_list_books_every_type_to_its_accounts(warehouse: Warehouse):
    report = run(warehouse, "stripe_list.json", run_id="run-1")
    assert (report.format, report.booked, report.duplicates, report.held, report.quarantined) == (
        "stripe_json",
        7,
        0,
        0,
        0,
    )
    # charge 29.00, fee 1.14, US customer (0% tax): net to the Stripe balance, fee to fees, gross to revenue.
    assert postings(warehouse, CHARGE) == [
        ("assets:cash:stripe:usd", "USD", 2_786),
        ("expenses:fees:stripe", "USD", 114),
        ("revenue:experiment:exp-newsletter", "USD", -2_900),
    ]
    # A German customer: the tax hook moves 19/119 of the gross to liabilities:tax:de.
    assert postings(warehouse, "stripe:txn_3PbQ7aK4rT8aZ0aA1f2g3h4i") == [
        ("assets:cash:stripe:usd", "USD", 4_728),
        ("expenses:fees:stripe", "USD", 172),
        ("revenue:experiment:exp-api-credits", "USD", -4_900),
        ("revenue:experiment:exp-api-credits", "USD", 782),
        ("liabilities:tax:de", "USD", -782),
    ]
    assert postings(warehouse, "stripe:txn_3PbR1cK4rT8aZ0aA2j3k4l5m")[-1] == ("revenue:unattributed", "USD", -9_900)
    assert postings(warehouse, "stripe:txn_3PbS4dK4rT8aZ0aA3n4o5p6q") == [
        ("assets:cash:stripe:usd", "USD", -2_900),
        ("revenue:experiment:exp-newsletter", "USD", 2_900),
    ]
    assert postings(warehouse, "stripe:txn_1PbT5eK4rT8aZ0aA4v5w6x7y") == [
        ("assets:cash:stripe:usd", "USD", -200),
        ("expenses:fees:stripe", "USD", 200),
    ]
    assert postings(warehouse, "stripe:txn_1PbU6fK4rT8aZ0aA5z6a7b8c") == [
        ("assets:cash:stripe:usd", "USD", -1_500),
        ("expenses:adjustments:stripe", "USD", 1_500),
    ]
    assert postings(warehouse, "stripe:txn_1PbV7gK4rT8aZ0aA6d7e8f9g") == [
        ("assets:cash:stripe:usd", "USD", -10_000),
        ("assets:cash:bank:usd", "USD", 10_000),
    ]
    # The Stripe balance equals the sum of the nets.
    assert balance(warehouse, "assets:cash:stripe:usd", "USD") == 2_786 + 4_728 + 9_583 - 2_900 - 200 - 1_500 - 10_000
    row = warehouse.read("ledger.transactions", "WHERE idempotency_key = %s", [CHARGE]).iloc[0]
    assert (row["kind"], row["source"], row["experiment_id"], row["external_ref"]) == (
        "revenue",
        "stripe",
        "exp-newsletter",
        "ch_3PbQ2nK4rT8aZ0aA1x2y3z4w",
    )
    assert json.loads(row["metadata"]) == {
        "stripe_type": "charge",
        "customer_id": "cus_R2d2C3po4Bb8",
        "customer_country": "US",
    }
    assert verify(warehouse).ok


@pytest.mark.parametrize(
    "first", ["stripe_list.json", "stripe_balance.jsonl", "stripe_export.csv", "stripe_export_bom.csv"]
)
def test_every_stripe_format_books_the_same_content_so_the_others_are_duplicates(warehouse: Warehouse, first):
    assert run(warehouse, first).booked == 7
    for other in ("stripe_list.json", "stripe_balance.jsonl", "stripe_export.csv", "stripe_export_bom.csv"):
        report = run(warehouse, other)
        assert (report.booked, report.duplicates, report.quarantined) == (0, 7, 0), report.messages()
    assert warehouse.count("ledger.transactions") == 7


def test_format_is_detected_from_content_not_extension(warehouse: Warehouse, tmp_path):
    disguised = tmp_path / "export.csv"
    shutil.copy(FIXTURES / "stripe_list.json", disguised)
    assert detect_format(disguised.read_bytes())[0] == "stripe_json"
    assert detect_format((FIXTURES / "stripe_export.csv").read_bytes())[0] == "stripe_csv"
    assert detect_format((FIXTURES / "stripe_export_bom.csv").read_bytes())[0] == "stripe_csv"
    assert detect_format((FIXTURES / "stripe_balance.jsonl").read_bytes())[0] == "stripe_jsonl"
    assert detect_format((FIXTURES / "generic_events.csv").read_bytes())[0] == "generic_csv"
    lines = (FIXTURES / "stripe_balance.jsonl").read_bytes().split(b"\n")
    assert detect_format(lines[0][:40] + b"\n" + b"\n".join(lines[1:]))[0] == "stripe_jsonl"  # first line cut
    assert (
        detect_format(json.dumps(json.loads((FIXTURES / "stripe_list.json").read_text())).encode()[:300])[0]
        == "stripe_json"
    )  # a one-line list response, cut
    assert import_file(warehouse, disguised, now=NOW).booked == 7


def test_dispute_and_positive_adjustment_mapping(warehouse: Warehouse):
    objects = [
        bt("txn_ch", "charge", 5_000, 175, metadata={"experiment_id": "exp-1"}),
        bt("txn_dp", "adjustment", -5_000, 1_500, category="dispute", metadata={"experiment_id": "exp-1"}),
        bt("txn_adj", "adjustment", 700, category="adjustment"),
        bt("txn_top", "topup", 20_000, currency="eur"),
    ]
    report = import_objects(warehouse, objects, now=NOW)
    assert report.booked == 4
    assert postings(warehouse, "stripe:txn_dp") == [
        ("assets:cash:stripe:usd", "USD", -6_500),
        ("expenses:fees:stripe", "USD", 1_500),
        ("revenue:experiment:exp-1", "USD", 5_000),
    ]
    assert warehouse.scalar("SELECT kind FROM ledger.transactions WHERE idempotency_key = 'stripe:txn_dp'") == "dispute"
    assert postings(warehouse, "stripe:txn_adj") == [
        ("assets:cash:stripe:usd", "USD", 700),
        ("revenue:adjustments:stripe", "USD", -700),
    ]
    assert postings(warehouse, "stripe:txn_top") == [
        ("assets:cash:stripe:eur", "EUR", 20_000),
        ("assets:cash:bank:eur", "EUR", -20_000),
    ]


def test_generic_csv_books_revenue_refunds_and_costs(warehouse: Warehouse):
    report = run(warehouse, "generic_events.csv")
    assert (report.format, report.booked, report.quarantined) == ("generic_csv", 6, 0), report.messages()
    assert postings(warehouse, "csv:gumroad-1001") == [
        ("assets:cash:bank:usd", "USD", 1_500),
        ("revenue:experiment:exp-templates", "USD", -1_500),
    ]
    assert postings(warehouse, "csv:gumroad-1001-refund") == [
        ("assets:cash:bank:usd", "USD", -1_500),
        ("revenue:experiment:exp-templates", "USD", 1_500),
    ]
    assert postings(warehouse, "csv:ads-google-2026-11-02") == [
        ("liabilities:card:amex", "USD", -4_000),
        ("expenses:ads:experiment:exp-templates", "USD", 4_000),
    ]
    assert postings(warehouse, "csv:hosting-2026-11") == [
        ("assets:cash:bank:usd", "USD", -1_200),
        ("expenses:hosting", "USD", 1_200),
    ]
    # JPY has no minor unit: "1500" is 1500 yen; JP tax 10% inclusive is 136 yen.
    assert postings(warehouse, "csv:booth-tokyo-17") == [
        ("assets:cash:bank:jpy", "JPY", 1_500),
        ("revenue:unattributed", "JPY", -1_500),
        ("revenue:unattributed", "JPY", 136),
        ("liabilities:tax:jp", "JPY", -136),
    ]
    row = warehouse.read("ledger.transactions", "WHERE idempotency_key = 'csv:gumroad-1002'").iloc[0]
    assert row["occurred_at"] == datetime(2026, 11, 2, 8, 30, tzinfo=UTC)  # +01:00 read as an offset
    assert row["description"] == "Course seat, cohort 3" and row["source"] == "csv"
    assert json.loads(row["metadata"])["counterparty"] == "kunde@example.de"
    assert run(warehouse, "generic_events.csv").duplicates == 6
    assert verify(warehouse).ok


# -- idempotency and conflicts -------------------------------------------------------------------


def test_reimport_books_nothing_twice_and_quarantines_nothing_twice(warehouse: Warehouse):
    first = run(warehouse, "stripe_export_bad.csv")
    again = run(warehouse, "stripe_export_bad.csv")
    assert (first.booked, first.quarantined) == (2, 7)
    assert (again.booked, again.duplicates, again.quarantined) == (0, 2, 7)
    assert warehouse.count("ledger.transactions") == 2
    assert warehouse.count("quarantine.records") == 7
    assert again.messages("duplicate")[0].endswith(
        "is already booked as transaction "
        + warehouse.scalar(
            "SELECT transaction_id FROM ledger.transactions WHERE occurred_at = %s",
            [datetime(2026, 11, 3, 9, tzinfo=UTC)],
        )
    )


def test_a_changed_amount_for_a_booked_id_is_a_conflict_naming_the_field(warehouse: Warehouse, tmp_path):
    run(warehouse, "stripe_export.csv")
    changed = (
        (FIXTURES / "stripe_export.csv")
        .read_text()
        .replace("29.00,1.14,27.86,usd,2026-11-02 09:15:02", "31.00,1.14,29.86,usd,2026-11-02 09:15:02")
    )
    path = tmp_path / "stripe_export_changed.csv"
    path.write_text(changed, newline="")
    report = import_file(warehouse, path, now=NOW)
    assert (report.booked, report.duplicates, report.quarantined) == (0, 6, 1)
    [message] = report.messages("quarantined")
    assert message.startswith(f"{path}:2: quarantined: conflict: {CHARGE} is booked as transaction ")
    assert "with amount 2900 USD, now 3100 USD (minor units)" in message
    record = quarantined(warehouse)[f"{path}:2"]
    assert record["stage"] == "import" and record["source"] == "stripe"
    assert balance(warehouse, "revenue:experiment:exp-newsletter", "USD") == 0  # charge 29 - refund 29


# -- quarantine ----------------------------------------------------------------------------------


def test_bad_stripe_rows_are_quarantined_with_reason_origin_and_raw_text(warehouse: Warehouse):
    report = run(warehouse, "stripe_export_bad.csv", run_id="run-42")
    assert (report.booked, report.quarantined) == (2, 7)
    name = str(FIXTURES / "stripe_export_bad.csv")
    records = quarantined(warehouse)
    expected = {
        3: "Currency: unknown currency 'XYZ'",
        4: "Amount 'twenty' is not a decimal number",
        5: "id is '': every balance transaction needs its id",
        6: "unbalanced: amount 1000 - fee 59 = 941, but net is 900",
        7: "Created (UTC) 'yesterday at noon' is not a date and time",
        8: "conflict: stripe:txn_3PcA1aK4rT8aZ0aA0a0a0a01 appears twice with different content; "
        f"{name}:2 has amount 2900 USD, now 3100 USD",
        9: "type 'transfer' has no ledger mapping",
    }
    assert sorted(records) == sorted(f"{name}:{line}" for line in expected)
    lines = (FIXTURES / "stripe_export_bad.csv").read_bytes().decode().split("\n")  # CRLF kept
    for line, reason in expected.items():
        record = records[f"{name}:{line}"]
        assert record["reason"].startswith(reason), record["reason"]
        assert (record["stage"], record["source"], record["run_id"]) == ("import", "stripe", "run-42")
        assert record["payload"] == lines[line - 1] + "\n" and record["payload_encoding"] == "utf-8"
    assert balance(warehouse, "revenue:experiment:exp-newsletter", "USD") == -2_900


def test_bad_generic_rows_are_quarantined_and_good_rows_booked(warehouse: Warehouse):
    report = run(warehouse, "generic_events_bad.csv")
    assert (report.booked, report.quarantined) == (2, 10)
    reasons = {row.origin.rsplit(":", 1)[1]: row.message for row in report.rows if row.status == "quarantined"}
    assert reasons["3"].startswith("event_id is ''")
    assert reasons["4"].startswith("amount 'abc' is not a decimal number")
    assert reasons["5"].startswith("currency: unknown currency 'XYZ'")
    assert reasons["6"].startswith("occurred_at '2026-11-04 08:20:00' has no UTC offset")
    assert reasons["7"].startswith("occurred_at '04/11/2026' is not ISO 8601")
    assert reasons["8"] == "kind 'sale' is not one of revenue, refund, cost"
    assert reasons["9"].startswith("amount '-15.00' must be positive")
    assert reasons["10"].startswith("amount '15.005' has more decimals than USD allows (2)")
    assert "csv:gumroad-2001 appears twice with different content" in reasons["11"]
    assert reasons["12"] == "account 'revenue:oops' is a revenue account; here it must be under expenses"
    assert set(warehouse.read("quarantine.records")["source"]) == {"csv"}
    assert balance(warehouse, "revenue:experiment:exp-templates", "USD") == -3_500


def test_generic_header_is_strict(warehouse: Warehouse):
    data = b"event_id,occurred_at,kind,amount,currency,experiment\nx-1,2026-11-02T00:00:00Z,revenue,1.00,USD,e\n"
    report = import_bytes(warehouse, data, name="typo.csv", now=NOW)
    assert (report.booked, report.quarantined) == (0, 1)
    [record] = warehouse.read("quarantine.records").to_dict("records")
    assert record["origin"] == "typo.csv:1" and "unknown columns ['experiment']" in record["reason"]
    assert record["payload"] == data.decode()


def test_truncated_csv_books_complete_rows_and_quarantines_the_tail(warehouse: Warehouse):
    report = run(warehouse, "stripe_export_truncated.csv")
    assert (report.booked, report.quarantined) == (3, 1)
    [message] = report.messages("quarantined")
    assert message.endswith(
        ":5: quarantined: has 10 fields but the header has 18: the row is truncated or has an unquoted comma"
    )
    # Cut inside a quoted field: the unclosed quote swallows the rest of the file, which is one record.
    text = (FIXTURES / "generic_events.csv").read_text()
    cut = text[: text.index("Course seat") + 6]
    report = import_bytes(warehouse, cut.encode(), name="cut.csv", now=NOW)
    assert (report.booked, report.quarantined) == (1, 1)
    record = quarantined(warehouse)["cut.csv:3"]
    assert record["reason"].startswith("broken CSV quoting")
    assert record["payload"] == cut.split("\n")[2]


def test_truncated_json_list_books_the_complete_items(warehouse: Warehouse):
    report = run(warehouse, "stripe_list_truncated.json")
    assert (report.booked, report.quarantined) == (4, 1)
    name = str(FIXTURES / "stripe_list_truncated.json")
    [(origin, record)] = quarantined(warehouse).items()
    assert origin == f"{name}:80"
    assert record["reason"].startswith("incomplete JSON item")
    assert record["payload"].lstrip().startswith('{\n      "id": "txn_3PbR1cK4rT8aZ0aA2j3k4l5m"')
    report = run(warehouse, "stripe_balance_truncated.jsonl")
    assert (report.booked, report.duplicates, report.quarantined) == (3, 0, 1)  # the list held the 4 newest
    assert report.messages("quarantined")[0].endswith(
        ":4: quarantined: not a complete JSON object (Expecting ',' delimiter): the line is truncated or malformed"
    )


def test_every_cut_of_a_json_list_yields_exactly_the_complete_items():
    text = (FIXTURES / "stripe_list.json").read_text()
    ends = [text.index(f'"id": "{obj["id"]}"') for obj in json.loads(text)["data"]]
    for cut in range(0, len(text), 7):
        records = list(iter_json(text[:cut], "f"))
        good = [r.value["id"] for r in records if r.error is None]
        # An item is complete once its closing brace is in; which ids that is follows from the text.
        complete = [
            obj["id"]
            for obj, start in zip(json.loads(text)["data"], ends, strict=False)
            if text.find("\n    }", start) + 6 <= cut
        ]
        assert good == complete, cut
        assert sum(1 for r in records if r.error) <= 1


def test_byte_order_mark_is_dropped(warehouse: Warehouse):
    report = run(warehouse, "stripe_export_bom.csv")
    assert (report.booked, report.quarantined) == (7, 0)


def test_non_utf8_bytes_quarantine_only_their_row_with_the_exact_bytes(warehouse: Warehouse):
    report = run(warehouse, "generic_events_latin1.csv")
    assert (report.booked, report.quarantined) == (1, 1)
    name = str(FIXTURES / "generic_events_latin1.csv")
    record = quarantined(warehouse)[f"{name}:2"]
    assert record["reason"].startswith("not UTF-8: byte 0xE9 at column 65; re-export the file as UTF-8")
    assert record["payload_encoding"] == "base64"
    original = (FIXTURES / "generic_events_latin1.csv").read_bytes().split(b"\n")[1] + b"\n"
    assert base64.b64decode(record["payload"]) == original


def test_unknown_format_is_one_quarantined_record(warehouse: Warehouse):
    report = run(warehouse, "unknown_orders.csv")
    assert (report.format, report.booked, report.quarantined) == ("unknown", 0, 1)
    [record] = warehouse.read("quarantine.records").to_dict("records")
    assert record["source"] == "unknown" and "order_number, placed, total" in record["reason"]
    report = import_bytes(warehouse, "\ufeffx".encode("utf-16"), name="u16.csv", now=NOW)
    assert "UTF-16" in report.rows[0].message
    [empty] = import_bytes(warehouse, b"", name="empty.csv", now=NOW).rows
    assert (empty.status, empty.message) == ("quarantined", "the file is empty")


def test_api_objects_with_wrong_types_are_quarantined(warehouse: Warehouse):
    objects = [
        bt("txn_ok", "charge", 1_000, 59),
        {**bt("txn_float", "charge", 1_000), "amount": 10.0},
        {**bt("txn_fd", "charge", 1_000, 59), "fee_details": [{"amount": 50, "type": "stripe_fee"}]},
        {**bt("txn_obj", "charge", 1_000), "object": "charge"},
        "not an object",
    ]
    report = import_objects(warehouse, objects, origin="page", now=NOW)
    assert (report.booked, report.quarantined) == (1, 4)
    messages = report.messages("quarantined")
    assert messages[0] == (
        "page#1: quarantined: amount is 10.0 (float): the API sends integer minor units (2900 for 29.00 USD)"
    )
    assert messages[1] == "page#2: quarantined: unbalanced: fee_details sum to 50 but fee is 59 (minor units)"
    assert messages[2] == "page#3: quarantined: object is 'charge', expected 'balance_transaction'"
    assert messages[3] == "page#4: quarantined: expected a balance_transaction object, got str"


# -- the API -------------------------------------------------------------------------------------


def _api(pages: dict[str | None, dict], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != "Bearer sk_test_123":
            return httpx.Response(401, json={"error": {"message": "Invalid API Key provided"}})
        return httpx.Response(200, json=pages[request.url.params.get("starting_after")])

    return httpx.MockTransport(handler)


def test_stripe_api_pages_with_starting_after(warehouse: Warehouse, monkeypatch):
    data = json.loads((FIXTURES / "stripe_list.json").read_text())["data"]
    pages = {
        None: {"object": "list", "data": data[:4], "has_more": True, "url": "/v1/balance_transactions"},
        data[3]["id"]: {"object": "list", "data": data[4:], "has_more": False, "url": "/v1/balance_transactions"},
    }
    seen: list[httpx.Request] = []
    monkeypatch.setenv("STRIPE_API_KEY", "sk_from_the_environment")  # never read by core: the caller passes it
    report = import_stripe_api(warehouse, "sk_test_123", transport=_api(pages, seen), limit=4, now=NOW)
    assert (report.format, report.booked, report.quarantined) == ("stripe_api", 7, 0)
    assert [dict(r.url.params) for r in seen] == [{"limit": "4"}, {"limit": "4", "starting_after": data[3]["id"]}]
    assert all(r.url.path == "/v1/balance_transactions" and r.url.host == "api.stripe.com" for r in seen)
    assert report.rows[0].origin == "https://api.stripe.com/v1/balance_transactions?limit=4#data[0]"
    assert run(warehouse, "stripe_export.csv").duplicates == 7


def test_stripe_api_failure_keeps_what_was_read_and_says_so(warehouse: Warehouse):
    data = json.loads((FIXTURES / "stripe_list.json").read_text())["data"]
    pages = {None: {"object": "list", "data": data[:2], "has_more": True}}
    seen: list[httpx.Request] = []
    transport = _api(pages, seen)

    def failing(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("starting_after"):
            return httpx.Response(400, json={"error": {"message": "No such balance transaction"}})
        return transport.handle_request(request)

    with pytest.raises(StripeAPIError, match="the Stripe API failed after 2 records") as caught:
        import_stripe_api(warehouse, "sk_test_123", httpx.MockTransport(failing), now=NOW)
    assert caught.value.report.booked == 2 and "HTTP 400" in caught.value.report.error
    with pytest.raises(StripeAPIError, match="HTTP 401"):
        import_stripe_api(warehouse, "sk_wrong", transport, now=NOW)
    with pytest.raises(StripeAPIError, match="set STRIPE_API_KEY"):
        import_stripe_api(warehouse, "", transport, now=NOW)


def test_stripe_api_page_that_is_not_a_list_is_quarantined(warehouse: Warehouse):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>maintenance</html>"))
    report = import_stripe_api(warehouse, "sk_test_123", transport, now=NOW)
    assert (report.booked, report.quarantined) == (0, 1)
    assert "not a Stripe list object" in report.error
    [record] = warehouse.read("quarantine.records").to_dict("records")
    assert record["payload"] == "<html>maintenance</html>" and record["origin"].startswith("https://api.stripe.com")


# -- the simulator ---------------------------------------------------------------------------------


def market_days(seed: int, first: date, days: int) -> list[SimulatedDay]:
    """The market simulator's days of four running experiments, one per market (currency)."""
    features = pd.DataFrame(
        [
            {
                "opportunity_id": f"opp-{market}",
                "source": "hackernews",
                "opportunity_type": "saas",
                "est_monthly_revenue_cents": 2_000_000,
                "confidence": 0.9,
                "capability_match": 0.9,
                "age_days": 1.0,
            }
            for market in MARKETS
        ]
    )
    experiments = [Experiment(f"exp-{market}", f"opp-{market}", date(2026, 10, 1), market) for market in MARKETS]
    return list(simulate(seed, experiments, truths(seed, features), first, days))


def test_simulated_payments_are_deterministic_and_book_cleanly(warehouse: Warehouse):
    day = date(2026, 11, 2)
    [simulated] = market_days(7, day, 1)
    objects = simulated.objects
    assert objects == market_days(7, day, 1)[0].objects
    assert objects != market_days(8, day, 1)[0].objects
    assert objects != market_days(7, date(2026, 11, 3), 1)[0].objects
    kinds = {obj["type"] for obj in objects}
    assert {"charge", "payout"} <= kinds
    # An experiment that failed sells little: not every market sells every day.
    assert len({obj["currency"] for obj in objects}) >= 3
    assert len({obj["metadata"].get("experiment_id") for obj in objects if obj["type"] == "charge"}) >= 3
    assert all(obj["net"] == obj["amount"] - obj["fee"] for obj in objects)
    report = import_objects(warehouse, objects, origin="simulated", now=NOW)
    held = {row.key for row in report.rows if row.status == "held"}
    assert held <= {f"stripe:{txn}" for txn in simulated.fraud_ids}  # only card-testing bursts wait for review
    assert (report.booked + report.held, report.quarantined) == (len(objects), 0), report.messages()
    later = import_objects(warehouse, market_days(7, date(2026, 11, 3), 1)[0].objects, now=NOW)
    assert later.quarantined == 0
    assert verify(warehouse).ok


def test_simulated_days_with_refunds_stay_balanced(warehouse: Warehouse):
    objects = [obj for day in market_days(3, date(2026, 10, 1), 7) for obj in day.objects]
    assert any(obj["type"] == "refund" for obj in objects)
    report = import_objects(warehouse, objects, rules=FraudRules.disabled(), now=NOW)
    assert report.booked == len(objects)
    sums = warehouse.query("SELECT currency, sum(amount_minor) AS total FROM ledger.postings GROUP BY currency")
    assert set(sums["total"]) == {0}
