"""Product Hunt connector: the GraphQL API with a token, the Atom feed without one, both replayed
from bundled snapshots, plus bad responses at the network edge."""

import json
from datetime import UTC, datetime

import httpx
import pytest
from snapshot_items import normalized_and_bad

from core.discovery.sources.base import BadRecord
from core.discovery.sources.producthunt import GRAPHQL_URL, ProductHunt
from core.platform.http import SnapshotTransport, SourceClient, TokenBucket

TOKEN_ENV = {"PRODUCT_HUNT_TOKEN": "ph-token"}


def replay(env=None):
    source = ProductHunt(env or {})
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    return source, client, list(source.fetch(client))


def live(handler, env=None, sleep=None):
    source = ProductHunt({"DISCOVERY_MODE": "live", **(env or {})})
    return source, SourceClient(source.name, httpx.MockTransport(handler), sleep=sleep or (lambda s: None))


# -- the Atom feed (no token: the demo path) ------------------------------------------------------


def test_atom_snapshot_replay():
    source, client, pages = replay()
    good, bad = normalized_and_bad(source, pages)

    assert client.requests_made == 1 and len(good) + len(bad) == 15
    launch = good["1043917"]
    assert launch.title == "InvoiceBolt – Invoicing for freelancers that chases late payments for you"
    assert launch.url == "https://invoicebolt.io"  # the feed's "Link" points at the product directly
    assert (launch.points, launch.comments, launch.author) == (0, 0, "Mara Kessler")
    assert launch.created_at == datetime(2026, 11, 25, 8, 1, tzinfo=UTC)  # published -08:00 in the feed
    assert launch.body == "Invoicing for freelancers that chases late payments for you"
    # "Link" is a producthunt.com redirect here, so the product page is used, without utm_*
    assert good["1043905"].url == "https://www.producthunt.com/products/cronping"


def test_atom_bundled_bad_entry_names_published():
    source, _, pages = replay()
    assert normalized_and_bad(source, pages)[1] == [("1043271", "unparseable timestamp in 'published': 'not-a-date'")]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body></body></html>", "no Atom <feed>"),
        (
            b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><entry><id>1</id><title>A & B</title>',
            "not a well-formed Atom feed",
        ),
        (b'{"error": "rate limited"}', "not a well-formed Atom feed"),
        (
            '<?xml version="1.0" encoding="latin-1"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Caf\xe9</title>'
            "</feed>".encode("latin-1"),
            "not valid UTF-8",
        ),
    ],
)
def test_an_unparseable_feed_is_a_problem(body, reason):
    source, client = live(lambda request: httpx.Response(200, content=body))
    pages = list(source.fetch(client))
    assert len(pages) == 1 and not pages[0].items
    assert len(pages[0].problems) == 1 and reason in pages[0].problems[0].reason
    assert pages[0].problems[0].payload == body


def test_the_feed_is_requested_without_a_token():
    captured = []

    def handler(request):
        captured.append(request)
        return httpx.Response(
            200, text='<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>'
        )

    source, client = live(handler)
    pages = list(source.fetch(client))
    assert str(captured[0].url) == "https://www.producthunt.com/feed" and "authorization" not in captured[0].headers
    assert pages[0].problems == [] and pages[0].items == []
    assert source.missing_credentials() == []


# -- the GraphQL API (PRODUCT_HUNT_TOKEN set) ------------------------------------------------------


def test_graphql_snapshot_replay_follows_the_cursor_up_to_max_pages():
    source, client, pages = replay(TOKEN_ENV)
    good, bad = normalized_and_bad(source, pages)

    assert client.requests_made == 2 and len(good) + len(bad) == 20  # hasNextPage is still true: the cap stops it
    launch = good["1043917"]
    assert launch.title == "InvoiceBolt – Invoicing for freelancers that chases late payments for you"
    assert launch.url == "https://invoicebolt.io"
    assert (launch.points, launch.comments) == (412, 58)
    assert launch.author is None  # the API answers "[REDACTED]" for users
    assert "$29/month" in launch.body and "Topics: Freelance, Fintech, SaaS" in launch.body
    assert launch.created_at == datetime(2026, 11, 25, 8, 1, tzinfo=UTC)
    # `website` is a producthunt.com/r/ redirect: the post page without utm_* is used
    assert good["1043905"].url == "https://www.producthunt.com/posts/cronping"


def test_graphql_bundled_bad_node_names_created_at():
    source, _, pages = replay(TOKEN_ENV)
    assert normalized_and_bad(source, pages)[1] == [("1042358", "missing or invalid timestamp in 'createdAt': None")]


def posts(*ids, cursor="MTA", more=True):
    return {
        "data": {
            "posts": {
                "pageInfo": {"endCursor": cursor, "hasNextPage": more},
                "edges": [
                    {
                        "node": {
                            "id": str(n),
                            "name": f"P{n}",
                            "tagline": "t",
                            "url": f"https://www.producthunt.com/posts/p{n}",
                            "votesCount": n,
                            "commentsCount": 0,
                            "createdAt": "2026-11-20T08:01:00Z",
                        }
                    }
                    for n in ids
                ],
            }
        }
    }


def test_graphql_sends_the_bearer_token_and_the_cursor():
    captured = []

    def handler(request):
        captured.append(request)
        return httpx.Response(200, json=posts(1, 2) if len(captured) == 1 else posts(3, more=False))

    source, client = live(handler, {**TOKEN_ENV, "PRODUCTHUNT_MAX_PAGES": "5"})
    items = [item.external_id for page in source.fetch(client) for item in page.items]

    assert items == ["1", "2", "3"] and len(captured) == 2
    for request in captured:
        assert request.method == "POST" and str(request.url) == GRAPHQL_URL
        assert request.headers["authorization"] == "Bearer ph-token"
    first, second = (json.loads(request.read()) for request in captured)
    assert "posts(order: NEWEST" in first["query"]
    assert first["variables"] == {"first": 10, "after": None}
    assert second["variables"] == {"first": 10, "after": "MTA"}


def test_graphql_errors_are_a_problem_and_stop_paging():
    errors = {"errors": [{"message": "Invalid Access Token", "error_code": "invalid_oauth_token"}], "data": None}
    source, client = live(lambda request: httpx.Response(200, json=errors), TOKEN_ENV)
    pages = list(source.fetch(client))
    assert client.requests_made == 1 and len(pages[0].problems) == 1
    assert "Invalid Access Token" in pages[0].problems[0].reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"data": {"posts": {"edges": [', "malformed JSON"),
        (b"<html><body>We're down for maintenance</body></html>", "malformed JSON"),
        (b'{"data": {"posts": {"edges": [], "x": "\xc3\x28"}}}', "not valid UTF-8"),
        (b'{"data": {"viewer": null}}', "expected data.posts.edges"),
    ],
)
def test_an_unparseable_graphql_answer_is_a_problem(body, reason):
    source, client = live(lambda request: httpx.Response(200, content=body), TOKEN_ENV)
    pages = list(source.fetch(client))
    assert client.requests_made == 1 and len(pages[0].problems) == 1
    assert reason in pages[0].problems[0].reason and pages[0].problems[0].payload == body


def test_nodes_without_an_id_are_problems():
    body = posts(1, more=False)
    body["data"]["posts"]["edges"].append({"node": {"name": "no id"}})
    source, client = live(lambda request: httpx.Response(200, json=body), TOKEN_ENV)
    pages = list(source.fetch(client))
    assert [item.external_id for item in pages[0].items] == ["1"]
    assert [problem.reason for problem in pages[0].problems] == ["missing id field 'id'"]


def test_a_spent_quota_header_pauses_the_next_request():
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    answers = iter(
        [
            httpx.Response(200, json=posts(1), headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": "40"}),
            httpx.Response(200, json=posts(2, more=False)),
        ]
    )
    source, client = live(lambda request: next(answers), TOKEN_ENV)
    # A bucket on a fake clock: the client's own uses the real monotonic clock.
    client.bucket = TokenBucket(
        ProductHunt.rate_limit.rate_per_minute, ProductHunt.rate_limit.burst, clock=lambda: now[0], sleep=sleep
    )
    list(source.fetch(client))
    assert client.requests_made == 2 and 40 <= sum(sleeps) <= 45


NODE = posts(7)["data"]["posts"]["edges"][0]["node"]


def test_extra_fields_are_tolerated():
    post = ProductHunt({}).normalize({**NODE, "reviewsRating": 4.5, "thumbnail": {"url": "https://x/y.png"}})
    assert post.title == "P7 – t" and post.points == 7


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "'name'"),
        ({"url": None}, "'url'"),
        ({"votesCount": "n/a"}, "'votesCount'"),
        ({"commentsCount": None, "createdAt": "soon"}, "'createdAt'"),
        ({"tagline": 5}, "'tagline'"),
        ({"user": "[REDACTED]"}, "'user'"),
    ],
)
def test_missing_or_wrong_typed_fields_are_bad_records_naming_the_field(change, field):
    with pytest.raises(BadRecord, match=field):
        ProductHunt({}).normalize({**NODE, **change})
