"""Generic feed sources, configured in YAML: one source per feed, for the families whose platforms
offer no usable public API (Indie Hackers, API marketplaces, affiliate networks).

Config: core/discovery/config/feeds.yaml (or the file named by VENTURELOOP_FEEDS_FILE):

    feeds:
      <key>:                 # lower snake case; the source is named feed_<key>
        family: indie_hackers  # one of core.discovery.sources.base.FAMILIES
        url: https://...       # absolute http(s)
        max_items: 50          # optional: entries kept per fetch (default 50)
        enabled: true          # optional: false keeps the entry but skips the feed
        description: ...       # optional: shown in the Dagster UI

Endpoint: each feed's own URL, GET, no auth. Rate limits: none published for these feeds; we ask
  at most 6 times a minute per feed; the hourly schedule needs one request.
Formats, told apart by content, not by URL or content-type (servers mislabel feeds routinely):
  JSON Feed 1.0/1.1 (a JSON object whose "version" starts https://jsonfeed.org/version/), else RSS
  0.9x/1.0/2.0 or Atom 1.0 through feedparser. JSON Feed `next_url` and Atom/RSS rel="next" links
  (RFC 5005) are followed up to FEEDS_MAX_PAGES pages (default 3) and max_items entries.

Stored payload: a JSON Feed item as published; an RSS/Atom entry as feedparser reads it (its
struct_time fields dropped, the original date strings kept). Both carry "_format" (json_feed,
rss20, atom10, ...) so `normalize` knows which field names apply.
"""

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import yaml

from core.discovery.sources._fields import http_url, optional_text, plain_text, positive_int
from core.discovery.sources.base import (
    FAMILIES,
    BadRecord,
    Normalized,
    Page,
    Problem,
    RawItem,
    Source,
    parse_json,
    timestamp,
)
from core.platform.http import Fetched, RateLimit, SourceClient, redact_url, with_secrets_of

DEFAULT_FEEDS_FILE = Path(__file__).resolve().parent.parent / "config" / "feeds.yaml"
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
FEED_FIELDS = frozenset({"family", "url", "max_items", "enabled", "description"})
DEFAULT_MAX_ITEMS = 50
JSON_FEED_VERSION = "https://jsonfeed.org/version/"
ACCEPT = (
    "application/feed+json, application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
TITLE_CHARS = 120


class FeedConfigError(ValueError):
    """The feeds file is wrong; the message names the file, the feed key and what to fix."""


@dataclass(frozen=True)
class FeedConfig:
    key: str
    family: str
    url: str
    max_items: int = DEFAULT_MAX_ITEMS
    enabled: bool = True
    description: str = ""

    @property
    def name(self) -> str:
        return f"feed_{self.key}"


def feeds_file(env: Mapping[str, str]) -> Path:
    configured = env.get("VENTURELOOP_FEEDS_FILE")
    return Path(configured) if configured else DEFAULT_FEEDS_FILE


def load_feed_configs(path: Path) -> list[FeedConfig]:
    """Every feed in the file, enabled or not, validated; the first mistake raises FeedConfigError."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeedConfigError(
            f"{path}: feeds file not found; create it or point VENTURELOOP_FEEDS_FILE at one"
        ) from None
    except yaml.YAMLError as error:
        raise FeedConfigError(f"{path}: not valid YAML: {error}") from None
    feeds = document.get("feeds") if isinstance(document, dict) else None
    if not isinstance(feeds, dict):
        raise FeedConfigError(f"{path}: expected a top-level mapping 'feeds:' of <key>: {{family, url}}")
    return [_feed_config(path, key, entry) for key, entry in feeds.items()]


def _feed_config(path: Path, key: Any, entry: Any) -> FeedConfig:
    where = f"{path}: feed {key!r}"
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise FeedConfigError(
            f"{where}: the key must be lower snake case (letters, digits, underscores, "
            f"starting with a letter), e.g. 'indiehackers'; it becomes the source name feed_<key>"
        )
    if not isinstance(entry, dict):
        raise FeedConfigError(f"{where}: expected a mapping with 'family' and 'url', got {type(entry).__name__}")
    if unknown := sorted(set(map(str, entry)) - FEED_FIELDS):
        raise FeedConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(FEED_FIELDS))}"
        )
    for required in ("family", "url"):
        if entry.get(required) in (None, ""):
            raise FeedConfigError(f"{where}: missing '{required}'")
    family, url = entry["family"], entry["url"]
    if family not in FAMILIES:
        raise FeedConfigError(f"{where}: unknown family {family!r}; use one of {', '.join(FAMILIES)}")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise FeedConfigError(f"{where}: 'url' must be an absolute http(s) URL, got {url!r}")
    max_items = entry.get("max_items", DEFAULT_MAX_ITEMS)
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
        raise FeedConfigError(f"{where}: 'max_items' must be a positive integer, got {max_items!r}")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise FeedConfigError(f"{where}: 'enabled' must be true or false, got {enabled!r}")
    description = entry.get("description") or ""
    if not isinstance(description, str):
        raise FeedConfigError(f"{where}: 'description' must be text, got {type(description).__name__}")
    return FeedConfig(key, family, url, max_items, enabled, description.strip())


def feed_sources(env: Mapping[str, str] | None = None) -> list[Source]:
    """One source per enabled feed. Each is its own subclass, so that `name` and `family` stay
    class attributes, as the Source contract declares them."""
    env = dict(os.environ if env is None else env)
    configs = load_feed_configs(feeds_file(env))
    return [feed_class(config)(env) for config in configs if config.enabled]


def feed_class(config: FeedConfig) -> type["FeedSource"]:
    return type(
        f"FeedSource_{config.key}",
        (FeedSource,),
        {
            "name": config.name,
            "family": config.family,
            "feed": config,
            "description": config.description or f"{config.family} feed {redact_url(config.url)}",
            "__module__": __name__,
        },
    )


class FeedSource(Source):
    """An RSS 2.0 / Atom / JSON Feed source; instantiate a subclass made by `feed_class`."""

    feed: ClassVar[FeedConfig]
    required_env = ()
    rate_limit = RateLimit(rate_per_minute=6, burst=2)

    def fetch(self, client: SourceClient) -> Iterator[Page]:
        max_pages = positive_int(self.env, "FEEDS_MAX_PAGES", 3)
        remaining, url, seen = self.feed.max_items, self.feed.url, set()
        for _ in range(max_pages):
            seen.add(url)
            fetched = client.get(url, headers={"accept": ACCEPT})
            page = Page(fetched)
            entries, next_url, problem = read_feed(fetched)
            if problem is not None:
                page.problems.append(problem)
                yield page
                return
            for index, entry in enumerate(entries[:remaining]):
                origin = f"{fetched.url}#entries[{index}]"
                if not isinstance(entry, dict):
                    page.problems.append(
                        Problem(
                            "parse",
                            origin,
                            f"expected an object, got {type(entry).__name__}",
                            json.dumps(entry, default=str),
                        )
                    )
                elif (external_id := _entry_id(entry)) is None:
                    page.problems.append(
                        Problem(
                            "parse",
                            origin,
                            "missing id: the entry has no guid/id and no link/url",
                            json.dumps(entry, default=str),
                        )
                    )
                else:
                    page.items.append(RawItem(external_id, entry))
            remaining -= min(len(entries), remaining)
            yield page
            if remaining <= 0 or not next_url:
                return
            # The client masked the feed's own key in the body it returned: page on with the real one.
            url = with_secrets_of(next_url, self.feed.url)
            if url in seen:
                return

    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        if payload.get("_format") == "json_feed":
            return _normalize_json_feed_item(payload)
        return _normalize_feedparser_entry(payload)


# -- reading a response --------------------------------------------------------------------------


def read_feed(fetched: Fetched) -> tuple[list[Any], str | None, Problem | None]:
    """The entries of one feed document, the next page's URL, or the Problem that stops us."""
    if fetched.body.lstrip()[:1] in (b"{", b"["):
        return _read_json_feed(fetched)
    return _read_xml_feed(fetched)


def _read_json_feed(fetched: Fetched) -> tuple[list[Any], str | None, Problem | None]:
    document, problem = parse_json(fetched)
    if problem is not None:
        return [], None, problem
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or not version.startswith(JSON_FEED_VERSION):
        return (
            [],
            None,
            Problem(
                "parse",
                fetched.url,
                f"JSON but not a JSON Feed: 'version' is {version!r}, expected {JSON_FEED_VERSION}1.1",
                fetched.body,
            ),
        )
    items = document.get("items")
    if not isinstance(items, list):
        return (
            [],
            None,
            Problem(
                "parse", fetched.url, f"JSON Feed 'items' should be a list, got {type(items).__name__}", fetched.body
            ),
        )
    # An item that is not an object stays as it is: `fetch` reports it without losing the others.
    entries = [{**item, "_format": "json_feed"} if isinstance(item, dict) else item for item in items]
    next_url = document.get("next_url")
    return entries, next_url if isinstance(next_url, str) and next_url.startswith("http") else None, None


def _read_xml_feed(fetched: Fetched) -> tuple[list[dict[str, Any]], str | None, Problem | None]:
    import feedparser  # imported here: the definitions module stays light

    # Servers label feeds text/xml, text/html or text/plain at random, and feedparser would then assume
    # us-ascii (RFC 3023). application/xml makes it follow the document: its XML declaration, else UTF-8.
    parsed = feedparser.parse(
        fetched.body, response_headers={"content-type": "application/xml", "content-location": fetched.url}
    )
    error = parsed.get("bozo_exception")
    if isinstance(error, feedparser.CharacterEncodingOverride):
        # The bytes do not decode as the feed says they are encoded: refuse rather than store mojibake.
        return (
            [],
            None,
            Problem("parse", fetched.url, f"feed bytes do not match their declared encoding: {error}", fetched.body),
        )
    if parsed.bozo and not parsed.entries:
        return [], None, Problem("parse", fetched.url, f"not a well-formed feed: {_reason(error)}", fetched.body)
    if not parsed.version and not parsed.entries:
        return (
            [],
            None,
            Problem(
                "parse",
                fetched.url,
                f"not an RSS, Atom or JSON feed (content-type {fetched.content_type or 'unknown'!r})",
                fetched.body,
            ),
        )
    entries = [{**_plain_data(entry), "_format": parsed.version or "unknown"} for entry in parsed.entries]
    # A feed feedparser had to repair (bozo) keeps the entries it recovered, but we stop paging there.
    next_url = (
        None
        if parsed.bozo
        else next(
            (
                link.get("href")
                for link in parsed.feed.get("links", [])
                if link.get("rel") == "next" and link.get("href")
            ),
            None,
        )
    )
    return entries, next_url, None


def _reason(error: Any) -> str:
    return f"{type(error).__name__}: {error}" if error is not None else "unknown error"


def _plain_data(value: Any) -> Any:
    """feedparser's dicts made JSON-safe: struct_time fields (*_parsed) dropped, dates kept as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain_data(v) for k, v in value.items() if not str(k).endswith("_parsed")}
    if isinstance(value, list | tuple):
        return [_plain_data(v) for v in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _entry_id(entry: Mapping[str, Any]) -> str | None:
    for field_name in ("id", "link", "url"):
        value = entry.get(field_name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


# -- normalizing an entry ------------------------------------------------------------------------


def _normalize_json_feed_item(payload: Mapping[str, Any]) -> Normalized:
    external_id = _entry_id(payload)
    if external_id is None:
        raise BadRecord("missing field 'id' (and no 'url')")
    url = _url(payload, "url", "external_url")
    text = (
        optional_text(payload, "content_text")
        or optional_text(payload, "summary")
        or plain_text(optional_text(payload, "content_html"))
    )
    title = plain_text(optional_text(payload, "title")) or _first_line(text)
    if not title:
        raise BadRecord("missing field 'title' (and no content_text or summary to take one from)")
    date = payload.get("date_published") or payload.get("date_modified")
    if date is None:
        raise BadRecord("missing field 'date_published' (and no 'date_modified')")
    authors = payload.get("authors") or ([payload["author"]] if isinstance(payload.get("author"), dict) else [])
    author = authors[0].get("name") if isinstance(authors, list) and authors and isinstance(authors[0], dict) else None
    return Normalized(
        external_id,
        url,
        title,
        text,
        author if isinstance(author, str) else None,
        0,
        0,
        timestamp(date, "date_published" if payload.get("date_published") else "date_modified"),
    )


def _normalize_feedparser_entry(payload: Mapping[str, Any]) -> Normalized:
    external_id = _entry_id(payload)
    if external_id is None:
        raise BadRecord("missing field 'id' (guid) and no 'link'")
    url = _url(payload, "link")
    content = payload.get("content")
    full = content[0].get("value") if isinstance(content, list) and content and isinstance(content[0], dict) else None
    text = plain_text(full if isinstance(full, str) and full else optional_text(payload, "summary"))
    title = plain_text(optional_text(payload, "title")) or _first_line(text)
    if not title:
        raise BadRecord("missing field 'title' (and no summary to take one from)")
    date_field = "published" if payload.get("published") else "updated"
    if not payload.get(date_field):
        raise BadRecord("missing field 'published' (pubDate) and no 'updated'")
    author = payload.get("author")
    return Normalized(
        external_id,
        url,
        title,
        text,
        author if isinstance(author, str) and author else None,
        0,
        _comment_count(payload),
        timestamp(payload[date_field], date_field),
    )


def _comment_count(payload: Mapping[str, Any]) -> int:
    """Comment counts exist only as extensions: RSS <slash:comments>, Atom threading <thr:total>
    (RFC 4685, which WordPress emits). feedparser keeps them as text."""
    for field_name in ("slash_comments", "thr_total"):
        value = payload.get(field_name)
        if value is None:
            continue
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise BadRecord(f"field {field_name!r} should be a non-negative integer, got {value!r:.40}")
    return 0


def _url(payload: Mapping[str, Any], field_name: str, fallback: str | None = None) -> str:
    value = payload.get(field_name) or (payload.get(fallback) if fallback else None)
    if value is None:
        raise BadRecord(f"missing field {field_name!r}")
    return http_url(value, field_name)


def _first_line(text: str) -> str:
    line = next((line for line in text.splitlines() if line.strip()), "").strip()
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
