"""The shared field readers' shortcuts give what the general code gives, on any input."""

import html
import re
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.discovery.sources._fields import http_url, plain_text
from core.discovery.sources.base import BadRecord


def _general_plain_text(markup: str) -> str:
    """plain_text without its shortcuts (no text, no tags)."""
    spaced = re.sub(r"<\s*(?:p|br|/p|li|div)\b[^>]*>", "\n\n", markup, flags=re.IGNORECASE)
    unescaped = html.unescape(re.sub(r"<[^>]+>", "", spaced))
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in unescaped.split("\n"))
    return re.sub(r"\n\s*\n+", "\n\n", "\n".join(lines)).strip()


def _general_http_url(value: str) -> str:
    """http_url's check without the plain-URL shortcut."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRecord(f"field 'url' is not an absolute http(s) URL: {value!r:.80}")
    return value.strip()


def _outcome(function, value):
    try:
        return "value", function(value)
    except (BadRecord, ValueError) as error:
        return type(error).__name__, str(error)


@settings(max_examples=10 * settings().max_examples)
@given(st.text(alphabet="ab <>/pPbrdivl&amp;;#x27\n\t\r\x0b\u2028\x85é", max_size=40))
@example("")
@example("   ")
@example("\x85")
@example("a &amp; b")
@example("<p>a</p>b")
@example("a<br>b")
def test_plain_text_shortcuts_match_the_general_path(markup):
    assert plain_text(markup) == _general_plain_text(markup)


URLS = st.builds(
    lambda scheme, host, rest: f"{scheme}{host}{rest}",
    st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "http:/", " https://", ""]),
    st.text(alphabet="aZ09.-_:@[]é ", max_size=12),
    st.text(alphabet="aZ09.-_~/?#&=:@%+[] ;\t\né–", max_size=30),
)


@settings(max_examples=10 * settings().max_examples)
@given(URLS)
@example("https://example.com/a?b=c#d")
@example("https://")
@example("http://[::1]/x")
@example("http://a:99999/")
def test_http_url_shortcut_matches_urlsplit(url):
    assert _outcome(lambda v: http_url(v, "url"), url) == _outcome(_general_http_url, url)


@pytest.mark.parametrize("value", [None, 3, ["https://x.com"]])
def test_http_url_still_rejects_non_strings(value):
    with pytest.raises(BadRecord, match="should be a URL string"):
        http_url(value, "url")
