"""The YAML-configured feed sources: configuration checks, format detection (RSS, Atom, JSON Feed)
and bad feeds, against the bundled snapshots and a MockTransport at the network edge."""

import json
from datetime import UTC, datetime

import httpx
import pytest
from snapshot_items import bad_reasons

from core.discovery.sources.base import FAMILIES, BadRecord, Source
from core.discovery.sources.feeds import DEFAULT_FEEDS_FILE, FeedConfig, FeedConfigError, feed_class, feed_sources
from core.platform.http import SnapshotTransport, SourceClient

FEED_URL = "https://feeds.example.com/feed"

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:slash="http://purl.org/rss/1.0/modules/slash/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel><title>Example</title><link>https://example.com/</link>
<item><title>ShipLog hits $4.2k MRR</title><link>https://shiplog.dev</link>
<guid isPermaLink="false">post-1</guid><pubDate>Mon, 24 Nov 2026 15:40:00 +0000</pubDate>
<dc:creator>maya</dc:creator><slash:comments>17</slash:comments>
<description>&lt;p&gt;212 paying teams &amp;amp; no ads.&lt;/p&gt;</description></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Example</title><id>urn:example</id>
<updated>2026-11-24T10:00:00Z</updated>
<entry><id>tag:example.com,2026:1</id><title>50% recurring commission on a SaaS offer</title>
<link rel="alternate" href="https://example.com/offer"/><published>2026-11-24T10:00:00Z</published>
<updated>2026-11-24T11:00:00Z</updated><author><name>Anna</name></author>
<content type="html">&lt;p&gt;Pays $24 a month per customer.&lt;/p&gt;</content></entry>
</feed>"""

JSON_FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "APIs",
    "items": [
        {
            "id": "api-1",
            "url": "https://example.com/apis/1",
            "title": "VAT API",
            "content_text": "Validate EU VAT numbers. $29/month.",
            "date_published": "2026-11-24T16:00:00Z",
            "authors": [{"name": "Directory"}],
        }
    ],
}


def source_for(url=FEED_URL, family="affiliate", max_items=50, env=None):
    return feed_class(FeedConfig("example", family, url, max_items))(env or {})


def serve(*responses, **kwargs):
    seen, queue = [], list(responses)

    def handler(request):
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    source = source_for(**kwargs)
    return source, SourceClient(source.name, httpx.MockTransport(handler), sleep=lambda s: None), seen


def replay(name):
    source = next(s for s in feed_sources({}) if s.name == name)
    client = SourceClient(source.name, SnapshotTransport(source.snapshot_dir), sleep=lambda s: None)
    return source, client, list(source.fetch(client))


def write(tmp_path, text):
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return {"VENTURELOOP_FEEDS_FILE": str(path)}, path


# -- configuration ---------------------------------------------------------------------------------


def test_bundled_config_gives_one_source_per_feed_with_its_own_name_and_family():
    sources = feed_sources({})

    assert [(s.name, s.family) for s in sources] == [
        ("feed_indiehackers", "indie_hackers"),
        ("feed_api_marketplaces", "api_marketplaces"),
        ("feed_affiliate", "affiliate"),
    ]
    assert all(isinstance(s, Source) and type(s).name == s.name for s in sources)
    assert all(s.family in FAMILIES and s.missing_credentials() == [] for s in sources)
    assert sources[0].snapshot_dir.name == "feed_indiehackers"


def test_feeds_file_comes_from_the_environment_and_disabled_feeds_are_skipped(tmp_path):
    env, _ = write(
        tmp_path,
        """
feeds:
  saas_news:
    family: web_search
    url: https://example.com/rss
    max_items: 5
  paused:
    family: affiliate
    url: https://example.com/atom
    enabled: false
""",
    )
    [source] = feed_sources(env)
    assert (source.name, source.family, source.feed.url, source.feed.max_items) == (
        "feed_saas_news",
        "web_search",
        "https://example.com/rss",
        5,
    )


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "Indie-Hackers:\n    family: indie_hackers\n    url: https://a.com/rss",
            "'Indie-Hackers': the key must be lower snake case",
        ),
        (
            "ih:\n    family: indiehackers\n    url: https://a.com/rss",
            "'ih': unknown family 'indiehackers'; use one of",
        ),
        ("ih:\n    family: indie_hackers", "'ih': missing 'url'"),
        ("ih:\n    url: https://a.com/rss", "'ih': missing 'family'"),
        ("ih:\n    family: indie_hackers\n    url: ftp://a.com/rss", "'ih': 'url' must be an absolute http(s) URL"),
        ("ih:\n    family: indie_hackers\n    url: https://a.com/rss\n    famly: x", "'ih': unknown field(s) famly"),
        ("ih:\n    family: indie_hackers\n    url: https://a.com/rss\n    max_items: 0", "'ih': 'max_items' must be"),
        ("ih:\n    family: indie_hackers\n    url: https://a.com/rss\n    enabled: maybe", "'ih': 'enabled' must be"),
        ("ih: https://a.com/rss", "'ih': expected a mapping with 'family' and 'url'"),
    ],
)
def test_config_mistakes_name_the_file_and_the_feed(tmp_path, entry, message):
    env, path = write(tmp_path, f"feeds:\n  {entry}\n")
    with pytest.raises(FeedConfigError) as error:
        feed_sources(env)
    assert str(error.value).startswith(f"{path}: feed ") and message in str(error.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("feeds: [a, b]\n", "expected a top-level mapping 'feeds:'"),
        ("feeds:\n  a: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_malformed_file_is_named(tmp_path, text, message):
    env, path = write(tmp_path, text)
    with pytest.raises(FeedConfigError, match=message) as error:
        feed_sources(env)
    assert str(path) in str(error.value)


def test_a_missing_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(FeedConfigError, match="feeds file not found.*VENTURELOOP_FEEDS_FILE"):
        feed_sources({"VENTURELOOP_FEEDS_FILE": str(tmp_path / "nope.yaml")})


def test_default_feeds_file_is_the_bundled_one():
    assert DEFAULT_FEEDS_FILE.name == "feeds.yaml" and DEFAULT_FEEDS_FILE.parent.name == "config"


# -- bundled snapshots -------------------------------------------------------------------------------


def test_indiehackers_rss_replay():
    source, _, pages = replay("feed_indiehackers")
    items = [item for page in pages for item in page.items]
    assert len(pages) == 1 and len(items) == 18 and not pages[0].problems
    assert {item.payload["_format"] for item in items} == {"rss20"}

    invoicebolt = next(item for item in items if "InvoiceBolt" in item.payload["title"])
    normalized = source.normalize(invoicebolt.payload)
    assert invoicebolt.external_id.startswith("https://www.indiehackers.com/post/invoicebolt-")  # the guid
    assert normalized.url == "https://invoicebolt.io"
    assert normalized.title == "InvoiceBolt: invoicing for freelancers that chases late payments, $29/mo"
    assert "$29/month" in normalized.body and "<strong>" not in normalized.body
    assert normalized.author == "danokafor"
    assert normalized.created_at == datetime(2026, 11, 24, 19, 5, tzinfo=UTC)
    assert bad_reasons(source, pages) == ["unparseable timestamp in 'published': 'sometime last week'"]


def test_api_marketplaces_json_feed_replay_follows_next_url():
    source, client, pages = replay("feed_api_marketplaces")
    assert client.requests_made == len(pages) == 2
    assert pages[1].fetched.url == "https://www.freepublicapis.com/feed.json?page=2"
    assert [len(page.items) for page in pages] == [12, 6]
    assert {item.payload["_format"] for page in pages for item in page.items} == {"json_feed"}

    normalized = source.normalize(pages[0].items[0].payload)
    assert normalized.external_id == "https://www.freepublicapis.com/apis/434"
    assert normalized.url == "https://www.freepublicapis.com/vatcheck"
    assert normalized.title == "VATcheck: EU VAT number validation"
    assert "$29/month for 20,000 calls" in normalized.body
    assert normalized.author == "FreePublicAPIs"
    assert normalized.created_at == datetime(2026, 11, 24, 16, tzinfo=UTC)
    assert bad_reasons(source, pages) == ["unparseable timestamp in 'date_published': '2026-13-45T25:00:00Z'"]


def test_affiliate_atom_replay_reads_comment_counts():
    source, _, pages = replay("feed_affiliate")
    items = [item for page in pages for item in page.items]
    assert len(items) == 14 and {item.payload["_format"] for item in items} == {"atom10"}

    normalized = source.normalize(items[0].payload)
    assert normalized.external_id == "https://www.clickbank.com/blog/?p=48213"
    assert normalized.url == "https://www.clickbank.com/blog/top-clickbank-offers-week-47-2026/"
    assert normalized.title == "Top ClickBank Offers This Week: 75% Commission on a Keto Meal-Plan Funnel"
    assert (normalized.author, normalized.comments, normalized.points) == ("Jacob Westgate", 12, 0)
    assert bad_reasons(source, pages) == ["unparseable timestamp in 'published': '0000-00-00T00:00:00Z'"]


# -- format detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type, expected",
    [
        (RSS, "text/html; charset=utf-8", "rss20"),
        (ATOM, "text/plain", "atom10"),
        (json.dumps(JSON_FEED).encode(), "text/plain", "json_feed"),
        (b"\n\n  " + json.dumps(JSON_FEED).encode(), "application/octet-stream", "json_feed"),
    ],
)
def test_format_is_detected_from_content_not_content_type(body, content_type, expected):
    source, client, _ = serve(httpx.Response(200, content=body, headers={"content-type": content_type}))
    [page] = list(source.fetch(client))
    assert not page.problems and [item.payload["_format"] for item in page.items] == [expected]


def test_each_format_normalizes_to_the_common_fields():
    expected = {
        "rss20": (
            "post-1",
            "https://shiplog.dev",
            "ShipLog hits $4.2k MRR",
            "212 paying teams & no ads.",
            "maya",
            17,
            datetime(2026, 11, 24, 15, 40, tzinfo=UTC),
        ),
        "atom10": (
            "tag:example.com,2026:1",
            "https://example.com/offer",
            "50% recurring commission on a SaaS offer",
            "Pays $24 a month per customer.",
            "Anna",
            0,
            datetime(2026, 11, 24, 10, tzinfo=UTC),
        ),
        "json_feed": (
            "api-1",
            "https://example.com/apis/1",
            "VAT API",
            "Validate EU VAT numbers. $29/month.",
            "Directory",
            0,
            datetime(2026, 11, 24, 16, tzinfo=UTC),
        ),
    }
    for body in (RSS, ATOM, json.dumps(JSON_FEED).encode()):
        source, client, _ = serve(httpx.Response(200, content=body))
        [page] = list(source.fetch(client))
        [item] = page.items
        n = source.normalize(item.payload)
        assert (n.external_id, n.url, n.title, n.body, n.author, n.comments, n.created_at) == expected[
            item.payload["_format"]
        ]


# -- bad feeds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t<<</channel>', "not a well-formed feed"),
        (
            b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking</body></html>",
            "not an RSS, Atom or JSON feed",
        ),
        (RSS.replace(b"ShipLog", b"Caf\xe9 \xff"), "do not match their declared encoding"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "malformed JSON"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "caf\xe9"}]}', "not valid UTF-8"),
        (b'{"status": "ok", "items": []}', "JSON but not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {"id": "1"}}', "'items' should be a list"),
    ],
)
def test_unparseable_feeds_are_problems_with_the_raw_bytes(body, reason):
    source, client, seen = serve(httpx.Response(200, content=body))
    [page] = list(source.fetch(client))
    assert len(seen) == 1 and not page.items
    [problem] = page.problems
    assert problem.stage == "parse" and reason in problem.reason and problem.payload == body


def test_a_truncated_feed_keeps_complete_entries_and_reports_the_broken_one():
    truncated = RSS.split(b"</item>")[0] + b"</item><item><title>cut off"
    source, client, _ = serve(httpx.Response(200, content=truncated))
    [page] = list(source.fetch(client))
    assert [item.external_id for item in page.items] == ["post-1"]
    assert [p.reason for p in page.problems] == ["missing id: the entry has no guid/id and no link/url"]


def test_json_feed_items_that_are_not_objects_or_lack_an_id_are_problems():
    feed = {**JSON_FEED, "items": [JSON_FEED["items"][0], "oops", {"title": "no id, no url"}]}
    source, client, _ = serve(httpx.Response(200, json=feed))
    [page] = list(source.fetch(client))
    assert [item.external_id for item in page.items] == ["api-1"]
    assert [p.reason for p in page.problems] == [
        "expected an object, got str",
        "missing id: the entry has no guid/id and no link/url",
    ]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"url": None, "external_url": None}, "'url'"),
        ({"url": "/apis/1"}, "'url'"),
        ({"title": None, "content_text": None}, "'title'"),
        ({"title": 5}, "'title'"),
        ({"date_published": None}, "'date_published'"),
        ({"date_published": "next week"}, "'date_published'"),
    ],
)
def test_json_feed_items_with_missing_or_wrong_fields_are_bad_records(change, field):
    item = {**JSON_FEED["items"][0], "_format": "json_feed", **change}
    with pytest.raises(BadRecord, match=field):
        source_for().normalize(item)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"link": None}, "'link'"),
        ({"published": None, "updated": None}, "'published'"),
        ({"slash_comments": "lots"}, "'slash_comments'"),
        ({"title": ["a"]}, "'title'"),
    ],
)
def test_rss_entries_with_missing_or_wrong_fields_are_bad_records(change, field):
    source, client, _ = serve(httpx.Response(200, content=RSS))
    [page] = list(source.fetch(client))
    payload = {**page.items[0].payload, **change}
    with pytest.raises(BadRecord, match=field):
        source.normalize(payload)


def test_extra_fields_are_tolerated_and_a_title_can_come_from_the_text():
    item = {**JSON_FEED["items"][0], "_format": "json_feed", "title": None, "_custom": {"x": 1}, "banner_image": "x"}
    assert source_for().normalize(item).title == "Validate EU VAT numbers. $29/month."


def test_max_items_caps_entries_and_atom_next_links_are_followed():
    page_one = ATOM.replace(
        b"<updated>2026-11-24T10:00:00Z</updated>\n<entry>",
        b'<updated>2026-11-24T10:00:00Z</updated><link rel="next" href="https://feeds.example.com/'
        b'feed?page=2"/>\n<entry>',
    )
    page_two = ATOM.replace(b"tag:example.com,2026:1", b"tag:example.com,2026:2")
    source, client, seen = serve(httpx.Response(200, content=page_one), httpx.Response(200, content=page_two))
    pages = list(source.fetch(client))
    assert [str(r.url) for r in seen] == [FEED_URL, "https://feeds.example.com/feed?page=2"]
    assert [item.external_id for page in pages for item in page.items] == [
        "tag:example.com,2026:1",
        "tag:example.com,2026:2",
    ]

    source, client, seen = serve(httpx.Response(200, content=page_one), max_items=1)
    assert sum(len(page.items) for page in source.fetch(client)) == 1 and len(seen) == 1
