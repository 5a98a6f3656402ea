"""X (Twitter) recent search: #buildinpublic and #indiehackers posts, where makers announce
launches, prices and MRR milestones.

Endpoint: GET https://api.x.com/2/tweets/search/recent (API v2; posts of the last 7 days), with
  query=(#buildinpublic OR #indiehackers) -is:retweet lang:en, tweet.fields, expansions=author_id.
Auth: app-only bearer token, `Authorization: Bearer $X_BEARER_TOKEN` (developer console).
Rate limits (docs.x.com/x-api/fundamentals/rate-limits): 450 requests / 15 min per app, 300 per
  user; 10-100 posts a request; pay-per-use plans bill every post read (cap 3M reads a month).
  X sends no Retry-After: a 429 carries x-rate-limit-remaining: 0 and x-rate-limit-reset (epoch
  seconds), which the shared client honours.
Pagination: meta.next_token -> next_token, up to X_MAX_PAGES pages (default 3) of X_MAX_RESULTS
  posts (default 20; kept small because reads are billed). X_QUERY overrides the query.

Stored payload: the post object exactly as X returns it, plus "_author", the matching
`includes.users` entry ({id, username, name}), so that `normalize` needs nothing but the item.
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from core.discovery.sources._fields import optional_object, positive_int
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

SEARCH_URL = "https://api.x.com/2/tweets/search/recent"
DEFAULT_QUERY = "(#buildinpublic OR #indiehackers) -is:retweet lang:en"
TITLE_CHARS = 120
LINKS = re.compile(r"https?://\S+")
# Links to other posts, media and profiles on X itself are not the thing being launched.
X_HOSTS = frozenset({"x.com", "www.x.com", "twitter.com", "www.twitter.com", "mobile.twitter.com", "t.co"})


class XRecentSearch(Source):
    name = "x"
    family = "twitter"
    required_env = ("X_BEARER_TOKEN",)
    # 450 requests / 15 min per app is 30 a minute; a small burst because every read is billed.
    rate_limit = RateLimit(rate_per_minute=30, burst=5)
    description = "X recent search for #buildinpublic / #indiehackers posts (API v2, bearer token)."

    def fetch(self, client: SourceClient) -> Iterator[Page]:
        max_pages = positive_int(self.env, "X_MAX_PAGES", 3)
        page_size = positive_int(self.env, "X_MAX_RESULTS", 20)
        if not 10 <= page_size <= 100:
            raise ValueError(f"X_MAX_RESULTS={page_size}: X accepts 10 to 100 posts a request; unset it to use 20")
        params: dict[str, Any] = {
            "query": self.env.get("X_QUERY") or DEFAULT_QUERY,
            "max_results": page_size,
            "tweet.fields": "created_at,public_metrics,author_id,entities",
            "expansions": "author_id",
            "user.fields": "username",
        }
        token = self.env.get("X_BEARER_TOKEN")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        seen_tokens: set[str] = set()
        for _ in range(max_pages):
            fetched = client.get(SEARCH_URL, params=params, headers=headers)
            page = Page(fetched)
            body, problem = parse_json(fetched)
            if problem is None and not isinstance(body, dict):
                problem = Problem(
                    "parse", fetched.url, f"expected a JSON object, got {type(body).__name__}", fetched.body
                )
            if problem is None and "data" not in body and body.get("errors"):
                problem = Problem("parse", fetched.url, f"X API error: {_error_text(body)}", fetched.body)
            if problem is not None:
                page.problems.append(problem)
                yield page
                return
            users = _users_by_id(body.get("includes"))
            # No "data" at all is how X says "no posts matched" (meta.result_count = 0).
            page.items, page.problems = items_from(fetched, body.get("data", []), "id", "data")
            for item in page.items:
                author = users.get(str(item.payload.get("author_id")))
                if author is not None:
                    item.payload["_author"] = author
            yield page
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            next_token = meta.get("next_token")
            if not isinstance(next_token, str) or not next_token or next_token in seen_tokens:
                return
            seen_tokens.add(next_token)
            params = {**params, "next_token": next_token}

    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        post_id = require(payload, "id", str)
        text = require(payload, "text", str)
        created_at = timestamp(require(payload, "created_at", str), "created_at")
        metrics = optional_object(payload, "public_metrics")
        urls = optional_object(payload, "entities").get("urls") or []
        if not isinstance(urls, list):
            raise BadRecord(f"field 'entities.urls' should be a list, got {type(urls).__name__}")
        urls = [u for u in urls if isinstance(u, Mapping)]
        author = payload.get("_author")
        username = author.get("username") if isinstance(author, Mapping) else None
        username = username if isinstance(username, str) and username else None
        # X rewrites every link in the text to t.co; put the real destination back for readers and parsers.
        for entity in urls:
            short, expanded = entity.get("url"), entity.get("expanded_url")
            if isinstance(short, str) and isinstance(expanded, str) and short:
                text = text.replace(short, expanded)
        return Normalized(
            external_id=post_id,
            url=_link(urls, post_id, username),
            title=_title(text),
            body=text,
            author=username,
            points=count(metrics, "like_count") + count(metrics, "retweet_count") + count(metrics, "quote_count"),
            comments=count(metrics, "reply_count"),
            created_at=created_at,
        )


def _link(urls: list[Mapping[str, Any]], post_id: str, username: str | None) -> str:
    """The first link the post points to outside X, else the post itself."""
    for entity in urls:
        expanded = entity.get("expanded_url")
        if isinstance(expanded, str):
            parts = urlsplit(expanded)
            if parts.scheme in ("http", "https") and parts.netloc and parts.hostname not in X_HOSTS:
                return expanded
    # /i/web/status/<id> resolves without the handle, for posts whose author was not expanded.
    return f"https://x.com/{username}/status/{post_id}" if username else f"https://x.com/i/web/status/{post_id}"


def _title(text: str) -> str:
    """The first line without its links (they are the opportunity's url), at most TITLE_CHARS long."""
    lines = (" ".join(LINKS.sub("", line).split()) for line in text.splitlines())
    first_line = next((line for line in lines if line), "")
    return first_line if len(first_line) <= TITLE_CHARS else first_line[: TITLE_CHARS - 1].rstrip() + "…"


def _users_by_id(includes: Any) -> dict[str, dict[str, Any]]:
    users = includes.get("users") if isinstance(includes, dict) else None
    if not isinstance(users, list):
        return {}
    return {
        str(user["id"]): {k: user.get(k) for k in ("id", "username", "name") if k in user}
        for user in users
        if isinstance(user, dict) and user.get("id")
    }


def _error_text(body: Mapping[str, Any]) -> str:
    """X's problem objects: {errors: [{title, detail | message, type}]}, sometimes with a top-level title/detail."""
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    title = first.get("title") or body.get("title") or "error"
    detail = first.get("detail") or first.get("message") or body.get("detail") or ""
    return f"{title}: {detail}".rstrip(": ")
