"""GitHub search connector: bundled snapshots, the created-since window, credentials, bad data."""

import json
from datetime import UTC, datetime

import httpx
import pytest
from snapshot_items import normalized_and_bad

from core.discovery.sources.base import BadRecord
from core.discovery.sources.github import GitHubSearch
from core.platform.http import SnapshotTransport, SourceClient


def replay(env=None):
    source = GitHubSearch(env or {})
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    return source, client, list(source.fetch(client))


def live(handler, env=None, now=None):
    source = GitHubSearch({"DISCOVERY_MODE": "live", **(env or {})}, now=now)
    return source, SourceClient(source.name, httpx.MockTransport(handler), sleep=lambda s: None)


def test_snapshot_replay_pages_through_the_search():
    _, client, pages = replay()
    items = [item for page in pages for item in page.items]
    assert len(items) == 20 and client.requests_made == 2  # GITHUB_MAX_PAGES=2 caps total_count=5127
    assert [httpx.URL(page.fetched.url).params["page"] for page in pages] == ["1", "2"]
    assert all(httpx.URL(page.fetched.url).params["q"] == "created:>=2026-11-18" for page in pages)
    assert not any(page.problems for page in pages)


def test_known_repository_normalizes_to_the_common_fields():
    source, _, pages = replay()
    payload = next(item.payload for page in pages for item in page.items if item.external_id == "1096412873")
    repo = source.normalize(payload)
    assert repo.title == "kestrel-labs/agentmail"
    assert repo.url == "https://github.com/kestrel-labs/agentmail"
    assert (repo.points, repo.comments, repo.author) == (3841, 47, "kestrel-labs")
    assert repo.created_at == datetime(2026, 11, 18, 15, 2, 44, tzinfo=UTC)
    assert repo.body.startswith("Open-source email inbox API for AI agents")
    assert "Topics: ai-agents, email, api" in repo.body


def test_the_bundled_bad_repository_names_stargazers_count():
    source, _, pages = replay()
    assert normalized_and_bad(source, pages)[1] == [
        ("1097990405", "field 'stargazers_count' should be a non-negative number, got 'lots'")
    ]


def test_snapshot_mode_uses_the_recorded_window_even_with_an_override():
    source = GitHubSearch({"GITHUB_CREATED_SINCE": "2030-01-01"})  # DISCOVERY_MODE defaults to snapshot
    assert source.created_since() == "2026-11-18"


def test_live_window_is_seven_days_before_now_or_the_override():
    def now() -> datetime:
        return datetime(2026, 12, 3, 1, 30, tzinfo=UTC)

    assert GitHubSearch({"DISCOVERY_MODE": "live"}, now=now).created_since() == "2026-11-26"
    overridden = GitHubSearch({"DISCOVERY_MODE": "live", "GITHUB_CREATED_SINCE": "2026-10-01"})
    assert overridden.created_since() == "2026-10-01"
    with pytest.raises(ValueError, match="GITHUB_CREATED_SINCE"):
        GitHubSearch({"DISCOVERY_MODE": "live", "GITHUB_CREATED_SINCE": "last week"}).created_since()


def page_of(count, total=500):
    return {
        "total_count": total,
        "incomplete_results": False,
        "items": [
            {
                "id": n,
                "full_name": f"o/r{n}",
                "html_url": f"https://github.com/o/r{n}",
                "stargazers_count": n,
                "created_at": "2026-11-20T00:00:00Z",
                "owner": {"login": "o"},
            }
            for n in range(1, count + 1)
        ],
    }


def test_live_requests_carry_the_token_as_bearer_and_the_api_headers():
    captured = []

    def handler(request):
        captured.append(request)
        return httpx.Response(200, json=page_of(3))

    def now() -> datetime:
        return datetime(2026, 11, 25, tzinfo=UTC)

    source, client = live(handler, {"GITHUB_TOKEN": "ghp_example"}, now=now)
    list(source.fetch(client))

    request = captured[0]
    assert request.headers["authorization"] == "Bearer ghp_example"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.url.params["q"] == "created:>=2026-11-18"
    assert (request.url.params["sort"], request.url.params["order"]) == ("stars", "desc")
    assert len(captured) == 1  # 3 items < per_page: the last page


def test_without_a_token_no_authorization_header_is_sent():
    captured = []

    def handler(request):
        captured.append(request)
        return httpx.Response(200, json=page_of(0))

    source, client = live(handler)
    list(source.fetch(client))
    assert "authorization" not in captured[0].headers
    assert source.missing_credentials() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"total_count": 3, "items": [', "malformed JSON"),
        (b"<html><body><h1>Unicorn!</h1> This page is taking too long to load.</body></html>", "malformed JSON"),
        (b'{"items": [], "total_count": 0, "x": "\xff\xfe"}', "not valid UTF-8"),
        (json.dumps({"message": "Validation Failed"}).encode(), "expected an object with an 'items' list"),
    ],
)
def test_an_unparseable_page_is_a_problem_and_stops_paging(body, reason):
    source, client = live(lambda request: httpx.Response(200, content=body))
    pages = list(source.fetch(client))
    assert len(pages) == 1 and client.requests_made == 1
    assert len(pages[0].problems) == 1 and reason in pages[0].problems[0].reason
    assert pages[0].problems[0].payload == body


def test_items_without_an_id_are_problems():
    body = page_of(2)
    body["items"].append({"full_name": "x/no-id"})
    source, client = live(lambda request: httpx.Response(200, json=body))
    pages = list(source.fetch(client))
    assert [item.external_id for item in pages[0].items] == ["1", "2"]
    assert [problem.reason for problem in pages[0].problems] == ["missing id field 'id'"]


REPO = page_of(1)["items"][0]


def test_extra_fields_are_tolerated_and_nulls_are_empty():
    repo = GitHubSearch({}).normalize(
        {**REPO, "description": None, "topics": None, "mirror_url": None, "new_field_2027": {"a": 1}}
    )
    assert repo.body == "" and repo.points == 1 and repo.comments == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"full_name": None}, "'full_name'"),
        ({"html_url": "github.com/o/r1"}, "'html_url'"),
        ({"created_at": 1795000000}, "'created_at'"),
        ({"id": "1"}, "'id'"),
        ({"forks_count": 2, "open_issues_count": "3"}, "'open_issues_count'"),
        ({"owner": "o"}, "'owner'"),
        ({"topics": "saas"}, "'topics'"),
    ],
)
def test_missing_or_wrong_typed_fields_are_bad_records_naming_the_field(change, field):
    with pytest.raises(BadRecord, match=field):
        GitHubSearch({}).normalize({**REPO, **change})
