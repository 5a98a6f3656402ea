"""core.features.build_features on N normalized Hacker News opportunities, against a plain Arrow
pass over the same texts in the same run.

    python benchmarks/features.py [--rows 1000000] [--repeat 3] [--profile out.prof]

The opportunities are generated hits (benchmarks/_common.py) normalized by the Hacker News
connector and deduplicated by fingerprint, as core.opportunities stores them; they are cached per
(rows, seed) in benchmarks/.data/ (set-up, not timed). The baseline joins title and body and
lower-cases them with pyarrow.compute: the least work any feature extraction over the texts does.
Runs alternate between the two, and the best of each is reported (the machine is shared).
"""

import argparse
import time
import uuid
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from _common import DATA_DIR, hn_hits, machine, peak_rss_mb, raw_frames

from core.discovery.features import CapabilityProfile, ScoringAssumptions, build_features
from core.discovery.opportunities import normalize_records
from core.discovery.sources.hackernews import HackerNews

AS_OF = datetime(2026, 11, 27, tzinfo=UTC)


def opportunities(rows: int, seed: int) -> pd.DataFrame:
    cached = DATA_DIR / f"features_input_{rows}_{seed}.parquet"
    if not cached.exists():
        started = time.perf_counter()
        _, records = raw_frames(hn_hits(rows, seed=seed))
        valid, _ = normalize_records(HackerNews(env={}), records)
        frame = valid.drop_duplicates("fingerprint").reset_index(drop=True)
        frame["opportunity_id"] = [str(uuid.UUID(int=i + 1)) for i in range(len(frame))]
        frame["cluster_id"] = frame["opportunity_id"]
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(cached)
        print(f"generated {len(frame):,} opportunities into {cached} in {time.perf_counter() - started:.1f} s (set-up)")
    return pd.read_parquet(cached)


def baseline(frame: pd.DataFrame) -> None:
    title, body = (
        pa.array(frame[c], type=pa.large_string(), from_pandas=True).fill_null("") for c in ("title", "body")
    )
    pc.utf8_lower(pc.binary_join_element_wise(title, body, pa.scalar("\n", pa.large_string())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="generated hits (before deduplication)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of one build_features run to FILE")
    args = parser.parse_args()

    print(f"build_features: {args.rows:,} Hacker News hits; {machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    frame = opportunities(args.rows, args.seed)
    profile, assumptions = CapabilityProfile.load(), ScoringAssumptions.load()
    sizes = frame.groupby("cluster_id").size()
    timings: dict[str, list[float]] = {"build_features": [], "baseline": []}
    for _ in range(args.repeat):
        for name, run in (
            ("baseline", lambda: baseline(frame)),
            ("build_features", lambda: build_features(frame, AS_OF, profile, assumptions, sizes)),
        ):
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    if args.profile:
        import cProfile

        cProfile.runctx("build_features(frame, AS_OF, profile, assumptions, sizes)", globals(), locals(), args.profile)

    n = len(frame)
    for name, seconds in timings.items():
        print(
            f"  {name:16} best {min(seconds):6.2f} s = {n / min(seconds):>9,.0f} rows/s   "
            f"(runs: {', '.join(f'{s:.2f}' for s in seconds)})"
        )
    print(
        f"opportunities: {n:,}; "
        f"build_features / baseline: {min(timings['build_features']) / min(timings['baseline']):.1f}x; "
        f"peak RSS {peak_rss_mb():,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
