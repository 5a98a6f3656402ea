"""Hacker News: Show HN launches and Ask HN threads, where founders post products, prices and
revenue numbers and ask how to find customers.

Two official APIs, both without credentials:
- Algolia HN Search, `GET https://hn.algolia.com/api/v1/search_by_date?tags=show_hn&hitsPerPage=N&page=P`
  (and `tags=ask_hn`): newest first, pages numbered from 0, `nbPages` says where they end.
  Published limit: 10,000 requests an hour per IP.
- The Firebase API, `GET https://hacker-news.firebaseio.com/v0/showstories.json` (the ids on the
  Show HN page, in rank order) then `GET /v0/item/<id>.json` for the first few. No published limit.

Algolia is the search (everything recent, paged); Firebase adds what ranks on the Show HN page
right now, which is often older than Algolia's newest pages. An id seen once in a fetch is not
yielded (or requested) again.

Settings: HACKERNEWS_MAX_PAGES (Algolia pages per tag, default 3), HACKERNEWS_HITS_PER_PAGE
(default 10), HACKERNEWS_FRONT_PAGE_ITEMS (Firebase items, default 5).
"""

import json
from collections.abc import Iterator, Mapping
from typing import Any

from core.discovery.sources._fields import http_url, optional_text, plain_text, positive_int, text
from core.discovery.sources.base import (
    BadRecord,
    Normalized,
    Page,
    Problem,
    RawItem,
    Source,
    count,
    items_from,
    parse_json,
    require,
    timestamp,
)
from core.platform.http import Fetched, RateLimit, SourceClient

SEARCH_URL = "https://hn.algolia.com/api/v1/search_by_date"
SHOW_STORIES_URL = "https://hacker-news.firebaseio.com/v0/showstories.json"
ITEM_URL = "https://hacker-news.firebaseio.com/v0/item/{id}.json"
ITEM_PAGE = "https://news.ycombinator.com/item?id={id}"
TAGS = ("show_hn", "ask_hn")


class HackerNews(Source):
    name = "hackernews"
    family = "hacker_news"
    required_env = ()
    # Algolia's 10,000 an hour is ~166 a minute; stay under it with room for other HN users on the IP.
    rate_limit = RateLimit(rate_per_minute=120, burst=20)
    description = "Show HN and Ask HN posts (Algolia search) plus the current Show HN page (Firebase)."

    def fetch(self, client: SourceClient) -> Iterator[Page]:
        max_pages = positive_int(self.env, "HACKERNEWS_MAX_PAGES", 3)
        per_page = positive_int(self.env, "HACKERNEWS_HITS_PER_PAGE", 10)
        front_page = positive_int(self.env, "HACKERNEWS_FRONT_PAGE_ITEMS", 5)
        seen: set[str] = set()
        for tag in TAGS:
            yield from self._search(client, tag, max_pages, per_page, seen)
        yield from self._show_page(client, front_page, seen)

    def _search(self, client: SourceClient, tag: str, max_pages: int, per_page: int, seen: set[str]) -> Iterator[Page]:
        for page_number in range(max_pages):
            fetched = client.get(SEARCH_URL, params={"tags": tag, "hitsPerPage": per_page, "page": page_number})
            body, problem = parse_json(fetched)
            if problem:
                yield Page(fetched, problems=[problem])
                return
            if not isinstance(body, dict) or not isinstance(body.get("hits"), list):
                yield Page(fetched, problems=[_shape_problem(fetched, "an object with a 'hits' list", body)])
                return
            items, problems = items_from(fetched, body["hits"], "objectID", "hits")
            nb_pages = body.get("nbPages")
            if isinstance(nb_pages, bool) or not isinstance(nb_pages, int):
                problems.append(
                    Problem(
                        "parse",
                        fetched.url,
                        f"field 'nbPages' should be int, got {nb_pages!r:.40}; pagination stopped here",
                        fetched.body,
                    )
                )
                nb_pages = 0
            yield Page(fetched, _unseen(items, seen), problems)
            if page_number + 1 >= nb_pages:
                return

    def _show_page(self, client: SourceClient, limit: int, seen: set[str]) -> Iterator[Page]:
        fetched = client.get(SHOW_STORIES_URL)
        ids, problem = parse_json(fetched)
        if problem:
            yield Page(fetched, problems=[problem])
            return
        if not isinstance(ids, list):
            yield Page(fetched, problems=[_shape_problem(fetched, "a list of item ids", ids)])
            return
        wanted, problems = [], []
        for index, story_id in enumerate(ids[:limit]):
            if isinstance(story_id, bool) or not isinstance(story_id, int):
                problems.append(
                    Problem(
                        "parse",
                        f"{fetched.url}#[{index}]",
                        f"expected an item id, got {story_id!r:.40}",
                        json.dumps(story_id, default=str),
                    )
                )
            elif str(story_id) not in seen:
                wanted.append(story_id)
        yield Page(fetched, problems=problems)  # the id list itself holds no items
        for story_id in wanted:
            item = client.get(ITEM_URL.format(id=story_id))
            body, problem = parse_json(item)
            if problem:
                yield Page(item, problems=[problem])
            elif body is None:
                yield Page(
                    item,
                    problems=[
                        Problem("parse", item.url, f"item {story_id} not found: the API returned null", item.body)
                    ],
                )
            elif isinstance(body, dict) and (body.get("deleted") or body.get("dead")):
                # Removed by its author or by moderators: nothing to use and nothing wrong with the data.
                yield Page(item)
            else:
                items, problems = items_from(item, [body], "id", "item")
                yield Page(item, _unseen(items, seen), problems)

    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        if "objectID" in payload:  # an Algolia hit
            external_id = str(require(payload, "objectID", (str, int)))
            when = "created_at_i" if payload.get("created_at_i") is not None else "created_at"
            return Normalized(
                external_id=external_id,
                url=_story_url(payload.get("url"), external_id),
                title=text(payload, "title"),
                body=plain_text(optional_text(payload, "story_text")),
                author=optional_text(payload, "author") or None,
                points=count(payload, "points"),
                comments=count(payload, "num_comments"),
                created_at=timestamp(payload.get(when), when),
            )
        if "id" in payload:  # a Firebase item
            external_id = str(require(payload, "id", int))
            return Normalized(
                external_id=external_id,
                url=_story_url(payload.get("url"), external_id),
                title=text(payload, "title"),
                body=plain_text(optional_text(payload, "text")),
                author=optional_text(payload, "by") or None,
                points=count(payload, "score"),
                comments=count(payload, "descendants"),
                created_at=timestamp(payload.get("time"), "time"),
            )
        raise BadRecord("missing field 'objectID' (Algolia hit) or 'id' (Firebase item)")


def _story_url(url: Any, external_id: str) -> str:
    # Ask HN and text-only Show HN posts have no url: the discussion page is the opportunity's home.
    return ITEM_PAGE.format(id=external_id) if url in (None, "") else http_url(url, "url")


def _unseen(items: list[RawItem], seen: set[str]) -> list[RawItem]:
    fresh = []
    for item in items:
        if item.external_id not in seen:
            seen.add(item.external_id)
            fresh.append(item)
    return fresh


def _shape_problem(fetched: Fetched, expected: str, got: Any) -> Problem:
    return Problem("parse", fetched.url, f"expected {expected}, got {type(got).__name__}", fetched.body)
