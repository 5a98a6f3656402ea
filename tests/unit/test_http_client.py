"""The shared HTTP client at the network edge: retries, Retry-After, exhaustion, timeouts, body
limits, rate-limit headers. Connectors rely on these, so they are tested once here; each
connector's own tests cover how it parses what comes back."""

import time

import httpx
import pytest

from core.platform.http import SourceClient, SourceHTTPError, _retry_after_seconds

URL = "https://api.example.com/v1/items"


def client_for(handler, sleeps: list[float] | None = None, **options) -> SourceClient:
    record = sleeps.append if sleeps is not None else (lambda seconds: None)
    return SourceClient("test", httpx.MockTransport(handler), sleep=record, **options)


def test_429_is_retried_after_the_seconds_in_retry_after():
    answers = iter([httpx.Response(429, headers={"retry-after": "7"}), httpx.Response(200, json={"ok": True})])
    sleeps: list[float] = []
    client = client_for(lambda request: next(answers), sleeps)

    fetched = client.get(URL)

    assert fetched.status_code == 200 and fetched.json() == {"ok": True}
    assert client.requests_made == 2
    assert sleeps == [7.0]


def test_500_on_every_attempt_exhausts_retries_into_source_http_error():
    calls = []

    def always_500(request):
        calls.append(request)
        return httpx.Response(500, text="upstream exploded")

    with pytest.raises(SourceHTTPError) as raised:
        client_for(always_500, max_attempts=3).get(URL)

    assert len(calls) == 3
    assert raised.value.status_code == 500 and "HTTP 500" in raised.value.reason


def test_timeouts_are_retried_then_reported_as_source_http_error():
    calls = []

    def times_out(request):
        calls.append(request)
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(SourceHTTPError, match="timed out after retries: ReadTimeout"):
        client_for(times_out, max_attempts=3).get(URL)
    assert len(calls) == 3


def test_a_body_over_the_limit_is_refused_by_content_length_and_while_streaming():
    declared = client_for(lambda request: httpx.Response(200, content=b"x" * 2048), max_body_bytes=1024)
    with pytest.raises(SourceHTTPError, match="exceeds the 1024 byte limit"):
        declared.get(URL)

    def undeclared(request):  # a streamed body with no content-length
        return httpx.Response(200, stream=httpx.ByteStream(b"y" * 4096), headers={"transfer-encoding": "chunked"})

    with pytest.raises(SourceHTTPError, match="exceeds the 1024 byte limit"):
        client_for(undeclared, max_body_bytes=1024).get(URL)


def test_a_4xx_other_than_429_is_not_retried():
    calls = []

    def unauthorized(request):
        calls.append(request)
        return httpx.Response(401, json={"message": "Bad credentials"})

    with pytest.raises(SourceHTTPError, match="HTTP 401") as raised:
        client_for(unauthorized).get(URL)
    assert len(calls) == 1 and raised.value.status_code == 401


def test_rate_limit_reset_is_read_as_epoch_or_as_seconds_until_reset():
    epoch = str(int(time.time()) + 40)  # GitHub and X send an epoch
    assert _retry_after_seconds({"x-ratelimit-remaining": "0", "x-ratelimit-reset": epoch}) == pytest.approx(40, abs=2)
    # Reddit sends seconds until the window resets, and a float remaining count
    assert _retry_after_seconds({"x-ratelimit-remaining": "0.0", "x-ratelimit-reset": "30"}) == 30.0
    assert _retry_after_seconds({"x-ratelimit-remaining": "12.0", "x-ratelimit-reset": "30"}) is None


def test_a_reddit_style_429_waits_for_the_reset_seconds():
    spent = {"x-ratelimit-remaining": "0.0", "x-ratelimit-reset": "25", "x-ratelimit-used": "100"}
    answers = iter([httpx.Response(429, headers=spent), httpx.Response(200, json={})])
    sleeps: list[float] = []

    client_for(lambda request: next(answers), sleeps).get(URL)

    assert sleeps == [25.0]


def test_a_spent_quota_on_a_200_holds_the_next_request_back_until_the_reset():
    now = [1_000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # a fake clock: waiting is instant and exact
        sleeps.append(seconds)
        now[0] += seconds

    spent = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "30"}
    answers = iter([httpx.Response(200, headers=spent, json={}), httpx.Response(200, json={})])
    client = SourceClient("test", httpx.MockTransport(lambda request: next(answers)), sleep=sleep,
                          clock=lambda: now[0])

    client.get(URL)
    client.get(URL)

    # Drained to 30 s below empty, then one token's time: on the real clock this would spin for 30 s.
    assert sum(sleeps) == pytest.approx(30.0 + 1.0 / client.bucket.rate_per_second)
