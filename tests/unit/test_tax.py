from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ledger.tax import TaxError, TaxRates, default_tax, inclusive_tax, load_tax_rates, tax_account, tax_postings
from core.ledger.validation import LedgerError, Posting, TransactionRequest, prepare

AT = datetime(2026, 11, 2, 12, tzinfo=UTC)


def _sale(amount: int, country: str | None, currency: str = "EUR") -> TransactionRequest:
    return TransactionRequest(
        idempotency_key=f"stripe:ch_{amount}",
        kind="revenue",
        description="sale",
        occurred_at=AT,
        postings=[
            Posting(f"assets:cash:stripe:{currency.lower()}", currency, amount),
            Posting("revenue:experiment:exp-1", currency, -amount),
        ],
        experiment_id="exp-1",
        customer_country=country,
    )


def test_default_table_reads_exact_decimal_rates():
    rates = default_tax()
    assert rates.rate("DE") == Decimal("0.19")
    assert rates.rate("FI") == Decimal("0.255")
    assert rates.rate("US") == Decimal("0")


def test_inclusive_tax_rounds_half_even_on_minor_units():
    assert inclusive_tax(11_900, Decimal("0.19")) == 1_900
    assert inclusive_tax(1_000, Decimal("0.19")) == 160  # 159.66 -> 160
    assert inclusive_tax(252, Decimal("0.25")) == 50  # 50.4 -> 50
    # At 20% the tax is gross / 6, so 3, 9 and 15 give exact ties: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
    assert [inclusive_tax(g, Decimal("0.2")) for g in (3, 9, 15)] == [0, 2, 2]


def test_revenue_with_a_country_moves_the_tax_share_to_the_tax_liability():
    prepared = prepare(_sale(1_000, "DE"))
    postings = prepared.request.postings
    assert postings[2:] == (Posting("revenue:experiment:exp-1", "EUR", 160), Posting("liabilities:tax:de", "EUR", -160))
    assert sum(p.amount_minor for p in postings) == 0
    revenue = sum(p.amount_minor for p in postings if p.account.startswith("revenue:"))
    assert revenue == -840  # the remainder stays in revenue
    assert prepared.request.metadata["customer_country"] == "DE"


def test_no_country_or_a_zero_rate_adds_nothing():
    assert len(prepare(_sale(1_000, None)).request.postings) == 2
    assert len(prepare(_sale(1_000, "US", "USD")).request.postings) == 2


def test_jpy_and_kwd_round_on_their_own_minor_units():
    jpy = prepare(_sale(1_100, "JP", "JPY")).request.postings
    assert jpy[-1] == Posting("liabilities:tax:jp", "JPY", -100)
    assert inclusive_tax(1_234, Decimal("0.10")) == 112  # 112.18 minor units of whatever currency


def test_unknown_country_and_bad_codes_are_clear_errors():
    with pytest.raises(LedgerError, match="no tax rate for customer country ZZ"):
        prepare(_sale(1_000, "ZZ"))
    with pytest.raises(TaxError, match="alpha-2"):
        tax_account("Germany")


def test_a_custom_calculator_plugs_in():
    def flat_ten_percent_of_gross(country: str, currency: str, gross_minor: int) -> int:
        return gross_minor // 10

    prepared = prepare(_sale(1_000, "DE"), tax=flat_ten_percent_of_gross)
    assert prepared.request.postings[-1].amount_minor == -100
    with pytest.raises(LedgerError, match="must be an int between 0 and the gross"):
        prepare(_sale(1_000, "DE"), tax=lambda country, currency, gross: gross + 1)


def test_rate_file_rejects_floats_and_bad_rates(tmp_path):
    path = tmp_path / "rates.yaml"
    path.write_text("rates:\n  DE: 0.19\n")
    with pytest.raises(TaxError, match="quote it"):
        load_tax_rates(path)
    path.write_text('rates:\n  DE: "19"\n')
    with pytest.raises(TaxError, match=r"fractions in \[0, 1\)"):
        load_tax_rates(path)
    path.write_text('rates:\n  DE: "0.19"\n')
    assert load_tax_rates(path).rate("DE") == Decimal("0.19")


@given(st.integers(min_value=1, max_value=10**13), st.sampled_from(sorted(default_tax().rates)), st.booleans())
def test_tax_postings_always_balance_and_never_exceed_the_gross(gross, country, refund):
    amount = gross if refund else -gross  # revenue credit, or a refund debited to revenue
    lines = tax_postings("revenue:x", "EUR", amount, country)
    assert sum(line[2] for line in lines) == 0
    tax = abs(lines[0][2]) if lines else 0
    rate = TaxRates(default_tax().rates).rate(country)
    exact = Decimal(gross) * rate / (1 + rate)
    assert 0 <= tax <= gross and abs(Decimal(tax) - exact) <= Decimal("0.5")
    if lines:
        assert lines[0][2] * amount < 0  # tax always moves against the revenue posting
