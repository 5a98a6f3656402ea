"""Field readers the discovery connectors share on top of `base.require`/`count`/`timestamp`:
each returns the clean value or raises BadRecord naming the field."""

import html
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from core.discovery.fingerprints import is_plain_http_url
from core.discovery.sources.base import BadRecord, require

_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<\s*(?:p|br|/p|li|div)\b[^>]*>", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n\s*\n+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def text(payload: Mapping[str, Any], field_name: str) -> str:
    """A required string that is not blank."""
    value = require(payload, field_name, str).strip()
    if not value:
        raise BadRecord(f"field {field_name!r} is empty")
    return value


def optional_object(payload: Mapping[str, Any], field_name: str) -> Mapping[str, Any]:
    """A nested object that may be absent ({}), but if present must be an object."""
    value = payload.get(field_name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRecord(f"field {field_name!r} should be an object, got {type(value).__name__} {value!r:.60}")
    return value


def optional_text(payload: Mapping[str, Any], field_name: str) -> str:
    """An optional string: absent or null is ''; any other type is BadRecord."""
    value = payload.get(field_name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"field {field_name!r} should be str, got {type(value).__name__} {value!r:.60}")
    return value.strip()


def http_url(value: Any, field_name: str) -> str:
    """An absolute http(s) URL, the only kind an opportunity may link to."""
    if not isinstance(value, str):
        raise BadRecord(f"field {field_name!r} should be a URL string, got {type(value).__name__} {value!r:.60}")
    if is_plain_http_url(value.strip()):  # most URLs: no urlsplit needed (~3 us)
        return value.strip()
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRecord(f"field {field_name!r} is not an absolute http(s) URL: {value!r:.80}")
    return value.strip()


def without_tracking(url: str) -> str:
    """Drop utm_* and ref parameters, which change per feed and would defeat URL dedup."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() != "ref"
    ]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def plain_text(markup: str) -> str:
    """HTML (HN story_text, feed content) as readable text: paragraphs kept, tags and entities gone."""
    if not markup:  # most items have no text at all
        return ""
    if "<" in markup:  # both patterns need one; most texts are plain
        markup = _TAG.sub("", _BREAK.sub("\n\n", markup))
    unescaped = html.unescape(markup)
    lines = (_SPACES.sub(" ", line).strip() for line in unescaped.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    """A numeric setting from the source's env (page sizes, page caps); bad values fail loudly."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number; unset it to use {default}") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1; unset it to use {default}")
    return value
