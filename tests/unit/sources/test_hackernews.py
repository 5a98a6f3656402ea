"""Hacker News connector against its bundled snapshots (the real client, replaying real-shaped
responses) and against bad responses served by a MockTransport at the network edge."""

import json
from datetime import UTC, datetime

import httpx
import pytest

from core.discovery.fetch import discover
from core.discovery.sources.base import BadRecord
from core.discovery.sources.hackernews import HackerNews
from core.platform.http import SnapshotTransport, SourceClient
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse


def replay(env=None):
    source = HackerNews(env or {})
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    return source, client, list(source.fetch(client))


def by_id(pages):
    return {item.external_id: item.payload for page in pages for item in page.items}


def serve(routes):
    """A MockTransport answering `(host, path, tags)` from `routes`; anything else is an empty answer."""
    seen = []

    def handler(request):
        seen.append(request)
        key = (request.url.host, request.url.path, request.url.params.get("tags"))
        if key in routes:
            body = routes[key]
            return httpx.Response(200, content=body if isinstance(body, bytes) else json.dumps(body).encode())
        if request.url.host == "hn.algolia.com":
            return httpx.Response(200, json={"hits": [], "nbPages": 0, "page": 0})
        return httpx.Response(200, json=[])

    return HackerNews({}), SourceClient("hackernews", httpx.MockTransport(handler), sleep=lambda s: None), seen


SHOW = ("hn.algolia.com", "/api/v1/search_by_date", "show_hn")


def test_snapshot_replay_follows_both_apis_and_pages():
    _source, client, pages = replay()
    items = [item for page in pages for item in page.items]
    urls = [page.fetched.url for page in pages]

    assert len(items) == 24 and len({item.external_id for item in items}) == 24
    assert client.requests_made == len(pages) == 7
    assert sum("tags=show_hn" in url for url in urls) == 2  # nbPages=2: page 0 and page 1
    assert any("tags=show_hn" in url and "page=1" in url for url in urls)
    # Firebase: the first five Show HN ids, minus the two Algolia already returned
    assert [url.rsplit("/", 1)[1] for url in urls if "/v0/item/" in url] == [
        "46525581.json",
        "46520364.json",
        "46516208.json",
    ]
    assert not any(page.problems for page in pages)


def test_known_items_normalize_to_the_common_fields():
    source, _, pages = replay()
    items = by_id(pages)

    launch = source.normalize(items["46531207"])
    assert launch.title == "Show HN: InvoiceBolt – Invoicing for freelancers that chases late payments ($29/mo)"
    assert launch.url == "https://invoicebolt.io"
    assert (launch.points, launch.comments, launch.author) == (142, 67, "mkessler")
    assert launch.created_at == datetime(2026, 11, 25, 14, 12, 9, tzinfo=UTC)
    assert launch.created_at.utcoffset().total_seconds() == 0

    ask = source.normalize(items["46528127"])  # Ask HN: no url, HTML story_text
    assert ask.url == "https://news.ycombinator.com/item?id=46528127"
    assert ask.body.startswith("Curious about paid APIs as a business in 2026.")
    assert "<p>" not in ask.body and "\n\n" in ask.body

    front = source.normalize(items["46520364"])  # a Firebase item: by/score/descendants/time
    assert front.title.startswith("Show HN: My $149 Postgres performance course")
    assert front.url == "https://news.ycombinator.com/item?id=46520364"
    assert (front.points, front.comments, front.author) == (131, 44, "dbperf")
    assert front.created_at == datetime(2026, 11, 23, 4, 15, 50, tzinfo=UTC)


def test_the_bundled_bad_hit_is_a_bad_record_naming_title():
    source, _, pages = replay()
    bad = []
    for payload in by_id(pages).values():
        try:
            source.normalize(payload)
        except BadRecord as error:
            bad.append((payload["objectID"], str(error)))
    assert bad == [("46524118", "missing field 'title'")]


def test_discover_stores_the_snapshot_items(duckdb_url):
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    result = discover(HackerNews({}), warehouse, "snapshot")
    assert (result.status, result.items, result.responses, result.quarantined) == ("ok", 24, 7, 0)
    assert warehouse.count("raw.records") == 24


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"hits": [{"objectID": "1"', "malformed JSON"),
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "malformed JSON"),
        (b'{"hits": [], "title": "caf\xe9"}', "not valid UTF-8"),
    ],
)
def test_an_unparseable_page_is_a_problem_and_stops_that_search(body, reason):
    source, client, seen = serve({SHOW: body})
    pages = list(source.fetch(client))

    problems = [problem for page in pages for problem in page.problems]
    assert len(problems) == 1 and reason in problems[0].reason
    assert problems[0].stage == "parse" and problems[0].payload == body
    assert sum(request.url.params.get("tags") == "show_hn" for request in seen) == 1
    assert any(request.url.params.get("tags") == "ask_hn" for request in seen)  # the other search still runs


def test_hits_without_an_id_or_that_are_not_objects_are_problems_and_the_rest_are_kept():
    good = {"objectID": "7", "title": "Show HN: X", "created_at_i": 1795000000}
    source, client, _ = serve({SHOW: {"hits": [good, {"title": "no id"}, "junk"], "nbPages": 1}})
    pages = list(source.fetch(client))

    assert [item.external_id for page in pages for item in page.items] == ["7"]
    reasons = sorted(problem.reason for page in pages for problem in page.problems)
    assert reasons == ["expected an object, got str", "missing id field 'objectID'"]


def test_a_response_without_nb_pages_keeps_its_hits_but_stops_paging():
    source, client, seen = serve({SHOW: {"hits": [{"objectID": "7", "title": "t", "created_at_i": 1}]}})
    pages = list(source.fetch(client))
    assert [item.external_id for page in pages for item in page.items] == ["7"]
    assert any("'nbPages'" in problem.reason for page in pages for problem in page.problems)
    assert sum(request.url.params.get("tags") == "show_hn" for request in seen) == 1


def test_max_pages_caps_the_search():
    source = HackerNews({"HACKERNEWS_MAX_PAGES": "1"})
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    urls = [page.fetched.url for page in source.fetch(client)]
    assert sum("tags=show_hn" in url for url in urls) == 1


def test_firebase_null_and_deleted_items():
    routes = {
        ("hacker-news.firebaseio.com", "/v0/showstories.json", None): [11, 12, "x"],
        ("hacker-news.firebaseio.com", "/v0/item/11.json", None): b"null",
        ("hacker-news.firebaseio.com", "/v0/item/12.json", None): {"id": 12, "deleted": True, "time": 1},
    }
    source, client, _ = serve(routes)
    pages = list(source.fetch(client))
    assert not [item for page in pages for item in page.items]
    reasons = sorted(problem.reason for page in pages for problem in page.problems)
    assert reasons == ["expected an item id, got 'x'", "item 11 not found: the API returned null"]


HIT = {
    "objectID": "9",
    "title": "Show HN: Y",
    "url": "https://y.dev",
    "author": "a",
    "points": 3,
    "num_comments": 1,
    "created_at": "2026-11-20T10:00:00Z",
    "created_at_i": 1795168800,
}


def test_extra_fields_are_tolerated():
    normalized = HackerNews({}).normalize({**HIT, "brand_new_field": {"nested": [1, 2]}, "_tags": ["story"]})
    assert normalized.title == "Show HN: Y" and normalized.points == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": None}, "'title'"),
        ({"points": "many"}, "'points'"),
        ({"num_comments": -4}, "'num_comments'"),
        ({"created_at_i": "yesterday"}, "'created_at_i'"),
        ({"url": "javascript:alert(1)"}, "'url'"),
        ({"author": 42}, "'author'"),
    ],
)
def test_missing_or_wrong_typed_fields_are_bad_records_naming_the_field(change, field):
    with pytest.raises(BadRecord, match=field):
        HackerNews({}).normalize({**HIT, **change})


def test_created_at_string_is_used_when_created_at_i_is_absent():
    payload = {key: value for key, value in HIT.items() if key != "created_at_i"}
    assert HackerNews({}).normalize(payload).created_at == datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_no_credentials_needed():
    assert HackerNews({}).missing_credentials() == []
