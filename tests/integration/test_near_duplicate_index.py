"""The persisted LSH index on both backends: a later run finds the near-duplicates of earlier runs'
opportunities through it (the first run's index is empty, so only a second run exercises it)."""

import json
from datetime import UTC, datetime

import pandas as pd

from core.discovery.near_duplicates.index import NAME_BAND
from core.discovery.opportunities import SourceStats, normalize_records, store
from core.discovery.sources.hackernews import HackerNews
from core.platform.warehouse import Warehouse


def _records(hits: list[dict], run: int) -> pd.DataFrame:
    fetched = datetime(2026, 11, 20 + run, tzinfo=UTC)
    return pd.DataFrame(
        {
            "record_id": [f"{run}-{i}" for i in range(len(hits))],
            "response_id": f"response-{run}",
            "source": "hackernews",
            "external_id": [h["objectID"] for h in hits],
            "payload": [json.dumps(h) for h in hits],
            "fetched_at": pd.Timestamp(fetched),
        }
    )


def _hit(object_id: str, title: str, url: str | None, day: int) -> dict:
    hit = {
        "objectID": object_id,
        "title": title,
        "points": 5,
        "num_comments": 1,
        "created_at_i": int(datetime(2026, 11, day, tzinfo=UTC).timestamp()),
    }
    return hit | ({"url": url} if url else {})


def _ingest(warehouse: Warehouse, hits: list[dict], run: int) -> None:
    valid, problems = normalize_records(HackerNews(env={}), _records(hits, run))
    assert not problems
    with warehouse.connect() as conn:
        store(conn, warehouse.backend, valid, {"hackernews": SourceStats("hackernews")})


def test_a_later_run_joins_clusters_through_the_persisted_index(warehouse: Warehouse):
    _ingest(
        warehouse,
        [
            _hit(
                "1", "Show HN: ShipLog – a changelog widget for SaaS teams, now at $4.2k MRR", "https://shiplog.dev", 1
            ),
            _hit("2", "Ask HN: Where do you find clients for a data engineering consultancy?", None, 2),
            _hit("3", "Show HN: Tabular – an open-source, self-hosted Airtable alternative", "https://tabular.dev", 3),
        ],
        run=1,
    )
    _ingest(
        warehouse,
        [
            _hit(
                "4",
                "ShipLog: a changelog widget for SaaS teams at $4.2k MRR",
                "https://news.ycombinator.com/item?id=4",
                5,
            ),
            _hit("5", "Ask HN: Where do you find clients for a data engineering consultancy?", None, 6),
            _hit("6", "Tabular 2.0 is out", "https://www.tabular.dev/?ref=hn", 7),
            _hit("7", "Show HN: Dunnly – recover failed Stripe payments", "https://dunnly.com", 8),
        ],
        run=2,
    )
    table = warehouse.query("SELECT external_id, opportunity_id, cluster_id FROM core.opportunities").set_index(
        "external_id"
    )
    cluster = table["cluster_id"].to_dict()
    first = table["opportunity_id"].to_dict()
    assert cluster["4"] == first["1"]  # reworded: similar words, found in the index
    assert cluster["5"] == first["2"]  # the same question asked again (another item URL)
    assert cluster["6"] == first["3"]  # the same product URL
    assert cluster["7"] == first["7"]  # new
    assert warehouse.count("core.lsh_signatures") == 7


def test_product_names_and_revenue_figures_are_found_through_the_index(warehouse: Warehouse):
    _ingest(
        warehouse,
        [
            _hit("11", "Show HN: ShotAPI – website screenshots as a service", "https://shotapi.io", 1),
            _hit(
                "12",
                "Content site income report: $5.1k/month at 14 months",
                "https://www.indiehackers.com/post/content-site-income-report-4c3b2a1f0e",
                2,
            ),
        ],
        run=1,
    )
    _ingest(
        warehouse,
        [
            _hit(
                "13", "ShotAPI – Screenshots of any website via API", "https://www.producthunt.com/products/shotapi", 5
            ),
            _hit(
                "14",
                "How I turned a side project into $5.1k/month with a content site",
                "https://brewratio.com/blog/content-site-income-report",
                6,
            ),
            _hit("15", "My newsletter made $5.1k/month from sponsors", "https://hannahcole.substack.com/p/sponsors", 7),
        ],
        run=2,
    )
    table = warehouse.query("SELECT external_id, opportunity_id, cluster_id FROM core.opportunities").set_index(
        "external_id"
    )
    cluster, first = table["cluster_id"].to_dict(), table["opportunity_id"].to_dict()
    assert cluster["13"] == first["11"]  # one product name: the site and its Product Hunt listing
    assert cluster["14"] == first["12"]  # $5.1k/month, "content", "site"
    assert cluster["15"] == first["15"]  # the same figure, nothing else in common
    names = warehouse.query(f"SELECT bucket FROM core.lsh_buckets WHERE band = {NAME_BAND}")["bucket"]
    assert sorted(names) == ["host:shotapi.io", "listing:shotapi", "site:shotapi"]
