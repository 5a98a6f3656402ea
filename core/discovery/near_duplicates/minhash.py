"""MinHash signatures of token sets, in bulk, and their LSH bands (rule 4 of the package docstring).

datasketch's MinHash (scheme affine32, sha1_hash32) made one object per token set and cost
~30 us a set; a million sets took longer than everything else in the pipeline together. The
same arithmetic over a whole block of sets at once gives identical values (tests/unit/
test_near_duplicates.py compares them with MinHash.bulk), so persisted signatures stay valid.
"""

import base64
import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from core.discovery.near_duplicates.rules import THRESHOLD

NUM_PERM = 64
SEED = 7
KEY_CHARS = 16  # a bucket key: blake2b-64 of one band of a signature, in hex
# Token sets hashed per block: bounds the (tokens x permutations) matrix to ~40 MB.
_BLOCK_ROWS = 10_000
_MAX_CACHED_TOKENS = 1_000_000


@dataclass(frozen=True)
class LSHParams:
    bands: int
    rows: int


@cache
def lsh_params(threshold: float = THRESHOLD, num_perm: int = NUM_PERM) -> LSHParams:
    """The bands and rows datasketch's MinHashLSH picks for `threshold` (false positives and
    negatives weighted equally), read from its public `b` and `r`. Persisted band keys depend on
    them: THRESHOLD 0.5 with 64 permutations is 14 bands of 4 rows. MinHashLSH refuses fewer than
    2 bands, which 64 permutations give above a threshold of about 0.95."""
    from datasketch import MinHashLSH  # an empty in-memory index: b dicts, no hashing

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.5, 0.5))
    return LSHParams(lsh.b, lsh.r)


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
        flat = np.fromiter(
            (hashed[t] if t in hashed else hashed.setdefault(t, _sha1_32(t)) for ts in block for t in ts),
            dtype=np.uint32,
            count=int(counts.sum()),
        )
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
    return (
        [
            "".join(
                [
                    blake2b(data[o : o + band_bytes], digest_size=8).hexdigest()
                    for o in range(start, start + params.bands * band_bytes, band_bytes)
                ]
            )
            for start in range(0, len(data), row_bytes)
        ]
        if row_bytes
        else []
    )


def band_column(keys: "pd.Series", band: int) -> "pd.Series":
    """Each row's bucket key in one band, from the concatenated keys of `band_keys`."""
    return keys.str.slice(band * KEY_CHARS, (band + 1) * KEY_CHARS)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def encode(signature: np.ndarray) -> str:
    return base64.b64encode(signature.astype("<u4").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4")
