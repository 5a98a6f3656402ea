"""What every discovery source is: a connector that pages through a real API with the shared
HTTP client, and a normalizer from one raw item to the common opportunity fields.

A connector never raises on bad data: a response it cannot parse, or an item without an id,
becomes a `Problem` (quarantined with its reason and payload) and the batch goes on. It raises
`SourceHTTPError` only when the source itself is unreachable after retries.
"""

import copy
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from core.platform.http import Fetched, RateLimit, SourceClient
from core.platform.quarantine import TOO_DEEP, Problem

SNAPSHOT_ROOT = Path(__file__).parent / "snapshots"

# The seed's ten discovery families; every source belongs to exactly one.
FAMILIES = (
    "web_search",
    "api_marketplaces",
    "freelance",
    "affiliate",
    "product_hunt",
    "reddit",
    "twitter",
    "github_trending",
    "hacker_news",
    "indie_hackers",
)


class BadRecord(ValueError):
    """An item that cannot become an opportunity; the message says which field and why."""


@dataclass(frozen=True)
class RawItem:
    external_id: str
    payload: Mapping[str, Any]


@dataclass
class Page:
    """One response and what was found in it."""

    fetched: Fetched
    items: list[RawItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Normalized:
    """The fields every source must provide for an opportunity (see docs/opportunities.md)."""

    external_id: str
    url: str
    title: str
    body: str
    author: str | None
    points: int
    comments: int
    created_at: datetime


class Source(ABC):
    name: ClassVar[str]
    family: ClassVar[str]
    # Environment variables a live fetch needs; missing ones make the source skip, not crash.
    required_env: ClassVar[tuple[str, ...]] = ()
    rate_limit: ClassVar[RateLimit] = RateLimit()
    description: ClassVar[str] = ""

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = dict(os.environ if env is None else env)

    def with_env(self, env: Mapping[str, str]) -> "Source":
        """This source reading `env` instead: the assets pass the discovery resource's settings."""
        configured = copy.copy(self)
        configured.env = dict(env)
        return configured

    def missing_credentials(self) -> list[str]:
        return [name for name in self.required_env if not self.env.get(name)]

    @property
    def snapshot_dir(self) -> Path:
        return SNAPSHOT_ROOT / self.name

    @abstractmethod
    def fetch(self, client: SourceClient) -> Iterator[Page]:
        """Yield one Page per response, following pagination up to the source's page limit."""

    @abstractmethod
    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        """Map one raw item to the common fields; raise BadRecord naming the field at fault."""


# -- helpers connectors share ------------------------------------------------------------------


def parse_json(fetched: Fetched) -> tuple[Any, Problem | None]:
    """Decode a JSON response; a bad body becomes a Problem with the raw bytes, never an exception."""
    try:
        return json.loads(fetched.body.decode("utf-8")), None
    except UnicodeDecodeError as error:
        return None, Problem("parse", fetched.url, f"response is not valid UTF-8: {error}", fetched.body)
    except json.JSONDecodeError as error:
        return None, Problem(
            "parse",
            fetched.url,
            f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}",
            fetched.body,
        )
    except RecursionError:
        # json raises this, not JSONDecodeError, past ~1,000 levels: still this response's problem.
        return None, Problem("parse", fetched.url, TOO_DEEP, fetched.body)


def items_from(fetched: Fetched, entries: Any, id_field: str, where: str) -> tuple[list[RawItem], list[Problem]]:
    """Turn a list of API objects into RawItems; objects that are not dicts or lack an id are Problems."""
    if not isinstance(entries, list):
        return [], [
            Problem("parse", fetched.url, f"expected a list at {where}, got {type(entries).__name__}", fetched.body)
        ]
    items, problems = [], []
    for index, entry in enumerate(entries):
        origin = f"{fetched.url}#{where}[{index}]"
        if not isinstance(entry, dict):
            problems.append(
                Problem(
                    "parse", origin, f"expected an object, got {type(entry).__name__}", json.dumps(entry, default=str)
                )
            )
            continue
        external_id = entry.get(id_field)
        if external_id in (None, ""):
            problems.append(Problem("parse", origin, f"missing id field {id_field!r}", json.dumps(entry, default=str)))
            continue
        items.append(RawItem(str(external_id), entry))
    return items, problems


def require(payload: Mapping[str, Any], field_name: str, kind: type | tuple[type, ...] = str) -> Any:
    """A required field of the right type, or BadRecord naming it."""
    if field_name not in payload or payload[field_name] is None:
        raise BadRecord(f"missing field {field_name!r}")
    value = payload[field_name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadRecord(f"field {field_name!r} should be {expected}, got {type(value).__name__} {value!r:.60}")
    return value


def count(payload: Mapping[str, Any], field_name: str) -> int:
    """An optional non-negative engagement count; absent means 0, anything else wrong is BadRecord."""
    value = payload.get(field_name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRecord(f"field {field_name!r} should be a non-negative number, got {value!r:.60}")
    return int(value)


def timestamp(value: Any, field_name: str) -> datetime:
    """Epoch seconds or an ISO 8601 / RFC 3339 string, returned timezone-aware in UTC."""
    if isinstance(value, bool) or value is None:
        raise BadRecord(f"missing or invalid timestamp in {field_name!r}: {value!r}")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError):  # past the platform's time_t: this record's problem, not the batch's
            raise BadRecord(f"timestamp out of range in {field_name!r}: {value!r:.60}") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                from email.utils import parsedate_to_datetime

                parsed = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                raise BadRecord(f"unparseable timestamp in {field_name!r}: {value!r:.60}") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise BadRecord(f"field {field_name!r} should be a timestamp, got {type(value).__name__}")
