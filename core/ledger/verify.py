"""verify: re-check, read-only, what the writers enforce, and name the first broken record of each kind.

The audit chain must be intact and still hold every published head; each booked transaction must
balance, match its content hash and its audit record; reversals must mirror their original; postings,
accounts and hold decisions must reference what exists; held transactions must match their hashes.
"""

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.ledger.audit import Problem, check_heads, decoded_events, read_events, verify_chain
from core.ledger.booking import TRANSACTION_BOOKED, TRANSACTION_COLUMNS, content_from_row
from core.ledger.holds import HOLD_CREATED
from core.ledger.money import MoneyError, check_minor
from core.ledger.validation import LedgerError, account_type, content_hash
from core.platform.warehouse import Warehouse, query_frame, run_sql


@dataclass(frozen=True)
class VerifyReport:
    events: int
    transactions: int
    postings: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        counted = f"{self.events} audit events, {self.transactions} transactions, {self.postings} postings"
        if self.ok:
            return f"ledger verified: {counted}; the audit chain is intact and every invariant holds"
        return f"ledger BROKEN ({counted}); first problem: {self.first}" + "".join(
            f"\n  - {problem}" for problem in self.problems
        )


def verify(warehouse: Warehouse, published_heads: Sequence[tuple[int, str]] = ()) -> VerifyReport:
    """Check the audit chain and the ledger invariants; report the first broken record of each kind.

    Read-only, in one snapshot. The checks: the chain (seq gap-free, prev_hash links, hashes);
    each transaction balances per currency, has no zero posting, valid accounts and currencies,
    content matching its content_hash and its audit record; reversals mirror their original;
    postings reference existing transactions; hold decisions reference holds and bookings; every
    chain head published earlier (`published_heads`, from audit.chain_head) is still in the chain."""
    with warehouse.connect() as conn:
        if warehouse.backend == "postgres":
            run_sql(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", None)
        events = read_events(conn)
        transactions = query_frame(
            conn, f"SELECT {TRANSACTION_COLUMNS} FROM ledger.transactions ORDER BY recorded_at, transaction_id"
        )
        postings = run_sql(
            conn,
            "SELECT transaction_id, account_id, currency, amount_minor FROM ledger.postings "
            "ORDER BY transaction_id, line",
            None,
        ).fetchall()
        accounts = dict(run_sql(conn, "SELECT account_id, account_type FROM ledger.accounts", None).fetchall())
        holds = dict(
            run_sql(conn, "SELECT hold_id, proposed FROM ledger.holds ORDER BY created_at, hold_id", None).fetchall()
        )
        decisions = run_sql(
            conn,
            "SELECT hold_id, decision, transaction_id FROM ledger.hold_decisions ORDER BY decided_at, hold_id",
            None,
        ).fetchall()
    by_tx: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for tid, account, currency, amount in postings:
        by_tx[tid].append((account, currency, int(amount)))
    problems = [verify_chain(events), check_heads(events, published_heads)]
    problems += _ledger_problems(transactions, by_tx, events)
    problems += _reference_problems(transactions, by_tx, accounts, set(holds), decisions)
    problems.append(_hold_problem(holds, events))
    return VerifyReport(len(events), len(transactions), len(postings), tuple(p for p in problems if p))


def _transaction_issues(
    row: Mapping[str, Any],
    lines: list[tuple[str, str, int]],
    audited: Mapping[str, tuple[int, str]],
    contents: Mapping[str, dict[str, Any]],
) -> list[str]:
    issues = []
    if not lines:
        issues.append("it has no postings")
    sums: dict[str, int] = defaultdict(int)
    for line, (account, currency, amount) in enumerate(lines, start=1):
        try:
            account_type(account)
            check_minor(amount, currency)
        except (LedgerError, MoneyError) as error:
            issues.append(f"posting line {line}: {error}")
        sums[currency] += amount
    issues += [f"{currency} postings sum to {total}, not 0" for currency, total in sorted(sums.items()) if total]
    content = contents[row["transaction_id"]]
    if content_hash(content) != row["content_hash"]:
        issues.append("its fields or postings no longer match its content_hash: a row was edited")
    seq_hash = audited.get(row["transaction_id"])
    if seq_hash is None:
        issues.append("no audit event records its booking")
    elif seq_hash[1] != row["content_hash"]:
        issues.append(
            f"audit seq {seq_hash[0]} recorded content hash {seq_hash[1][:12]}..., the row has "
            f"{row['content_hash'][:12]}..."
        )
    original_id = row["reverses_transaction_id"]
    if original_id:
        original = contents.get(original_id)
        if original is None:
            issues.append(f"it reverses {original_id}, which does not exist")
        elif sorted(content["postings"]) != sorted([a, c, -m] for a, c, m in original["postings"]):
            issues.append(f"its postings do not mirror those of the original {original_id}")
    return issues


def _ledger_problems(
    transactions: pd.DataFrame, by_tx: Mapping[str, list[tuple[str, str, int]]], events: Sequence[Sequence[Any]]
) -> list[Problem | None]:
    audited = {
        payload.get("transaction_id"): (seq, payload.get("content_hash"))
        for seq, event_type, payload in decoded_events(events)
        if event_type == TRANSACTION_BOOKED and isinstance(payload, dict)
    }
    rows = transactions.to_dict("records")
    for row in rows:  # pandas gives NaN for SQL NULL in text columns; content needs None
        for name in ("experiment_id", "external_ref", "reverses_transaction_id"):
            row[name] = row[name] if isinstance(row[name], str) else None
    contents = {row["transaction_id"]: content_from_row(row, by_tx.get(row["transaction_id"], [])) for row in rows}
    first: Problem | None = None
    for row in rows:
        issues = _transaction_issues(row, by_tx.get(row["transaction_id"], []), audited, contents)
        if issues:
            first = Problem(
                "ledger.transaction",
                f"ledger.transactions {row['transaction_id']} (key {row['idempotency_key']})",
                "; ".join(issues),
            )
            break
    missing = next(
        ((seq, tid) for tid, (seq, _h) in sorted(audited.items(), key=lambda item: item[1][0]) if tid not in contents),
        None,
    )
    lost = missing and Problem(
        "audit.ledger",
        f"audit.events seq {missing[0]}",
        f"records the booking of transaction {missing[1]}, which is not in ledger.transactions: it was deleted",
    )
    return [first, lost]


def _reference_problems(
    transactions: pd.DataFrame,
    by_tx: Mapping[str, Any],
    accounts: Mapping[str, str],
    holds: set[str],
    decisions: Sequence[Sequence[Any]],
) -> list[Problem | None]:
    known = set(transactions["transaction_id"])
    orphan = next((tid for tid in sorted(by_tx) if tid not in known), None)
    problems: list[Problem | None] = [
        orphan
        and Problem(
            "ledger.postings",
            f"ledger.postings of transaction {orphan}",
            f"{len(by_tx[orphan])} posting(s) reference transaction {orphan}, which does not exist",
        )
    ]
    used = sorted({account for lines in by_tx.values() for account, _c, _m in lines})
    for account in used:
        try:
            expected = account_type(account)
        except LedgerError:
            continue  # already reported on its transaction
        if accounts.get(account) != expected:
            problems.append(
                Problem(
                    "ledger.accounts",
                    f"ledger.accounts {account}",
                    f"account type is {accounts.get(account)!r}, expected {expected!r}"
                    if account in accounts
                    else "postings use it but it is not in ledger.accounts",
                )
            )
            break
    for hold_id, decision, tid in decisions:
        if hold_id not in holds or (decision == "posted" and tid not in known):
            problems.append(
                Problem(
                    "ledger.holds",
                    f"ledger.hold_decisions {hold_id}",
                    f"decision {decision!r} refers to a missing hold"
                    if hold_id not in holds
                    else f"posted as transaction {tid}, which does not exist",
                )
            )
            break
    return problems


def _hold_problem(holds: Mapping[str, str], events: Sequence[Sequence[Any]]) -> Problem | None:
    """A held transaction must still hash to what its hold_created audit record says."""
    audited = {
        payload.get("hold_id"): payload.get("content_hash")
        for _seq, event_type, payload in decoded_events(events)
        if event_type == HOLD_CREATED and isinstance(payload, dict)
    }
    for hold_id, proposed_text in holds.items():
        try:
            proposed = json.loads(proposed_text)
            intact = content_hash(proposed["content"]) == proposed["content_hash"] == audited.get(hold_id)
        except (TypeError, ValueError, KeyError):
            intact = False
        if not intact:
            return Problem(
                "ledger.holds",
                f"ledger.holds {hold_id}",
                "the proposed transaction does not match its content hash or its audit record",
            )
    return None
