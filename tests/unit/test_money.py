import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ledger.money import (
    CURRENCY_EXPONENTS,
    MAX_ABS_MINOR,
    MoneyError,
    check_minor,
    exponent,
    format_minor,
    to_minor,
)


def test_exponents_follow_iso_4217():
    assert (exponent("JPY"), exponent("USD"), exponent("EUR"), exponent("KWD"), exponent("CLF")) == (0, 2, 2, 3, 4)
    assert len(CURRENCY_EXPONENTS) > 150


def test_unknown_currency_is_a_clear_error():
    with pytest.raises(MoneyError, match="unknown currency 'XYZ'.*ISO 4217"):
        exponent("XYZ")
    with pytest.raises(MoneyError, match="codes are upper case"):
        exponent("usd")


def test_decimal_strings_parse_exactly():
    assert to_minor("12.34", "USD") == 1234
    assert to_minor("0.1", "USD") == 10
    assert to_minor("1500", "JPY") == 1500
    assert to_minor("1.005", "KWD") == 1005
    assert to_minor(Decimal("-3.50"), "EUR") == -350
    assert to_minor(7, "USD") == 700


@pytest.mark.parametrize("amount, currency", [("12.345", "USD"), ("1.5", "JPY"), ("0.0001", "KWD")])
def test_more_decimals_than_the_currency_allows_is_an_error(amount, currency):
    with pytest.raises(MoneyError, match=f"more decimals than {currency} allows"):
        to_minor(amount, currency)


def test_floats_are_refused_everywhere():
    with pytest.raises(MoneyError, match="is a float: pass a decimal string"):
        to_minor(0.1, "USD")
    with pytest.raises(MoneyError, match="integer minor units"):
        check_minor(10.0, "USD")
    with pytest.raises(MoneyError, match="integer minor units"):
        check_minor(True, "USD")


def test_zero_garbage_and_huge_amounts_are_refused():
    with pytest.raises(MoneyError, match="zero"):
        check_minor(0, "USD")
    assert check_minor(0, "USD", allow_zero=True) == 0
    with pytest.raises(MoneyError, match="not a decimal number"):
        to_minor("12,50", "EUR")
    with pytest.raises(MoneyError, match="not a finite"):
        to_minor("NaN", "EUR")
    with pytest.raises(MoneyError, match="beyond"):
        check_minor(MAX_ABS_MINOR + 1, "USD")


def test_format_uses_the_currency_exponent():
    assert format_minor(1234, "USD") == "12.34 USD"
    assert format_minor(-5, "KWD") == "-0.005 KWD"
    assert format_minor(1500, "JPY") == "1500 JPY"


@given(st.integers(min_value=-MAX_ABS_MINOR, max_value=MAX_ABS_MINOR), st.sampled_from(sorted(CURRENCY_EXPONENTS)))
def test_format_then_parse_round_trips_exactly(amount, currency):
    assert to_minor(format_minor(amount, currency).split()[0], currency) == amount


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**9), max_value=10**9))
def test_two_place_decimals_are_exact_cents(value):
    assert to_minor(str(value), "USD") == int(value * 100)


@pytest.mark.parametrize(
    ("amount", "named"),
    [
        ("\u0661\u0662.\u0663\u0664", "U+0661 ARABIC-INDIC DIGIT ONE"),
        ("\u06f5", "U+06F5 EXTENDED ARABIC-INDIC DIGIT FIVE"),
        ("1\uff10", "U+FF10 FULLWIDTH DIGIT ZERO"),
        ("\u0967\u0966", "U+0967 DEVANAGARI DIGIT ONE"),
    ],
)
def test_non_ascii_digits_are_refused_not_read_as_numbers(amount, named):
    # Decimal itself reads "١٢.٣٤" as 12.34: to_minor must not.
    with pytest.raises(MoneyError, match=re.escape(named)) as refused:
        to_minor(amount, "USD")
    assert "ASCII digits 0-9" in str(refused.value)
