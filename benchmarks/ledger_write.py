"""Book N postings (default 1,000,000) through the ledger's real write path and compare with a bulk
load of the same rows that checks nothing, on PostgreSQL and on DuckDB.

    python benchmarks/ledger_write.py [--postings 1000000] [--backend duckdb|postgres|both]
                                      [--batch 10000] [--profile out.prof] [--verify]

Target (the ledger issue): the write path books at least 30% of the bulk-load rate on both backends.

- The write path is `core.ledger.book_many`, batch by batch, exactly as an importer calls it:
  validation (accounts, currencies, balance per currency), the tax hook, content hashes, the
  idempotency check against the stored keys, the chain lock, accounts opened on first use, one bulk
  insert per table and one hash-chained audit record per transaction, all in one database
  transaction per batch.
- The bulk load writes the same transactions and postings (ids, hashes and all, made by `prepare`
  outside the timing) into ledger.transactions / ledger.postings of a second, identical warehouse:
  `COPY ... FROM STDIN` through psycopg's `cursor.copy` (`write_row`) on PostgreSQL, and
  `INSERT INTO ... SELECT * FROM` a registered Arrow table on DuckDB. One database transaction per
  batch, no checks, no audit, no accounts.
- Both run in the same process, batch for batch, alternating which goes first, so that load from
  other processes on the machine hits both alike. Only the write calls are timed; building the
  requests (and the bulk load's rows) is not.

The transactions are a realistic mix, about 3 postings each: Stripe-style charges (cash, fee,
revenue; half of them with a customer country, so the tax hook adds two postings), ad spend,
refunds, Stripe fees and currency exchanges, in USD, EUR, GBP and JPY, over 60 experiments.
"""

import argparse
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from _common import machine, peak_rss_mb

from core.ledger.booking import POSTING_INSERT_COLUMNS, TRANSACTION_INSERT_COLUMNS, book_many
from core.ledger.validation import Posting, Prepared, TransactionRequest, prepare
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

TARGET_SHARE = 0.30
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
START = datetime(2026, 9, 1, tzinfo=UTC)  # inside the bundled ECB rates (2026-09-01 .. 2026-11-27)
SPAN_SECONDS = 87 * 86400
EXPERIMENTS = [f"exp-{n:03d}" for n in range(60)]
CURRENCY_OF = {e: ("USD", "EUR", "GBP", "JPY")[n % 4] for n, e in enumerate(EXPERIMENTS)}
COUNTRIES = ("DE", "FR", "NL", "GB", "AU", "JP")

TX_COLUMNS = list(TRANSACTION_INSERT_COLUMNS)  # the baseline writes exactly what a booking writes
POSTING_COLUMNS = list(POSTING_INSERT_COLUMNS)


# -- the workload ----------------------------------------------------------------------------------


def request(i: int, rng: random.Random, tag: str) -> TransactionRequest:
    """Transaction number i of the stream: 10 kinds in rotation, ~3 postings on average."""
    experiment = EXPERIMENTS[rng.randrange(len(EXPERIMENTS))]
    currency = CURRENCY_OF[experiment]
    cur = currency.lower()
    scale = 10 if currency == "JPY" else 100  # JPY has no minor unit; >= 50 yen so that tax is never 0
    occurred = START + timedelta(seconds=rng.randrange(SPAN_SECONDS), microseconds=rng.randrange(1_000_000))
    key = f"bench:{tag}:{i}"
    kind = i % 10
    if kind <= 3:  # a Stripe charge: net to cash, fee to fees, gross to revenue (tax on half of them)
        amount = rng.randrange(5, 500) * scale
        fee = max(1, amount * 29 // 1000 + (30 if scale == 100 else 0))
        return TransactionRequest(
            idempotency_key=key,
            kind="charge",
            description=f"stripe charge txn_{i:x}",
            occurred_at=occurred,
            postings=[
                Posting(f"assets:cash:stripe:{cur}", currency, amount - fee),
                Posting("expenses:fees:stripe", currency, fee),
                Posting(f"revenue:experiment:{experiment}", currency, -amount),
            ],
            experiment_id=experiment,
            source="stripe",
            external_ref=f"ch_{i:x}",
            metadata={"stripe_type": "charge", "customer_id": f"cus_{rng.getrandbits(40):010x}"},
            customer_country=COUNTRIES[rng.randrange(len(COUNTRIES))] if kind <= 1 else None,
        )
    if kind <= 6:  # ad spend on a card
        amount = rng.randrange(1, 2000) * scale
        return TransactionRequest(
            idempotency_key=key,
            kind="spend",
            description="ad spend",
            occurred_at=occurred,
            postings=[
                Posting(f"expenses:ads:experiment:{experiment}", currency, amount),
                Posting("liabilities:card:amex", currency, -amount),
            ],
            experiment_id=experiment,
            source="ads",
            external_ref=f"ad_{i:x}",
        )
    if kind == 7:  # a refund booked as such
        amount = rng.randrange(5, 500) * scale
        return TransactionRequest(
            idempotency_key=key,
            kind="refund",
            description="customer refund",
            occurred_at=occurred,
            postings=[
                Posting(f"revenue:experiment:{experiment}", currency, amount),
                Posting(f"assets:cash:stripe:{cur}", currency, -amount),
            ],
            experiment_id=experiment,
            source="stripe",
            external_ref=f"re_{i:x}",
            metadata={"stripe_type": "refund"},
        )
    if kind == 8:  # hosting, no experiment
        amount = rng.randrange(10, 300) * scale
        return TransactionRequest(
            idempotency_key=key,
            kind="expense",
            description="hosting",
            occurred_at=occurred,
            postings=[
                Posting("expenses:infra:hosting", currency, amount),
                Posting(f"assets:cash:bank:{cur}", currency, -amount),
            ],
            source="bank",
        )
    usd = rng.randrange(100, 100_000) * 100  # a currency exchange: four postings, two currencies
    eur = usd * 86 // 100
    return TransactionRequest(
        idempotency_key=key,
        kind="fx",
        description="treasury exchange",
        occurred_at=occurred,
        postings=[
            Posting("assets:cash:bank:usd", "USD", -usd),
            Posting("equity:fx-clearing", "USD", usd),
            Posting("assets:cash:bank:eur", "EUR", eur),
            Posting("equity:fx-clearing", "EUR", -eur),
        ],
        source="bank",
        metadata={"rate": f"{eur / usd:.6f}"},
    )


@dataclass
class Batch:
    index: int
    requests: list[TransactionRequest]
    postings: int  # after the tax hook


def batches(total_postings: int, batch_size: int, seed: int, tag: str) -> Iterator[Batch]:
    """Batches of `batch_size` transactions until `total_postings` postings (after tax) are reached."""
    i, done, index = 0, 0, 0
    while done < total_postings:
        rng = random.Random(f"{seed}:{index}")
        requests, postings = [], 0
        while len(requests) < batch_size and done + postings < total_postings:
            r = request(i, rng, tag)
            requests.append(r)
            postings += len(r.postings) + (2 if r.customer_country else 0)  # every taxed charge here owes tax
            i += 1
        yield Batch(index, requests, postings)
        done += postings
        index += 1


def bulk_rows(prepared: list[Prepared], recorded_at: datetime) -> tuple[list[tuple], list[tuple]]:
    """The rows the write path stores for these transactions, for the bulk load."""
    from core.ledger.audit import canonical_json
    from core.ledger.validation import account_experiment

    transactions, postings = [], []
    for p in prepared:
        r, tid = p.request, p.transaction_id
        occurred = r.occurred_at.astimezone(UTC)
        transactions.append(
            (
                tid,
                r.idempotency_key,
                p.content_hash,
                r.kind,
                r.description,
                r.experiment_id,
                r.source,
                r.external_ref,
                occurred,
                recorded_at,
                None,
                canonical_json(dict(r.metadata)) if r.metadata else "{}",
            )
        )
        for line, posting in enumerate(r.postings, start=1):
            postings.append(
                (
                    f"{tid}/{line}",
                    tid,
                    line,
                    posting.account,
                    posting.currency,
                    posting.amount_minor,
                    r.experiment_id or account_experiment(posting.account),
                    occurred,
                    recorded_at,
                )
            )
    return transactions, postings


# -- the two writers ---------------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    seconds: float = 0.0
    postings: int = 0
    transactions: int = 0
    per_batch: list[float] = field(default_factory=list)

    @contextmanager
    def timed(self, batch: Batch) -> Iterator[None]:
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self.per_batch.append(elapsed)
        self.postings += batch.postings
        self.transactions += len(batch.requests)

    @property
    def rate(self) -> float:
        return self.postings / self.seconds if self.seconds else 0.0


def bulk_input(backend: str, transactions: list[tuple], postings: list[tuple]) -> tuple:
    """The rows in the form each bulk path takes them (built before the clock starts): tuples for
    COPY, Arrow tables for DuckDB."""
    if backend == "postgres":
        return transactions, postings
    import pyarrow as pa

    return tuple(
        pa.table({c: [row[k] for row in rows] for k, c in enumerate(columns)})
        for columns, rows in ((TX_COLUMNS, transactions), (POSTING_COLUMNS, postings))
    )


def bulk_loader(backend: str, url: str) -> Callable[[Any, Any], None]:
    """One batch of rows into ledger.transactions and ledger.postings, in one transaction, no checks."""
    warehouse = Warehouse(url)
    if backend == "postgres":
        import psycopg

        def load_postgres(transactions: list[tuple], postings: list[tuple]) -> None:
            with psycopg.connect(warehouse.postgres_dsn) as conn, conn.cursor() as cur:
                for table, columns, rows in (
                    ("ledger.transactions", TX_COLUMNS, transactions),
                    ("ledger.postings", POSTING_COLUMNS, postings),
                ):
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)

        return load_postgres

    import duckdb

    def load_duckdb(transactions: Any, postings: Any) -> None:
        conn = duckdb.connect(warehouse.duckdb_path)
        try:
            conn.execute("BEGIN TRANSACTION")
            for table, columns, arrow in (
                ("ledger.transactions", TX_COLUMNS, transactions),
                ("ledger.postings", POSTING_COLUMNS, postings),
            ):
                conn.register("_bulk", arrow)
                conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM _bulk")
                conn.unregister("_bulk")
            conn.execute("COMMIT")
        finally:
            conn.close()

    return load_duckdb


# -- one backend ------------------------------------------------------------------------------------


@contextmanager
def warehouses(backend: str) -> Iterator[tuple[str, str]]:
    """Two fresh, identical warehouses (ensure_schema): one for the write path, one for the bulk load."""
    if backend == "duckdb":
        with TemporaryDirectory(prefix="vl_bench_ledger_") as tmp:
            yield f"duckdb:///{tmp}/write_path.duckdb", f"duckdb:///{tmp}/bulk_load.duckdb"
        return
    import psycopg

    names = [f"vl_bench_{uuid.uuid4().hex[:10]}_{role}" for role in ("ledger", "bulk")]
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_backend(backend: str, args: argparse.Namespace) -> dict:
    tag = uuid.uuid4().hex[:8]
    with warehouses(backend) as (ledger_url, bulk_url):
        ledger, bulk = Warehouse(ledger_url), Warehouse(bulk_url)
        ensure_schema(ledger)
        ensure_schema(bulk)
        load = bulk_loader(backend, bulk_url)
        product, baseline = Side("write path (book_many)"), Side("bulk load, no checks")
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        first: list[TransactionRequest] = []
        for batch in batches(args.postings, args.batch, args.seed, tag):
            transactions, postings = bulk_rows([prepare(r) for r in batch.requests], datetime.now(UTC))
            batch.postings = len(postings)
            rows = bulk_input(backend, transactions, postings)
            del transactions, postings

            def run_product(batch: Batch = batch) -> None:
                with product.timed(batch):
                    if profiler:
                        profiler.enable()
                    results = book_many(ledger, batch.requests)
                    if profiler:
                        profiler.disable()
                assert all(r.status == "booked" for r in results), "a fresh key was not booked"

            def run_baseline(batch: Batch = batch, rows: tuple = rows) -> None:
                with baseline.timed(batch):
                    load(*rows)

            for step in (run_product, run_baseline) if batch.index % 2 else (run_baseline, run_product):
                step()
            if batch.index == 0:
                first = batch.requests
            del rows
            if args.progress:
                print(
                    f"  [{backend}] batch {batch.index}: {product.postings:,} postings, "
                    f"write path {product.rate:,.0f}/s, bulk {baseline.rate:,.0f}/s",
                    flush=True,
                )

        # Idempotency at scale: re-sending the first batch books nothing and answers "duplicate".
        started = time.perf_counter()
        again = book_many(ledger, first)
        resend = time.perf_counter() - started
        assert all(r.status == "duplicate" for r in again), "a re-sent key was booked twice"

        counts = {
            name: (w.count("ledger.transactions"), w.count("ledger.postings"), w.count("audit.events"))
            for name, w in (("ledger", ledger), ("bulk", bulk))
        }
        assert counts["ledger"][:2] == counts["bulk"][:2] == (product.transactions, product.postings), counts
        assert counts["ledger"][2] == product.transactions, "one audit record per booked transaction"
        verified = None
        if args.verify:
            from core.ledger.verify import verify

            started = time.perf_counter()
            report = verify(ledger)
            verified = (report.ok, time.perf_counter() - started, report.summary())
        if profiler:
            path = Path(args.profile)
            path = path.with_name(f"{path.stem}_{backend}{path.suffix}")
            profiler.dump_stats(path)
            print(f"  cProfile of the write path on {backend}: {path}")
    return {
        "backend": backend,
        "product": product,
        "baseline": baseline,
        "resend": resend,
        "resend_tx": len(first),
        "verified": verified,
    }


def report(result: dict) -> bool:
    product, baseline = result["product"], result["baseline"]
    share = product.rate / baseline.rate
    met = share >= TARGET_SHARE
    print(
        f"\n{result['backend']}: {product.transactions:,} transactions, {product.postings:,} postings "
        f"in {len(product.per_batch)} batches"
    )
    for side in (baseline, product):
        print(
            f"  {side.name:26} {side.seconds:8.2f} s  {side.rate:12,.0f} postings/s  "
            f"{side.transactions / side.seconds:10,.0f} transactions/s"
        )
    print(
        f"  write path / bulk load: {share:.0%} of the bulk rate (target >= {TARGET_SHARE:.0%}: "
        f"{'met' if met else 'NOT met'}); "
        f"the bulk load is {baseline.rate and product.seconds / baseline.seconds:.1f}x faster"
    )
    print(f"  re-sending {result['resend_tx']:,} booked transactions: {result['resend']:.2f} s, all duplicates")
    if result["verified"]:
        _ok, seconds, summary = result["verified"]
        print(f"  verify ({seconds:.1f} s): {summary}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("duckdb", "postgres", "both"), default="both")
    parser.add_argument("--batch", type=int, default=10_000, help="transactions per batch (default 10,000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the write path into FILE (one per backend)")
    parser.add_argument("--verify", action="store_true", help="run core.ledger.verify over the result (slow)")
    parser.add_argument("--progress", action="store_true", help="print a line per batch")
    args = parser.parse_args()

    print(
        f"ledger write path: {args.postings:,} postings in batches of {args.batch:,} transactions; {machine()}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    backends = ["duckdb", "postgres"] if args.backend == "both" else [args.backend]
    met = [report(run_backend(backend, args)) for backend in backends]
    print(f"\npeak RSS: {peak_rss_mb():,.0f} MB")
    print("target met on every backend" if all(met) else "target NOT met on every backend")
    return 0


if __name__ == "__main__":
    sys.exit(main())
