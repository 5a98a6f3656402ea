"""Clustering against the persisted index (core.lsh_buckets, core.lsh_signatures): `assign_clusters`
for a batch, `are_near_duplicates` for one pair, `index_rows` and `persist` to add a batch."""

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from core.discovery.fingerprints import canonical_url
from core.discovery.near_duplicates.minhash import (
    KEY_CHARS,
    NUM_PERM,
    LSHParams,
    band_column,
    band_keys,
    encode,
    lsh_params,
    signatures,
    similarity,
)
from core.discovery.near_duplicates.rules import (
    AGGREGATOR_HOSTS,
    HOST_PATTERN,
    MIN_SHARED_FIGURE_WORDS,
    REPOSITORY_URL,
    THRESHOLD,
    figure_words,
    host_of,
    is_product_url,
    name_keys,
    tokens,
)
from core.platform.warehouse import append_frame, query_frame, run_sql, stage_frame

# core.lsh_buckets rows that are not LSH bands (of which there are at most NUM_PERM): the bucket
# is a name key such as "site:shotapi" (see name_keys), or one (revenue figure, title word) pair
# such as "$4200 changelog", as text.
NAME_BAND = NUM_PERM
FIGURE_BAND = NUM_PERM + 1
# Candidate pairs scored per block (each compares two 64-value signatures).
_PAIR_BLOCK = 500_000
# Batch rows looked up in the persisted index per query.
_LOOKUP_ROWS = 50_000


def are_near_duplicates(title_a: str, url_a: str, title_b: str, url_b: str, threshold: float = THRESHOLD) -> bool:
    """Whether `assign_clusters` would put b in a's cluster if a were already indexed: the same
    product URL, the same product name, MIN_SHARED_FIGURE_WORDS (revenue figure, word) pairs in
    common, or a shared LSH bucket and an estimated Jaccard similarity of at least `threshold`."""
    canonical_a, canonical_b = canonical_url(url_a), canonical_url(url_b)
    if canonical_a == canonical_b and is_product_url(canonical_a):
        return True
    if set(name_keys(canonical_a)[0]) & set(name_keys(canonical_b)[1]):
        return True
    if len(figure_words(title_a) & figure_words(title_b)) >= MIN_SHARED_FIGURE_WORDS:
        return True
    params = lsh_params(threshold)
    sigs = signatures([tokens(title_a, host_of(canonical_a)), tokens(title_b, host_of(canonical_b))])
    key_a, key_b = band_keys(sigs, params)
    shares_bucket = any(key_a[i : i + KEY_CHARS] == key_b[i : i + KEY_CHARS] for i in range(0, len(key_a), KEY_CHARS))
    return shares_bucket and similarity(sigs[0], sigs[1]) >= threshold


# -- clustering ---------------------------------------------------------------------------------


def assign_clusters(conn, backend: str, batch: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Give each new opportunity (opportunity_id, title, canonical_url, created_at) a cluster_id and
    its best match, looking in the persisted index and in earlier rows of the same batch.

    A row's best match: an opportunity with the same product URL, else one with the same product
    name (`name_keys`; for either, the indexed one first, else the earliest in the batch;
    similarity 1.0), else
    the most similar candidate sharing an LSH bucket with it at or above `threshold` or
    MIN_SHARED_FIGURE_WORDS (revenue figure, word) pairs: among equally similar ones, the first met
    in band order (the LSH bands, then FIGURE_BAND), indexed candidates before earlier batch rows.
    Returns the batch (by created_at) with cluster_id, near_duplicate_of and similarity, plus the
    `signature`, `band_keys`, `name_keys` and `figure_words` columns that `persist` writes."""
    params = lsh_params(threshold)
    batch = batch.sort_values("created_at", kind="stable").reset_index(drop=True)
    n = len(batch)
    hosts = batch["canonical_url"].str.extract(HOST_PATTERN, expand=False).fillna("")
    sigs = signatures(_token_sets(batch["title"], hosts))
    keys = pd.Series(band_keys(sigs, params), index=batch.index, dtype="str")
    encoded = [encode(s) for s in sigs]
    ids = batch["opportunity_id"].astype(str).to_numpy(dtype=object)
    urls = batch["canonical_url"].to_numpy(dtype=object)
    named = [name_keys(url) for url in urls]
    figures = [sorted(figure_words(title)) for title in batch["title"]]
    stated = pd.DataFrame(
        {
            "batch_row": np.repeat(np.arange(n), [len(f) for f in figures]),
            "bucket": [pair for found in figures for pair in found],
        },
        columns=["batch_row", "bucket"],
    )

    best = _Best(n, sigs.shape[1])
    indexed_ids, indexed_clusters = _offer_indexed(conn, backend, keys, stated, sigs, params, threshold, best)
    _offer_batch(keys, stated, sigs, encoded, params, threshold, best)

    product_url = (~hosts.isin(AGGREGATOR_HOSTS) | batch["canonical_url"].str.match(REPOSITORY_URL)).to_numpy()
    same_url = _indexed_owners(
        conn, backend, urls[product_url], "JOIN core.opportunities o ON o.canonical_url = k.wanted"
    )
    same_name = _indexed_owners(
        conn,
        backend,
        np.array([key for _, wanted in named for key in wanted], dtype=object),
        f"JOIN core.lsh_buckets b ON b.band = {NAME_BAND} AND b.bucket = k.wanted "
        "JOIN core.opportunities o ON o.opportunity_id = b.opportunity_id",
    )
    first_with_url = _first_in_batch(urls, product_url)
    first_with_key: dict[str, int] = {}  # name keys of the rows so far, and the first row with each
    cluster_ids, matches, scores = [], [], []
    for i in range(n):  # in created_at order: a row may join the cluster an earlier row just joined
        url, (indexed_under, wanted) = urls[i], named[i]
        by_name = next((same_name[key] for key in wanted if key in same_name), None)
        earlier = next((first_with_key[key] for key in wanted if key in first_with_key), None)
        if product_url[i] and url in same_url:  # one product URL, different titles: the same launch
            match, cluster, score = *same_url[url], 1.0
        elif product_url[i] and first_with_url[i] < i:
            j = int(first_with_url[i])
            match, cluster, score = ids[j], cluster_ids[j], 1.0
        elif by_name:
            match, cluster, score = *by_name, 1.0
        elif earlier is not None:
            match, cluster, score = ids[earlier], cluster_ids[earlier], 1.0
        elif best.equal[i] >= 0:  # a candidate at or above its threshold
            # as `similarity` gives it: the mean of the equal positions
            k, score = int(best.position[i]), float(best.equal[i] / sigs.shape[1])
            if best.origin[i] == 0:
                match, cluster = indexed_ids[k], indexed_clusters[k]
            else:
                match, cluster = ids[k], cluster_ids[k]
        else:
            match, cluster, score = None, ids[i], None
        cluster_ids.append(cluster)
        matches.append(match)
        scores.append(score)
        for key in indexed_under:
            first_with_key.setdefault(key, i)
    return batch.assign(
        cluster_id=cluster_ids,
        near_duplicate_of=matches,
        similarity=scores,
        signature=encoded,
        band_keys=keys,
        name_keys=[under for under, _ in named],
        figure_words=figures,
    )


def _first_in_batch(keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row, the first valid row with its key (NaN where there is none)."""
    return pd.Series(np.arange(len(keys))).where(valid).groupby(keys).transform("min").to_numpy()


def _token_sets(titles: Iterable[str], hosts: Iterable[str]) -> Iterator[set[str]]:
    return (tokens(t, h) for t, h in zip(titles, hosts, strict=True))


class _Best:
    """Per batch row, its best candidate so far: the most equal signature positions, then the
    lowest band, then the index (origin 0) before the batch (origin 1), then the lowest position:
    the order in which one row's candidates are met, so ties go to the first met.

    Candidates below their threshold are dropped on arrival: the best of them could only ever mean
    "no match", which is what a row without candidates means too. Most bucket hits are such weak
    ones (a shared common word), so this keeps the ranking small."""

    def __init__(self, n: int, num_perm: int):
        self.num_perm = num_perm
        self.equal = np.full(n, -1, dtype=np.int64)  # -1: no candidate at or above the threshold
        self.band = np.zeros(n, dtype=np.int64)
        self.origin = np.zeros(n, dtype=np.int64)
        self.position = np.zeros(n, dtype=np.int64)

    def offer(self, rows: np.ndarray, band, origin: int, positions: np.ndarray, equal, threshold) -> None:
        """Candidates (rows[k], positions[k]) met in `band`, kept at or above `threshold` (one value,
        or one per candidate)."""
        band = np.broadcast_to(np.asarray(band, dtype=np.int64), rows.shape)
        equal = np.broadcast_to(np.asarray(equal, dtype=np.int64), rows.shape)
        strong = equal / self.num_perm >= threshold  # as are_near_duplicates compares the similarity
        rows, band, positions, equal = rows[strong], band[strong], positions[strong], equal[strong]
        if not len(rows):
            return
        order = np.lexsort((positions, band, -equal, rows))  # origin is the same for the whole offer
        ranked = rows[order]
        first = order[np.r_[True, ranked[1:] != ranked[:-1]]]
        r, e, b, p = rows[first], equal[first], band[first], positions[first]
        current_e, current_b, current_o, current_p = self.equal[r], self.band[r], self.origin[r], self.position[r]
        better = (e > current_e) | (e == current_e) & (
            (b < current_b) | (b == current_b) & ((origin < current_o) | (origin == current_o) & (p < current_p))
        )
        r = r[better]
        self.equal[r], self.band[r], self.origin[r], self.position[r] = e[better], b[better], origin, p[better]


def _equal_positions(sigs: np.ndarray, rows: np.ndarray, theirs: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), _PAIR_BLOCK):
        part = slice(start, start + _PAIR_BLOCK)
        out[part] = (sigs[rows[part]] == theirs[positions[part]]).sum(axis=1)
    return out


def _offer_batch(
    keys: pd.Series,
    stated: pd.DataFrame,
    sigs: np.ndarray,
    encoded: list[str],
    params: LSHParams,
    threshold: float,
    best: _Best,
) -> None:
    """Offer every (row, earlier row) pair of the batch that shares a bucket or enough (revenue
    figure, word) pairs (`stated`: batch_row, bucket).

    A row whose signature repeats an earlier row's (a reposted title) is best matched by the first
    such row: every position equal, met in band 0. It needs no other pair, and as a candidate for
    later rows it ties with that first row, which comes earlier and wins. So pairs are formed among
    distinct signatures only: a title posted a thousand times costs a thousand rows, not half a
    million pairs per band."""
    codes = pd.factorize(pd.Series(encoded))[0]
    first_of_code = np.full(codes.max() + 1 if len(codes) else 0, len(codes), dtype=np.int64)
    np.minimum.at(first_of_code, codes, np.arange(len(codes)))
    first = first_of_code[codes]
    copies = np.flatnonzero(first < np.arange(len(codes)))
    best.offer(copies, 0, 1, first[copies], sigs.shape[1], threshold)

    distinct = np.flatnonzero(first == np.arange(len(codes)))
    for band in range(params.bands):
        for rows, positions in _pairs_sharing(distinct, pd.factorize(band_column(keys, band).iloc[distinct])[0]):
            best.offer(rows, band, 1, positions, _equal_positions(sigs, rows, sigs, positions), threshold)
    stated_rows = stated["batch_row"].to_numpy(dtype=np.int64)
    stated = stated[first[stated_rows] == stated_rows]
    pairs = list(_pairs_sharing(stated["batch_row"].to_numpy(dtype=np.int64), pd.factorize(stated["bucket"])[0]))
    if pairs:
        rows, positions = _met_enough(
            np.concatenate([r for r, _ in pairs]), np.concatenate([p for _, p in pairs]), len(codes)
        )
        best.offer(rows, FIGURE_BAND, 1, positions, _equal_positions(sigs, rows, sigs, positions), 0.0)


def _met_enough(rows: np.ndarray, positions: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The (row, position) pairs met in MIN_SHARED_FIGURE_WORDS (figure, word) buckets or more."""
    pair, met = np.unique(rows * stride + positions, return_counts=True)
    return np.divmod(pair[met >= MIN_SHARED_FIGURE_WORDS], stride)


def _pairs_sharing(members: np.ndarray, buckets: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (row, earlier row) pair among `members` (batch rows, ascending within a bucket) with
    the same bucket code, in blocks."""
    order = np.argsort(buckets, kind="stable")  # grouped by bucket, rows ascending within one
    grouped = buckets[order]
    group_start = np.maximum.accumulate(np.where(np.r_[True, grouped[1:] != grouped[:-1]], np.arange(len(grouped)), 0))
    earlier = np.arange(len(grouped)) - group_start  # how many rows precede this one in its bucket
    ends = np.cumsum(earlier)
    start = 0
    while start < len(grouped):  # blocks of at most ~_PAIR_BLOCK pairs (one hot bucket can be huge)
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _PAIR_BLOCK, "right")))
        count = earlier[start:stop]
        if count.any():
            later = np.repeat(np.arange(start, stop), count)
            nth = np.arange(len(later)) - np.repeat(np.cumsum(count) - count, count)
            yield members[order[later]], members[order[group_start[later] + nth]]
        start = stop


def _offer_indexed(
    conn,
    backend: str,
    keys: pd.Series,
    stated: pd.DataFrame,
    sigs: np.ndarray,
    params: LSHParams,
    threshold: float,
    best: _Best,
) -> tuple[np.ndarray, np.ndarray]:
    """Offer the indexed opportunities sharing a bucket, or enough (revenue figure, word) pairs
    (`stated`), with a batch row; return their ids and cluster ids (by the position offered:
    positions follow opportunity_id, so that ties between indexed candidates go to the lowest id,
    deterministically).

    A common title word (or a shared host such as news.ycombinator.com) can put a batch row in
    the same bucket as thousands of indexed ones: 29 million bucket hits for 100,000 new rows
    against 1,000,000 in benchmarks/near_duplicates.py. So every candidate's signature is fetched
    once, decoded by the database, and the hits come back as integers, _LOOKUP_ROWS rows at a time."""
    none = np.zeros(0, dtype=object), np.zeros(0, dtype=object)
    # A first load into an empty index has nothing to look up (and a million rows' buckets to stage).
    if query_frame(conn, "SELECT 1 AS found FROM core.lsh_buckets LIMIT 1").empty:
        return none
    wanted = pd.concat(
        [
            *(
                pd.DataFrame({"batch_row": keys.index.to_numpy(), "band": band, "bucket": band_column(keys, band)})
                for band in range(params.bands)
            ),
            stated.assign(band=FIGURE_BAND),
        ],
        ignore_index=True,
    )
    stage_frame(conn, backend, "_wanted_buckets", wanted)
    join = "FROM _wanted_buckets w JOIN core.lsh_buckets b ON b.band = w.band AND b.bucket = w.bucket"
    run_sql(
        conn,
        "CREATE TEMP TABLE _hit_ids AS SELECT opportunity_id, "
        "CAST(row_number() OVER (ORDER BY opportunity_id) - 1 AS INTEGER) AS position "
        f"FROM (SELECT DISTINCT b.opportunity_id {join}) d",
        None,
    )
    try:
        from_base64 = "from_base64(s.signature)" if backend == "duckdb" else "decode(s.signature, 'base64')"
        indexed = query_frame(
            conn,
            f"SELECT i.position, s.opportunity_id, s.cluster_id, {from_base64} AS signature "
            "FROM _hit_ids i JOIN core.lsh_signatures s ON s.opportunity_id = i.opportunity_id "
            "ORDER BY i.position",
        )
        if indexed.empty:
            return none
        indexed_sigs = np.frombuffer(b"".join(indexed["signature"]), dtype="<u4").reshape(len(indexed), -1)
        for start in range(0, len(keys), _LOOKUP_ROWS):
            hits = query_frame(
                conn,
                f"SELECT w.batch_row, w.band, i.position {join} "
                "JOIN _hit_ids i ON i.opportunity_id = b.opportunity_id "
                "WHERE w.batch_row >= %s AND w.batch_row < %s",
                [start, start + _LOOKUP_ROWS],
            )
            rows, positions = hits["batch_row"].to_numpy(dtype=np.int64), hits["position"].to_numpy(dtype=np.int64)
            bands = hits["band"].to_numpy(dtype=np.int64)
            lsh = bands != FIGURE_BAND
            best.offer(
                rows[lsh],
                bands[lsh],
                0,
                positions[lsh],
                _equal_positions(sigs, rows[lsh], indexed_sigs, positions[lsh]),
                threshold,
            )
            rows, positions = _met_enough(rows[~lsh], positions[~lsh], len(indexed))
            best.offer(rows, FIGURE_BAND, 0, positions, _equal_positions(sigs, rows, indexed_sigs, positions), 0.0)
    finally:
        run_sql(conn, "DROP TABLE _hit_ids", None)
    return indexed["opportunity_id"].to_numpy(dtype=object), indexed["cluster_id"].to_numpy(dtype=object)


def _indexed_owners(conn, backend: str, wanted: np.ndarray, join: str) -> dict[str, tuple[str, str]]:
    """Per wanted product URL or name, the earliest indexed opportunity with it (opportunity_id,
    cluster_id); `join` joins the staged values (k.wanted) to core.opportunities o."""
    if not len(wanted):
        return {}
    stage_frame(conn, backend, "_wanted_owners", pd.DataFrame({"wanted": pd.unique(wanted)}))
    found = query_frame(
        conn, f"SELECT k.wanted, o.opportunity_id, o.cluster_id FROM _wanted_owners k {join} ORDER BY o.created_at DESC"
    )
    return {key: (opp_id, cluster) for key, opp_id, cluster in found.itertuples(index=False)}


def index_rows(clustered: pd.DataFrame) -> pd.DataFrame:
    """The core.lsh_buckets rows of `assign_clusters` output: one per LSH band, name key and
    (revenue figure, word) pair of each opportunity."""
    ids, keys = clustered["opportunity_id"], clustered["band_keys"]
    bands = len(keys.iloc[0]) // KEY_CHARS if len(keys) else 0
    named = clustered[["opportunity_id", "name_keys"]].explode("name_keys").dropna()
    figures = clustered[["opportunity_id", "figure_words"]].explode("figure_words").dropna()
    return pd.concat(
        [
            *(
                pd.DataFrame({"band": band, "bucket": band_column(keys, band), "opportunity_id": ids})
                for band in range(bands)
            ),
            pd.DataFrame({"band": NAME_BAND, "bucket": named["name_keys"], "opportunity_id": named["opportunity_id"]}),
            pd.DataFrame(
                {"band": FIGURE_BAND, "bucket": figures["figure_words"], "opportunity_id": figures["opportunity_id"]}
            ),
        ],
        ignore_index=True,
    )


def persist(conn, backend: str, clustered: pd.DataFrame, inserted_ids: Iterable[str]) -> None:
    """Add the inserted opportunities to the persisted index (same transaction as the insert)."""
    kept = clustered[clustered["opportunity_id"].isin(set(inserted_ids))]
    append_frame(conn, backend, "core.lsh_signatures", kept[["opportunity_id", "cluster_id", "signature"]])
    if not kept.empty:
        append_frame(conn, backend, "core.lsh_buckets", index_rows(kept))
