"""Reddit: new posts in founder and side-income subreddits (r/entrepreneur, r/SideProject,
r/passive_income by default), where people share launches, revenue numbers and unmet needs.

Auth: OAuth client credentials (an app-only token). `POST https://www.reddit.com/api/v1/access_token`
with HTTP basic auth REDDIT_CLIENT_ID:REDDIT_CLIENT_SECRET and `grant_type=client_credentials`, then
`GET https://oauth.reddit.com/r/<subreddit>/new?limit=N&after=<fullname>` with `Authorization: Bearer`.
Reddit is closing its unauthenticated `.json` endpoints, and rejects generic User-Agents: every
request sends `<platform>:<app id>:<version> (by /u/<user>)` (REDDIT_USER_AGENT overrides it).
Published limit: 100 queries a minute per OAuth client id, averaged over 10 minutes; responses carry
`x-ratelimit-remaining` and `x-ratelimit-reset` (seconds until the window resets, not an epoch),
which the shared client obeys when the quota reaches 0.

Settings: REDDIT_SUBREDDITS (comma-separated), REDDIT_LIMIT (posts a page, default 8, max 100),
REDDIT_MAX_PAGES (pages per subreddit, default 2).
"""

import base64
import json
from collections.abc import Iterator, Mapping
from typing import Any

from core.discovery.sources._fields import http_url, optional_text, positive_int, text
from core.discovery.sources.base import Normalized, Page, Problem, RawItem, Source, count, parse_json, timestamp
from core.platform.http import Fetched, RateLimit, SourceClient

TOKEN_URL = "https://www.reddit.com/api/v1/access_token"
LISTING_URL = "https://oauth.reddit.com/r/{subreddit}/new"
SITE = "https://www.reddit.com"
DEFAULT_SUBREDDITS = ("entrepreneur", "SideProject", "passive_income")
DEFAULT_USER_AGENT = "python:ventureloop-discovery:0.1 (by /u/ventureloop)"


class Reddit(Source):
    name = "reddit"
    family = "reddit"
    required_env = ("REDDIT_CLIENT_ID", "REDDIT_CLIENT_SECRET")
    # 100 a minute is the ceiling averaged over 10 minutes; keep a margin and small bursts.
    rate_limit = RateLimit(rate_per_minute=90, burst=10)
    description = "New posts in r/entrepreneur, r/SideProject and r/passive_income (OAuth API)."

    @property
    def subreddits(self) -> list[str]:
        configured = self.env.get("REDDIT_SUBREDDITS", "")
        names = [name.strip().removeprefix("r/") for name in configured.split(",") if name.strip()]
        return names or list(DEFAULT_SUBREDDITS)

    @property
    def user_agent(self) -> str:
        return self.env.get("REDDIT_USER_AGENT", "").strip() or DEFAULT_USER_AGENT

    def fetch(self, client: SourceClient) -> Iterator[Page]:
        limit = min(positive_int(self.env, "REDDIT_LIMIT", 8), 100)
        max_pages = positive_int(self.env, "REDDIT_MAX_PAGES", 2)
        token_page, token = self._token(client)
        yield token_page
        if token is None:
            return
        headers = {"Authorization": f"Bearer {token}", "User-Agent": self.user_agent}
        for subreddit in self.subreddits:
            after: str | None = None
            for _ in range(max_pages):
                params: dict[str, Any] = {"limit": limit, "raw_json": 1}  # raw_json: no &amp; in titles
                if after:
                    params["after"] = after
                fetched = client.get(LISTING_URL.format(subreddit=subreddit), params=params, headers=headers)
                page, after = _listing_page(fetched)
                yield page
                if not after:
                    break

    def _token(self, client: SourceClient) -> tuple[Page, str | None]:
        pair = f"{self.env.get('REDDIT_CLIENT_ID', '')}:{self.env.get('REDDIT_CLIENT_SECRET', '')}"
        fetched = client.request(
            "POST",
            TOKEN_URL,
            data={"grant_type": "client_credentials"},
            headers={
                "Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii"),
                "User-Agent": self.user_agent,
            },
        )
        body, problem = parse_json(fetched)
        if problem:
            return Page(fetched, problems=[problem]), None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            # Reddit can answer bad credentials with 200 and {"error": ...} instead of a 401.
            reason = body.get("error") if isinstance(body, dict) else type(body).__name__
            return Page(
                fetched,
                problems=[
                    Problem(
                        "parse",
                        fetched.url,
                        f"no access_token in the token "
                        f"response (error: {reason!r:.60}); check REDDIT_CLIENT_ID "
                        "and REDDIT_CLIENT_SECRET",
                        fetched.body,
                    )
                ],
            ), None
        return Page(fetched), token

    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        permalink = text(payload, "permalink")
        discussion = SITE + permalink if permalink.startswith("/") else http_url(permalink, "permalink")
        url = payload.get("url")
        if payload.get("is_self") or url in (None, ""):
            link = discussion  # a self post's url is its own permalink anyway
        elif isinstance(url, str) and url.startswith("/"):
            link = SITE + url  # crossposts and galleries link within reddit
        else:
            link = http_url(url, "url")
        author = optional_text(payload, "author")
        return Normalized(
            external_id=text(payload, "id"),
            url=link,
            title=text(payload, "title"),
            body=optional_text(payload, "selftext"),
            author=None if author in ("", "[deleted]") else author,
            points=count(payload, "score"),
            comments=count(payload, "num_comments"),
            created_at=timestamp(payload.get("created_utc"), "created_utc"),
        )


def _listing_page(fetched: Fetched) -> tuple[Page, str | None]:
    """One Listing response: its t3 posts, Problems for anything else, and the `after` cursor."""
    body, problem = parse_json(fetched)
    if problem:
        return Page(fetched, problems=[problem]), None
    data = body.get("data") if isinstance(body, dict) and body.get("kind") == "Listing" else None
    if not isinstance(data, dict) or not isinstance(data.get("children"), list):
        return Page(
            fetched,
            problems=[
                Problem(
                    "parse",
                    fetched.url,
                    f"expected a Listing with data.children, got {json.dumps(body, default=str)[:80]}",
                    fetched.body,
                )
            ],
        ), None
    items, problems = [], []
    for index, child in enumerate(data["children"]):
        origin = f"{fetched.url}#data.children[{index}]"
        post = child.get("data") if isinstance(child, dict) and child.get("kind") == "t3" else None
        if not isinstance(post, dict):
            kind = child.get("kind") if isinstance(child, dict) else type(child).__name__
            problems.append(
                Problem(
                    "parse",
                    origin,
                    f"expected a t3 (post) child with data, got {kind!r:.40}",
                    json.dumps(child, default=str),
                )
            )
        elif post.get("id") in (None, ""):
            problems.append(Problem("parse", origin, "missing id field 'id'", json.dumps(post, default=str)))
        else:
            items.append(RawItem(str(post["id"]), post))
    after = data.get("after")
    return Page(fetched, items, problems), after if isinstance(after, str) and after else None
