"""Brave web search against the bundled snapshots and against bad or failing responses served by
a MockTransport at the network edge."""

import hashlib
import time
from datetime import UTC, datetime

import httpx
import pytest
from snapshot_items import bad_reasons

from core.discovery.sources.base import BadRecord
from core.discovery.sources.web_search import DEFAULT_QUERIES, BraveWebSearch
from core.platform.http import SnapshotTransport, SourceClient


def replay(env=None):
    source = BraveWebSearch(env or {})
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    return source, client, list(source.fetch(client))


def serve(handler_or_response, env=None):
    seen = []

    def handler(request):
        seen.append(request)
        if callable(handler_or_response):
            return handler_or_response(request)
        return handler_or_response

    source = BraveWebSearch(
        env if env is not None else {"BRAVE_SEARCH_API_KEY": "BSA-test", "WEB_SEARCH_QUERIES": "micro saas"}
    )
    return source, SourceClient("web_search", httpx.MockTransport(handler), sleep=lambda s: None), seen


def search(results, more=False):
    return {
        "type": "search",
        "query": {"original": "micro saas", "more_results_available": more},
        "web": {"type": "search", "results": results},
    }


def result(**overrides):
    base = {
        "title": "<strong>Micro SaaS</strong> at $5k MRR &amp; growing",
        "url": "https://example.com/post",
        "description": "A <strong>$29/month</strong> tool.",
        "page_age": "2026-11-20T10:00:00",
        "profile": {"name": "Example Blog"},
        "meta_url": {"hostname": "example.com"},
    }
    return {**base, **overrides}


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


def test_replay_runs_every_default_query_and_pages_the_first():
    _source, client, pages = replay()
    queries = [page.fetched.url for page in pages]

    assert client.requests_made == len(pages) == 4
    assert [len(page.items) for page in pages] == [12, 6, 7, 7]
    assert "offset=0" in queries[0] and "offset=1" in queries[1]  # more_results_available was true once
    assert sum(len(page.items) for page in pages) == 32
    assert {item.payload["_query"] for page in pages for item in page.items} == set(DEFAULT_QUERIES)
    assert not any(page.problems for page in pages)


def test_known_result_normalizes_with_a_url_hash_id_and_plain_text():
    source, _, pages = replay()
    url = "https://www.starterstory.com/micro-saas-ideas"
    item = next(item for page in pages for item in page.items if item.payload["url"] == url)
    normalized = source.normalize(item.payload)

    assert normalized.external_id == item.external_id == sha1(url)
    assert normalized.title == "37 Micro SaaS Ideas for 2026 (with Real Revenue Numbers)"
    assert "a changelog widget at $4.2k MRR" in normalized.body and "<strong>" not in normalized.body
    assert normalized.author == "Starter Story"
    assert normalized.created_at == datetime(2026, 11, 21, 8, tzinfo=UTC)
    assert (normalized.points, normalized.comments) == (0, 0)


def test_result_without_page_age_is_dated_by_the_response_that_carried_it():
    source, _, pages = replay()
    item = next(item for page in pages for item in page.items if item.payload["url"] == "https://shiplog.dev/")
    assert "page_age" not in item.payload
    # the snapshot's Date header, so replays are deterministic
    assert source.normalize(item.payload).created_at == datetime(2026, 11, 25, 6, 0, 10, tzinfo=UTC)


def test_without_a_date_header_the_fetch_time_is_stored():
    source, client, _ = serve(httpx.Response(200, json=search([result(page_age=None)])))
    [page] = list(source.fetch(client))
    stored = datetime.fromisoformat(page.items[0].payload["_fetched_at"])
    assert abs(stored.timestamp() - time.time()) < 60
    assert source.normalize(page.items[0].payload).created_at == stored


def test_bundled_result_with_an_unparseable_page_age_is_a_bad_record_naming_the_field():
    source, _, pages = replay()
    assert bad_reasons(source, pages) == ["unparseable timestamp in 'page_age': 'last Tuesday'"]


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"type": "search", "web": {"results": [', "malformed JSON"),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "malformed JSON"),
        (b'{"type": "search", "web": {"results": [{"title": "Caf\xe9", "url": "https://a.b"}]}}', "not valid UTF-8"),
        (b'"search"', "expected a JSON object, got str"),
        (b'{"type": "search", "web": {"results": {"url": "https://a.b"}}}', "expected a list at web.results"),
    ],
)
def test_unparseable_responses_are_problems_and_stop_that_query(body, reason):
    source, client, seen = serve(httpx.Response(200, content=body), env={"WEB_SEARCH_QUERIES": "a; b"})
    pages = list(source.fetch(client))
    assert len(seen) == 2  # one failed page per query; the second query still ran
    assert all(reason in page.problems[0].reason and not page.items for page in pages)


def test_brave_error_response_is_a_problem():
    error = {
        "type": "ErrorResponse",
        "error": {
            "id": "0f1",
            "status": 422,
            "code": "SUBSCRIPTION_TOKEN_INVALID",
            "detail": "The provided subscription token is invalid.",
        },
    }
    source, client, _ = serve(httpx.Response(200, json=error))
    [page] = list(source.fetch(client))
    assert page.problems[0].reason == (
        "Brave API error SUBSCRIPTION_TOKEN_INVALID: The provided subscription token is invalid."
    )


def test_no_web_results_is_an_empty_page():
    source, client, _ = serve(httpx.Response(200, json={"type": "search", "query": {"original": "x"}}))
    [page] = list(source.fetch(client))
    assert page.items == [] and page.problems == []


def test_results_without_url_are_problems_and_the_rest_survive():
    source, client, _ = serve(httpx.Response(200, json=search([result(), {"title": "no url"}, None])))
    [page] = list(source.fetch(client))
    assert [item.external_id for item in page.items] == [sha1("https://example.com/post")]
    assert [p.reason for p in page.problems] == ["missing id field 'url'", "expected an object, got NoneType"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"title": None}, "'title'"),
        ({"title": 7}, "'title'"),
        ({"url": "/search?q=saas"}, "'url'"),
        ({"url": 12}, "'url'"),
        ({"description": {"text": "x"}}, "'description'"),
        ({"page_age": "soon"}, "'page_age'"),
        ({"page_age": None}, "'page_age'"),  # and no _fetched_at to fall back on
    ],
)
def test_missing_or_wrong_typed_fields_are_bad_records_naming_the_field(change, field):
    with pytest.raises(BadRecord, match=field):
        BraveWebSearch({}).normalize(result(**change))


def test_extra_fields_are_tolerated():
    normalized = BraveWebSearch({}).normalize(result(thumbnail={"src": "x"}, deep_results={}, cluster=[]))
    assert normalized.title == "Micro SaaS at $5k MRR & growing"


def test_queries_come_from_the_environment_and_pages_are_capped():
    def handler(request):
        return httpx.Response(
            200, json=search([result(url=f"https://e.com/{request.url.params['offset']}")], more=True)
        )

    source, client, seen = serve(
        handler, env={"WEB_SEARCH_QUERIES": " api revenue ;; saas mrr ", "WEB_SEARCH_MAX_PAGES": "3"}
    )
    list(source.fetch(client))
    assert [(r.url.params["q"], r.url.params["offset"]) for r in seen] == [
        ("api revenue", "0"),
        ("api revenue", "1"),
        ("api revenue", "2"),
        ("saas mrr", "0"),
        ("saas mrr", "1"),
        ("saas mrr", "2"),
    ]
    assert all(r.url.params["count"] == "20" for r in seen)


def test_live_request_sends_the_subscription_token_header():
    source, client, seen = serve(
        httpx.Response(200, json=search([])), env={"BRAVE_SEARCH_API_KEY": "BSA-secret", "WEB_SEARCH_QUERIES": "x"}
    )
    list(source.fetch(client))
    [request] = seen
    assert request.headers["x-subscription-token"] == "BSA-secret"
    assert request.headers["accept"] == "application/json"
    assert (request.url.host, request.url.path) == ("api.search.brave.com", "/res/v1/web/search")
    assert "BSA-secret" not in str(request.url)


def test_without_credentials_the_missing_variable_is_named():
    assert BraveWebSearch({}).missing_credentials() == ["BRAVE_SEARCH_API_KEY"]


def test_rate_limit_matches_the_free_plan():
    assert BraveWebSearch.rate_limit.rate_per_minute == 60 and BraveWebSearch.rate_limit.burst == 1
