"""X recent search against its bundled snapshots (the real client replaying real-shaped responses)
and against bad or failing responses served by a MockTransport at the network edge."""

import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from snapshot_items import bad_reasons

from core.discovery.sources.base import BadRecord
from core.discovery.sources.x import XRecentSearch
from core.platform.http import SnapshotTransport, SourceClient, SourceHTTPError


def replay(env=None):
    source = XRecentSearch(env or {})
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    return source, client, list(source.fetch(client))


def serve(*responses, env=None, sleeps=None):
    """A source and client whose network answers with `responses` in turn; requests are captured."""
    seen, queue = [], list(responses)

    def handler(request):
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    client = SourceClient(
        "x", httpx.MockTransport(handler), sleep=sleeps.append if sleeps is not None else lambda s: None
    )
    return XRecentSearch(env if env is not None else {"X_BEARER_TOKEN": "test-token"}), client, seen


def post(**overrides):
    base = {
        "id": "2125298952173387776",
        "text": "Launched: $19/month uptime API https://t.co/abc",
        "created_at": "2026-11-24T18:42:11.000Z",
        "author_id": "42",
        "public_metrics": {"retweet_count": 2, "reply_count": 3, "like_count": 10, "quote_count": 1},
        "entities": {"urls": [{"url": "https://t.co/abc", "expanded_url": "https://uptime.example.com"}]},
    }
    return {**base, **overrides}


def by_title(source, pages, fragment):
    for page in pages:
        for item in page.items:
            if fragment in item.payload["text"]:
                return item, source.normalize(item.payload)
    raise AssertionError(f"no post containing {fragment!r}")


def test_replay_follows_next_token_across_two_pages():
    _source, client, pages = replay()

    assert client.requests_made == len(pages) == 2
    assert [len(page.items) for page in pages] == [20, 8]
    assert "next_token=" not in pages[0].fetched.url and "next_token=" in pages[1].fetched.url
    assert not any(page.problems for page in pages)


def test_known_post_normalizes_to_its_link_metrics_and_time():
    source, _, pages = replay()
    item, normalized = by_title(source, pages, "InvoiceBolt")

    assert normalized.external_id == item.external_id == item.payload["id"]
    assert normalized.url == "https://invoicebolt.io"
    assert normalized.title == (
        "InvoiceBolt is live: invoicing for freelancers that chases late payments for you, $29/month"
    )
    assert normalized.author == "danokafor_"
    assert (normalized.points, normalized.comments) == (184 + 23 + 6, 41)
    assert normalized.created_at == datetime(2026, 11, 24, 18, 42, 11, tzinfo=UTC)
    assert "https://invoicebolt.io" in normalized.body and "t.co/" not in normalized.body


def test_post_without_outside_link_points_at_the_post_itself():
    source, _, pages = replay()
    tabstash, normalized = by_title(source, pages, "TabStash")
    assert normalized.url == f"https://x.com/tomasz_ships/status/{tabstash.external_id}"
    # a link to another post on X is not the thing being launched
    figma, normalized = by_title(source, pages, "Figma plugin")
    assert normalized.url == f"https://x.com/figmafred/status/{figma.external_id}"


def test_bundled_post_without_created_at_is_a_bad_record_naming_the_field():
    source, _, pages = replay()
    assert bad_reasons(source, pages) == ["missing field 'created_at'"]


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"data": [', "malformed JSON"),
        (b"<!DOCTYPE html><html><body>Something went wrong</body></html>", "malformed JSON"),
        (b'{"data": [{"id": "1", "text": "caf\xe9"}]}', "not valid UTF-8"),
        (b'[{"id": "1"}]', "expected a JSON object, got list"),
    ],
)
def test_unparseable_response_is_a_problem_and_stops_paging(body, reason):
    source, client, seen = serve(httpx.Response(200, content=body))
    pages = list(source.fetch(client))

    assert len(seen) == 1 and len(pages) == 1 and not pages[0].items
    [problem] = pages[0].problems
    assert problem.stage == "parse" and reason in problem.reason and problem.payload == body


def test_x_error_payload_is_a_problem():
    error = {
        "errors": [
            {
                "title": "Invalid Request",
                "detail": "The `query` parameter value is invalid.",
                "type": "https://api.x.com/2/problems/invalid-request",
            }
        ]
    }
    source, client, _ = serve(httpx.Response(200, json=error))
    [page] = list(source.fetch(client))
    assert page.problems[0].reason == "X API error: Invalid Request: The `query` parameter value is invalid."


def test_no_matches_is_an_empty_page_not_a_problem():
    source, client, _ = serve(httpx.Response(200, json={"meta": {"result_count": 0}}))
    [page] = list(source.fetch(client))
    assert page.items == [] and page.problems == []


def test_items_that_are_not_objects_or_lack_an_id_are_problems_and_the_rest_survive():
    body = {"data": [post(), "oops", {"text": "no id"}], "meta": {"result_count": 3}}
    source, client, _ = serve(httpx.Response(200, json=body))
    [page] = list(source.fetch(client))
    assert [item.external_id for item in page.items] == [post()["id"]]
    assert [p.reason for p in page.problems] == ["expected an object, got str", "missing id field 'id'"]


def test_author_comes_from_the_includes_expansion():
    body = {"data": [post()], "includes": {"users": [{"id": "42", "username": "uptime_ann", "name": "Ann"}]}}
    source, client, _ = serve(httpx.Response(200, json=body))
    [page] = list(source.fetch(client))
    assert page.items[0].payload["_author"] == {"id": "42", "username": "uptime_ann", "name": "Ann"}
    assert source.normalize(page.items[0].payload).author == "uptime_ann"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"text": None}, "'text'"),
        ({"id": 2125298952173387776}, "'id'"),
        ({"created_at": "last week"}, "'created_at'"),
        ({"public_metrics": "lots"}, "'public_metrics'"),
        ({"public_metrics": {"like_count": "many"}}, "'like_count'"),
        ({"entities": {"urls": "https://t.co/abc"}}, "'entities.urls'"),
    ],
)
def test_missing_or_wrong_typed_fields_are_bad_records_naming_the_field(change, field):
    with pytest.raises(BadRecord, match=field):
        XRecentSearch({}).normalize(post(**change))


def test_extra_fields_are_tolerated():
    normalized = XRecentSearch({}).normalize(post(note_tweet={"text": "long"}, lang="en", possibly_sensitive=False))
    assert normalized.url == "https://uptime.example.com" and normalized.points == 13


def test_max_pages_caps_pagination():
    body = {"data": [post()], "meta": {"result_count": 1, "next_token": "again"}}
    source, client, seen = serve(httpx.Response(200, json=body), env={"X_MAX_PAGES": "1"})
    assert len(list(source.fetch(client))) == 1 and len(seen) == 1


def test_a_repeated_next_token_does_not_loop():
    body = {"data": [post()], "meta": {"result_count": 1, "next_token": "same"}}
    source, client, seen = serve(httpx.Response(200, json=body))
    list(source.fetch(client))
    assert len(seen) == 2  # the first page, then the token once


def test_bad_page_settings_say_which_variable_to_fix():
    source, client, _ = serve(httpx.Response(200, json={}), env={"X_MAX_RESULTS": "500"})
    with pytest.raises(ValueError, match="X_MAX_RESULTS=500"):
        list(source.fetch(client))


def test_live_request_sends_the_bearer_token_and_the_search_parameters():
    source, client, seen = serve(
        httpx.Response(200, json={"meta": {"result_count": 0}}), env={"X_BEARER_TOKEN": "AAAA-secret"}
    )
    list(source.fetch(client))

    [request] = seen
    assert request.headers["authorization"] == "Bearer AAAA-secret"
    assert (request.url.host, request.url.path) == ("api.x.com", "/2/tweets/search/recent")
    assert request.url.params["query"] == "(#buildinpublic OR #indiehackers) -is:retweet lang:en"
    assert request.url.params["expansions"] == "author_id"
    assert "created_at" in request.url.params["tweet.fields"]


def test_without_credentials_the_missing_variable_is_named():
    assert XRecentSearch({}).missing_credentials() == ["X_BEARER_TOKEN"]
    assert XRecentSearch({"X_BEARER_TOKEN": "t"}).missing_credentials() == []


def test_rate_limit_429_waits_until_x_rate_limit_reset():
    reset = int(time.time()) + 30
    limited = httpx.Response(
        429,
        headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)},
        json={"title": "Too Many Requests", "detail": "Too Many Requests"},
    )
    sleeps = []
    source, client, seen = serve(limited, httpx.Response(200, json={"data": [post()]}), sleeps=sleeps)
    [page] = list(source.fetch(client))

    assert len(seen) == 2 and len(page.items) == 1
    assert any(25 <= pause <= 31 for pause in sleeps), sleeps


def test_unauthorized_is_a_source_failure_not_a_crash_in_parsing():
    body = json.dumps({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})
    source, client, _ = serve(httpx.Response(401, content=body.encode()))
    with pytest.raises(SourceHTTPError, match="HTTP 401"):
        list(source.fetch(client))
