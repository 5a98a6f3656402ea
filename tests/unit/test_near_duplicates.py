"""Bulk MinHash equals datasketch's, band keys keep their persisted format, and clustering in a
batch follows its rules (reposts join the first post; the same product URL joins)."""

import hashlib

import duckdb
import numpy as np
import pandas as pd
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from core import near_duplicates
from core.near_duplicates import NUM_PERM, SEED, band_keys, lsh_params, signatures


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sets(st.text(max_size=12), max_size=20), max_size=30))
def test_signatures_equal_datasketch(token_sets):
    expected = [m.hashvalues.astype(np.uint32) for m in
                MinHash.bulk([[t.encode() for t in ts] for ts in token_sets], num_perm=NUM_PERM, seed=SEED)]
    got = signatures(token_sets)
    assert got.shape == (len(token_sets), NUM_PERM)
    assert all((row == e).all() for row, e in zip(got, expected, strict=True))


def test_band_keys_keep_the_persisted_format():
    params = lsh_params()
    sigs = signatures([{"a", "b"}, {"shiplog", "host:shiplog.dev"}])
    for row, keys in zip(sigs, band_keys(sigs, params), strict=True):
        # as first persisted: blake2b-64 of each band's uint32 values, hex
        expected = [hashlib.blake2b(row[b * params.rows:(b + 1) * params.rows].tobytes(), digest_size=8).hexdigest()
                    for b in range(params.bands)]
        assert keys == "".join(expected)


def _empty_index():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA core")
    conn.execute("CREATE TABLE core.opportunities (canonical_url TEXT, opportunity_id TEXT, cluster_id TEXT, "
                 "created_at TIMESTAMPTZ)")
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
        created_at=pd.date_range("2026-11-01", periods=len(rows), freq="h", tz="UTC"))
    out = near_duplicates.assign_clusters(_empty_index(), "duckdb", batch).set_index("opportunity_id")
    assert out.loc[["a", "c", "e"], "cluster_id"].tolist() == ["a", "a", "a"]
    assert out.loc[["c", "e"], "near_duplicate_of"].tolist() == ["a", "a"]  # the first post, not the latest
    assert out.loc["d", "near_duplicate_of"] == "b" and out.loc["d", "similarity"] == 1.0
    assert out.loc["f", "cluster_id"] == "f" and pd.isna(out.loc["f", "near_duplicate_of"])
