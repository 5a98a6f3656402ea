"""Credentials in a feed's URL never reach the warehouse: the HTTP client masks them in every URL
and body it hands on, so raw.responses, raw.records, quarantine.records and core tables hold ***."""

import json

import httpx
import respx

from core.discovery.fetch import discover
from core.discovery.opportunities import ingest
from core.discovery.sources.feeds import FeedConfig, feed_class
from core.platform.http import SourceClient
from core.platform.warehouse import Warehouse

TOKEN, KEY = "tok-5f3a9c1e7b", "key-77d0e2b4aa"
FEED_URL = f"https://feeds.example.com/jobs.json?token={TOKEN}&key={KEY}&lang=en"
PAGE_2 = f"https://feeds.example.com/jobs.json?token={TOKEN}&key={KEY}&lang=en&page=2"


def _page(items: list[dict], next_url: str | None) -> dict:
    # Like many feed servers, it echoes the URL it was asked for: feed_url, next_url, the items' links.
    document = {"version": "https://jsonfeed.org/version/1.1", "title": "Jobs", "feed_url": FEED_URL, "items": items}
    if next_url:
        document["next_url"] = next_url
    return document


def _item(n: int) -> dict:
    return {
        "id": f"job-{n}",
        "url": f"https://feeds.example.com/jobs/{n}?ref=feed&token={TOKEN}",
        "title": f"Build an invoicing integration #{n}",
        "content_text": f"Details at https://feeds.example.com/jobs/{n}?key={KEY}",
        "date_published": "2026-11-20T10:00:00Z",
    }


@respx.mock(assert_all_called=True)
def test_no_stored_column_holds_a_feed_credential(warehouse: Warehouse, respx_mock):
    bad_entry = {"title": f"no id here, see {PAGE_2}"}  # quarantined: no id
    pages = {
        None: _page([_item(1), _item(2)], PAGE_2),
        "2": _page([_item(3), bad_entry], None),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        # Every page answers only to the real credentials: paging must not send the masked ones.
        if (request.url.params.get("token"), request.url.params.get("key")) != (TOKEN, KEY):
            return httpx.Response(401, json={"error": "bad token"})
        return httpx.Response(200, json=pages[request.url.params.get("page")])

    feed = respx_mock.get(url__startswith="https://feeds.example.com/jobs.json").mock(side_effect=answer)

    source = feed_class(FeedConfig("jobs_with_token", "freelance", FEED_URL, max_items=10))({})
    client = SourceClient(source.name, sleep=lambda s: None)  # a real httpx client; respx answers for the network
    result = discover(source, warehouse, "live", client=client)
    assert (result.status, result.responses, result.items, result.quarantined) == ("ok", 2, 3, 1), result.message
    ingest(warehouse, [source])
    assert warehouse.count("core.opportunities") == 3
    assert feed.call_count == 2

    stored = warehouse.query(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('raw', 'core', 'quarantine')"
    )
    checked = 0
    for schema, table in stored.itertuples(index=False):
        text = warehouse.read(f"{schema}.{table}").to_csv()
        for secret in (TOKEN, KEY):
            assert secret not in text, f"{schema}.{table} stores {secret}"
        checked += 1
    assert checked >= 4
    urls = warehouse.read("raw.responses")["request_url"].tolist()
    masked = "https://feeds.example.com/jobs.json?token=***&key=***&lang=en"
    assert sorted(urls) == [masked, f"{masked}&page=2"]
    payload = json.loads(warehouse.read("raw.records", "WHERE external_id = 'job-1'")["payload"].item())
    assert payload["url"] == "https://feeds.example.com/jobs/1?ref=feed&token=***"


def test_which_names_count_as_secret():
    from core.platform.http import is_secret_name

    secret = ["api_key", "access_token", "authToken", "X-Api-Key", "sig", "password", "client_secret", "token", "key"]
    secret += ["apikey", "apiKey", "signature", "auth", "Authorization", "x-subscription-token", "secret_key"]
    secret += ["Ocp-Apim-Subscription-Key", "refresh_token", "oauth", "credentials", "pwd"]
    not_secret = ["next_token", "author", "keywords", "page", "q", "user-agent", "page_token", "monkey"]
    # About a credential, or a cursor, but not one: they must stay in the snapshot key.
    not_secret += ["page_key", "sort_key", "auth_mode", "sig_version", "token_type", "key_id", "signed", "tokens"]
    assert [name for name in secret if not is_secret_name(name)] == []
    assert [name for name in not_secret if is_secret_name(name)] == []


@respx.mock(assert_all_called=True)
def test_a_feed_naming_another_host_as_its_next_page_is_not_given_the_key(warehouse: Warehouse, respx_mock):
    # The feed's next_url points elsewhere; the client masks the echoed key, and paging must not
    # put the real key back into a URL on another host (the feed would steal its own key).
    evil_next = f"https://evil.example/collect?token={TOKEN}&key={KEY}"
    respx_mock.get(url__startswith="https://feeds.example.com/jobs.json").mock(
        return_value=httpx.Response(200, json=_page([_item(1)], evil_next))
    )
    evil = respx_mock.get(url__startswith="https://evil.example/").mock(
        return_value=httpx.Response(200, json=_page([], None))
    )

    source = feed_class(FeedConfig("jobs_with_token", "freelance", FEED_URL, max_items=10))({})
    discover(source, warehouse, "live", client=SourceClient(source.name, sleep=lambda s: None))

    sent = [str(call.request.url) for call in evil.calls]
    assert sent and all(TOKEN not in url and KEY not in url for url in sent), sent


def test_secrets_are_restored_only_on_the_configured_scheme_and_host():
    from core.platform.http import with_secrets_of

    configured = "https://feeds.example.com/jobs.json?key=real-key-123"
    assert with_secrets_of("https://feeds.example.com/jobs.json?key=***&page=2", configured) == (
        "https://feeds.example.com/jobs.json?key=real-key-123&page=2"
    )
    for elsewhere in (
        "https://evil.example/x?key=***",
        "http://feeds.example.com/jobs.json?key=***",  # downgraded to plain text
        "https://feeds.example.com:8443/jobs.json?key=***",
        "https://feeds.example.com.evil.example/jobs.json?key=***",
    ):
        assert with_secrets_of(elsewhere, configured) == elsewhere


PASSWORD = "pw-9c41d7e2f0"
BASIC_FEED_URL = f"https://reader:{PASSWORD}@feeds.example.com/private.json?lang=en"


@respx.mock(assert_all_called=True)
def test_a_password_in_the_feed_urls_userinfo_is_masked_in_stored_urls_and_errors(warehouse: Warehouse, respx_mock):
    answers = iter([httpx.Response(200, json=_page([_item(1)], None)), httpx.Response(404)])
    respx_mock.get(url__startswith="https://feeds.example.com/private.json").mock(
        side_effect=lambda request: next(answers)
    )
    source = feed_class(FeedConfig("private_feed", "freelance", BASIC_FEED_URL, max_items=10))({})
    ok = discover(source, warehouse, "live", client=SourceClient(source.name, sleep=lambda s: None))
    failed = discover(source, warehouse, "live", client=SourceClient(source.name, sleep=lambda s: None))

    assert ok.status == "ok", ok.message
    assert failed.status != "ok" and PASSWORD not in failed.message and "reader:***@" in failed.message
    urls = warehouse.read("raw.responses")["request_url"].tolist()
    assert urls and all(url.startswith("https://reader:***@feeds.example.com/private.json") for url in urls), urls
    for schema, table in warehouse.query(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('raw', 'core', 'quarantine', 'ops')"
    ).itertuples(index=False):
        assert PASSWORD not in warehouse.read(f"{schema}.{table}").to_csv(), f"{schema}.{table} stores the password"


def test_redact_url_masks_the_userinfo_password_and_keeps_the_rest():
    from core.platform.http import redact_url, with_secrets_of

    assert redact_url("https://user:s3cret@host.example/a?q=1&key=k") == "https://user:***@host.example/a?q=1&key=***"
    assert redact_url("https://user@host.example/a") == "https://user@host.example/a"
    assert redact_url("https://host.example/a?q=1") == "https://host.example/a?q=1"
    # A next page the client masked gets the configured password back, on the configured host only.
    configured = "https://user:s3cret@host.example/a"
    assert with_secrets_of("https://user:***@host.example/a?page=2", configured) == (
        "https://user:s3cret@host.example/a?page=2"
    )
    assert with_secrets_of("https://user:***@evil.example/a", configured) == "https://user:***@evil.example/a"
