"""The shared HTTP client at the network edge: retries, Retry-After, exhaustion, timeouts, body
limits, rate-limit headers, the circuit breaker. Connectors rely on these, so they are tested once
here; each connector's own tests cover how it parses what comes back."""

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
import respx

from core.platform.http import (
    BREAKER_FAIL_MAX,
    BREAKER_RESET_SECONDS,
    SourceClient,
    SourceHTTPError,
    _retry_after_seconds,
    breaker_for,
    reset_breakers,
)

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
    client = SourceClient("test", httpx.MockTransport(lambda request: next(answers)), sleep=sleep, clock=lambda: now[0])

    client.get(URL)
    client.get(URL)

    # Drained to 30 s below empty, then one token's time: on the real clock this would spin for 30 s.
    assert sum(sleeps) == pytest.approx(30.0 + 1.0 / client.bucket.rate_per_second)


# -- the circuit breaker: one per source per process, counting failed requests ----------------------


@pytest.fixture
def fresh_breakers():
    """Every test here starts with closed breakers (tests/conftest.py does it for all tests too)."""
    reset_breakers()
    yield
    reset_breakers()


def test_one_breaker_per_source_even_when_threads_ask_at_once(fresh_breakers):
    with ThreadPoolExecutor(8) as pool:
        breakers = list(pool.map(lambda _: breaker_for("shared"), range(64)))
    assert len({id(b) for b in breakers}) == 1 and breakers[0] is not breaker_for("another")
    with SourceClient("shared") as client:
        assert client.breaker is breakers[0]


def test_one_sources_requests_do_not_queue_behind_each_others_retries(fresh_breakers):
    second_arrived = threading.Event()

    def first_waits_for_the_second(request):  # serialized by the breaker, the first would wait 5 s in vain
        if request.url.path == "/first":
            return httpx.Response(200 if second_arrived.wait(timeout=5) else 504)
        second_arrived.set()
        return httpx.Response(200)

    clients = [
        SourceClient("busy", httpx.MockTransport(first_waits_for_the_second), sleep=lambda seconds: None)
        for _ in range(2)
    ]
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(clients[0].get, "https://api.example.com/first")
        time.sleep(0.1)
        second = pool.submit(clients[1].get, "https://api.example.com/second")
        assert (first.result().status_code, second.result().status_code) == (200, 200)


def live_client(source: str, max_attempts: int = 2) -> SourceClient:
    # No transport: httpx's default one, which respx replaces.
    return SourceClient(source, sleep=lambda seconds: None, max_attempts=max_attempts)


def failing(client: SourceClient, times: int) -> None:
    for _ in range(times):
        with pytest.raises(SourceHTTPError):
            client.get(URL)


@respx.mock
def test_a_404_does_not_open_the_breaker(fresh_breakers):
    route = respx.get(URL).mock(return_value=httpx.Response(404, text="no such item"))
    client = live_client("catalogue")
    for _ in range(BREAKER_FAIL_MAX + 2):
        with pytest.raises(SourceHTTPError, match="HTTP 404"):
            client.get(URL)
    assert route.call_count == BREAKER_FAIL_MAX + 2  # every one sent: none failed fast
    assert breaker_for("catalogue").current_state == "closed" and breaker_for("catalogue").fail_counter == 0


@respx.mock
def test_failed_requests_of_two_clients_of_one_source_open_its_breaker(fresh_breakers):
    route = respx.get(URL).mock(return_value=httpx.Response(503))
    first, second = live_client("flaky"), live_client("flaky")  # two runs in one process
    failing(first, BREAKER_FAIL_MAX - 2)
    failing(second, 1)
    assert breaker_for("flaky").current_state == "closed"
    with pytest.raises(SourceHTTPError, match="HTTP 503"):  # the one that opens it reports its own error
        first.get(URL)
    assert breaker_for("flaky").current_state == "open"
    assert route.call_count == BREAKER_FAIL_MAX * 2  # max_attempts=2 each
    other = live_client("other")  # another source's breaker is its own
    respx.get("https://other.example.com/").mock(return_value=httpx.Response(200))
    assert other.get("https://other.example.com/").status_code == 200


@respx.mock
def test_retries_within_one_request_count_once(fresh_breakers):
    route = respx.get(URL).mock(return_value=httpx.Response(500))
    client = live_client("slow", max_attempts=4)
    failing(client, 1)
    assert route.call_count == 4 and breaker_for("slow").fail_counter == 1
    route.mock(side_effect=[httpx.Response(500), httpx.Response(500), httpx.Response(200)])
    assert client.get(URL).status_code == 200  # a request that succeeds after retries resets the count
    assert breaker_for("slow").fail_counter == 0


@respx.mock
def test_an_open_breaker_fails_fast_naming_the_source_and_when_it_retries(fresh_breakers):
    route = respx.get(URL).mock(return_value=httpx.Response(502))
    failing(live_client("down"), BREAKER_FAIL_MAX)
    sent = route.call_count

    before = time.time()
    with pytest.raises(SourceHTTPError) as raised:
        live_client("down").get(URL)
    assert route.call_count == sent  # nothing was sent
    message = str(raised.value)
    assert message.startswith(
        f"down: circuit breaker open after {BREAKER_FAIL_MAX} failed requests in a row "
        "(last: HTTP 502); no request was sent. It lets one through at "
    )
    retry_at = re.search(r"lets one through at (\S+ \S+) UTC, in (\d+) s", message)
    assert retry_at, message
    when = datetime.strptime(retry_at.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    assert before + BREAKER_RESET_SECONDS - 2 <= when <= time.time() + BREAKER_RESET_SECONDS
    assert BREAKER_RESET_SECONDS - 2 <= int(retry_at.group(2)) <= BREAKER_RESET_SECONDS

    breaker_for("down").reset_timeout = 0  # the wait is over: one request goes through, and closes it
    route.mock(return_value=httpx.Response(200))
    assert live_client("down").get(URL).status_code == 200
    assert breaker_for("down").current_state == "closed"
