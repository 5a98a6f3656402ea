"""FX: ECB euro reference rates, loaded from the ECB's own file formats, and exact conversion.

The ECB publishes, for each TARGET business day, how many units of ~30 currencies one euro buys
(eurofxref-hist.csv / .zip for history, eurofxref-daily.xml for today). Those are the only rates
here: a currency the ECB does not publish (KWD, for one) has no rate until one is loaded from
another source (`load_extra_rates`: FX_EXTRA_RATES_FILE, `ventureloop ledger fx-load`) into
ledger.fx_rates (its `source` column says where each rate came from).

Conversion goes through the euro on the nearest previous business day that has a rate, in exact
Decimal arithmetic, rounded half-even to the target currency's minor unit. The dbt models do the
same conversion in SQL; this one serves Python-side checks.
"""

import bisect
import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pandas as pd

from core.ledger.audit import append_events, canonical_json, write_transaction
from core.ledger.money import MoneyError, check_minor, exponent
from core.ledger.validation import LedgerError
from core.platform.warehouse import Warehouse, append_frame, run_sql

ECB_DAILY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
ECB_NAMESPACE = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
DATA = Path(__file__).parent / "data"
BUNDLED_HISTORY = DATA / "eurofxref-hist.csv"
BUNDLED_DAILY = DATA / "eurofxref-daily.xml"
COLUMNS = ["rate_date", "currency", "per_eur", "source"]
# The ECB skips weekends and TARGET holidays (at most four days in a row, at Easter); a longer gap
# means rates were not loaded, and converting with a stale rate would be silently wrong.
MAX_RATE_AGE_DAYS = 7
FX_RATES_LOADED = "fx.rates_loaded"


class FxError(ValueError):
    pass


def _rate(text: str, where: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise FxError(f"{where}: rate {text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise FxError(f"{where}: rate {text!r} must be a positive number")
    return value


def _date(text: str, where: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise FxError(f"{where}: {text!r} is not a date (YYYY-MM-DD)") from None


def _frame(rows: list[tuple[date, str, Decimal]], source: str) -> pd.DataFrame:
    # per_eur is DOUBLE PRECISION in the warehouse; the ECB's 5 significant digits survive the float
    # exactly when read back with repr() (RateTable does), so nothing is lost.
    frame = pd.DataFrame([(d, c, float(r), source) for d, c, r in rows], columns=COLUMNS)
    return frame.sort_values(["rate_date", "currency"], ignore_index=True)


def parse_ecb_csv(text: str, source: str = "ecb") -> pd.DataFrame:
    """The eurofxref-hist.csv format: `Date,USD,JPY,...,` then one row per day, `N/A` where the
    ECB has no rate (discontinued currencies), and a trailing comma on every line."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[0].strip() != "Date":
        raise FxError(f"{source}: not an ECB rates CSV (the first column must be 'Date', got {header!r})")
    currencies = [c.strip() for c in header[1:]]
    rows = []
    for number, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        where = f"{source} line {number}"
        day = _date(record[0], where)
        for currency, cell in zip(currencies, record[1:], strict=False):
            if currency and cell.strip() not in ("", "N/A"):
                rows.append((day, currency, _rate(cell, f"{where} {currency}")))
    return _frame(rows, source)


def parse_ecb_xml(text: str | bytes, source: str = "ecb") -> pd.DataFrame:
    """The eurofxref-daily.xml (and -hist.xml) format: Cube[time] > Cube[currency, rate]."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise FxError(f"{source}: not XML ({error})") from None
    rows = []
    for day_cube in root.iter(f"{{{ECB_NAMESPACE}}}Cube"):
        if "time" not in day_cube.attrib:
            continue
        day = _date(day_cube.attrib["time"], source)
        for cube in day_cube:
            currency, rate = cube.attrib.get("currency"), cube.attrib.get("rate")
            if not currency or rate is None:
                raise FxError(f"{source} {day}: a Cube lacks currency or rate ({cube.attrib})")
            rows.append((day, currency, _rate(rate, f"{source} {day} {currency}")))
    if not rows:
        raise FxError(f"{source}: no Cube time=... elements in the ECB namespace; is this an ECB rates file?")
    return _frame(rows, source)


def load_ecb_file(path: Path | str) -> pd.DataFrame:
    """A file as downloaded from the ECB: .csv, .xml, or the .zip that wraps the history CSV."""
    path = Path(path)
    source = f"ecb:{path.name}"
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(".csv")), None)
            if name is None:
                raise FxError(f"{path}: the archive holds no .csv file")
            return parse_ecb_csv(archive.read(name).decode("utf-8"), source)
    if path.suffix == ".csv":
        return parse_ecb_csv(path.read_text(encoding="utf-8"), source)
    if path.suffix == ".xml":
        return parse_ecb_xml(path.read_bytes(), source)
    raise FxError(f"{path}: expected an ECB .csv, .xml or .zip file")


def load_extra_rates(path: Path | str) -> pd.DataFrame:
    """Rates from another source for currencies the ECB does not publish (KWD from the Central Bank
    of Kuwait, say), in the ECB's own file formats and units: how many units one euro buys."""
    frame = load_ecb_file(path)
    for currency in sorted(set(frame["currency"])):
        try:
            exponent(currency)
        except MoneyError as error:
            raise FxError(f"{path}: column {currency!r}: {error}") from None
    return frame.assign(source=f"file:{Path(path).name}")


def bundled_rates() -> pd.DataFrame:
    return load_ecb_file(BUNDLED_HISTORY)


def fetch_ecb_daily(client: object | None = None, url: str = ECB_DAILY_URL) -> pd.DataFrame:
    """Today's rates from the ECB over HTTP (the shared SourceClient: timeouts, retries, breaker)."""
    from core.platform.http import SourceClient

    owned = client is None
    http = SourceClient("ecb", timeout=15.0) if owned else client
    try:
        fetched = http.get(url)  # type: ignore[attr-defined]
    finally:
        if owned:
            http.close()  # type: ignore[union-attr]
    return parse_ecb_xml(fetched.body, f"ecb:{url}")


def store_rates(warehouse: Warehouse, frame: pd.DataFrame) -> int:
    """Insert the rates not stored yet (a (date, currency) is never overwritten); audited."""
    if frame.empty:
        return 0
    frame = frame[COLUMNS].drop_duplicates(["rate_date", "currency"])
    with write_transaction(warehouse) as conn:
        # Writers hold the chain lock, so reading the stored keys then appending the rest is atomic;
        # the (rate_date, currency) primary key is the final guard.
        stored = {
            (pd.Timestamp(d).date(), c)
            for d, c in run_sql(
                conn,
                "SELECT rate_date, currency FROM ledger.fx_rates WHERE rate_date BETWEEN %s AND %s",
                [min(frame["rate_date"]), max(frame["rate_date"])],
            ).fetchall()
        }
        fresh = [
            (pd.Timestamp(d).date(), c) not in stored
            for d, c in zip(frame["rate_date"], frame["currency"], strict=False)
        ]
        inserted = frame[fresh]
        if len(inserted):
            _check_table_unchanged(conn)
            append_frame(conn, warehouse.backend, "ledger.fx_rates", inserted)
            table_rows = int(run_sql(conn, "SELECT count(*) FROM ledger.fx_rates", None).fetchone()[0])
            append_events(
                conn,
                warehouse.backend,
                [
                    (
                        FX_RATES_LOADED,
                        {
                            "rows": len(inserted),
                            "sources": sorted(set(inserted["source"])),
                            "first_date": str(min(inserted["rate_date"])),
                            "last_date": str(max(inserted["rate_date"])),
                            "digest": _digest(inserted),
                            # The whole table after this load: rates are never updated or deleted,
                            # so verify can compare the table now with the newest load's digest.
                            "table_rows": table_rows,
                            "table_digest": rates_digest(stored_rows(conn)),
                        },
                    )
                ],
            )
    return len(inserted)


def _check_table_unchanged(conn: Any) -> None:
    """Refuse to load onto a table that no longer is what the last load recorded: the new load's
    table_digest would cover the edit, and verify (which compares the newest) would no longer see it."""
    last = run_sql(
        conn,
        "SELECT seq, payload FROM audit.events WHERE event_type = %s ORDER BY seq DESC LIMIT 1",
        [FX_RATES_LOADED],
    ).fetchone()
    if last is None:
        return
    try:
        recorded = json.loads(last[1])
    except (TypeError, ValueError):
        recorded = None
    if not isinstance(recorded, dict) or "table_digest" not in recorded:
        return  # recorded before loads carried the table's digest: verify checks the count
    rows = stored_rows(conn)
    if len(rows) != int(recorded.get("table_rows", len(rows))) or rates_digest(rows) != recorded["table_digest"]:
        raise LedgerError(
            f"ledger.fx_rates no longer matches the table recorded by the last FX load (audit seq {last[0]}: "
            f"{recorded.get('table_rows')} rows, now {len(rows)}): a rate was edited, inserted or deleted outside "
            f"the ledger. Nothing was loaded; run `ventureloop ledger verify` and restore the table first"
        )


def _digest(frame: pd.DataFrame) -> str:
    rows = sorted(
        (str(d), c, repr(float(r)))
        for d, c, r in zip(frame["rate_date"], frame["currency"], frame["per_eur"], strict=False)
    )
    return hashlib.sha256(canonical_json(rows).encode("utf-8")).hexdigest()


def stored_rows(conn: Any) -> list[tuple[Any, ...]]:
    """Every stored rate as (rate_date, currency, per_eur, source), the rows rates_digest covers."""
    return run_sql(conn, "SELECT rate_date, currency, per_eur, source FROM ledger.fx_rates", None).fetchall()


def rates_digest(rows: Iterable[Sequence[Any]]) -> str:
    """sha256 over (date, currency, rate, source) of every row, sorted: one text form whichever
    driver returned them, so the digest a load records is the one verify recomputes."""
    canonical = sorted((pd.Timestamp(d).date().isoformat(), str(c), repr(float(r)), str(s)) for d, c, r, s in rows)
    return hashlib.sha256(canonical_json(canonical).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RateTable:
    """Rates by currency, each a date-sorted series; EUR is always 1."""

    series: Mapping[str, tuple[tuple[date, ...], tuple[Decimal, ...]]]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "RateTable":
        series = {}
        for currency, group in frame.sort_values("rate_date").groupby("currency"):
            days = tuple(pd.Timestamp(d).date() for d in group["rate_date"])
            series[str(currency)] = (days, tuple(Decimal(repr(float(r))) for r in group["per_eur"]))
        return cls(series)

    @classmethod
    def from_warehouse(cls, warehouse: Warehouse) -> "RateTable":
        return cls.from_frame(warehouse.read("ledger.fx_rates"))

    def per_eur(self, currency: str, on: date) -> tuple[date, Decimal]:
        """Units of `currency` per euro on the nearest business day at or before `on`."""
        exponent(currency)
        if currency == "EUR":
            return on, Decimal(1)
        if currency not in self.series:
            raise FxError(
                f"no FX rate for {currency}: the ECB does not publish it (e.g. KWD); load a rate "
                f"for it from another source into ledger.fx_rates"
            )
        days, rates = self.series[currency]
        position = bisect.bisect_right(days, on) - 1
        if position < 0:
            raise FxError(f"no {currency} rate on or before {on} (rates start {days[0]}): load older rates")
        if (on - days[position]).days > MAX_RATE_AGE_DAYS:
            raise FxError(
                f"the newest {currency} rate on or before {on} is from {days[position]}, more than "
                f"{MAX_RATE_AGE_DAYS} days old: load newer rates (fetch_ecb_daily)"
            )
        return days[position], rates[position]

    def convert(self, amount_minor: int, from_currency: str, to_currency: str, on: date | datetime) -> int:
        """Minor units of one currency into another via EUR on `on` (a datetime counts by its UTC
        date), rounded half-even to the target's minor unit."""
        check_minor(amount_minor, from_currency, allow_zero=True)
        day = on.astimezone(UTC).date() if isinstance(on, datetime) else on
        if from_currency == to_currency:
            return amount_minor
        _, source_rate = self.per_eur(from_currency, day)
        _, target_rate = self.per_eur(to_currency, day)
        with localcontext() as context:
            context.prec = 50
            major = Decimal(amount_minor).scaleb(-exponent(from_currency))
            target = (major / source_rate * target_rate).scaleb(exponent(to_currency))
            return int(target.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


_BUNDLED: RateTable | None = None


def bundled_table() -> RateTable:
    global _BUNDLED
    if _BUNDLED is None:
        _BUNDLED = RateTable.from_frame(bundled_rates())
    return _BUNDLED


def convert(
    amount_minor: int, from_currency: str, to_currency: str, on: date | datetime, rates: RateTable | None = None
) -> int:
    """Convert with `rates` (default: the bundled ECB snapshot; use RateTable.from_warehouse in production)."""
    return (rates or bundled_table()).convert(amount_minor, from_currency, to_currency, on)


def ledger_or_bundled(warehouse: Warehouse) -> RateTable:
    """The ledger's own rates (ledger.fx_rates) once it has any, else the bundled ECB snapshot."""
    if warehouse.table_exists("ledger.fx_rates") and warehouse.count("ledger.fx_rates"):
        return RateTable.from_warehouse(warehouse)
    return bundled_table()


def daily_totals(
    rows: Iterable[tuple[date, str, int]], currency: str, rates: RateTable
) -> tuple[dict[date, int], list[tuple[date, str, int, str]]]:
    """(day, currency, amount_minor) rows as one total per day in `currency`, each row converted at
    its day's rate (exact, half-even, as the dbt marts convert). A row no rate covers is returned
    with the reason, never guessed: (totals by day, [(day, currency, amount_minor, reason)])."""
    totals: dict[date, int] = {}
    left_out: list[tuple[date, str, int, str]] = []
    for day, row_currency, amount in rows:
        try:
            converted = rates.convert(int(amount), str(row_currency), currency, day)
        except (FxError, ValueError) as error:
            left_out.append((day, str(row_currency), int(amount), str(error)))
            continue
        totals[day] = totals.get(day, 0) + converted
    return totals, left_out


def days_covered(frame: pd.DataFrame) -> list[date]:
    return sorted({pd.Timestamp(d).date() for d in frame["rate_date"]})
