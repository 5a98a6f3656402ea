import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pandas as pd
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from core.ledger.fx import (
    BUNDLED_DAILY,
    BUNDLED_HISTORY,
    ECB_DAILY_URL,
    FxError,
    RateTable,
    bundled_rates,
    convert,
    days_covered,
    fetch_ecb_daily,
    load_ecb_file,
    load_extra_rates,
    parse_ecb_csv,
    parse_ecb_xml,
)
from core.platform.http import SourceClient

REQUIRED = ["USD", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK"]


def _business_days(start: date, end: date) -> list[date]:
    return [start + timedelta(n) for n in range((end - start).days + 1) if (start + timedelta(n)).weekday() < 5]


def test_bundled_snapshot_covers_every_business_day_for_the_required_currencies():
    rates = bundled_rates()
    wanted = _business_days(date(2026, 10, 1), date(2026, 11, 25))
    for currency in REQUIRED:
        covered = set(days_covered(rates[rates.currency == currency]))
        assert set(wanted) <= covered, currency
    assert "KWD" not in set(rates.currency)  # not an ECB reference currency
    assert "BGN" not in set(rates.currency)  # N/A since Bulgaria joined the euro
    assert (rates.per_eur > 0).all()


def test_csv_in_the_ecb_format_with_trailing_commas_and_na():
    text = "Date,USD,JPY,CYP,\n2026-11-27,1.1289,179.40,N/A,\n2026-11-26,1.1270,179.86,N/A,\n"
    frame = parse_ecb_csv(text)
    assert list(frame.columns) == ["rate_date", "currency", "per_eur", "source"]
    assert len(frame) == 4
    assert frame.loc[(frame.currency == "JPY") & (frame.rate_date == date(2026, 11, 27)), "per_eur"].item() == 179.40


def test_daily_xml_agrees_with_the_history_csv():
    daily = parse_ecb_xml(BUNDLED_DAILY.read_bytes())
    day = daily.rate_date.iloc[0]
    history = bundled_rates()
    same_day = history[history.rate_date == day].set_index("currency")["per_eur"]
    assert daily.set_index("currency")["per_eur"].to_dict() == same_day.to_dict()


def test_malformed_files_are_clear_errors(tmp_path):
    with pytest.raises(FxError, match="line 2 USD: rate 'abc' is not a number"):
        parse_ecb_csv("Date,USD,\n2026-11-27,abc,\n")
    with pytest.raises(FxError, match="first column must be 'Date'"):
        parse_ecb_csv("when,USD\n")
    with pytest.raises(FxError, match="no Cube time"):
        parse_ecb_xml("<a/>")
    with pytest.raises(FxError, match="expected an ECB"):
        load_ecb_file(tmp_path / "rates.json")


def test_the_zip_the_ecb_serves_loads_like_the_csv(tmp_path):
    archive = tmp_path / "eurofxref-hist.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(BUNDLED_HISTORY, "eurofxref-hist.csv")
    assert load_ecb_file(archive).drop(columns="source").equals(bundled_rates().drop(columns="source"))


def _table(**series: dict[date, str]) -> RateTable:
    rows = [(day, currency, float(rate), "test") for currency, values in series.items() for day, rate in values.items()]
    return RateTable.from_frame(pd.DataFrame(rows, columns=["rate_date", "currency", "per_eur", "source"]))


def test_conversion_uses_the_nearest_previous_business_day():
    table = _table(USD={date(2026, 11, 20): "1.1000", date(2026, 11, 23): "1.2000"})
    saturday = date(2026, 11, 21)
    assert table.per_eur("USD", saturday) == (date(2026, 11, 20), Decimal("1.1000"))
    assert table.convert(10_000, "EUR", "USD", saturday) == 11_000
    assert table.convert(10_000, "EUR", "USD", datetime(2026, 11, 23, 23, 0, tzinfo=UTC)) == 12_000


def test_conversion_goes_through_the_euro_with_each_exponent():
    table = _table(USD={date(2026, 11, 20): "1.25"}, JPY={date(2026, 11, 20): "180"})
    assert table.convert(12_500, "USD", "JPY", date(2026, 11, 20)) == 18_000  # 125.00 USD = 100 EUR
    assert table.convert(18_000, "JPY", "USD", date(2026, 11, 20)) == 12_500
    assert table.convert(5, "USD", "USD", date(2026, 11, 20)) == 5


def test_rounding_is_half_even_on_the_target_minor_unit():
    table = _table(USD={date(2026, 11, 20): "1.5"})
    assert table.convert(1, "EUR", "USD", date(2026, 11, 20)) == 2  # 1.5 -> 2
    assert table.convert(5, "EUR", "USD", date(2026, 11, 20)) == 8  # 7.5 -> 8
    table = _table(USD={date(2026, 11, 20): "2.5"})
    assert table.convert(1, "EUR", "USD", date(2026, 11, 20)) == 2  # 2.5 -> 2


def test_missing_unpublished_and_stale_rates_are_errors():
    with pytest.raises(FxError, match="does not publish it"):
        convert(1_000, "KWD", "USD", date(2026, 11, 2))
    with pytest.raises(FxError, match="rates start"):
        convert(1_000, "EUR", "USD", date(2020, 1, 1))
    with pytest.raises(FxError, match="more than 7 days old"):
        convert(1_000, "EUR", "USD", date(2027, 3, 1))


def test_extra_rates_make_an_unpublished_currency_convertible(tmp_path):
    kwd = tmp_path / "cbk-kwd.csv"
    kwd.write_text("Date,KWD,\n2026-11-02,0.35670,\n2026-10-30,0.35610,\n")
    extra = load_extra_rates(kwd)
    assert set(extra["source"]) == {"file:cbk-kwd.csv"} and len(extra) == 2
    table = RateTable.from_frame(pd.concat([bundled_rates(), extra], ignore_index=True))
    # 1.000 KWD (exponent 3) -> EUR at 0.3567 per euro -> USD at the bundled EUR/USD rate of that day.
    usd_per_eur = RateTable.from_frame(bundled_rates()).per_eur("USD", date(2026, 11, 2))[1]
    expected = (Decimal(1) / Decimal("0.35670") * usd_per_eur * 100).quantize(Decimal(1), "ROUND_HALF_EVEN")
    assert table.convert(1_000, "KWD", "USD", date(2026, 11, 2)) == int(expected)


def test_extra_rates_name_a_column_that_is_not_a_currency(tmp_path):
    bad = tmp_path / "rates.csv"
    bad.write_text("Date,KWD,XYZ\n2026-11-02,0.3567,1.5\n")
    with pytest.raises(FxError, match="rates.csv: column 'XYZ'"):
        load_extra_rates(bad)


@given(
    st.integers(min_value=100, max_value=10**12),
    st.sampled_from([*REQUIRED, "EUR"]),
    st.sampled_from([*REQUIRED, "EUR"]),
    st.dates(min_value=date(2026, 10, 1), max_value=date(2026, 11, 25)),
)
def test_round_trip_loses_at_most_the_rounding(amount, source, target, day):
    there = convert(amount, source, target, day)
    back = convert(there, target, source, day)
    # Each leg rounds by at most half a target unit; the way back can amplify the first leg's half
    # unit by the rate ratio between the two minor units.
    table_ratio = Decimal(amount) / Decimal(max(there, 1))
    assert abs(back - amount) <= table_ratio / 2 + 1


@respx.mock
def test_live_loader_reads_the_ecb_daily_xml_over_http():
    route = respx.get(ECB_DAILY_URL).mock(return_value=httpx.Response(200, content=BUNDLED_DAILY.read_bytes()))
    frame = fetch_ecb_daily()
    assert route.called
    assert set(REQUIRED) <= set(frame.currency)
    assert frame.source.iloc[0] == f"ecb:{ECB_DAILY_URL}"


@respx.mock
def test_live_loader_retries_server_errors_and_rejects_garbage():
    respx.get(ECB_DAILY_URL).mock(side_effect=[httpx.Response(503), httpx.Response(200, content=b"<html>maintenance")])
    client = SourceClient("ecb", sleep=lambda _seconds: None)
    with pytest.raises(FxError, match="not XML"):
        fetch_ecb_daily(client)
    client.close()
