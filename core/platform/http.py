"""The one HTTP client every source uses: timeouts, a token bucket per source, retries with
exponential backoff and jitter on 429/5xx/timeouts (honouring Retry-After), and a circuit
breaker per source per process, around the retries. Snapshot mode swaps only the transport, so
connectors run the same code offline as online."""

import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlencode, urlsplit, urlunsplit

import httpx
import tenacity


def _import_pybreaker() -> Any:
    # pybreaker imports redis whenever it is installed (dagster-celery[redis] installs it) for a
    # Redis storage we never use: 0.3 s on every load of a code location, measured with
    # `python -X importtime`. Hidden while pybreaker loads unless something already imported it.
    if "redis" in sys.modules:
        import pybreaker
    else:
        sys.modules["redis"] = None  # type: ignore[assignment]  # `import redis` raises ImportError
        try:
            import pybreaker
        finally:
            del sys.modules["redis"]
    return pybreaker


pybreaker = _import_pybreaker()

# The seed's discovery limiter: 10 requests a minute with bursts of 50.
DEFAULT_RATE_PER_MINUTE = 10.0
DEFAULT_BURST = 50
MAX_BODY_BYTES = 5 * 1024 * 1024

# Query parameters and headers that carry credentials: never stored (raw tables, quarantine,
# snapshots) or logged. A name is split into words (api_key, X-Api-Key and apiKey are all
# "api key"); it is secret when it is one of SECRET_NAMES as a whole, or its last word is one of
# SECRET_LAST_WORDS, or it ends in "<qualifier> key" (api_key, access_key, Ocp-Apim-Subscription-Key).
# Only the last word counts, so a name about a credential (auth_mode, sig_version) or a cursor
# (page_key, sort_key) stays in the snapshot key, and "author" or "keywords" never matches.
SECRET_NAMES = frozenset(
    {"key", "apikey", "sig", "signature", "auth", "authorization", "oauth", "authkey", "pwd", "pass", "passwd"}
    | {"token", "authtoken", "accesstoken", "apitoken", "secret", "password", "credential", "credentials"}
)
SECRET_LAST_WORDS = frozenset(
    {"token", "secret", "password", "passwd", "signature", "credential", "credentials", "apikey", "authkey"}
)
KEY_QUALIFIERS = frozenset({"api", "access", "auth", "secret", "private", "client", "app", "consumer", "subscription"})
SECRET_HEADERS = frozenset({"authorization", "x-subscription-token", "x-api-key", "cookie", "freelancer-oauth-v1"})
# Cursors, not credentials: X pages by next_token, and the key of each page's snapshot needs it.
PAGINATION_PARAMS = frozenset({"next_token", "nexttoken", "page_token", "pagetoken", "pagination_token"})
REDACTED = "***"
# Secrets shorter than this are left in bodies: a body is masked by plain substring replacement,
# so a 3-5 character value (a short test key, a PIN) would also mask every unrelated occurrence of
# those characters in the payload (ids, words, numbers) and corrupt the record. Real API keys and
# tokens are far longer; the URL and headers are masked by name whatever the value's length.
MIN_SECRET_LENGTH_IN_BODY = 6


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or header of this name carries a credential."""
    lowered = name.lower()
    if lowered in PAGINATION_PARAMS:
        return False
    if lowered in SECRET_HEADERS:
        return True
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if w]
    if not words:
        return False
    if "".join(words) in SECRET_NAMES or words[-1] in SECRET_LAST_WORDS:
        return True
    return words[-1] == "key" and len(words) > 1 and words[-2] in KEY_QUALIFIERS


def redact_url(url: str) -> str:
    """`url` with the value of every secret query parameter replaced by ***; everything else is
    kept byte for byte (the stored request_url is the URL that was fetched, but for the secret)."""
    parts = urlsplit(url)
    # A password in the userinfo (https://user:pw@host/) is masked like Warehouse.describe does.
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{hostport}" if at and ":" in userinfo else parts.netloc
    pairs = parts.query.split("&") if parts.query else []
    masked = [
        f"{name}={REDACTED}" if is_secret_name(unquote_plus(name)) else pair
        for pair in pairs
        for name in [pair.split("=", 1)[0]]
    ]
    if masked == pairs and netloc == parts.netloc:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(masked), parts.fragment))


def with_secrets_of(url: str, original: str) -> str:
    """`url` (read from a redacted body, such as a feed's next page) with each *** secret
    parameter given back its value from `original`, the URL the caller was configured with.
    Only a URL on the configured scheme and host gets them: a feed that names another host as its
    next page (`https://evil.example/x?key=***`) must not be handed our key."""
    configured, parts = urlsplit(original), urlsplit(url)
    try:
        if (parts.scheme.lower(), parts.hostname, parts.port) != (
            configured.scheme.lower(),
            configured.hostname,
            configured.port,
        ):
            return url
    except ValueError:  # an unparseable port: not the configured host
        return url
    known = {k: v for k, v in parse_qsl(configured.query, keep_blank_values=True) if is_secret_name(k)}
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    masked_password = parts.password == REDACTED and configured.password is not None
    if not masked_password and not any(v == REDACTED and k in known for k, v in pairs):
        return url
    netloc = configured.netloc if masked_password else parts.netloc
    query = [(k, known[k] if v == REDACTED and k in known else v) for k, v in pairs]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def secret_values(request: httpx.Request) -> list[str]:
    """The credentials a request carries (secret query parameters, secret headers' values, and
    the token of a `Bearer`/`Basic` header), longest first."""
    values = [v for k, v in request.url.params.multi_items() if is_secret_name(k)]
    if request.url.password:
        values.append(request.url.password)
    for name, value in request.headers.items():
        if is_secret_name(name):
            values += [value, value.split(" ", 1)[-1]]
    return sorted({v for v in values if len(v) >= MIN_SECRET_LENGTH_IN_BODY}, key=len, reverse=True)


def redact_body(body: bytes, secrets: list[str]) -> bytes:
    """`body` with each of `secrets` (as sent, and percent-encoded) replaced by ***: an API that
    echoes the request URL (a JSON Feed's `next_url`, a `self` link) must not store the key."""
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            body = body.replace(form.encode(), REDACTED.encode())
    return body


class SourceHTTPError(RuntimeError):
    """A request that failed for good (after retries, or not worth retrying)."""

    def __init__(self, source: str, url: str, reason: str, status_code: int | None = None, body: bytes = b""):
        super().__init__(f"{source}: {reason} ({url})")
        self.source, self.url, self.reason, self.status_code, self.body = source, url, reason, status_code, body


class RetryableHTTPError(SourceHTTPError):
    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class TokenBucket:
    """`rate_per_minute` tokens a minute, up to `burst` saved; `acquire` blocks until one is free."""

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate_per_minute} burst={burst}")
        self.rate_per_second = rate_per_minute / 60.0
        self.capacity = float(burst)
        self._tokens = float(burst)
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token; return how long we waited for it."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate_per_second)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return waited
                shortfall = (1.0 - self._tokens) / self.rate_per_second
            self._sleep(shortfall)
            waited += shortfall

    def drain_until(self, seconds_from_now: float) -> None:
        """An API said its quota is spent (rate-limit headers): no tokens until then."""
        with self._lock:
            self._tokens = -seconds_from_now * self.rate_per_second


@dataclass
class RateLimit:
    rate_per_minute: float = DEFAULT_RATE_PER_MINUTE
    burst: int = DEFAULT_BURST


@dataclass
class Fetched:
    """A response as the source returned it, with the request that produced it."""

    url: str
    status_code: int
    headers: Mapping[str, str]
    body: bytes
    fetched_at: float = field(default_factory=time.time)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def text(self) -> str:
        """Strict UTF-8: a source that sends other bytes is a bad record, not silently mangled."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.text())


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    # GitHub: epoch seconds; Reddit: seconds until reset; X spells them with dashes (x-rate-limit-*).
    reset = headers.get("x-ratelimit-reset") or headers.get("x-rate-limit-reset")
    remaining = headers.get("x-ratelimit-remaining")
    if remaining is None:
        remaining = headers.get("x-rate-limit-remaining")
    if reset and remaining is not None and remaining.strip() in ("0", "0.0"):
        try:
            value = float(reset)
        except ValueError:
            return None
        # No epoch since 2001 is below 1e9, so a smaller value is a delta (Reddit), not a time.
        return max(0.0, value if value < 1e9 else value - time.time())
    return None


def _worth_retrying(error: BaseException) -> bool:
    # A missing snapshot will not appear by waiting; a timeout or a 503 may go away.
    if isinstance(error, SnapshotMissing):
        return False
    return isinstance(error, RetryableHTTPError | httpx.TransportError)


# -- circuit breakers --------------------------------------------------------------------------------
# One per source per process, shared by every SourceClient of that source (each run, each asset),
# so that a source that is down stays skipped across runs instead of being retried afresh by each.
# It counts failed requests, not attempts: BREAKER_FAIL_MAX requests in a row that failed after
# their retries open it for BREAKER_RESET_SECONDS, then one request is let through to try.
BREAKER_FAIL_MAX = 5
BREAKER_RESET_SECONDS = 300.0


def is_outage(error: BaseException) -> bool:
    """Whether a failed request counts against its source's breaker: 429, 5xx or a spent quota
    after retries, a timeout, a connection error. A 404 or 401 is an answer (the source is up, and
    pybreaker then resets the count as for a success); a missing snapshot is offline replay, and
    failing fast there would hide which recording is missing."""
    if isinstance(error, SnapshotMissing):
        return False
    return isinstance(error, RetryableHTTPError | httpx.TransportError)


class _LockedStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker guards its counters with its lock only inside `call`, which holds that lock for
    the whole call: around a request's retries (sleeps of up to max_retry_after) it would queue
    every other thread's request to the source. `calling()` gates under the lock and runs the
    request outside it, so the counters get a lock of their own."""

    def __init__(self) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._counter_lock = threading.Lock()

    def increment_counter(self) -> None:
        with self._counter_lock:
            super().increment_counter()

    def reset_counter(self) -> None:
        with self._counter_lock:
            super().reset_counter()


class _WhenOpened(pybreaker.CircuitBreakerListener):
    """When the breaker last opened and the failure before it, for the fail-fast message
    (pybreaker keeps the time in its private storage)."""

    def __init__(self) -> None:
        self.opened_at: float | None = None
        self.last_failure = ""

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.last_failure = getattr(exc, "reason", None) or str(exc) or type(exc).__name__

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        if new_state.name == pybreaker.STATE_OPEN:
            self.opened_at = time.time()


_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(source: str) -> pybreaker.CircuitBreaker:
    """The process's circuit breaker for `source`, made on first use."""
    with _breakers_lock:
        if source not in _breakers:
            _breakers[source] = pybreaker.CircuitBreaker(
                fail_max=BREAKER_FAIL_MAX,
                reset_timeout=BREAKER_RESET_SECONDS,
                name=source,
                exclude=[lambda error: not is_outage(error)],
                listeners=[_WhenOpened()],
                state_storage=_LockedStorage(),
                throw_new_error_on_trip=False,
            )  # the request that trips it reports its own error
        return _breakers[source]


def reset_breakers() -> None:
    """Forget every source's breaker: the next request to each starts closed (tests use this)."""
    with _breakers_lock:
        _breakers.clear()


def _open_reason(breaker: pybreaker.CircuitBreaker) -> str:
    log = next((listener for listener in breaker.listeners if isinstance(listener, _WhenOpened)), None)
    failed = f"circuit breaker open after {breaker.fail_max} failed requests in a row"
    if log is None or log.opened_at is None:
        return f"{failed}; no request is sent for {breaker.reset_timeout:.0f} s after it opened"
    retry_at = log.opened_at + breaker.reset_timeout
    return (
        f"{failed} (last: {log.last_failure}); no request was sent. It lets one through at "
        f"{datetime.fromtimestamp(retry_at, UTC):%Y-%m-%d %H:%M:%S} UTC, in "
        f"{max(0.0, retry_at - time.time()):.0f} s: wait for that, or check the source's status"
    )


class SourceClient:
    """HTTP for one source. Thread-safe; one instance per source per run, all of a source's
    instances in a process sharing its circuit breaker (`breaker_for`)."""

    def __init__(
        self,
        source: str,
        transport: httpx.BaseTransport | None = None,
        *,
        rate_limit: RateLimit | None = None,
        timeout: float = 20.0,
        max_attempts: int = 4,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        breaker: pybreaker.CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        user_agent: str = "ventureloop/0.1 (+discovery)",
    ):
        limit = rate_limit or RateLimit()
        self.source = source
        # A test passes a fake sleep that advances a fake clock, so rate limiting never waits for real.
        self.bucket = TokenBucket(limit.rate_per_minute, limit.burst, clock=clock, sleep=sleep)
        self.breaker = breaker or breaker_for(source)
        self.max_body_bytes = max_body_bytes
        self.max_retry_after = max_retry_after
        self.requests_made = 0
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport, timeout=timeout, follow_redirects=True, headers={"user-agent": user_agent}
        )
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_worth_retrying),
            wait=self._wait(backoff_initial, backoff_max),
            stop=tenacity.stop_after_attempt(max_attempts),
            sleep=sleep,
            reraise=True,
        )

    def _wait(self, initial: float, maximum: float) -> Callable[[tenacity.RetryCallState], float]:
        jittered = tenacity.wait_random_exponential(multiplier=initial, max=maximum)

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, RetryableHTTPError) and error.retry_after is not None:
                return min(error.retry_after, self.max_retry_after)
            return jittered(state)

        return wait

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "SourceClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self, url: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> Fetched:
        return self.request("GET", url, params=params, headers=headers)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
    ) -> Fetched:
        try:
            # Outside the retries: one request that failed after all its attempts is one failure.
            with self.breaker.calling():
                return self._retrying(self._send, method, url, params, headers, json_body, data)
        except SnapshotMissing as error:
            raise SourceHTTPError(self.source, redact_url(url), str(error)) from error
        except pybreaker.CircuitBreakerError as error:
            raise SourceHTTPError(self.source, redact_url(url), _open_reason(self.breaker)) from error
        except httpx.TimeoutException as error:
            raise SourceHTTPError(
                self.source, redact_url(url), f"timed out after retries: {type(error).__name__}"
            ) from error
        except httpx.TransportError as error:
            raise SourceHTTPError(self.source, redact_url(url), f"transport error after retries: {error}") from error

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        json_body: Any,
        data: Mapping[str, str] | None,
    ) -> Fetched:
        self.bucket.acquire()
        self.requests_made += 1
        with self._http.stream(method, url, params=params, headers=headers, json=json_body, data=data) as response:
            # Everything a Fetched or an error carries is stored (raw.responses, raw.records,
            # quarantine) or logged: the credentials the request carried are masked here, once.
            secrets = secret_values(response.request)
            stored_url = redact_url(str(response.url))
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise SourceHTTPError(
                    self.source,
                    stored_url,
                    f"response of {declared} bytes exceeds the {self.max_body_bytes} byte limit",
                    response.status_code,
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > self.max_body_bytes:
                    raise SourceHTTPError(
                        self.source,
                        stored_url,
                        f"response exceeds the {self.max_body_bytes} byte limit",
                        response.status_code,
                        redact_body(bytes(body[:4096]), secrets),
                    )
        fetched = Fetched(stored_url, response.status_code, dict(response.headers), redact_body(bytes(body), secrets))
        pause = _retry_after_seconds(response.headers)
        if pause and response.status_code < 400:
            self.bucket.drain_until(min(pause, self.max_retry_after))
        # GitHub signals a spent quota with 403 and x-ratelimit-remaining: 0; it passes with time.
        quota_spent = response.status_code == 403 and response.headers.get("x-ratelimit-remaining", "").strip() == "0"
        if response.status_code == 429 or response.status_code >= 500 or quota_spent:
            raise RetryableHTTPError(
                self.source,
                fetched.url,
                f"HTTP {response.status_code}",
                response.status_code,
                fetched.body,
                retry_after=pause,
            )
        if response.status_code >= 400:
            raise SourceHTTPError(
                self.source,
                fetched.url,
                f"HTTP {response.status_code}: {fetched.body[:200].decode('utf-8', 'replace')}",
                response.status_code,
                fetched.body,
            )
        return fetched


# -- snapshots -------------------------------------------------------------------------------------


def snapshot_key(method: str, url: str, body: bytes = b"") -> str:
    """A stable name for a request: method, host, path, sorted non-secret query, and body hash."""
    parts = urlsplit(url)
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_secret_name(k))
    canonical = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    digest = hashlib.sha256(f"{method.upper()} {canonical}\n".encode() + body).hexdigest()[:16]
    return digest


class SnapshotTransport(httpx.BaseTransport):
    """Replays recorded responses from `<directory>/<key>.json`. An unrecorded request is an
    error that names the request, so a missing snapshot never looks like an empty source."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        key = snapshot_key(request.method, str(request.url), request.read())
        path = self.directory / f"{key}.json"
        if not path.exists():
            raise SnapshotMissing(
                f"no snapshot for {request.method} {redact_url(str(request.url))} "
                f"(expected {path}); record one with `ventureloop discovery record`"
            )
        try:
            return self._replay(path, request)
        except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSONDecodeError, binascii.Error
            raise SnapshotCorrupt(
                f"snapshot {path} (for {request.method} {redact_url(str(request.url))}) is not a readable "
                f"recording: {type(error).__name__}: {error}. Restore it (git checkout -- {path}) or record "
                f"it again with `ventureloop discovery record`"
            ) from error

    @staticmethod
    def _replay(path: Path, request: httpx.Request) -> httpx.Response:
        import base64

        recorded = json.loads(path.read_text(encoding="utf-8"))
        response = recorded["response"]
        if "body_base64" in response:
            body = base64.b64decode(response["body_base64"], validate=True)
        elif "body_json" in response:
            body = json.dumps(response["body_json"]).encode("utf-8")
        else:
            body = response.get("body", "").encode("utf-8")
        if response.get("simulate") == "timeout":
            raise httpx.ReadTimeout("recorded timeout", request=request)
        return httpx.Response(
            response["status_code"], headers=response.get("headers", {}), content=body, request=request
        )


class SnapshotMissing(httpx.TransportError):
    pass


class SnapshotCorrupt(SnapshotMissing):
    """A snapshot file that does not parse: like a missing one, not retried, and its source fails
    with a message naming the file."""


class RecordingTransport(httpx.BaseTransport):
    """Passes requests to the live network and saves each response as a snapshot (secrets removed)."""

    def __init__(self, directory: Path, inner: httpx.BaseTransport | None = None):
        self.directory = Path(directory)
        self.inner = inner or httpx.HTTPTransport()
        self.saved: list[Path] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        content = redact_body(response.read(), secret_values(request))
        body = request.read()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{snapshot_key(request.method, str(request.url), body)}.json"
        keep = {
            k: v
            for k, v in response.headers.items()
            if k.lower()
            in (
                "content-type",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
                "retry-after",
                "x-rate-limit-remaining",
                "x-rate-limit-reset",
                "date",
            )
        }
        recorded: dict[str, Any] = {
            "request": {"method": request.method, "url": redact_url(str(request.url))},
            "response": {"status_code": response.status_code, "headers": keep},
        }
        try:
            text = content.decode("utf-8")
            try:
                recorded["response"]["body_json"] = _without_secrets(json.loads(text))
            except json.JSONDecodeError:
                recorded["response"]["body"] = text
        except UnicodeDecodeError:
            import base64

            recorded["response"]["body_base64"] = base64.b64encode(content).decode("ascii")
        path.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        self.saved.append(path)
        return response


SECRET_FIELDS = frozenset({"access_token", "refresh_token", "id_token", "client_secret"})


def _without_secrets(value: Any) -> Any:
    """OAuth token responses (Reddit) must not be committed as snapshots with live tokens in them."""
    if isinstance(value, dict):
        return {k: "***" if k in SECRET_FIELDS else _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value
