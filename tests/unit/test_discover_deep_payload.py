"""An item a connector kept but that is too deep to store is quarantined, and the source goes on."""

import httpx

from core.discovery.fetch import discover
from core.discovery.sources.base import Normalized, Page, RawItem, Source
from core.platform.http import Fetched, SourceClient
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse


class _TwoItems(Source):
    name = "deep_test"
    family = "hacker_news"

    def fetch(self, client: SourceClient):
        nested: list = []
        for _ in range(5_000):  # deeper than json.dumps can write under the default recursion limit
            nested = [nested]
        fetched = Fetched("https://example.com/items?page=1", 200, {"content-type": "application/json"}, b"{}")
        yield Page(fetched, [RawItem("shallow", {"title": "ok"}), RawItem("deep", {"x": nested})])

    def normalize(self, payload) -> Normalized:
        raise AssertionError("discover only fetches and stores; it never normalizes")


def test_an_item_too_deep_to_serialize_is_quarantined_and_the_rest_stored(duckdb_url):
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    client = SourceClient("deep_test", httpx.MockTransport(lambda request: httpx.Response(200)))
    result = discover(_TwoItems({}), warehouse, "snapshot", client=client)
    assert (result.status, result.items, result.quarantined) == ("ok", 1, 1)
    assert warehouse.read("raw.records")["external_id"].tolist() == ["shallow"]
    problem = warehouse.read("quarantine.records")
    assert problem["origin"].item() == "https://example.com/items?page=1#deep"
    assert "nested too deeply" in problem["reason"].item()
