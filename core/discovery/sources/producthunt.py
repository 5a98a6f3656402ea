"""Product Hunt: today's launches, with taglines and (through the API) votes and comments.

Two paths, chosen by whether PRODUCT_HUNT_TOKEN is set (in snapshot mode too, so both replay):
- GraphQL API v2: `POST https://api.producthunt.com/v2/api/graphql` with `Authorization: Bearer
  <PRODUCT_HUNT_TOKEN>`, `posts(order: NEWEST, first: N, after: <cursor>)` paged by
  `pageInfo {endCursor hasNextPage}`. Published limits: 6,250 query-complexity points per 15
  minutes for GraphQL (450 requests per 15 minutes elsewhere), reported in `X-Rate-Limit-Remaining`
  and `X-Rate-Limit-Reset` (seconds until reset), which the shared client obeys when it reaches 0.
- The public Atom feed, `GET https://www.producthunt.com/feed`: no token, no published limit, one
  page of the newest posts without vote or comment counts (points and comments are 0).

Product Hunt redacts makers and users in API answers ("[REDACTED]"), and both paths link the
product through a producthunt.com redirect; an opportunity links the product site when a response
gives it directly, else the Product Hunt page without its utm_* parameters.

Settings: PRODUCTHUNT_PAGE_SIZE (default 10), PRODUCTHUNT_MAX_PAGES (default 2).
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from core.discovery.sources._fields import http_url, optional_text, plain_text, positive_int, text, without_tracking
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

GRAPHQL_URL = "https://api.producthunt.com/v2/api/graphql"
FEED_URL = "https://www.producthunt.com/feed"
ATOM = "atom"  # marks a payload built from a feed entry, so normalize knows which shape it has
REDACTED = "[REDACTED]"

POSTS_QUERY = """query NewestPosts($first: Int!, $after: String) {
  posts(order: NEWEST, first: $first, after: $after) {
    pageInfo { endCursor hasNextPage }
    edges {
      node {
        id name tagline description url website slug votesCount commentsCount createdAt featuredAt
        user { id name username }
        makers { id name username }
        topics(first: 3) { edges { node { name } } }
      }
    }
  }
}"""

_POST_ID = re.compile(r"Post/(\d+)$")
_LINK_ANCHOR = re.compile(r"<a\s+href=\"([^\"]+)\"[^>]*>\s*Link\s*</a>", re.IGNORECASE)
_FEED_TRAILER = re.compile(r"\s*Discussion\s*\|\s*Link\s*$")


class ProductHunt(Source):
    name = "producthunt"
    family = "product_hunt"
    required_env = ()  # the Atom feed needs no token; PRODUCT_HUNT_TOKEN switches to the API
    # 450 requests per 15 minutes is 30 a minute; the complexity budget is far above our queries.
    rate_limit = RateLimit(rate_per_minute=30, burst=5)
    description = "Newest Product Hunt launches: GraphQL API v2 with PRODUCT_HUNT_TOKEN, else the Atom feed."

    def fetch(self, client: SourceClient) -> Iterator[Page]:
        token = self.env.get("PRODUCT_HUNT_TOKEN", "").strip()
        yield from (self._graphql(client, token) if token else self._atom(client))

    def _graphql(self, client: SourceClient, token: str) -> Iterator[Page]:
        first = min(positive_int(self.env, "PRODUCTHUNT_PAGE_SIZE", 10), 20)
        max_pages = positive_int(self.env, "PRODUCTHUNT_MAX_PAGES", 2)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        cursor: str | None = None
        for _ in range(max_pages):
            fetched = client.request(
                "POST",
                GRAPHQL_URL,
                headers=headers,
                json_body={"query": POSTS_QUERY, "variables": {"first": first, "after": cursor}},
            )
            body, problem = parse_json(fetched)
            if problem:
                yield Page(fetched, problems=[problem])
                return
            problems = []
            if isinstance(body, dict) and body.get("errors"):
                messages = [error.get("message") if isinstance(error, dict) else error for error in body["errors"]]
                problems.append(Problem("parse", fetched.url, f"GraphQL errors: {messages!r:.300}", fetched.body))
            posts = (body.get("data") or {}).get("posts") if isinstance(body, dict) else None
            if not isinstance(posts, dict) or not isinstance(posts.get("edges"), list):
                yield Page(
                    fetched,
                    problems=problems
                    or [Problem("parse", fetched.url, "expected data.posts.edges in the response", fetched.body)],
                )
                return
            nodes = [edge.get("node") if isinstance(edge, dict) else edge for edge in posts["edges"]]
            items, bad = items_from(fetched, nodes, "id", "data.posts.edges[].node")
            yield Page(fetched, items, problems + bad)
            info = posts.get("pageInfo") if isinstance(posts.get("pageInfo"), dict) else {}
            cursor = info.get("endCursor")
            if info.get("hasNextPage") is not True or not isinstance(cursor, str) or not cursor:
                return

    def _atom(self, client: SourceClient) -> Iterator[Page]:
        import feedparser  # only the no-token path needs it

        fetched = client.get(FEED_URL, headers={"Accept": "application/atom+xml"})
        try:
            fetched.text()
        except UnicodeDecodeError as error:
            yield Page(
                fetched, problems=[Problem("parse", fetched.url, f"response is not valid UTF-8: {error}", fetched.body)]
            )
            return
        feed = feedparser.parse(fetched.body)
        if feed.bozo or not feed.version.startswith("atom"):
            reason = feed.get("bozo_exception") or f"no Atom <feed> element (detected {feed.version or 'none'})"
            yield Page(
                fetched,
                problems=[Problem("parse", fetched.url, f"not a well-formed Atom feed: {reason}", fetched.body)],
            )
            return
        entries = [_entry_payload(entry) for entry in feed.entries]
        items, problems = items_from(fetched, entries, "id", "feed.entry")
        yield Page(fetched, items, problems)

    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        if payload.get("source_format") == ATOM:
            return _normalize_entry(payload)
        name, tagline = text(payload, "name"), optional_text(payload, "tagline")
        user = payload.get("user")
        if user is not None and not isinstance(user, dict):
            raise BadRecord(f"field 'user' should be an object, got {type(user).__name__}")
        username = optional_text(user, "username") if user else ""
        return Normalized(
            external_id=str(require(payload, "id", (str, int))),
            url=_product_url(payload.get("website"), require(payload, "url"), "url"),
            title=f"{name} – {tagline}" if tagline else name,
            body="\n".join(
                part
                for part in (tagline, optional_text(payload, "description"), _topics(payload.get("topics")))
                if part
            ),
            author=None if username in ("", REDACTED) else username,
            points=count(payload, "votesCount"),
            comments=count(payload, "commentsCount"),
            created_at=timestamp(payload.get("createdAt"), "createdAt"),
        )


def _entry_payload(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A feed entry as plain JSON, keyed by the numeric post id the API uses too."""
    entry_id = entry.get("id")
    match = _POST_ID.search(entry_id) if isinstance(entry_id, str) else None
    contents = entry.get("content") or []
    return {
        "source_format": ATOM,
        "id": match.group(1) if match else entry_id,
        "entry_id": entry_id,
        "title": entry.get("title"),
        "link": entry.get("link"),
        "published": entry.get("published"),
        "updated": entry.get("updated"),
        "author": entry.get("author"),
        "content": contents[0].get("value") if contents else entry.get("summary"),
    }


def _normalize_entry(payload: Mapping[str, Any]) -> Normalized:
    content = optional_text(payload, "content")
    anchor = _LINK_ANCHOR.search(content)
    name = text(payload, "title")
    tagline = _FEED_TRAILER.sub("", plain_text(content))  # the feed's content is the tagline and two links
    return Normalized(
        external_id=str(require(payload, "id", (str, int))),
        url=_product_url(anchor.group(1) if anchor else None, require(payload, "link"), "link"),
        title=f"{name} – {tagline.splitlines()[0]}" if tagline else name,  # as the API path titles it
        body=tagline,
        author=optional_text(payload, "author") or None,
        points=0,
        comments=0,
        created_at=timestamp(payload.get("published"), "published"),
    )


def _product_url(website: Any, post_url: str, post_field: str) -> str:
    if isinstance(website, str) and website:
        host = urlsplit(website).hostname or ""
        if not host.endswith("producthunt.com"):
            return without_tracking(http_url(website, "website"))
    return without_tracking(http_url(post_url, post_field))


def _topics(topics: Any) -> str:
    edges = topics.get("edges") if isinstance(topics, dict) else None
    names = [
        edge["node"]["name"]
        for edge in edges or []
        if isinstance(edge, dict) and isinstance(edge.get("node"), dict) and isinstance(edge["node"].get("name"), str)
    ]
    return f"Topics: {', '.join(names)}" if names else ""
