"""GitHub: repositories created in the last week, most-starred first, as a proxy for "trending"
(GitHub has no trending API). New open-source tools, SDKs and starter kits point at markets.

Endpoint: `GET https://api.github.com/search/repositories?q=created:>=YYYY-MM-DD&sort=stars&order=desc
&per_page=N&page=P` (pages from 1; search returns at most 1,000 results).
Auth: optional. With GITHUB_TOKEN set, requests carry `Authorization: Bearer <token>`.
Published limits: the search API allows 10 requests a minute unauthenticated and 30 with a token;
`x-ratelimit-remaining`/`x-ratelimit-reset` (epoch seconds) report the quota, which the shared
client obeys when it reaches 0.

The created-since date, and so the request URL, would change every day, which no recorded
snapshot could match. So the window comes from, in order:
- snapshot mode (DISCOVERY_MODE unset or "snapshot"): `snapshots/github/window.json`, the date the
  bundled responses were recorded with (re-record with GITHUB_CREATED_SINCE set to that date);
- live mode: GITHUB_CREATED_SINCE (YYYY-MM-DD) if set, else seven days before today (UTC).

Settings: GITHUB_PER_PAGE (default 10), GITHUB_MAX_PAGES (default 2).
"""

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from core.discovery.sources._fields import http_url, optional_text, positive_int, text
from core.discovery.sources.base import (
    BadRecord,
    Normalized,
    Page,
    Problem,
    Source,
    count,
    items_from,
    parse_json,
    require,
    timestamp,
)
from core.platform.http import RateLimit, SourceClient

SEARCH_URL = "https://api.github.com/search/repositories"
SEARCH_RESULT_CAP = 1000
WINDOW_DAYS = 7
WINDOW_FILE = "window.json"


class GitHubSearch(Source):
    name = "github"
    family = "github_trending"
    required_env = ()  # GITHUB_TOKEN is used when present, never required
    # The unauthenticated search limit (10 a minute) binds, so use it even with a token.
    rate_limit = RateLimit(rate_per_minute=10, burst=10)
    description = "Repositories created in the last 7 days, by stars (GitHub search as a trending proxy)."

    def __init__(self, env: Mapping[str, str] | None = None, now: Callable[[], datetime] | None = None):
        super().__init__(env)
        self._now = now or (lambda: datetime.now(UTC))

    def created_since(self) -> str:
        if self.env.get("DISCOVERY_MODE", "snapshot").strip().lower() == "snapshot":
            try:
                recorded = json.loads((self.snapshot_dir / WINDOW_FILE).read_text(encoding="utf-8"))
                return date.fromisoformat(recorded["created_since"]).isoformat()
            except (OSError, ValueError, KeyError, TypeError):
                pass  # no usable window file: the request below names the snapshot that is missing
        override = self.env.get("GITHUB_CREATED_SINCE", "").strip()
        if override:
            try:
                return date.fromisoformat(override).isoformat()
            except ValueError:
                raise ValueError(f"GITHUB_CREATED_SINCE={override!r} is not a YYYY-MM-DD date") from None
        return (self._now().astimezone(UTC).date() - timedelta(days=WINDOW_DAYS)).isoformat()

    def fetch(self, client: SourceClient) -> Iterator[Page]:
        per_page = min(positive_int(self.env, "GITHUB_PER_PAGE", 10), 100)
        max_pages = positive_int(self.env, "GITHUB_MAX_PAGES", 2)
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token := self.env.get("GITHUB_TOKEN", "").strip():
            headers["Authorization"] = f"Bearer {token}"
        query = f"created:>={self.created_since()}"
        for page_number in range(1, max_pages + 1):
            fetched = client.get(
                SEARCH_URL,
                headers=headers,
                params={"q": query, "sort": "stars", "order": "desc", "per_page": per_page, "page": page_number},
            )
            body, problem = parse_json(fetched)
            if problem:
                yield Page(fetched, problems=[problem])
                return
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                yield Page(
                    fetched,
                    problems=[
                        Problem(
                            "parse",
                            fetched.url,
                            f"expected an object with an 'items' list, got {type(body).__name__}",
                            fetched.body,
                        )
                    ],
                )
                return
            items, problems = items_from(fetched, body["items"], "id", "items")
            total = body.get("total_count")
            if isinstance(total, bool) or not isinstance(total, int):
                problems.append(
                    Problem(
                        "parse",
                        fetched.url,
                        f"field 'total_count' should be int, got {total!r:.40}; pagination stopped here",
                        fetched.body,
                    )
                )
                total = 0
            yield Page(fetched, items, problems)
            if len(body["items"]) < per_page or page_number * per_page >= min(total, SEARCH_RESULT_CAP):
                return

    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        owner = payload.get("owner")
        if owner is not None and not isinstance(owner, dict):
            raise BadRecord(f"field 'owner' should be an object, got {type(owner).__name__}")
        topics = payload.get("topics") or []
        if not isinstance(topics, list) or not all(isinstance(topic, str) for topic in topics):
            raise BadRecord(f"field 'topics' should be a list of strings, got {topics!r:.60}")
        language = optional_text(payload, "language")
        body = "\n".join(
            part
            for part in (
                optional_text(payload, "description"),
                f"Topics: {', '.join(topics)}" if topics else "",
                f"Language: {language}" if language else "",
            )
            if part
        )
        return Normalized(
            external_id=str(require(payload, "id", int)),
            url=http_url(require(payload, "html_url"), "html_url"),
            title=text(payload, "full_name"),
            body=body,
            author=(optional_text(owner, "login") or None) if owner else None,
            points=count(payload, "stargazers_count"),
            # A repository has no comment count; open issues and PRs are its discussion.
            comments=count(payload, "open_issues_count"),
            created_at=timestamp(require(payload, "created_at"), "created_at"),
        )
