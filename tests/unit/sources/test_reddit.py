"""Reddit connector: OAuth client credentials, listings per subreddit, bundled snapshots, bad data."""

import base64
from datetime import UTC, datetime

import httpx
import pytest
from snapshot_items import normalized_and_bad

from core.discovery.sources.base import BadRecord
from core.discovery.sources.reddit import Reddit
from core.platform.http import SnapshotTransport, SourceClient, SourceHTTPError

CREDENTIALS = {"REDDIT_CLIENT_ID": "app-id", "REDDIT_CLIENT_SECRET": "app-secret"}
TOKEN = {"access_token": "live-token", "token_type": "bearer", "expires_in": 86400, "scope": "*"}


def replay(env=None):
    source = Reddit(env or {})
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    return source, client, list(source.fetch(client))


def live(listing_handler, env=None, token_response=None):
    captured = []

    def handler(request):
        captured.append(request)
        if request.url.path == "/api/v1/access_token":
            return token_response or httpx.Response(200, json=TOKEN)
        return listing_handler(request)

    source = Reddit({"DISCOVERY_MODE": "live", **CREDENTIALS, **(env or {})})
    return source, SourceClient(source.name, httpx.MockTransport(handler), sleep=lambda s: None), captured


def listing(*posts, after=None):
    return {
        "kind": "Listing",
        "data": {
            "after": after,
            "dist": len(posts),
            "modhash": None,
            "before": None,
            "children": [{"kind": "t3", "data": post} for post in posts],
        },
    }


POST = {
    "id": "1qz0001",
    "name": "t3_1qz0001",
    "title": "I made $900 reselling API credits",
    "selftext": "details",
    "url": "https://www.reddit.com/r/SideProject/comments/1qz0001/i_made_900/",
    "is_self": True,
    "permalink": "/r/SideProject/comments/1qz0001/i_made_900/",
    "author": "someone",
    "score": 12,
    "num_comments": 3,
    "created_utc": 1795435200.0,
    "subreddit": "SideProject",
}


def test_snapshot_replay_gets_a_token_then_pages_each_subreddit():
    _, client, pages = replay()
    items = [item for page in pages for item in page.items]
    urls = [httpx.URL(page.fetched.url) for page in pages]

    assert len(items) == 23 and client.requests_made == 5
    assert urls[0].path == "/api/v1/access_token"
    assert [url.path for url in urls[1:]] == [
        "/r/entrepreneur/new",
        "/r/entrepreneur/new",
        "/r/SideProject/new",
        "/r/passive_income/new",
    ]
    assert urls[2].params["after"] == "t3_1qbrm8k"  # page 2 follows data.after of page 1
    assert not any(page.problems for page in pages)


def test_known_posts_normalize_to_the_common_fields():
    source, _, pages = replay()
    items = {item.external_id: item.payload for page in pages for item in page.items}

    link = source.normalize(items["1qc8x3m"])
    assert link.title.startswith("I built InvoiceBolt: invoicing for freelancers")
    assert link.url == "https://invoicebolt.io"
    assert (link.points, link.comments, link.author) == (87, 42, "mkessler_io")
    assert link.created_at == datetime(2026, 11, 25, 15, 3, 11, tzinfo=UTC)

    self_post = source.normalize(items["1qc3k9v"])
    assert self_post.url == (
        "https://www.reddit.com/r/Entrepreneur/comments/1qc3k9v/we_hit_18k_arr_selling_a_b2b_chrome_extension/"
    )
    assert "$12/seat/month" in self_post.body


def test_the_bundled_bad_post_names_score():
    source, _, pages = replay()
    assert normalized_and_bad(source, pages)[1] == [
        ("1qbwn4e", "field 'score' should be a non-negative number, got '1.2k'")
    ]


def test_without_credentials_both_names_are_reported_missing():
    assert Reddit({}).missing_credentials() == ["REDDIT_CLIENT_ID", "REDDIT_CLIENT_SECRET"]
    assert Reddit({"REDDIT_CLIENT_ID": "x"}).missing_credentials() == ["REDDIT_CLIENT_SECRET"]


def test_live_sends_basic_auth_for_the_token_and_bearer_for_listings():
    source, client, captured = live(
        lambda request: httpx.Response(200, json=listing(POST)), env={"REDDIT_SUBREDDITS": "SideProject, r/microsaas"}
    )
    pages = list(source.fetch(client))

    token_request, *listings = captured
    assert token_request.method == "POST"
    assert token_request.headers["authorization"] == "Basic " + base64.b64encode(b"app-id:app-secret").decode()
    assert token_request.read() == b"grant_type=client_credentials"
    assert [request.url.path for request in listings] == ["/r/SideProject/new", "/r/microsaas/new"]
    for request in captured:
        assert request.headers["user-agent"].startswith("python:ventureloop-discovery:")
    for request in listings:
        assert request.headers["authorization"] == "Bearer live-token"
        assert request.url.host == "oauth.reddit.com" and request.url.params["raw_json"] == "1"
    assert sum(len(page.items) for page in pages) == 2


def test_rejected_credentials_fail_the_source():
    source, client, captured = live(
        lambda request: httpx.Response(200, json=listing()),
        token_response=httpx.Response(401, json={"message": "Unauthorized"}),
    )
    with pytest.raises(SourceHTTPError, match="HTTP 401"):
        list(source.fetch(client))
    assert len(captured) == 1


def test_a_token_answer_without_a_token_is_a_problem_and_no_listing_is_requested():
    source, client, captured = live(
        lambda request: httpx.Response(200, json=listing()),
        token_response=httpx.Response(200, json={"error": "invalid_grant"}),
    )
    pages = list(source.fetch(client))
    assert len(captured) == 1 and len(pages) == 1
    assert "no access_token" in pages[0].problems[0].reason and "invalid_grant" in pages[0].problems[0].reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"kind": "Listing", "data": {"children": [', "malformed JSON"),
        (b"<!doctype html><html><title>Reddit - Dive into anything</title></html>", "malformed JSON"),
        (b'{"kind": "Listing", "data": {"children": [], "after": "\xe9"}}', "not valid UTF-8"),
        (b'{"message": "Forbidden", "error": 403}', "expected a Listing"),
    ],
)
def test_an_unparseable_listing_is_a_problem_and_stops_that_subreddit(body, reason):
    source, client, captured = live(
        lambda request: httpx.Response(200, content=body), env={"REDDIT_SUBREDDITS": "entrepreneur"}
    )
    pages = list(source.fetch(client))
    assert len(captured) == 2  # the token and one listing page
    problems = [problem for page in pages for problem in page.problems]
    assert len(problems) == 1 and reason in problems[0].reason and problems[0].payload == body


def test_children_that_are_not_posts_or_lack_an_id_are_problems():
    body = listing(POST)
    body["data"]["children"] += [{"kind": "t1", "data": {"id": "c1"}}, {"kind": "t3", "data": {"title": "no id"}}]
    source, client, _ = live(lambda request: httpx.Response(200, json=body), env={"REDDIT_SUBREDDITS": "a"})
    pages = list(source.fetch(client))
    assert [item.external_id for page in pages for item in page.items] == ["1qz0001"]
    reasons = [problem.reason for page in pages for problem in page.problems]
    assert reasons == ["expected a t3 (post) child with data, got 't1'", "missing id field 'id'"]


def test_pagination_stops_at_max_pages():
    source, client, captured = live(
        lambda request: httpx.Response(200, json=listing(POST, after="t3_next")),
        env={"REDDIT_SUBREDDITS": "a", "REDDIT_MAX_PAGES": "3"},
    )
    list(source.fetch(client))
    assert len(captured) == 4 and captured[-1].url.params["after"] == "t3_next"


def test_extra_fields_are_tolerated_and_deleted_authors_are_none():
    post = Reddit({}).normalize({**POST, "author": "[deleted]", "awarders": [], "new_field": {"x": 1}})
    assert post.author is None and post.url == "https://www.reddit.com" + POST["permalink"]


def test_a_crosspost_url_relative_to_reddit_is_made_absolute():
    post = Reddit({}).normalize({**POST, "is_self": False, "url": "/r/Entrepreneur/comments/abc/x/"})
    assert post.url == "https://www.reddit.com/r/Entrepreneur/comments/abc/x/"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": None}, "'title'"),
        ({"permalink": None}, "'permalink'"),
        ({"num_comments": "3"}, "'num_comments'"),
        ({"created_utc": "yesterday"}, "'created_utc'"),
        ({"is_self": False, "url": "ftp://files.example.com/x"}, "'url'"),
        ({"selftext": ["not", "text"]}, "'selftext'"),
    ],
)
def test_missing_or_wrong_typed_fields_are_bad_records_naming_the_field(change, field):
    with pytest.raises(BadRecord, match=field):
        Reddit({}).normalize({**POST, **change})
