"""Exact-duplicate identity: a fingerprint of the canonical URL and the normalized title.

The same launch seen twice with tracking parameters, a trailing slash or different casing gets
the same fingerprint; the warehouse's unique key on it is what makes dedup exact."""

import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = re.compile(r"^(utm_.*|ref|ref_src|source|fbclid|gclid|mc_cid|mc_eid|igshid)$")
_NON_WORD = re.compile(r"[^\w$]+")
# Prefixes a site adds to a title that say nothing about the opportunity itself.
_TITLE_PREFIX = re.compile(r"^(show hn|ask hn|launch hn|tell hn)\s*:\s*", re.IGNORECASE)


def canonical_url(url: str) -> str:
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower().removeprefix("www.")
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=False)
                   if not TRACKING_PARAMS.match(k.lower()))
    path = re.sub(r"/+", "/", parts.path).rstrip("/")
    return urlunsplit(("https", host, path, urlencode(query), ""))


def normalized_title(title: str) -> str:
    text = unicodedata.normalize("NFKC", title).casefold()
    text = _TITLE_PREFIX.sub("", text.strip())
    return " ".join(_NON_WORD.sub(" ", text).split())


def fingerprint(canonical: str, title: str) -> str:
    return hashlib.sha256(f"{canonical}\n{normalized_title(title)}".encode()).hexdigest()[:32]


def is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "." in (parts.hostname or "")
