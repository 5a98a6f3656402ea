"""Near-duplicates: the same launch posted to HN, Reddit and Product Hunt in different words.

Two opportunities are near-duplicates, and share a cluster, when any of these holds:

1. The same product URL: one canonical URL outside aggregator sites (news.ycombinator.com, x.com,
   ...), or the same github.com/<owner>/<repo>.
2. The same product, named by the URL alone (`product_name`, `name_keys`): a site's home or
   pricing page names it by its host (shotapi.io -> "shotapi"), a listing by its slug
   (producthunt.com/products/shotapi, freepublicapis.com/shotapi) or, on GitHub, by a repository
   whose owner is named after it (shotapi/shotapi, shotapi-dev/shotapi-cli). A listing matches the
   sites and listings of its name; a site's page matches the other pages of its own host (not
   another TLD: pulse.io and pulse.dev are often two companies). A listing and the site it lists
   rarely share a title word beyond the name, so no similarity is asked for.
3. The same revenue figure and at least two more words in common (`figure_words`: figures of
   $1,000 or more that are not round, such as "$4.2k MRR" or "$7,850"; smaller amounts are mostly
   prices and round figures like "$10k" are said by many unrelated posts; units like MRR do not
   count as words).
4. A shared LSH bucket and an estimated Jaccard similarity of at least THRESHOLD (0.5).

Similarity is estimated by MinHash signatures (datasketch's, computed in bulk) over a token set of
the normalized title's words and word pairs plus the site's host, banded for LSH. The band buckets,
the product names and the (figure, word) pairs are persisted in core.lsh_buckets (the last two as
extra "bands", NAME_BAND and FIGURE_BAND), the signatures in core.lsh_signatures, so each run only
hashes its new opportunities and looks them up in the index: incremental, and shared by every
process that can reach the warehouse. Opportunities indexed before rules 2 and 3 existed have no
name or figure rows, so only rules 1 and 4 find them. Near-duplicates are clustered (same
cluster_id), never dropped: a cluster is one opportunity seen in several places, which is itself a
signal.

Measured on the hand-labelled pairs in tests/fixtures/near_duplicate_pairs.csv, on each half of a
fixed split by launch (tests/unit/test_near_duplicate_quality.py, benchmarks/README.md): rules 1
and 4 alone found 41% of the duplicates, all four find 82%; precision 0.99 (one false match of
rule 4, two short directory titles). Rule 3 first asked
for an estimated Jaccard of 0.2 instead of two shared words: a short title is mostly its figure's
tokens ("$5", "1k", "month"), so "My newsletter made $5.1k/month from sponsors" matched a content
site's "$5.1k/month" report.
"""

import base64
import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from core.discovery.fingerprints import canonical_url, normalized_title
from core.platform.warehouse import run_sql, append_frame, query_frame, stage_frame

THRESHOLD = 0.5
# Rule 3: (revenue figure, title word) pairs two titles must have in common.
MIN_SHARED_FIGURE_WORDS = 2
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
_HOST = r"^https://([^/]+)"
# core.lsh_buckets rows that are not LSH bands (of which there are at most NUM_PERM): the bucket
# is a name key such as "site:shotapi" (see name_keys), or one (revenue figure, title word) pair
# such as "$4200 changelog", as text.
NAME_BAND = NUM_PERM
FIGURE_BAND = NUM_PERM + 1
# Directories with one listing per product, and where in the path its slug is.
_LISTING_SLUG = {"producthunt.com": re.compile(r"^/(?:products|posts)/([^/]+)"),
                 "freepublicapis.com": re.compile(r"^/([^/]+)$")}
_URL_PARTS = re.compile(r"^https://([^/?#]+)([^?#]*)")
_REPOSITORY = re.compile(r"^https://github\.com/([^/?#]+)/([^/?#]+)$")
# An organisation named after its product (shiplog-dev, shiplog-hq) and its repositories
# (shiplog-cli, shiplog-js) by convention.
_OWNER_SUFFIX = re.compile(r"-(dev|hq|labs|app|io|inc|team|org)$")
_REPO_SUFFIX = re.compile(r"-(cli|sdk|js|py|go|rs|app|api|web|server|core)$")
# A site's own pages that describe the product; deeper pages (a blog post) may be about anything.
_PRODUCT_PAGES = frozenset({"", "pricing", "features"})
_GENERIC_SUBDOMAINS = frozenset({"www", "app", "blog", "docs", "api", "m"})
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu"})  # foo.co.uk: "foo"
_AMOUNT = re.compile(r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s?([km])\b)?", re.IGNORECASE)
_MULTIPLIER = {"k": 1_000, "m": 1_000_000}
_MIN_AMOUNT = 1_000
# Words that come with any figure ("$4.2k MRR", "$5.1k/month"), so they do not tell stories apart.
_UNIT_WORDS = frozenset("mrr arr month months mo year years yr week weeks day days revenue".split())
_HAS_DIGIT = re.compile(r"[\d$€£]")
KEY_CHARS = 16  # a bucket key: blake2b-64 of one band of a signature, in hex
# Token sets hashed per block: bounds the (tokens x permutations) matrix to ~40 MB.
_BLOCK_ROWS = 10_000
_MAX_CACHED_TOKENS = 1_000_000
# Candidate pairs scored per block (each compares two 64-value signatures).
_PAIR_BLOCK = 500_000
# Batch rows looked up in the persisted index per query.
_LOOKUP_ROWS = 50_000


@dataclass(frozen=True)
class LSHParams:
    bands: int
    rows: int


@cache
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


def _compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _site_name(host: str) -> str:
    labels = host.split(":")[0].split(".")[:-1]  # no port, no TLD
    if len(labels) > 1 and labels[-1] in _SECOND_LEVEL:
        labels = labels[:-1]
    named = [label for label in labels if label not in _GENERIC_SUBDOMAINS]
    return _compact(named[0]) if named else ""


def product_name(canonical: str) -> str:
    """The product a canonical URL names by itself, or "" (see the module docstring, rule 2)."""
    return _named(canonical)[1]


def _named(canonical: str) -> tuple[str, str]:
    """("listing" or "site", the product's name), or ("", "")."""
    repository = _REPOSITORY.match(canonical)
    if repository:
        owner, repo = (part.lower() for part in repository.groups())
        name = _OWNER_SUFFIX.sub("", owner)
        return ("listing", _compact(name)) if name == _REPO_SUFFIX.sub("", repo) else ("", "")
    parts = _URL_PARTS.match(canonical)
    if not parts:
        return "", ""
    host, path = parts.groups()
    if host in _LISTING_SLUG:
        slug = _LISTING_SLUG[host].match(path)
        return ("listing", _compact(slug.group(1))) if slug else ("", "")
    if host in AGGREGATOR_HOSTS or path.strip("/") not in _PRODUCT_PAGES:
        return "", ""
    name = _site_name(host)
    return ("site", name) if len(name) >= 3 else ("", "")


def name_keys(canonical: str) -> tuple[list[str], list[str]]:
    """Rule 2 as keys: (the keys an opportunity is indexed under, the keys it looks up). A site's
    page matches the pages of its own host and the listings of its name; a listing matches the
    sites and the listings of its name. Two sites with one name on other hosts (pulse.io,
    pulse.dev) are often different companies, so they do not match."""
    kind, name = _named(canonical)
    if kind == "site":
        host = f"host:{_URL_PARTS.match(canonical).group(1)}"
        return [host, f"site:{name}"], [host, f"listing:{name}"]
    if kind == "listing":
        return [f"listing:{name}"], [f"listing:{name}", f"site:{name}"]
    return [], []


def is_product_url(canonical: str) -> bool:
    """Whether the URL itself is the product's: the same one on two posts is the same launch."""
    return host_of(canonical) not in AGGREGATOR_HOSTS or bool(_REPOSITORY.match(canonical))


def amounts(title: str) -> set[str]:
    """The revenue figures a title states (see the module docstring, rule 3), as "$7850"."""
    found = set()
    for currency, number, multiplier in _AMOUNT.findall(title):
        value = round(float(number.replace(",", "")) * _MULTIPLIER.get(multiplier.lower(), 1))
        if value >= _MIN_AMOUNT and len(str(value).rstrip("0")) >= 2:
            found.add(f"{currency}{value}")
    return found


def figure_words(title: str) -> set[str]:
    """Each (revenue figure, other title word) pair of a title, as "$4200 changelog": two titles
    with MIN_SHARED_FIGURE_WORDS of them in common state one figure about the same thing."""
    figures = amounts(title)
    if not figures:
        return set()
    words = {w for w in normalized_title(title).split()
             if w not in STOPWORDS and len(w) > 1 and w not in _UNIT_WORDS and not _HAS_DIGIT.search(w)}
    return {f"{figure} {word}" for figure in figures for word in words}


# -- MinHash, in bulk ---------------------------------------------------------------------------
# datasketch's MinHash (scheme affine32, sha1_hash32) made one object per token set and cost
# ~30 us a set; a million sets took longer than everything else in the pipeline together. The
# same arithmetic over a whole block of sets at once gives identical values (tests/unit/
# test_near_duplicates.py compares them with MinHash.bulk), so persisted signatures stay valid.

@cache
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=SEED).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def _sha1_32(token: str) -> int:
    return int.from_bytes(hashlib.sha1(token.encode()).digest()[:4], "little")


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer, which datasketch applies to every token hash before permuting."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(token_sets: Iterable[set[str]], num_perm: int = NUM_PERM) -> np.ndarray:
    """One row of `num_perm` uint32 hash values per token set: MinHash(num_perm, seed=SEED)."""
    a, b = _permutations(num_perm)
    blocks = []
    hashed: dict[str, int] = {}  # a word recurs across titles: hash it once
    sets = iter(token_sets)
    while block := list(itertools.islice(sets, _BLOCK_ROWS)):  # token sets are made block by block
        out = np.full((len(block), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)  # an empty set's
        counts = np.fromiter((len(ts) for ts in block), dtype=np.int64, count=len(block))
        flat = np.fromiter((hashed[t] if t in hashed else hashed.setdefault(t, _sha1_32(t))
                            for ts in block for t in ts), dtype=np.uint32, count=int(counts.sum()))
        if len(flat):
            permuted = _fmix32(flat)[:, None] * a + b  # uint32 arithmetic wraps: the affine map mod 2^32
            filled = np.flatnonzero(counts)
            starts = (np.cumsum(counts) - counts)[filled]
            out[filled] = np.minimum.reduceat(permuted, starts, axis=0)
        blocks.append(out)
        if len(hashed) > _MAX_CACHED_TOKENS:
            hashed.clear()
    return np.vstack(blocks) if blocks else np.zeros((0, num_perm), dtype=np.uint32)


def band_keys(signature_rows: np.ndarray, params: LSHParams) -> list[str]:
    """Per row, its bucket key in every band, concatenated: `params.bands` keys of KEY_CHARS hex
    characters each (blake2b-64 of the band's values, little-endian uint32). One string a row
    rather than a list keeps a million rows' keys in ~250 MB instead of ~3 GB."""
    data = np.ascontiguousarray(signature_rows, dtype="<u4").tobytes()
    row_bytes, band_bytes = 4 * signature_rows.shape[1] if len(signature_rows) else 0, 4 * params.rows
    blake2b = hashlib.blake2b
    return ["".join([blake2b(data[o:o + band_bytes], digest_size=8).hexdigest()
                     for o in range(start, start + params.bands * band_bytes, band_bytes)])
            for start in range(0, len(data), row_bytes)] if row_bytes else []


def _band_column(keys: pd.Series, band: int) -> pd.Series:
    return keys.str.slice(band * KEY_CHARS, (band + 1) * KEY_CHARS)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def encode(signature: np.ndarray) -> str:
    return base64.b64encode(signature.astype("<u4").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4")


def host_of(canonical: str) -> str:
    found = re.match(_HOST, canonical)
    return found.group(1) if found else ""


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
    shares_bucket = any(key_a[i:i + KEY_CHARS] == key_b[i:i + KEY_CHARS] for i in range(0, len(key_a), KEY_CHARS))
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
    hosts = batch["canonical_url"].str.extract(_HOST, expand=False).fillna("")
    sigs = signatures(_token_sets(batch["title"], hosts))
    keys = pd.Series(band_keys(sigs, params), index=batch.index, dtype="str")
    encoded = [encode(s) for s in sigs]
    ids = batch["opportunity_id"].astype(str).to_numpy(dtype=object)
    urls = batch["canonical_url"].to_numpy(dtype=object)
    named = [name_keys(url) for url in urls]
    figures = [sorted(figure_words(title)) for title in batch["title"]]
    stated = pd.DataFrame({"batch_row": np.repeat(np.arange(n), [len(f) for f in figures]),
                           "bucket": [pair for found in figures for pair in found]}, columns=["batch_row", "bucket"])

    best = _Best(n, sigs.shape[1])
    indexed_ids, indexed_clusters = _offer_indexed(conn, backend, keys, stated, sigs, params, threshold, best)
    _offer_batch(keys, stated, sigs, encoded, params, threshold, best)

    product_url = (~hosts.isin(AGGREGATOR_HOSTS) | batch["canonical_url"].str.match(_REPOSITORY)).to_numpy()
    same_url = _indexed_owners(conn, backend, urls[product_url],
                               "JOIN core.opportunities o ON o.canonical_url = k.wanted")
    same_name = _indexed_owners(conn, backend, np.array([key for _, wanted in named for key in wanted], dtype=object),
                                f"JOIN core.lsh_buckets b ON b.band = {NAME_BAND} AND b.bucket = k.wanted "
                                "JOIN core.opportunities o ON o.opportunity_id = b.opportunity_id")
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
    return batch.assign(cluster_id=cluster_ids, near_duplicate_of=matches, similarity=scores, signature=encoded,
                        band_keys=keys, name_keys=[under for under, _ in named], figure_words=figures)


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
            (b < current_b) | (b == current_b) & ((origin < current_o) | (origin == current_o) & (p < current_p)))
        r = r[better]
        self.equal[r], self.band[r], self.origin[r], self.position[r] = e[better], b[better], origin, p[better]


def _equal_positions(sigs: np.ndarray, rows: np.ndarray, theirs: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), _PAIR_BLOCK):
        part = slice(start, start + _PAIR_BLOCK)
        out[part] = (sigs[rows[part]] == theirs[positions[part]]).sum(axis=1)
    return out


def _offer_batch(keys: pd.Series, stated: pd.DataFrame, sigs: np.ndarray, encoded: list[str], params: LSHParams,
                 threshold: float, best: _Best) -> None:
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
        for rows, positions in _pairs_sharing(distinct, pd.factorize(_band_column(keys, band).iloc[distinct])[0]):
            best.offer(rows, band, 1, positions, _equal_positions(sigs, rows, sigs, positions), threshold)
    stated_rows = stated["batch_row"].to_numpy(dtype=np.int64)
    stated = stated[first[stated_rows] == stated_rows]
    pairs = list(_pairs_sharing(stated["batch_row"].to_numpy(dtype=np.int64), pd.factorize(stated["bucket"])[0]))
    if pairs:
        rows, positions = _met_enough(np.concatenate([r for r, _ in pairs]), np.concatenate([p for _, p in pairs]),
                                      len(codes))
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
    group_start = np.maximum.accumulate(np.where(np.r_[True, grouped[1:] != grouped[:-1]],
                                                 np.arange(len(grouped)), 0))
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


def _offer_indexed(conn, backend: str, keys: pd.Series, stated: pd.DataFrame, sigs: np.ndarray,
                   params: LSHParams, threshold: float, best: _Best) -> tuple[np.ndarray, np.ndarray]:
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
    wanted = pd.concat([*(pd.DataFrame({"batch_row": keys.index.to_numpy(), "band": band,
                                        "bucket": _band_column(keys, band)}) for band in range(params.bands)),
                        stated.assign(band=FIGURE_BAND)], ignore_index=True)
    stage_frame(conn, backend, "_wanted_buckets", wanted)
    join = "FROM _wanted_buckets w JOIN core.lsh_buckets b ON b.band = w.band AND b.bucket = w.bucket"
    run_sql(conn, "CREATE TEMP TABLE _hit_ids AS SELECT opportunity_id, "
               "CAST(row_number() OVER (ORDER BY opportunity_id) - 1 AS INTEGER) AS position "
               f"FROM (SELECT DISTINCT b.opportunity_id {join}) d", None)
    try:
        from_base64 = "from_base64(s.signature)" if backend == "duckdb" else "decode(s.signature, 'base64')"
        indexed = query_frame(conn, f"SELECT i.position, s.opportunity_id, s.cluster_id, {from_base64} AS signature "
                                    "FROM _hit_ids i JOIN core.lsh_signatures s ON s.opportunity_id = i.opportunity_id "
                                    "ORDER BY i.position")
        if indexed.empty:
            return none
        indexed_sigs = np.frombuffer(b"".join(indexed["signature"]), dtype="<u4").reshape(len(indexed), -1)
        for start in range(0, len(keys), _LOOKUP_ROWS):
            hits = query_frame(conn, f"SELECT w.batch_row, w.band, i.position {join} "
                                     "JOIN _hit_ids i ON i.opportunity_id = b.opportunity_id "
                                     "WHERE w.batch_row >= %s AND w.batch_row < %s", [start, start + _LOOKUP_ROWS])
            rows, positions = hits["batch_row"].to_numpy(dtype=np.int64), hits["position"].to_numpy(dtype=np.int64)
            bands = hits["band"].to_numpy(dtype=np.int64)
            lsh = bands != FIGURE_BAND
            best.offer(rows[lsh], bands[lsh], 0, positions[lsh],
                       _equal_positions(sigs, rows[lsh], indexed_sigs, positions[lsh]), threshold)
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
    found = query_frame(conn, f"SELECT k.wanted, o.opportunity_id, o.cluster_id FROM _wanted_owners k {join} "
                              "ORDER BY o.created_at DESC")
    return {key: (opp_id, cluster) for key, opp_id, cluster in found.itertuples(index=False)}


def index_rows(clustered: pd.DataFrame) -> pd.DataFrame:
    """The core.lsh_buckets rows of `assign_clusters` output: one per LSH band, name key and
    (revenue figure, word) pair of each opportunity."""
    ids, keys = clustered["opportunity_id"], clustered["band_keys"]
    bands = len(keys.iloc[0]) // KEY_CHARS if len(keys) else 0
    named = clustered[["opportunity_id", "name_keys"]].explode("name_keys").dropna()
    figures = clustered[["opportunity_id", "figure_words"]].explode("figure_words").dropna()
    return pd.concat([*(pd.DataFrame({"band": band, "bucket": _band_column(keys, band), "opportunity_id": ids})
                        for band in range(bands)),
                      pd.DataFrame({"band": NAME_BAND, "bucket": named["name_keys"],
                                    "opportunity_id": named["opportunity_id"]}),
                      pd.DataFrame({"band": FIGURE_BAND, "bucket": figures["figure_words"],
                                    "opportunity_id": figures["opportunity_id"]})], ignore_index=True)


def persist(conn, backend: str, clustered: pd.DataFrame, inserted_ids: Iterable[str]) -> None:
    """Add the inserted opportunities to the persisted index (same transaction as the insert)."""
    kept = clustered[clustered["opportunity_id"].isin(set(inserted_ids))]
    append_frame(conn, backend, "core.lsh_signatures", kept[["opportunity_id", "cluster_id", "signature"]])
    if not kept.empty:
        append_frame(conn, backend, "core.lsh_buckets", index_rows(kept))
