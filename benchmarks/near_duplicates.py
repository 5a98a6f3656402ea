"""Incremental near-duplicate detection: hash only the new opportunities and look them up in the
persisted LSH index; and the matcher's precision and recall on hand-labelled pairs.

    python benchmarks/near_duplicates.py [--index 1000000] [--new 100000]

1. An index of `--index` opportunities (Hacker News hits from benchmarks/_common.py) is built once
   per (sizes, seed) in benchmarks/.data/ with the product's own signatures, band keys, name
   keys and (revenue figure, word) pairs, written in bulk (set-up, not timed). Each run works on a
   copy.
2. Timed: `core.discovery.near_duplicates.index.assign_clusters` for `--new` later hits (exact duplicates of indexed
   ones removed first, as core.opportunities does), then `persist`. Baseline in the same run: a
   plain DuckDB join of the same rows' band keys against the bucket index (the lookup every
   implementation must do), so the ratio says what the hashing and scoring cost on top.
3. Precision and recall on tests/fixtures/near_duplicate_pairs.csv with `are_near_duplicates`, on
   each half of the fixed split of tests/unit/test_near_duplicate_quality.py and on all pairs.
"""

import argparse
import csv
import shutil
import subprocess
import sys
import time
import uuid
import zlib
from datetime import UTC, datetime

import pandas as pd
from _common import DATA_DIR, REPO, Timings, hn_hits, machine, peak_rss_mb

from core.discovery.fingerprints import canonical_urls, fingerprints
from core.discovery.near_duplicates import index as near_duplicates
from core.discovery.near_duplicates.index import index_rows
from core.discovery.near_duplicates.minhash import band_column, band_keys, encode, lsh_params, signatures
from core.discovery.near_duplicates.rules import HOST_PATTERN, figure_words, name_keys, tokens
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

PAIRS = REPO / "tests" / "fixtures" / "near_duplicate_pairs.csv"
BLOCK = 100_000


def opportunities(hits: list[dict], first_id: int) -> pd.DataFrame:
    """The core.opportunities columns near-duplicate detection reads, as normalization makes them."""
    urls = [h.get("url") or f"https://news.ycombinator.com/item?id={h['objectID']}" for h in hits]
    titles = [h["title"] for h in hits]
    frame = pd.DataFrame(
        {
            "opportunity_id": [str(uuid.UUID(int=first_id + i)) for i in range(len(hits))],
            "title": titles,
            "url": urls,
            "canonical_url": canonical_urls(urls),
            "created_at": pd.to_datetime([h["created_at_i"] for h in hits], unit="s", utc=True),
        }
    )
    frame["fingerprint"] = fingerprints(frame["canonical_url"], frame["title"])
    return frame.drop_duplicates("fingerprint")


def build_index(path: str, size: int, new: int, seed: int) -> None:
    """Write the first `size` of `size + new` generated opportunities, with their signatures and
    index rows (cluster_id = own id)."""
    warehouse = Warehouse(f"duckdb:///{path}")
    ensure_schema(warehouse)
    hits = hn_hits(size + new, seed=seed)
    index = opportunities(hits[:size], first_id=1)
    with warehouse.connect() as conn:  # the later hits, kept for the timed run (which then needs no generator)
        conn.execute("CREATE SCHEMA bench")
        conn.register("_new", opportunities(hits[size:], first_id=size + 10))
        conn.execute("CREATE TABLE bench.new_opportunities AS SELECT * FROM _new")
    del hits
    params = lsh_params()
    for start in range(0, len(index), BLOCK):
        block = index.iloc[start : start + BLOCK]
        hosts = block["canonical_url"].str.extract(HOST_PATTERN, expand=False).fillna("")
        sigs = signatures(tokens(t, h) for t, h in zip(block["title"], hosts, strict=True))
        indexed = block.assign(
            band_keys=band_keys(sigs, params),
            name_keys=[name_keys(url)[0] for url in block["canonical_url"]],
            figure_words=[sorted(figure_words(title)) for title in block["title"]],
        )
        ids = block["opportunity_id"]
        with warehouse.connect() as conn:
            conn.register(
                "_o",
                block.assign(
                    source="hackernews",
                    family="hacker_news",
                    external_id=ids,
                    body="",
                    author=None,
                    points=0,
                    comments=0,
                    fetched_at=block["created_at"],
                    cluster_id=ids,
                    record_id=ids,
                ),
            )
            conn.execute("INSERT INTO core.opportunities BY NAME SELECT * FROM _o")
            conn.register(
                "_s", pd.DataFrame({"opportunity_id": ids, "cluster_id": ids, "signature": [encode(s) for s in sigs]})
            )
            conn.execute("INSERT INTO core.lsh_signatures BY NAME SELECT * FROM _s")
            conn.register("_b", index_rows(indexed))
            conn.execute("INSERT INTO core.lsh_buckets BY NAME SELECT * FROM _b")


def index_file(size: int, new: int, seed: int) -> str:
    # v4: with the name-key and figure rows of core.lsh_buckets
    cached = DATA_DIR / f"lsh_index_v4_{size}_{new}_{seed}.duckdb"
    if not cached.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        partial = cached.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--build-index",
                str(partial),
                "--index",
                str(size),
                "--new",
                str(new),
                "--seed",
                str(seed),
            ],
            check=True,
        )
        partial.rename(cached)
        print(f"built an index of {size:,} opportunities in {cached} in {time.perf_counter() - started:.1f} s (set-up)")
    return str(cached)


def baseline(conn, keys: pd.Series, bands: int) -> int:
    """The bare lookup: the batch's (band, bucket) pairs joined to the bucket index in SQL."""
    wanted = pd.concat([pd.DataFrame({"band": band, "bucket": band_column(keys, band)}) for band in range(bands)])
    conn.register("_wanted", wanted)
    return conn.execute(
        "SELECT count(*) FROM _wanted w JOIN core.lsh_buckets b ON b.band = w.band AND b.bucket = w.bucket"
    ).fetchone()[0]


def quality(half: int | None = None) -> tuple[float, float, int, int, int, int]:
    """On all labelled pairs, or on one half of the fixed split of tests/unit/test_near_duplicate_quality.py."""
    with PAIRS.open(encoding="utf-8") as f:
        pairs = [p for p in csv.DictReader(f) if half is None or zlib.crc32(p["note"].encode()) % 2 == half]
    tp = fp = fn = 0
    for p in pairs:
        predicted = near_duplicates.are_near_duplicates(p["title_a"], p["url_a"], p["title_b"], p["url_b"])
        actual = p["is_duplicate"] == "1"
        tp, fp, fn = tp + (predicted and actual), fp + (predicted and not actual), fn + (actual and not predicted)
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), len(pairs), tp, fp, fn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=1_000_000, help="opportunities already indexed")
    parser.add_argument("--new", type=int, default=100_000, help="new opportunities to cluster")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--build-index", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_index:
        build_index(args.build_index, args.index, args.new, args.seed)
        return 0

    print(
        f"near-duplicates: {args.new:,} new opportunities against an index of {args.index:,}; {machine()}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    source_file = index_file(args.index, args.new, args.seed)
    work = DATA_DIR / f"work_nd_{args.index}_{int(time.time())}.duckdb"
    shutil.copyfile(source_file, work)
    warehouse = Warehouse(f"duckdb:///{work}")
    try:
        # The same generator continued: the new hits include reposts and rewordings of indexed ones.
        with warehouse.connect() as conn:
            batch = conn.execute(
                "SELECT n.* FROM bench.new_opportunities n ANTI JOIN core.opportunities o "
                "ON o.fingerprint = n.fingerprint"
            ).df()  # exact duplicates: see unseen()
        timings = Timings()
        params = lsh_params()
        hosts = batch["canonical_url"].str.extract(HOST_PATTERN, expand=False).fillna("")
        keys = pd.Series(
            band_keys(signatures(tokens(t, h) for t, h in zip(batch["title"], hosts, strict=True)), params), dtype="str"
        )
        with warehouse.connect() as conn, timings.stage("baseline: SQL join of the band keys to the index", len(batch)):
            matched = baseline(conn, keys, params.bands)
        with warehouse.connect() as conn:
            with timings.stage("assign_clusters (hash, look up, score, cluster)", len(batch)):
                clustered = near_duplicates.assign_clusters(conn, "duckdb", batch)
            with timings.stage("persist (signatures + band buckets)", len(clustered)):
                near_duplicates.persist(conn, "duckdb", clustered, clustered["opportunity_id"])
    finally:
        work.unlink(missing_ok=True)
        work.with_suffix(".duckdb.wal").unlink(missing_ok=True)

    print(timings.table())
    join_only = timings.seconds("baseline: SQL join of the band keys to the index")
    product = timings.seconds("assign_clusters (hash, look up, score, cluster)", "persist (signatures + band buckets)")
    near = clustered["near_duplicate_of"].notna()
    indexed = clustered["near_duplicate_of"].isin(set(clustered["opportunity_id"]))
    print(
        f"\nnew rows {len(batch):,} ({args.new - len(batch):,} exact duplicates removed first); "
        f"bucket hits in the index {matched:,}"
    )
    print(
        f"near-duplicates found: {int(near.sum()):,} ({int((near & ~indexed).sum()):,} of indexed opportunities, "
        f"{int((near & indexed).sum()):,} within the batch)"
    )
    print(
        f"incremental clustering: {product:.2f} s = {len(batch) / product:,.0f} rows/s; "
        f"{product / join_only:.1f}x the bare SQL lookup ({join_only:.2f} s)"
    )
    for half, label in ((0, "half 0"), (1, "half 1"), (None, "all")):
        precision, recall, n, tp, fp, fn = quality(half)
        print(
            f"labelled pairs, {label} ({n}, {tp + fn} duplicates): precision {precision:.2f} ({fp} false matches), "
            f"recall {recall:.2f} ({fn} missed)"
        )
    print(f"peak RSS: {peak_rss_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
