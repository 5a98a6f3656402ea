from urllib.parse import urlsplit

from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.discovery.fingerprints import (
    _canonical_url_parsed,
    canonical_url,
    canonical_urls,
    fingerprint,
    is_web_url,
    normalized_title,
)


def test_canonical_url_drops_tracking_case_www_slash_and_fragment():
    assert (
        canonical_url("HTTP://WWW.InvoiceBolt.io/pricing/?utm_source=hn&b=2&a=1#top")
        == "https://invoicebolt.io/pricing?a=1&b=2"
    )
    assert canonical_url("https://invoicebolt.io") == canonical_url("https://invoicebolt.io/?ref=producthunt")


def test_normalized_title_strips_site_prefixes_and_punctuation():
    assert (
        normalized_title("Show HN: InvoiceBolt – Invoicing, for freelancers!")
        == "invoicebolt invoicing for freelancers"
    )


def test_same_launch_same_fingerprint_different_launch_different():
    a = fingerprint(canonical_url("https://shiplog.dev/?utm_campaign=x"), "Show HN: ShipLog")
    b = fingerprint(canonical_url("https://www.shiplog.dev"), "shiplog")
    c = fingerprint(canonical_url("https://shiplog.dev"), "ShipLog 2")
    assert a == b != c


def test_web_url_validation():
    assert is_web_url("https://a.io/x")
    assert not is_web_url("ftp://a.io")
    assert not is_web_url("/relative/path")
    assert not is_web_url("https://localhost")
    assert not is_web_url("https://shiplog.dev:99999/")  # a bad port is a bad record, not a crashed batch


# -- the fast path for plain URLs gives exactly what urlsplit/parse_qsl/urlencode give -----------


URL_CHARS = st.text(alphabet="aZ09.-_~/?#&=:@%+[] ;\té–", max_size=40)
URLS = st.builds(
    lambda scheme, host, rest: f"{scheme}://{host}{rest}",
    st.sampled_from(["http", "https", "HTTPS", "ftp"]),
    st.text(alphabet="aZ09.-_:@[]é", min_size=0, max_size=12),
    URL_CHARS,
)


def _outcome(function, url):
    try:
        return function(url)
    except ValueError as error:  # e.g. a port out of range: both paths must fail alike
        return type(error)


def _is_web_url_parsed(url: str) -> bool:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - a port out of range or not a number is not a web URL
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "." in (parts.hostname or "")


@settings(max_examples=10 * settings().max_examples, deadline=None)
@given(URLS)
@example("https://www.InvoiceBolt.io//pricing/?utm_source=hn&b=2&a=1&a-=0&c=&d#top")
@example("https://news.ycombinator.com/item?id=46518419")
@example("https://a.io/?x=a=b&ref=hn")
@example("https://a.io?")
@example("https://www.")
def test_plain_url_fast_path_matches_the_general_path(url):
    assert _outcome(canonical_url, url) == _outcome(lambda u: _canonical_url_parsed(u.strip()), url)
    assert _outcome(is_web_url, url) == _outcome(_is_web_url_parsed, url)


def test_canonical_urls_in_bulk_equal_one_by_one():
    urls = ["https://a.io/?utm_source=x", "https://a.io", "http://WWW.a.io/", "https://a.io/?utm_source=x"]
    assert canonical_urls(urls) == [canonical_url(u) for u in urls]
