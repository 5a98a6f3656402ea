"""Near-duplicates: the same launch posted to HN, Reddit and Product Hunt in different words.

MinHash signatures (datasketch) over a token set of the normalized title plus the site's host,
banded for LSH. The band buckets and signatures are persisted in the warehouse, so each run only
hashes its new opportunities and looks them up in the index: incremental, and shared by every
process that can reach the warehouse. Near-duplicates are clustered (same cluster_id), never
dropped: a cluster is one opportunity seen in several places, which is itself a signal.

Threshold: an estimated Jaccard similarity of at least 0.5 between token sets. Measured on the
labelled pairs in tests/fixtures/near_duplicate_pairs.csv (see benchmarks/near_duplicates.py).
"""

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.fingerprints import normalized_title
from core.warehouse import append_frame, query_frame, stage_frame

THRESHOLD = 0.5
# Sites whose URLs name the post, not the product: the same URL there is not evidence of sameness.
AGGREGATOR_HOSTS = frozenset({"news.ycombinator.com", "reddit.com", "x.com", "twitter.com", "producthunt.com",
                              "github.com", "freelancer.com", "youtube.com", "medium.com", "indiehackers.com"})
NUM_PERM = 64
SEED = 7
# Words that every launch title uses and that make unrelated launches look alike.
STOPWORDS = frozenset(
    "a an and the for of to in on with your you my our i we is are it this that at by from as "
    "show hn ask launch launched launching new now just built made introducing meet".split()
)


@dataclass(frozen=True)
class LSHParams:
    bands: int
    rows: int


def lsh_params(threshold: float = THRESHOLD, num_perm: int = NUM_PERM) -> LSHParams:
    from datasketch.lsh import _optimal_param  # the same optimisation MinHashLSH uses

    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return LSHParams(bands, rows)


def tokens(title: str, host: str) -> set[str]:
    words = [w for w in normalized_title(title).split() if w not in STOPWORDS and len(w) > 1]
    found = set(words) | {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)}
    if host:
        found.add(f"host:{host}")
    return found


def signatures(token_sets: Sequence[set[str]], num_perm: int = NUM_PERM) -> np.ndarray:
    """One row of `num_perm` uint32 hash values per token set."""
    from datasketch import MinHash

    if not token_sets:
        return np.zeros((0, num_perm), dtype=np.uint32)
    hashed = MinHash.bulk([[t.encode() for t in ts] for ts in token_sets], num_perm=num_perm, seed=SEED)
    return np.vstack([m.hashvalues.astype(np.uint32) for m in hashed])


def band_keys(signature_rows: np.ndarray, params: LSHParams) -> list[list[str]]:
    keys = []
    for row in signature_rows:
        keys.append([hashlib.blake2b(row[b * params.rows:(b + 1) * params.rows].tobytes(), digest_size=8).hexdigest()
                     for b in range(params.bands)])
    return keys


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def encode(signature: np.ndarray) -> str:
    return base64.b64encode(signature.astype("<u4").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4")


def assign_clusters(conn, backend: str, batch: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Give each new opportunity (opportunity_id, title, canonical_url, created_at) a cluster_id and
    its best match, looking in the persisted index and in earlier rows of the same batch.
    Returns the batch with cluster_id, near_duplicate_of and similarity columns, plus the index
    rows to persist (see `persist`)."""
    params = lsh_params(threshold)
    batch = batch.sort_values("created_at", kind="stable").reset_index(drop=True)
    hosts = batch["canonical_url"].str.extract(r"^https://([^/]+)", expand=False).fillna("")
    sigs = signatures([tokens(t, h) for t, h in zip(batch["title"], hosts, strict=True)])
    keys = band_keys(sigs, params)

    existing = _candidates(conn, backend, keys)
    same_url = _same_url(conn, backend, batch, hosts)
    cluster_ids, matches, scores = [], [], []
    local: dict[tuple[int, str], list[int]] = {}
    first_with_url: dict[str, int] = {}
    for i, row_keys in enumerate(keys):
        best_id, best_cluster, best_score = None, None, 0.0
        url = batch.at[i, "canonical_url"]
        # One product URL, different titles ("InvoiceBolt – Get paid on time"): the same launch.
        if url in same_url:
            best_id, best_cluster, best_score = *same_url[url], 1.0
        elif url in first_with_url:
            j = first_with_url[url]
            best_id, best_cluster, best_score = batch.at[j, "opportunity_id"], cluster_ids[j], 1.0
        if hosts[i] not in AGGREGATOR_HOSTS:
            first_with_url.setdefault(url, i)
        for band, key in enumerate(row_keys):
            for opp_id, cluster, signature in existing.get((band, key), ()):
                score = similarity(sigs[i], signature)
                if score > best_score:
                    best_id, best_cluster, best_score = opp_id, cluster, score
            for j in local.get((band, key), ()):
                score = similarity(sigs[i], sigs[j])
                if score > best_score:
                    best_id, best_cluster, best_score = batch.at[j, "opportunity_id"], cluster_ids[j], score
        for band, key in enumerate(row_keys):
            local.setdefault((band, key), []).append(i)
        if best_score >= threshold:
            cluster_ids.append(best_cluster)
            matches.append(best_id)
            scores.append(best_score)
        else:
            cluster_ids.append(batch.at[i, "opportunity_id"])
            matches.append(None)
            scores.append(None)
    out = batch.assign(cluster_id=cluster_ids, near_duplicate_of=matches, similarity=scores)
    out.attrs["signatures"] = sigs
    out.attrs["band_keys"] = keys
    return out


def _same_url(conn, backend: str, batch: pd.DataFrame, hosts: pd.Series) -> dict[str, tuple[str, str]]:
    urls = batch.loc[~hosts.isin(AGGREGATOR_HOSTS), "canonical_url"].drop_duplicates()
    stage_frame(conn, backend, "_batch_urls", pd.DataFrame({"canonical_url": urls}))
    found = query_frame(conn, "SELECT o.canonical_url, o.opportunity_id, o.cluster_id FROM core.opportunities o "
                              "JOIN _batch_urls u ON u.canonical_url = o.canonical_url ORDER BY o.created_at DESC")
    return {url: (opp_id, cluster) for url, opp_id, cluster in found.itertuples(index=False)}


def _candidates(conn, backend: str, keys: list[list[str]]) -> dict[tuple[int, str], list]:
    if not keys:
        return {}
    wanted = pd.DataFrame([(band, key) for row in keys for band, key in enumerate(row)],
                          columns=["band", "bucket"]).drop_duplicates()
    stage_frame(conn, backend, "_wanted_buckets", wanted)
    found = query_frame(
        conn,
        "SELECT b.band, b.bucket, s.opportunity_id, s.cluster_id, s.signature FROM _wanted_buckets w "
        "JOIN core.lsh_buckets b ON b.band = w.band AND b.bucket = w.bucket "
        "JOIN core.lsh_signatures s ON s.opportunity_id = b.opportunity_id",
    )
    index: dict[tuple[int, str], list] = {}
    for band, bucket, opp_id, cluster, signature in found.itertuples(index=False):
        index.setdefault((int(band), bucket), []).append((opp_id, cluster, decode(signature)))
    return index


def persist(conn, backend: str, clustered: pd.DataFrame, inserted_ids: Iterable[str]) -> None:
    """Add the inserted opportunities to the persisted index (same transaction as the insert)."""
    keep = set(inserted_ids)
    sigs, keys = clustered.attrs["signatures"], clustered.attrs["band_keys"]
    bucket_rows, signature_rows = [], []
    for i, row in enumerate(clustered.itertuples(index=False)):
        if row.opportunity_id not in keep:
            continue
        signature_rows.append((row.opportunity_id, row.cluster_id, encode(sigs[i])))
        bucket_rows.extend((band, key, row.opportunity_id) for band, key in enumerate(keys[i]))
    append_frame(conn, backend, "core.lsh_signatures",
                 pd.DataFrame(signature_rows, columns=["opportunity_id", "cluster_id", "signature"]))
    append_frame(conn, backend, "core.lsh_buckets",
                 pd.DataFrame(bucket_rows, columns=["band", "bucket", "opportunity_id"]))

