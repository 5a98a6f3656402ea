"""Web search through the Brave Search API: pages that talk about small profitable products.

Endpoint: GET https://api.search.brave.com/res/v1/web/search?q=...&count=20&offset=<page>
  (offset counts pages of `count` results, 0-9, not results).
Auth: header X-Subscription-Token: $BRAVE_SEARCH_API_KEY (api-dashboard.search.brave.com).
Rate limits: free plan 1 request a second and 2,000 a month; paid plans raise both. Brave reports
  them in X-RateLimit-Limit / -Remaining / -Reset as "per-second, per-month" pairs.
Queries: WEB_SEARCH_QUERIES, separated by ";" (defaults below); each query is paged until
  query.more_results_available is false or WEB_SEARCH_MAX_PAGES (default 2) pages were read.
  Budget: queries x pages x runs a month must stay under the plan's monthly quota.

Web results often have no date. `normalize` is pure and may not look at the clock, so `fetch`
stores the time the response was produced with each result as "_fetched_at" (ISO 8601 UTC, from
the response's Date header, else the local fetch time) plus the "_query" that found it;
created_at is the result's page_age when Brave has one, else "_fetched_at".
"""

import hashlib
import html
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from core.discovery.sources._fields import http_url, optional_text, positive_int, text
from core.discovery.sources.base import (
    BadRecord,
    Normalized,
    Page,
    Problem,
    RawItem,
    Source,
    items_from,
    parse_json,
    require,
    timestamp,
)
from core.platform.http import Fetched, RateLimit, SourceClient

SEARCH_URL = "https://api.search.brave.com/res/v1/web/search"
PAGE_SIZE = 20  # Brave's maximum for web results
DEFAULT_QUERIES = (
    "micro saas ideas 2026",
    "profitable side project revenue",
    "api business monthly recurring revenue",
)
TAGS = re.compile(r"<[^>]+>")


class BraveWebSearch(Source):
    name = "web_search"
    family = "web_search"
    required_env = ("BRAVE_SEARCH_API_KEY",)
    rate_limit = RateLimit(rate_per_minute=60, burst=1)  # the free plan's 1 request a second
    description = "Brave Search API web results for revenue-related queries (X-Subscription-Token)."

    def queries(self) -> list[str]:
        configured = [q.strip() for q in (self.env.get("WEB_SEARCH_QUERIES") or "").split(";")]
        return [q for q in configured if q] or list(DEFAULT_QUERIES)

    def fetch(self, client: SourceClient) -> Iterator[Page]:
        # Brave serves at most 10 pages (offset 0-9) of a query.
        max_pages = min(positive_int(self.env, "WEB_SEARCH_MAX_PAGES", 2), 10)
        key = self.env.get("BRAVE_SEARCH_API_KEY")
        headers = {"accept": "application/json", **({"x-subscription-token": key} if key else {})}
        for query in self.queries():
            for page_number in range(max_pages):
                fetched = client.get(
                    SEARCH_URL, params={"q": query, "count": PAGE_SIZE, "offset": page_number}, headers=headers
                )
                page, more = _read_page(fetched, query)
                yield page
                if not more:
                    break

    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        url = http_url(require(payload, "url", str), "url")
        title = _plain(text(payload, "title"))
        description = optional_text(payload, "description")
        snippets = payload.get("extra_snippets") or []
        if not isinstance(snippets, list):
            raise BadRecord(f"field 'extra_snippets' should be a list, got {type(snippets).__name__}")
        body = "\n".join(_plain(part) for part in [description, *snippets] if isinstance(part, str) and part)
        if payload.get("page_age") is not None:
            created_at = timestamp(payload["page_age"], "page_age")
        elif payload.get("_fetched_at") is not None:
            created_at = timestamp(payload["_fetched_at"], "_fetched_at")
        else:
            raise BadRecord("missing field 'page_age' and no '_fetched_at' fetch time to fall back on")
        profile = payload.get("profile") if isinstance(payload.get("profile"), Mapping) else {}
        meta_url = payload.get("meta_url") if isinstance(payload.get("meta_url"), Mapping) else {}
        author = profile.get("name") or meta_url.get("hostname") or urlsplit(url).hostname
        return Normalized(
            external_id=_url_id(url),
            url=url,
            title=title,
            body=body,
            author=author if isinstance(author, str) else None,
            points=0,
            comments=0,
            created_at=created_at,
        )


def _read_page(fetched: Fetched, query: str) -> tuple[Page, bool]:
    """One response's results, and whether Brave has another page for this query."""
    page = Page(fetched)
    body, problem = parse_json(fetched)
    if problem is None and not isinstance(body, dict):
        problem = Problem("parse", fetched.url, f"expected a JSON object, got {type(body).__name__}", fetched.body)
    if problem is None and body.get("type") == "ErrorResponse":
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        problem = Problem(
            "parse",
            fetched.url,
            f"Brave API error {error.get('code') or '(no code)'}: {error.get('detail') or '(no detail)'}",
            fetched.body,
        )
    if problem is not None:
        page.problems.append(problem)
        return page, False
    # Brave leaves "web" out entirely when a query has no web results.
    web = body.get("web") if isinstance(body.get("web"), dict) else {}
    items, page.problems = items_from(fetched, web.get("results", []), "url", "web.results")
    produced_at = _produced_at(fetched)
    page.items = [
        RawItem(_url_id(item.external_id), {**item.payload, "_fetched_at": produced_at, "_query": query})
        for item in items
    ]
    more = body.get("query", {}).get("more_results_available") if isinstance(body.get("query"), dict) else False
    return page, more is True and bool(items)


def _produced_at(fetched: Fetched) -> str:
    """When the response was produced: its Date header (stable across snapshot replays), else now."""
    date = fetched.headers.get("date")
    if date:
        try:
            return parsedate_to_datetime(date).astimezone(UTC).isoformat()
        except (TypeError, ValueError):
            pass
    return datetime.fromtimestamp(fetched.fetched_at, tz=UTC).isoformat()


def _url_id(url: str) -> str:
    return hashlib.sha1(url.encode("utf-8")).hexdigest()


def _plain(text: str) -> str:
    """Brave marks query terms with <strong> and escapes entities in titles and snippets."""
    return " ".join(html.unescape(TAGS.sub("", text)).split())
