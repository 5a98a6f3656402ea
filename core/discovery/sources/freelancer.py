"""Freelancer.com active projects: paid gigs with budgets, a direct signal of what people pay for.

Endpoint: GET https://www.freelancer.com/api/projects/0.1/projects/active/ with query, limit,
  offset, full_description=true, job_details=true, compact=true (compact drops null fields).
Auth: none for reading active projects (an OAuth token, header freelancer-oauth-v1, is only
  needed for bidding and private data).
Rate limits: not published; over-eager clients get HTTP 429 (error_code ExceededRateLimit).
  We stay at 10 requests a minute.
Pagination: offset += limit while the page is full and offset < result.total_count, up to
  FREELANCER_MAX_PAGES pages (default 3) of FREELANCER_PAGE_SIZE projects (default 20).
  FREELANCER_QUERY overrides the search words (default "saas").

Errors come as {"status": "error", "message", "error_code"}; with a 4xx status the client raises,
with a 200 the page becomes a Problem. Budgets are written into the body text ("Budget: $250–750
USD fixed") so the revenue parser sees them like any other post's prices.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from core.discovery.sources._fields import optional_object, positive_int
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

ACTIVE_URL = "https://www.freelancer.com/api/projects/0.1/projects/active/"
PROJECT_URL = "https://www.freelancer.com/projects/"
DEFAULT_QUERY = "saas"


class Freelancer(Source):
    name = "freelancer"
    family = "freelance"
    required_env = ()
    rate_limit = RateLimit(rate_per_minute=10, burst=3)
    description = "Freelancer.com active projects matching a query, with budgets (public API, no token)."

    def fetch(self, client: SourceClient) -> Iterator[Page]:
        max_pages = positive_int(self.env, "FREELANCER_MAX_PAGES", 3)
        limit = positive_int(self.env, "FREELANCER_PAGE_SIZE", 20)
        query = self.env.get("FREELANCER_QUERY") or DEFAULT_QUERY
        offset = 0
        for _ in range(max_pages):
            fetched = client.get(
                ACTIVE_URL,
                params={
                    "query": query,
                    "limit": limit,
                    "offset": offset,
                    "full_description": "true",
                    "job_details": "true",
                    "compact": "true",
                },
            )
            page = Page(fetched)
            body, problem = parse_json(fetched)
            if problem is None:
                problem = _status_problem(fetched.url, body, fetched.body)
            if problem is not None:
                page.problems.append(problem)
                yield page
                return
            result = body.get("result")
            projects = result.get("projects") if isinstance(result, dict) else None
            page.items, page.problems = items_from(fetched, projects, "id", "result.projects")
            yield page
            total = result.get("total_count") if isinstance(result, dict) else None
            offset += limit
            if not isinstance(projects, list) or len(projects) < limit or (isinstance(total, int) and offset >= total):
                return

    def normalize(self, payload: Mapping[str, Any]) -> Normalized:
        project_id = require(payload, "id", int)
        title = require(payload, "title", str).strip()
        seo_url = require(payload, "seo_url", str).strip("/")
        created_at = timestamp(require(payload, "time_submitted", (int, float)), "time_submitted")
        description = payload.get("description") or payload.get("preview_description") or ""
        if not isinstance(description, str):
            raise BadRecord(f"field 'description' should be str, got {type(description).__name__}")
        if not title:
            raise BadRecord("field 'title' is empty")
        if not seo_url:
            raise BadRecord("field 'seo_url' is empty")
        bid_stats = optional_object(payload, "bid_stats")
        lines = [description.strip(), "", _budget_line(payload)]
        average = bid_stats.get("bid_avg")
        bids = count(bid_stats, "bid_count")
        if isinstance(average, int | float) and not isinstance(average, bool) and bids:
            sign, code = _currency(payload)
            lines.append(
                " ".join(
                    part for part in ("Average bid:", f"{sign}{_amount(average)}", code, f"from {bids} bids") if part
                )
            )
        skills = [job.get("name") for job in payload.get("jobs") or [] if isinstance(job, Mapping)]
        if skills := [s for s in skills if isinstance(s, str) and s]:
            lines.append(f"Skills: {', '.join(skills)}")
        return Normalized(
            external_id=str(project_id),
            url=PROJECT_URL + seo_url,
            title=title,
            body="\n".join(lines).strip(),
            author=None,  # compact results carry only owner_id; names need a second, authenticated call
            points=bids,
            comments=0,
            created_at=created_at,
        )


def _status_problem(url: str, body: Any, raw: bytes) -> Problem | None:
    if not isinstance(body, dict):
        return Problem("parse", url, f"expected a JSON object, got {type(body).__name__}", raw)
    status = body.get("status")
    if status == "error":
        return Problem(
            "parse",
            url,
            f"Freelancer API error {body.get('error_code') or '(no code)'}: {body.get('message') or '(no message)'}",
            raw,
        )
    if status != "success":
        return Problem("parse", url, f"expected status 'success', got {status!r}", raw)
    return None


def _budget_line(payload: Mapping[str, Any]) -> str:
    """'Budget: $250–750 USD fixed' or 'Budget: $15–25 USD per hour', as the poster set it."""
    budget = optional_object(payload, "budget")
    low, high = budget.get("minimum"), budget.get("maximum")
    for field_name, value in (("budget.minimum", low), ("budget.maximum", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise BadRecord(f"field {field_name!r} should be a non-negative number, got {value!r:.60}")
    if low is None and high is None:
        return "Budget: not stated"
    sign, code = _currency(payload)
    if low is not None and high is not None and high != low:
        amount = f"{sign}{_amount(low)}–{_amount(high)}"
    elif low is not None and high is None:
        amount = f"{sign}{_amount(low)}+"
    else:
        amount = f"{sign}{_amount(high if high is not None else low)}"
    kind = "per hour" if payload.get("type") == "hourly" else (payload.get("type") or "")
    return " ".join(part for part in ("Budget:", amount, code, kind) if part)


def _currency(payload: Mapping[str, Any]) -> tuple[str, str]:
    currency = optional_object(payload, "currency")
    sign, code = currency.get("sign"), currency.get("code")
    return (sign if isinstance(sign, str) else ""), (code if isinstance(code, str) else "")


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
