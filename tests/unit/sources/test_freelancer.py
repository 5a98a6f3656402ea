"""Freelancer.com active projects against the bundled snapshots and against bad or failing
responses served by a MockTransport at the network edge."""

from datetime import UTC, datetime

import httpx
import pytest
from snapshot_items import normalized_and_bad

from core.discovery.sources.base import BadRecord
from core.discovery.sources.freelancer import Freelancer
from core.platform.http import SnapshotTransport, SourceClient, SourceHTTPError


def replay(env=None):
    source = Freelancer(env or {})
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    return source, client, list(source.fetch(client))


def serve(*responses, env=None):
    seen, queue = [], list(responses)

    def handler(request):
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return Freelancer(env or {}), SourceClient("freelancer", httpx.MockTransport(handler), sleep=lambda s: None), seen


def project(**overrides):
    base = {
        "id": 40190001,
        "title": "Build a Stripe billing dashboard",
        "seo_url": "python/Build-a-Stripe-dashboard",
        "description": "MRR, churn and dunning for our SaaS.",
        "type": "fixed",
        "time_submitted": 1795550400,
        "budget": {"minimum": 250.0, "maximum": 750.0},
        "currency": {"id": 1, "code": "USD", "sign": "$", "name": "US Dollar", "exchange_rate": 1.0},
        "bid_stats": {"bid_count": 12, "bid_avg": 480.0},
        "jobs": [{"id": 13, "name": "Python"}],
    }
    return {**base, **overrides}


def success(projects, total=None):
    return {
        "status": "success",
        "result": {"projects": projects, "total_count": len(projects) if total is None else total},
        "request_id": "r1",
    }


def test_replay_pages_by_offset_until_total_count():
    _source, client, pages = replay()

    assert client.requests_made == len(pages) == 2
    assert [len(page.items) for page in pages] == [20, 15]
    assert ["offset=0" in pages[0].fetched.url, "offset=20" in pages[1].fetched.url] == [True, True]
    assert not any(page.problems for page in pages)


def test_known_project_normalizes_with_its_budget_in_the_body():
    source, _, pages = replay()
    payload = next(item.payload for item in pages[0].items if item.external_id == "40183522")
    normalized = source.normalize(payload)

    assert normalized.url == (
        "https://www.freelancer.com/projects/python/Build-a-Stripe-subscription-billing-dashboard-for-my-SaaS"
    )
    assert normalized.title == "Build a Stripe subscription billing dashboard for my SaaS"
    assert "Budget: $750–1,500 USD fixed" in normalized.body
    assert "Average bid: $1,120.50 USD from 34 bids" in normalized.body
    assert "Skills: Python, Stripe, React.js" in normalized.body
    assert (normalized.points, normalized.comments, normalized.author) == (34, 0, None)
    assert normalized.created_at == datetime(2026, 11, 24, 19, 12, tzinfo=UTC)


def test_hourly_and_non_dollar_budgets_read_naturally():
    source, _, pages = replay()
    bodies = {
        item.payload["title"]: source.normalize(item.payload).body
        for page in pages
        for item in page.items
        if item.payload["title"].startswith(("Integrate OpenAI", "WordPress plugin"))
    }
    assert "Budget: $25–50 USD per hour" in bodies["Integrate OpenAI API into existing Laravel CRM"]
    assert "Budget: £500–1,000 GBP fixed" in bodies["WordPress plugin: membership paywall with Stripe"]


def test_bundled_project_submitted_yesterday_is_a_bad_record_naming_the_field():
    source, _, pages = replay()
    assert normalized_and_bad(source, pages)[1] == [
        ("40187084", "field 'time_submitted' should be int or float, got str 'yesterday'")
    ]


def test_status_error_is_a_problem():
    error = {
        "status": "error",
        "message": "Invalid query parameter: limit",
        "error_code": "ProjectExceptionCodes.INVALID_PARAMETER",
        "request_id": "r2",
    }
    source, client, seen = serve(httpx.Response(200, json=error))
    [page] = list(source.fetch(client))
    assert len(seen) == 1 and not page.items
    assert page.problems[0].reason == (
        "Freelancer API error ProjectExceptionCodes.INVALID_PARAMETER: Invalid query parameter: limit"
    )


def test_error_status_with_an_http_error_code_fails_the_source():
    error = {"status": "error", "message": "Rate limit exceeded", "error_code": "ExceededRateLimit"}
    source, client, _ = serve(httpx.Response(403, json=error))
    with pytest.raises(SourceHTTPError, match="ExceededRateLimit"):
        list(source.fetch(client))


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"status": "success", "result": {"projects": [', "malformed JSON"),
        (b"<html><head><title>Freelancer</title></head><body>Maintenance</body></html>", "malformed JSON"),
        (b'{"status": "success", "result": {"projects": [{"id": 1, "title": "Caf\xe9"}]}}', "not valid UTF-8"),
        (b'{"result": {"projects": []}}', "expected status 'success', got None"),
        (b'{"status": "success", "result": {"projects": {"id": 1}}}', "expected a list at result.projects"),
    ],
)
def test_unparseable_responses_are_problems(body, reason):
    source, client, seen = serve(httpx.Response(200, content=body))
    [page] = list(source.fetch(client))
    assert len(seen) == 1 and not page.items
    assert reason in page.problems[0].reason and page.problems[0].payload == body


def test_projects_without_id_are_problems_and_the_rest_survive():
    source, client, _ = serve(httpx.Response(200, json=success([project(), {"title": "no id"}, 7])))
    [page] = list(source.fetch(client))
    assert [item.external_id for item in page.items] == ["40190001"]
    assert [p.reason for p in page.problems] == ["missing id field 'id'", "expected an object, got int"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"title": None}, "'title'"),
        ({"title": 42}, "'title'"),
        ({"seo_url": None}, "'seo_url'"),
        ({"id": "40190001"}, "'id'"),
        ({"budget": {"minimum": "cheap", "maximum": 750.0}}, "'budget.minimum'"),
        ({"budget": [250, 750]}, "'budget'"),
        ({"bid_stats": {"bid_count": -1}}, "'bid_count'"),
        ({"description": ["not", "text"]}, "'description'"),
    ],
)
def test_missing_or_wrong_typed_fields_are_bad_records_naming_the_field(change, field):
    with pytest.raises(BadRecord, match=field):
        Freelancer({}).normalize(project(**change))


def test_extra_fields_are_tolerated_and_preview_stands_in_for_description():
    normalized = Freelancer({}).normalize(
        project(description=None, preview_description="Short preview.", hourly_project_info=None, new_field={"x": 1})
    )
    assert normalized.body.startswith("Short preview.\n\nBudget: $250–750 USD fixed")


def test_paging_stops_at_a_short_page_and_at_the_page_cap():
    source, client, seen = serve(httpx.Response(200, json=success([project()], total=500)))
    list(source.fetch(client))
    assert len(seen) == 1  # 1 project < limit 20: there is no next page

    full = success([project(id=i) for i in range(1, 3)], total=500)
    source, client, seen = serve(
        httpx.Response(200, json=full), env={"FREELANCER_PAGE_SIZE": "2", "FREELANCER_MAX_PAGES": "3"}
    )
    list(source.fetch(client))
    assert [r.url.params["offset"] for r in seen] == ["0", "2", "4"]


def test_reading_needs_no_credentials_and_sends_none():
    source, client, seen = serve(httpx.Response(200, json=success([])))
    list(source.fetch(client))
    assert source.missing_credentials() == []
    assert "authorization" not in seen[0].headers and "freelancer-oauth-v1" not in seen[0].headers
    assert seen[0].url.path == "/api/projects/0.1/projects/active/"
    assert seen[0].url.params["full_description"] == "true" and seen[0].url.params["query"] == "saas"
