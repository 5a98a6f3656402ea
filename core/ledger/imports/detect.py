"""Reading import files: decoding, format detection from the content, and record iteration that
survives bad bytes, truncation and broken rows.

Decoding uses UTF-8 with surrogateescape: a byte that is not UTF-8 becomes a lone surrogate, so the
rest of the file still parses, the record that holds it is quarantined, and `RawRecord.payload`
gives back the exact original bytes. A UTF-8 byte-order mark is dropped.

Every record carries its origin "<name>:<line>" (1-based line where the record starts) and its raw
text, so a quarantined record says where it was and what it was.
"""

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.ledger.money import MoneyError, check_currency, to_minor
from core.platform.quarantine import TOO_DEEP

Format = Literal["stripe_csv", "generic_csv", "stripe_json", "stripe_jsonl", "unknown"]

BOM = "\ufeff"
_SURROGATE = re.compile("[\udc80-\udcff]")
_LIST_PREFIX = re.compile(r'"object"\s*:\s*"list"')
_DECODER = json.JSONDecoder()

# A payment time before the Unix epoch is not one (Stripe's own times are Unix timestamps), and it
# keeps every window the fraud rules subtract from a time far from datetime.min.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)

STRIPE_CSV_COLUMNS = ("id", "type", "amount", "fee", "net", "currency")
GENERIC_CSV_MARKER = "event_id"


class BadRow(ValueError):
    """A record that cannot be booked; the message says which field is wrong and how."""


@dataclass(frozen=True)
class RawRecord:
    origin: str
    line: int
    raw: str  # may hold surrogate escapes for bytes that are not UTF-8
    value: Any = None  # dict of header -> cell for CSV, the parsed object for JSON
    error: str | None = None

    @property
    def payload(self) -> bytes | str:
        """The record exactly as it was in the file (bytes when it is not valid UTF-8)."""
        if _SURROGATE.search(self.raw):
            return self.raw.encode("utf-8", "surrogateescape")
        return self.raw


def decode(data: bytes) -> str:
    text = data.decode("utf-8", "surrogateescape")
    return text[1:] if text.startswith(BOM) else text


def not_utf8(raw: str) -> str | None:
    """Why `raw` is not UTF-8 (the first bad byte and its column), or None if it is."""
    found = _SURROGATE.search(raw)
    if not found:
        return None
    byte = ord(found.group()) - 0xDC00
    return (
        f"not UTF-8: byte 0x{byte:02X} at column {found.start() + 1}; re-export the file as UTF-8 "
        f"(it looks like Latin-1 or Windows-1252)"
    )


def _json_error(error: Exception) -> str:
    return TOO_DEEP if isinstance(error, RecursionError) else error.args[0].split(":")[0]


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def csv_header(text: str) -> list[str]:
    for row in csv.reader(io.StringIO(text, newline="")):
        if any(cell.strip() for cell in row):
            return [cell.strip() for cell in row]
    return []


def detect_format(data: bytes | str) -> tuple[Format, str]:
    """The format of an import file from its content (never its name), and why."""
    if isinstance(data, bytes):
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "unknown", "the file is UTF-16 (it starts with a UTF-16 byte-order mark): re-export it as UTF-8"
        text = decode(data)
    else:
        text = data[1:] if data.startswith(BOM) else data
    stripped = text.lstrip()
    if not stripped:
        return "unknown", "the file is empty"
    if stripped[0] == "[":
        return "stripe_json", "a JSON array of balance transactions"
    if stripped[0] == "{":
        # JSON lines if one of the first two lines is a whole object (the first may be the broken
        # one); a pretty-printed list object has no line that parses on its own.
        lines = [line.strip() for line in stripped.split("\n", 2)[:2] if line.strip()]
        for line in lines:
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict) and value.get("object") != "list":
                return "stripe_jsonl", "JSON lines (one object per line)"
            break
        if _LIST_PREFIX.search(stripped[:2000]):
            return "stripe_json", "a Stripe list object"
        return "stripe_json", "JSON (an object spanning several lines)"
    header = {cell.lower() for cell in csv_header(text)}
    if GENERIC_CSV_MARKER in header:
        return "generic_csv", "a CSV with an event_id column (the generic format)"
    if all(column in header for column in STRIPE_CSV_COLUMNS) and any(c.startswith("created") for c in header):
        return "stripe_csv", "a CSV with Stripe's balance transaction export columns"
    bad_bytes = not_utf8(text.split("\n", 1)[0])
    if bad_bytes:
        return "unknown", f"not a known import format, and its first line is {bad_bytes}"
    shown = ", ".join(sorted(header))[:300]
    return "unknown", (
        f"not a known import format: a CSV needs Stripe's export columns (id, Type, Amount, Fee, "
        f"Net, Currency, Created (UTC), ...) or the generic columns (event_id, occurred_at, kind, "
        f"amount, currency, ...), JSON needs balance transaction objects; the first line has "
        f"[{shown}]"
    )


# -- CSV -------------------------------------------------------------------------------------------


class _Lines:
    """Feeds csv.reader line by line and keeps the lines of the current record (its raw text)."""

    def __init__(self, text: str):
        self._lines = io.StringIO(text, newline="")
        self.taken: list[str] = []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self._lines.readline()
        if not line:
            raise StopIteration
        self.taken.append(line)
        return line


def iter_csv(text: str, name: str) -> tuple[list[str], Iterator[RawRecord]]:
    """The header (cells stripped) and an iterator of records; a record with the wrong number of
    fields or broken quoting carries an error instead of a value. Blank lines are skipped."""
    lines = _Lines(text)
    reader = csv.reader(lines, strict=True)
    header: list[str] = []
    header_line = 0
    for row in reader:
        lines.taken.clear()
        if any(cell.strip() for cell in row):
            header, header_line = [cell.strip() for cell in row], reader.line_num
            break

    def records() -> Iterator[RawRecord]:
        start = header_line + 1
        while True:
            lines.taken.clear()
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raw = "".join(lines.taken)
                yield RawRecord(
                    f"{name}:{start}",
                    start,
                    raw,
                    None,
                    f"broken CSV quoting ({error}): the row is truncated or has an unclosed quote",
                )
                start = reader.line_num + 1
                continue
            raw = "".join(lines.taken)
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield RawRecord(
                    f"{name}:{line}",
                    line,
                    raw,
                    None,
                    f"has {len(row)} fields but the header has {len(header)}: the row is truncated "
                    f"or has an unquoted comma",
                )
                continue
            yield RawRecord(f"{name}:{line}", line, raw, dict(zip(header, row, strict=False)))

    return header, records()


# -- JSON ------------------------------------------------------------------------------------------


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _broken(text: str, name: str, pos: int, what: str) -> RawRecord:
    line = line_of(text, pos)
    return RawRecord(
        f"{name}:{line}", line, text[pos:], None, f"{what}: the file is truncated or malformed from line {line} on"
    )


def _iter_array(text: str, name: str, pos: int) -> Iterator[RawRecord]:
    """Items of the JSON array whose '[' is at `pos`; the first item that does not parse ends it."""
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        pos = _skip_ws(text, pos)
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError) as error:
            yield _broken(text, name, pos, f"incomplete JSON item ({_json_error(error)})")
            return
        line = line_of(text, pos)
        yield RawRecord(f"{name}:{line}", line, text[pos:end], value)
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            yield _broken(text, name, pos, "expected ',' or ']' after an item")
            return


def _data_array(text: str, pos: int) -> int | None:
    """Position of the '[' of the top-level "data" array of the object at `pos`, scanning key by key
    so that a file cut inside the array (or anywhere after its start) is still found."""
    pos = _skip_ws(text, pos + 1)
    while pos < len(text) and text[pos] != "}":
        try:
            key, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return None
        pos = _skip_ws(text, pos)
        if not isinstance(key, str) or pos >= len(text) or text[pos] != ":":
            return None
        pos = _skip_ws(text, pos + 1)
        if key == "data":
            return pos if pos < len(text) and text[pos] == "[" else None
        try:
            _value, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return None
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
    return None


def iter_json(text: str, name: str) -> Iterator[RawRecord]:
    """Records of a Stripe list object ({"object": "list", "data": [...]}), a bare JSON array, or a
    single object. Parsed incrementally so that a file cut mid-object still yields every complete
    item before the cut (the broken tail is one record with an error)."""
    pos = _skip_ws(text, 0)
    if pos < len(text) and text[pos] == "[":
        yield from _iter_array(text, name, pos)
        return
    if pos >= len(text) or text[pos] != "{":
        yield _broken(text, name, pos, "expected a JSON object or array")
        return
    array = _data_array(text, pos)
    if array is not None:
        yield from _iter_array(text, name, array)  # what follows the array (has_more, url) holds no records
        return
    try:
        value, end = _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError) as error:
        yield _broken(text, name, pos, f"incomplete JSON object ({_json_error(error)})")
        return
    line = line_of(text, pos)
    yield RawRecord(f"{name}:{line}", line, text[pos:end], value)
    rest = _skip_ws(text, end)
    if rest < len(text):
        yield _broken(text, name, rest, "unexpected text after the JSON object")


def iter_jsonl(text: str, name: str) -> Iterator[RawRecord]:
    """One JSON object per line; blank lines are skipped, a line that does not parse is a bad record."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        body = line.strip()
        if not body:
            continue
        try:
            value = json.loads(body)
        except (ValueError, RecursionError) as error:
            yield RawRecord(
                f"{name}:{number}",
                number,
                line.rstrip("\r\n"),
                None,
                f"not a complete JSON object ({_json_error(error)}): the line is truncated or malformed",
            )
            continue
        yield RawRecord(f"{name}:{number}", number, line.rstrip("\r\n"), value)


# -- field parsers shared by the CSV formats ------------------------------------------------------

_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


def decimal_minor(text: str, currency: str, name: str) -> int:
    """A CSV amount in major units ("29.00", "-4.5") as exact minor units of `currency`."""
    value = (text or "").strip()
    if not value:
        raise BadRow(f"{name} is empty: give an amount in major units such as 29.00")
    if not _DECIMAL.match(value):
        raise BadRow(
            f"{name} {value!r} is not a decimal number like 29.00 (no thousands separators, currency "
            f"symbols, exponents or decimal commas)"
        )
    try:
        return to_minor(value, currency)
    except MoneyError as error:
        message = str(error)
        raise BadRow(message if message.startswith("amount") and name == "amount" else f"{name}: {message}") from None


def payment_time(value: datetime, name: str, shown: str) -> datetime:
    """A timezone-aware payment time in UTC; BadRow if UTC cannot hold it or it predates 1970."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise BadRow(f"{name} {shown} lies outside the years 1-9999 once converted to UTC: correct it") from None
    if utc < EARLIEST:
        raise BadRow(f"{name} {shown} is before 1970-01-01 (UTC): not a payment time; correct it and replay")
    return utc


def currency_code(text: Any, name: str = "currency", *, upper: bool = True) -> str:
    """An ISO 4217 code; Stripe sends lower case, so `upper` folds it before the check."""
    if not isinstance(text, str) or not text.strip():
        raise BadRow(f"{name} is missing: give an ISO 4217 code such as usd or EUR")
    code = text.strip().upper() if upper else text.strip()
    try:
        return check_currency(code)
    except MoneyError as error:
        raise BadRow(f"{name}: {error}") from None
