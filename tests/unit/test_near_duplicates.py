"""Bulk MinHash equals datasketch's, band keys keep their persisted format, product names and
revenue figures are read as documented, and clustering follows its rules (reposts join the first
post; the same product URL, the same product name, a shared revenue figure join), and the package's
modules share only public names."""

import ast
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from core.discovery.near_duplicates import index as near_duplicates
from core.discovery.near_duplicates.minhash import NUM_PERM, SEED, LSHParams, band_keys, lsh_params, signatures
from core.discovery.near_duplicates.rules import THRESHOLD, amounts, figure_words, product_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "core.discovery.near_duplicates"


def _private_uses(path: Path) -> list[str]:
    """Names starting with `_` that a file takes from a module of PACKAGE other than itself: imported,
    or read as an attribute of a module it imported (`index._Best`)."""
    own = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(PACKAGE) and node.module != own:
                found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            aliases |= {a.asname or a.name for a in node.names if f"{node.module}.{a.name}".startswith(PACKAGE)}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name.startswith(PACKAGE) and a.asname}
    found += [
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith("_")
    ]
    return found


def test_the_package_modules_share_only_public_names():
    package = ROOT / PACKAGE.replace(".", "/")
    assert sorted(p.name for p in package.glob("*.py")) == ["__init__.py", "index.py", "minhash.py", "rules.py"]
    init = ast.parse((package / "__init__.py").read_text(encoding="utf-8")).body
    assert len(init) == 1 and isinstance(init[0].value, ast.Constant), "__init__.py is the docstring only"
    files = [
        p for folder in ("core", "assets", "orchestration", "ml", "benchmarks") for p in (ROOT / folder).rglob("*.py")
    ]
    assert {str(p.relative_to(ROOT)): _private_uses(p) for p in files if _private_uses(p)} == {}


def test_only_public_datasketch_names():
    package = ROOT / PACKAGE.replace(".", "/")
    private = [
        f"{path.name}: {node.module}.{alias.name}"
        for path in sorted(package.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("datasketch")
        for alias in node.names
        if alias.name.startswith("_") or "._" in f".{node.module}"
    ]
    assert private == []


# As datasketch.lsh._optimal_param gave them before. THRESHOLD's (14, 4) is what the persisted
# index was built with: other values would orphan its buckets.
@pytest.mark.parametrize(("threshold", "bands", "rows"), [(THRESHOLD, 14, 4), (0.7, 8, 8), (0.3, 21, 3)])
def test_lsh_params_are_datasketchs_choice(threshold, bands, rows):
    assert lsh_params(threshold, NUM_PERM) == LSHParams(bands, rows)


def test_the_default_lsh_params_are_those_of_the_index():
    assert (THRESHOLD, NUM_PERM) == (0.5, 64) and lsh_params() == LSHParams(14, 4)


def test_the_rules_import_neither_numpy_nor_the_warehouse():
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {PACKAGE}.rules; print(sorted(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'numpy'" not in loaded and "core.platform.warehouse" not in loaded


@settings(deadline=None)
@given(st.lists(st.sets(st.text(max_size=12), max_size=20), max_size=30))
def test_signatures_equal_datasketch(token_sets):
    expected = [
        m.hashvalues.astype(np.uint32)
        for m in MinHash.bulk([[t.encode() for t in ts] for ts in token_sets], num_perm=NUM_PERM, seed=SEED)
    ]
    got = signatures(token_sets)
    assert got.shape == (len(token_sets), NUM_PERM)
    assert all((row == e).all() for row, e in zip(got, expected, strict=True))


# The 14 band keys of two token sets, computed once (November 2026) from datasketch's own
# MinHash(num_perm=64, seed=7) values: blake2b-64 of each band's 4 little-endian uint32s, in hex.
# The persisted core.lsh_buckets hold keys like these, so any change here orphans the index.
PERSISTED_KEYS = {
    frozenset({"a", "b"}): (
        "66715db699aeb45c",
        "f3fa00dd985cd36c",
        "05cf44658ff923c4",
        "a5c46775956c8627",
        "d23e18c2b5aef140",
        "8496aed710c85266",
        "e3d8ec9b19d4b19d",
        "6da3c6a9786fd4e9",
        "dffc7d58aa443d97",
        "8caaf85f5b6d40c1",
        "aff83f44a723a5a0",
        "3918d1bad4e2a08c",
        "ae413ff51aec8eaa",
        "5551b14678a2c80f",
    ),
    frozenset({"shiplog", "host:shiplog.dev"}): (
        "c0d68a43ed84eab8",
        "bf98b48a850095ce",
        "30cc6bfab5a99d1c",
        "8023daebaf06ad43",
        "36f044bd1cee551b",
        "bf982466632b7096",
        "c7e4361a90ab0075",
        "3b49f0c416661745",
        "19c850c465831dc4",
        "6261906affc8531c",
        "9db816944765ae18",
        "67a1b30ec0e9f6d9",
        "f436a41d8e403fd3",
        "bbf0b87735591d5a",
    ),
}


def test_band_keys_keep_the_persisted_format():
    token_sets = list(PERSISTED_KEYS)
    keys = band_keys(signatures([set(ts) for ts in token_sets]), lsh_params())
    assert keys == ["".join(PERSISTED_KEYS[ts]) for ts in token_sets]


def _empty_index():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA core")
    conn.execute(
        "CREATE TABLE core.opportunities (canonical_url TEXT, opportunity_id TEXT, cluster_id TEXT, "
        "created_at TIMESTAMPTZ)"
    )
    conn.execute("CREATE TABLE core.lsh_buckets (band INTEGER, bucket TEXT, opportunity_id TEXT)")
    conn.execute("CREATE TABLE core.lsh_signatures (opportunity_id TEXT, cluster_id TEXT, signature TEXT)")
    return conn


def test_reposts_and_same_product_urls_cluster_in_one_batch():
    rows = [
        ("a", "Ask HN: Where do you find clients?", "https://news.ycombinator.com/item?id=1"),
        ("b", "Show HN: ShipLog – a changelog widget for SaaS", "https://shiplog.dev"),
        ("c", "Ask HN: Where do you find clients?", "https://news.ycombinator.com/item?id=2"),
        ("d", "ShipLog is at $4.2k MRR", "https://shiplog.dev"),
        ("e", "Ask HN: Where do you find clients?", "https://news.ycombinator.com/item?id=3"),
        ("f", "Tabular, an open-source Airtable alternative", "https://tabular.dev"),
    ]
    batch = pd.DataFrame(rows, columns=["opportunity_id", "title", "canonical_url"]).assign(
        created_at=pd.date_range("2026-11-01", periods=len(rows), freq="h", tz="UTC")
    )
    out = near_duplicates.assign_clusters(_empty_index(), "duckdb", batch).set_index("opportunity_id")
    assert out.loc[["a", "c", "e"], "cluster_id"].tolist() == ["a", "a", "a"]
    assert out.loc[["c", "e"], "near_duplicate_of"].tolist() == ["a", "a"]  # the first post, not the latest
    assert out.loc["d", "near_duplicate_of"] == "b" and out.loc["d", "similarity"] == 1.0
    assert out.loc["f", "cluster_id"] == "f" and pd.isna(out.loc["f", "near_duplicate_of"])


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://shotapi.io", "shotapi"),
        ("https://shotapi.dev/pricing", "shotapi"),  # the product's own page, any TLD
        ("https://app.shotapi.co.uk", "shotapi"),
        ("https://hannahcole.substack.com", "hannahcole"),
        ("https://shotapi.io/blog/2-3k-mrr", ""),  # a post on the site may be about anything
        ("https://producthunt.com/products/shot-api", "shotapi"),
        ("https://freepublicapis.com/shotapi", "shotapi"),
        ("https://github.com/shotapi/shotapi", "shotapi"),
        ("https://github.com/shotapi-dev/shotapi-cli", "shotapi"),  # an organisation named after its product
        ("https://github.com/lenscraft/shotapi", ""),  # one of an organisation's repositories
        ("https://github.com/shotapi/shotapi/issues/3", ""),
        ("https://news.ycombinator.com/item?id=1", ""),
        ("https://x.com/shotapi", ""),
    ],
)
def test_product_name_is_read_from_the_url(url, name):
    assert product_name(url) == name


@pytest.mark.parametrize(
    ("url_a", "url_b", "same"),
    [
        ("https://shotapi.io", "https://freepublicapis.com/shotapi", True),  # a site and its listing
        ("https://producthunt.com/products/shotapi", "https://github.com/shotapi/shotapi", True),  # two listings
        ("https://shotapi.io", "https://shotapi.io/pricing", True),  # one site
        ("https://shotapi.io", "https://shotapi.dev", False),  # one name on two hosts: often two companies
    ],
)
def test_a_product_name_matches_listings_and_its_own_site(url_a, url_b, same):
    assert near_duplicates.are_near_duplicates("Launch", url_a, "Another title", url_b) == same
    assert near_duplicates.are_near_duplicates("Another title", url_b, "Launch", url_a) == same


@pytest.mark.parametrize(
    ("title", "figures"),
    [
        ("From $0 to $7,850 MRR in 9 months", {"$7850"}),
        ("ShipLog is at $4.2k MRR", {"$4200"}),
        ("$1.2M ARR, two people", {"$1200000"}),
        ("Sold for €38k", {"€38000"}),
        ("$29/mo, or $10k lifetime", set()),  # a price and a round figure: many posts say them
        ("$450 an issue", set()),
    ],
)
def test_amounts_are_specific_revenue_figures(title, figures):
    assert amounts(title) == figures


def test_figure_words_pair_each_figure_with_the_other_words():
    assert figure_words("ShipLog is at $4.2k MRR, up from $2.3k") == {
        "$4200 shiplog",
        "$2300 shiplog",
        "$4200 up",
        "$2300 up",
    }  # not "mrr", not "$4", "2k"
    assert figure_words("ShipLog is at $4k MRR") == set()


def _clustered(rows: list[tuple[str, str, str]], conn=None) -> pd.DataFrame:
    batch = pd.DataFrame(rows, columns=["opportunity_id", "title", "canonical_url"]).assign(
        created_at=pd.date_range("2026-11-01", periods=len(rows), freq="h", tz="UTC")
    )
    return near_duplicates.assign_clusters(conn or _empty_index(), "duckdb", batch).set_index("opportunity_id")


def test_a_product_name_or_a_revenue_figure_joins_in_one_batch():
    out = _clustered(
        [
            ("a", "Show HN: ShotAPI – website screenshots as a service", "https://shotapi.io"),
            ("b", "ShotAPI: website screenshots", "https://freepublicapis.com/shotapi"),
            ("c", "Content site income report: $5.1k/month at 14 months", "https://indiehackers.com/post/content-site"),
            ("d", "How I turned a side project into $5.1k/month with a content site", "https://brewratio.com/blog/x"),
            ("e", "My newsletter made $5.1k/month from sponsors", "https://x.com/someone/status/1"),
        ]
    )
    assert out.loc["b", "near_duplicate_of"] == "a" and out.loc["b", "similarity"] == 1.0
    assert out.loc["d", "near_duplicate_of"] == "c"  # $5.1k/month, "content", "site"
    assert out.loc["e", "cluster_id"] == "e"  # the same figure, nothing else in common
    assert out.loc["a", "name_keys"] == ["host:shotapi.io", "site:shotapi"]
    assert "$5100 content" in out.loc["c", "figure_words"]


def test_the_index_keeps_product_names_and_revenue_figures():
    conn = _empty_index()
    first = _clustered(
        [
            ("a", "Show HN: ShotAPI – website screenshots as a service", "https://shotapi.io"),
            ("c", "Content site income report: $5.1k/month at 14 months", "https://indiehackers.com/post/content-site"),
        ],
        conn,
    )
    conn.register("_first", first.reset_index())
    conn.execute(
        "INSERT INTO core.opportunities SELECT canonical_url, opportunity_id, cluster_id, created_at FROM _first"
    )
    near_duplicates.persist(conn, "duckdb", first.reset_index(), ["a", "c"])
    extra = conn.execute(
        "SELECT band, bucket, opportunity_id FROM core.lsh_buckets WHERE band >= ? ORDER BY band, bucket",
        [near_duplicates.NAME_BAND],
    ).fetchall()
    assert extra == [(near_duplicates.NAME_BAND, key, "a") for key in ("host:shotapi.io", "site:shotapi")] + [
        (near_duplicates.FIGURE_BAND, f"$5100 {word}", "c") for word in ("content", "income", "report", "site")
    ]
    later = pd.DataFrame(
        {
            "opportunity_id": ["b", "d"],
            "title": [
                "ShotAPI: website screenshots",
                "How I turned a side project into $5.1k/month with a content site",
            ],
            "canonical_url": ["https://freepublicapis.com/shotapi", "https://brewratio.com/blog/x"],
            "created_at": pd.Timestamp("2026-11-02", tz="UTC"),
        }
    )
    out = near_duplicates.assign_clusters(conn, "duckdb", later).set_index("opportunity_id")
    assert out["cluster_id"].to_dict() == {"b": "a", "d": "c"}
