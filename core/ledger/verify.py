"""verify: re-check, read-only, what the writers enforce, and name the first broken record of each kind.

The audit chain must be intact and still hold every published head; each booked transaction must
balance, match its content hash and its audit record; reversals must mirror their original; postings,
accounts and hold decisions must reference what exists; held transactions must match their hashes.
Every column that budgets, balances, the dbt marts and reports read is covered: by a content hash, by
agreeing with what a hashed row determines (a posting's experiment_id, occurred_at and recorded_at
are its transaction's), or by reconciling with its audit record (hold decisions, budget limits, FX
rates). docs/ledger.md lists what verify guarantees and what it cannot see.
"""

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.ledger.audit import (
    Problem,
    PublishedHead,
    check_published,
    decoded_events,
    read_events,
    utc_iso,
    verify_chain,
)
from core.ledger.booking import TRANSACTION_BOOKED, TRANSACTION_COLUMNS, content_from_row
from core.ledger.budgets import BUDGET_CHANGED, BUDGET_CREATED
from core.ledger.fx import FX_RATES_LOADED, rates_digest, stored_rows
from core.ledger.holds import HOLD_CREATED, HOLD_DECIDED
from core.ledger.money import MoneyError, check_minor
from core.ledger.validation import LedgerError, account_experiment, account_type, content_hash
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


def verify(warehouse: Warehouse, published_heads: Sequence[tuple[int, str] | PublishedHead] = ()) -> VerifyReport:
    """Check the audit chain and the ledger invariants; report the first broken record of each kind.

    Read-only, in one snapshot. The checks: the chain (seq gap-free, prev_hash links, hashes);
    each transaction balances per currency, has no zero posting, valid accounts and currencies,
    content matching its content_hash and its audit record; reversals mirror their original;
    postings reference existing transactions; hold decisions reference holds and bookings; every
    chain head published earlier (`published_heads`, from audit.chain_head) is still in the chain:
    a plain (seq, hash) always, a PublishedHead when it is of the current chain; and heads this
    warehouse published only on another chain mean the chain was rewritten from its first record."""
    with warehouse.connect() as conn:
        if warehouse.backend == "postgres":
            run_sql(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", None)
        events = read_events(conn)
        transactions = query_frame(
            conn, f"SELECT {TRANSACTION_COLUMNS} FROM ledger.transactions ORDER BY recorded_at, transaction_id"
        )
        postings = run_sql(
            conn,
            "SELECT transaction_id, account_id, currency, amount_minor, line, posting_id, experiment_id, "
            "occurred_at, recorded_at FROM ledger.postings ORDER BY transaction_id, line",
            None,
        ).fetchall()
        accounts = dict(run_sql(conn, "SELECT account_id, account_type FROM ledger.accounts", None).fetchall())
        hold_rows = run_sql(
            conn,
            "SELECT hold_id, proposed, idempotency_key, kind, reason, expires_at FROM ledger.holds "
            "ORDER BY created_at, hold_id",
            None,
        ).fetchall()
        decisions = run_sql(
            conn,
            "SELECT hold_id, decision, transaction_id, decided_by, decided_at, note FROM ledger.hold_decisions "
            "ORDER BY decided_at, hold_id",
            None,
        ).fetchall()
        budgets = run_sql(
            conn, "SELECT budget_id, scope, scope_key, period, currency, limit_minor FROM ledger.budgets", None
        ).fetchall()
        limits = run_sql(
            conn,
            "SELECT budget_id, version, limit_minor, changed_by, reason, changed_at FROM ledger.budget_limits "
            "ORDER BY budget_id, version",
            None,
        ).fetchall()
        rates = stored_rows(conn)
    by_tx: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    copies: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for tid, account, currency, amount, *copied in postings:
        by_tx[tid].append((account, currency, int(amount)))
        copies[tid].append((account, *copied))
    holds = {row[0]: row[1] for row in hold_rows}
    decoded = decoded_events(events)  # once: each cross-check below reads its own event types
    problems = [verify_chain(events), check_published(events, warehouse.describe(), published_heads)]
    problems += _ledger_problems(transactions, by_tx, copies, events, decoded)
    problems += _reference_problems(transactions, by_tx, accounts, set(holds), decisions)
    problems.append(_hold_problem(hold_rows, decoded))
    problems.append(_decision_problem(decisions, decoded))
    problems.append(_budget_problem(budgets, limits, decoded))
    problems.append(_fx_problem(rates, decoded))
    return VerifyReport(len(events), len(transactions), len(postings), tuple(p for p in problems if p))


def _copy_issues(row: Mapping[str, Any], copies: Sequence[tuple[Any, ...]], audited_at: str | None) -> list[str]:
    """A posting repeats its transaction's experiment (or its account's), times and id: budgets and
    the marts read those copies, so each must still say what the hashed transaction says."""
    issues = []
    tid, occurred, recorded = row["transaction_id"], utc_iso(row["occurred_at"]), utc_iso(row["recorded_at"])
    if audited_at is not None and recorded != audited_at:
        issues.append(f"recorded_at {recorded} differs from its audit record's {audited_at}")
    # Compared as instants (tz-aware datetimes compare across zones); formatted only when they differ.
    occurred_at, recorded_at = pd.Timestamp(row["occurred_at"]), pd.Timestamp(row["recorded_at"])
    for expected_line, (account, line, posting_id, experiment, p_occurred, p_recorded) in enumerate(copies, 1):
        where = f"posting line {line}"
        if int(line) != expected_line or posting_id != f"{tid}/{line}":
            issues.append(f"{where} ({posting_id}): lines must be {tid}/1, /2, ... in order")
        wanted = row["experiment_id"] or account_experiment(account)
        if (experiment if isinstance(experiment, str) else None) != wanted:
            issues.append(f"{where}: experiment_id {experiment!r}, its transaction says {wanted!r}")
        if p_occurred != occurred_at and utc_iso(p_occurred) != occurred:
            issues.append(f"{where}: occurred_at {utc_iso(p_occurred)}, its transaction's is {occurred}")
        if p_recorded != recorded_at and utc_iso(p_recorded) != recorded:
            issues.append(f"{where}: recorded_at {utc_iso(p_recorded)}, its transaction's is {recorded}")
    return issues


def _transaction_issues(
    row: Mapping[str, Any],
    lines: list[tuple[str, str, int]],
    audited: Mapping[str, tuple[int, str, str]],
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
    transactions: pd.DataFrame,
    by_tx: Mapping[str, list[tuple[str, str, int]]],
    copies: Mapping[str, list[tuple[Any, ...]]],
    events: Sequence[Sequence[Any]],
    decoded: Sequence[tuple[int, str, Any]],
) -> list[Problem | None]:
    stamps = {int(row[0]): row[6] for row in events}
    audited = {
        payload.get("transaction_id"): (seq, payload.get("content_hash"), utc_iso(stamps[seq]))
        for seq, event_type, payload in decoded
        if event_type == TRANSACTION_BOOKED and isinstance(payload, dict)
    }
    rows = transactions.to_dict("records")
    for row in rows:  # pandas gives NaN for SQL NULL in text columns; content needs None
        for name in ("experiment_id", "external_ref", "reverses_transaction_id"):
            row[name] = row[name] if isinstance(row[name], str) else None
    contents = {row["transaction_id"]: content_from_row(row, by_tx.get(row["transaction_id"], [])) for row in rows}
    first: Problem | None = None
    for row in rows:
        tid = row["transaction_id"]
        issues = _transaction_issues(row, by_tx.get(tid, []), audited, contents)
        issues += _copy_issues(row, copies.get(tid, []), audited[tid][2] if tid in audited else None)
        if issues:
            first = Problem(
                "ledger.transaction",
                f"ledger.transactions {row['transaction_id']} (key {row['idempotency_key']})",
                "; ".join(issues),
            )
            break
    missing = next(
        ((seq, tid) for tid, (seq, *_h) in sorted(audited.items(), key=lambda item: item[1][0]) if tid not in contents),
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
    for hold_id, decision, tid, *_rest in decisions:
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


def _hold_problem(holds: Sequence[Sequence[Any]], decoded: Sequence[tuple[int, str, Any]]) -> Problem | None:
    """A hold must still propose what, under which key, until when and why its hold_created record says."""
    audited = {
        payload.get("hold_id"): payload
        for _seq, event_type, payload in decoded
        if event_type == HOLD_CREATED and isinstance(payload, dict)
    }
    for hold_id, proposed_text, key, kind, reason, expires_at in holds:
        record = audited.get(hold_id) or {}
        try:
            proposed = json.loads(proposed_text)
            intact = content_hash(proposed["content"]) == proposed["content_hash"] == record.get("content_hash")
        except (TypeError, ValueError, KeyError):
            intact = False
        if not intact:
            return Problem(
                "ledger.holds",
                f"ledger.holds {hold_id}",
                "the proposed transaction does not match its content hash or its audit record",
            )
        stored = {"idempotency_key": key, "kind": kind, "reason": reason, "expires_at": utc_iso(expires_at)}
        edited = [name for name, value in stored.items() if record.get(name) != value]
        if edited:
            return Problem(
                "ledger.holds",
                f"ledger.holds {hold_id}",
                f"{', '.join(edited)} differ from its hold_created audit record: the row was edited",
            )
    return None


def _decision_problem(decisions: Sequence[Sequence[Any]], decoded: Sequence[tuple[int, str, Any]]) -> Problem | None:
    """Each hold decision row must be its hold_decided audit record, and each record must have its
    row: a deleted decision would make a rejected hold decidable again. A hold is decided once."""
    recorded: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for seq, event_type, payload in decoded:
        if event_type == HOLD_DECIDED and isinstance(payload, dict):
            recorded[payload.get("hold_id")].append((seq, payload))
    for hold_id, records in recorded.items():
        if len(records) > 1:
            return Problem(
                "ledger.hold_decisions",
                f"audit.events seq {records[1][0]}",
                f"hold {hold_id} is decided twice: "
                + ", ".join(f"{payload.get('decision')} at seq {seq}" for seq, payload in records)
                + "; a hold is decided exactly once (was its ledger.hold_decisions row deleted?)",
            )
    rows = {row[0]: row for row in decisions}
    for hold_id, decision, tid, decided_by, decided_at, note in decisions:
        if hold_id not in recorded:
            return Problem(
                "ledger.hold_decisions",
                f"ledger.hold_decisions {hold_id}",
                f"decision {decision!r} has no hold_decided audit record: the row was inserted by hand",
            )
        payload = recorded[hold_id][0][1]
        stored = {
            "decision": decision,
            "transaction_id": tid if isinstance(tid, str) else None,
            "decided_by": decided_by,
            "decided_at": utc_iso(decided_at),
            "note": note if isinstance(note, str) else None,
        }
        edited = [name for name, value in stored.items() if payload.get(name) != value]
        if edited:
            return Problem(
                "ledger.hold_decisions",
                f"ledger.hold_decisions {hold_id}",
                f"{', '.join(edited)} differ from its audit record (seq {recorded[hold_id][0][0]}): the row was edited",
            )
    for hold_id, records in recorded.items():
        if hold_id not in rows:
            seq, payload = records[0]
            return Problem(
                "ledger.hold_decisions",
                f"audit.events seq {seq}",
                f"records hold {hold_id} as {payload.get('decision')}, but ledger.hold_decisions has no row "
                f"for it: it was deleted, and the hold looks undecided",
            )
    return None


def _budget_problem(
    budgets: Sequence[Sequence[Any]], limits: Sequence[Sequence[Any]], decoded: Sequence[tuple[int, str, Any]]
) -> Problem | None:
    """Each budget and each limit version must be its budget.created / budget.changed audit record,
    and each record must have its row: budgets and budget_utilization read the limits from the rows."""
    recorded: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
    for seq, event_type, payload in decoded:
        if event_type in (BUDGET_CREATED, BUDGET_CHANGED) and isinstance(payload, dict):
            recorded.setdefault((payload.get("budget_id"), payload.get("version")), (seq, payload))
    for budget_id, scope, scope_key, period, currency, limit in budgets:
        seq, payload = recorded.get((budget_id, 1), (None, {}))
        stored = {"scope": scope, "scope_key": scope_key, "period": period, "currency": currency}
        stored["limit_minor"] = int(limit)
        edited = [name for name, value in stored.items() if payload.get(name) != value]
        if edited:
            return Problem(
                "ledger.budgets",
                f"ledger.budgets {budget_id}",
                "no budget.created audit record"
                if seq is None
                else f"{', '.join(edited)} differ from its budget.created audit record (seq {seq}): the row was edited",
            )
    for budget_id, version, limit, changed_by, reason, changed_at in limits:
        seq, payload = recorded.get((budget_id, int(version)), (None, {}))
        stored = {"limit_minor": int(limit), "changed_by": changed_by, "reason": reason}
        if "changed_at" in payload:  # recorded since the record carries it; older ones cannot tell
            stored["changed_at"] = utc_iso(changed_at)
        edited = [name for name, value in stored.items() if payload.get(name) != value]
        if edited:
            return Problem(
                "ledger.budget_limits",
                f"ledger.budget_limits {budget_id} version {version}",
                "no budget audit record for this version: the row was inserted by hand"
                if seq is None
                else f"{', '.join(edited)} differ from its audit record (seq {seq}): the row was edited",
            )
    present = {(row[0], int(row[1])) for row in limits}
    in_order = sorted(recorded.items(), key=lambda item: item[1][0])
    missing = next(((seq, key) for key, (seq, _p) in in_order if key not in present), None)
    if missing:
        return Problem(
            "ledger.budget_limits",
            f"audit.events seq {missing[0]}",
            f"records version {missing[1][1]} of budget {missing[1][0]}, which is not in ledger.budget_limits: "
            f"it was deleted",
        )
    return None


def _fx_problem(rates: Sequence[Sequence[Any]], decoded: Sequence[tuple[int, str, Any]]) -> Problem | None:
    """ledger.fx_rates must hold exactly the rows its fx.rates_loaded records added: as many, and the
    table the newest load recorded (its table_digest; loads recorded before that carry only counts)."""
    loads = [
        (seq, payload)
        for seq, event_type, payload in decoded
        if event_type == FX_RATES_LOADED and isinstance(payload, dict)
    ]
    expected = 0
    for seq, payload in loads:
        expected += int(payload.get("rows", 0))
        # Each load recorded the table's size after it: rows added or removed by hand before a
        # later load are caught here even though that load's digest covers them.
        if "table_rows" in payload and int(payload["table_rows"]) != expected:
            return Problem(
                "ledger.fx_rates",
                f"audit.events seq {seq}",
                f"this FX load recorded a table of {payload['table_rows']} rows, but the loads up to it added "
                f"{expected}: rows were inserted or deleted by hand before it",
            )
    if len(rates) != expected:
        return Problem(
            "ledger.fx_rates",
            "ledger.fx_rates",
            f"{len(rates)} rows, but its fx.rates_loaded audit records added {expected}: rows were "
            f"deleted or inserted by hand",
        )
    if loads and "table_digest" in loads[-1][1] and rates_digest(rates) != loads[-1][1]["table_digest"]:
        return Problem(
            "ledger.fx_rates",
            "ledger.fx_rates",
            f"the rates no longer match the table digest recorded by the newest load (audit seq "
            f"{loads[-1][0]}): a rate, date, currency or source was edited",
        )
    return None
