"""Exact-duplicate identity: a fingerprint of the canonical URL and the normalized title.

The same launch seen twice with tracking parameters, a trailing slash or different casing gets
the same fingerprint; the warehouse's unique key on it is what makes dedup exact."""

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = re.compile(r"^(utm_.*|ref|ref_src|source|fbclid|gclid|mc_cid|mc_eid|igshid)$")
_NON_WORD = re.compile(r"[^\w$]+")
# Prefixes a site adds to a title that say nothing about the opportunity itself.
_TITLE_PREFIX = re.compile(r"^(show hn|ask hn|launch hn|tell hn)\s*:\s*", re.IGNORECASE)
_SLASHES = re.compile(r"/+")
# Most URLs are plain: an ASCII host without port or user info, and a query (if any) of letters,
# digits and `_.~-` only, which parse_qsl/urlencode leave as they are. For those, `canonical_url`
# and `is_web_url` need no urlsplit/parse_qsl/urlencode, which cost ~10 us a URL: the largest
# share of normalization at a million rows (benchmarks/opportunities_pipeline.py). Anything else
# takes the general path; tests/unit/test_fingerprints.py checks both agree.
_PLAIN_URL = re.compile(
    r"https?://([A-Za-z0-9.-]+)(/[^?#\x00-\x20\x7f]*)?(?:\?([\w.~=&-]*))?(?:#[^\x00-\x20\x7f]*)?", re.ASCII
)


def canonical_url(url: str) -> str:
    url = url.strip()
    plain = _PLAIN_URL.fullmatch(url)
    if plain:
        host, path, query = plain.groups()
        fields = []
        for field in (query or "").split("&"):
            name, _, value = field.partition("=")
            if "=" in value:  # urlencode would escape it: leave it to the general path
                return _canonical_url_parsed(url)
            if value and not TRACKING_PARAMS.match(name.lower()):  # parse_qsl drops blank values
                fields.append((name, value))
        host = host.lower().removeprefix("www.")
        path = _SLASHES.sub("/", path or "").rstrip("/")
        query = "&".join(f"{name}={value}" for name, value in sorted(fields))
        return f"https://{host}{path}?{query}" if query else f"https://{host}{path}"
    return _canonical_url_parsed(url)


def _canonical_url_parsed(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    query = sorted(
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=False) if not TRACKING_PARAMS.match(k.lower())
    )
    path = _SLASHES.sub("/", parts.path).rstrip("/")
    return urlunsplit(("https", host, path, urlencode(query), ""))


def canonical_urls(urls: Iterable[str]) -> list[str]:
    """`canonical_url` of each; a URL seen twice in the batch (a repost) is worked out once."""
    seen: dict[str, str] = {}
    return [seen[u] if u in seen else seen.setdefault(u, canonical_url(u)) for u in urls]


def normalized_title(title: str) -> str:
    text = unicodedata.normalize("NFKC", title).casefold()
    text = _TITLE_PREFIX.sub("", text.strip())
    return " ".join(_NON_WORD.sub(" ", text).split())


def fingerprint(canonical: str, title: str) -> str:
    return hashlib.sha256(f"{canonical}\n{normalized_title(title)}".encode()).hexdigest()[:32]


def fingerprints(canonicals: Iterable[str], titles: Iterable[str]) -> list[str]:
    return [fingerprint(c, t) for c, t in zip(canonicals, titles, strict=True)]


def is_plain_http_url(url: str) -> bool:
    """An http(s) URL of the plain shape above, whose urlsplit has that scheme and a non-empty host."""
    return _PLAIN_URL.fullmatch(url) is not None


def is_web_url(url: str) -> bool:
    plain = _PLAIN_URL.fullmatch(url)
    if plain:
        return "." in plain.group(1)
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port out of range, which canonical_url would hit later
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "." in (parts.hostname or "")
