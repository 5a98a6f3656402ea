"""Fraud rules over incoming revenue: which new revenue events wait for a human instead of being booked.

Each rule is a small pure function over the history it needs (sorted lists, sums, counts) and one
candidate; `evaluate` folds the booked history and the incoming events, in time order, through
them. Only the loading of the history (`load_history`, once per import) touches the warehouse.

An event is a revenue or refund transaction reduced to what the rules look at (`RevenueEvent`):
its gross amount is the largest posting on a revenue:* account, i.e. what the customer paid or got
back before the tax hook moved the tax share out. Its scope is the experiment, or the revenue
account when no experiment is named (revenue:unattributed), so unattributed money is watched too.
Thresholds live in core/ledger/config/fraud_rules.yaml (docs/imports.md, "Fraud rules").
"""

import bisect
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from core.ledger.money import MoneyError, format_minor, to_minor
from core.platform.warehouse import Warehouse

DEFAULT_RULES_PATH = Path(__file__).parent / "config" / "fraud_rules.yaml"
HOLD_KIND = "fraud_review"
REVENUE_KINDS = frozenset({"revenue"})
REFUND_KINDS = frozenset({"refund", "dispute"})


class FraudRulesError(ValueError):
    pass


@dataclass(frozen=True)
class RevenueEvent:
    key: str  # idempotency key
    kind: str  # "revenue" (a candidate) or a refund kind (history for the refund ratio)
    source: str  # "stripe", "csv", ...
    scope: str  # experiment id, or the revenue account when there is none
    currency: str
    amount_minor: int  # gross, > 0
    occurred_at: datetime
    customer: str | None = None

    @property
    def is_refund(self) -> bool:
        return self.kind in REFUND_KINDS


# -- rules -----------------------------------------------------------------------------------------


# A new source (fewer than min_previous revenue amounts in a currency) has no median to compare
# with, so its revenue is held above this absolute ceiling instead (minor units per currency).
DEFAULT_NEW_SOURCE_CEILING: tuple[tuple[str, int], ...] = (
    ("EUR", 1_000_000),
    ("GBP", 1_000_000),
    ("JPY", 1_500_000),
    ("USD", 1_000_000),
)


@dataclass(frozen=True)
class AmountOutlierRule:
    enabled: bool = True
    multiple: Decimal = Decimal("10")
    min_previous: int = 5
    new_source_ceiling: tuple[tuple[str, int], ...] = DEFAULT_NEW_SOURCE_CEILING  # (currency, minor units)

    def ceiling(self, currency: str) -> int | None:
        return dict(self.new_source_ceiling).get(currency)


@dataclass(frozen=True)
class VelocityRule:
    enabled: bool = True
    window: timedelta = timedelta(minutes=10)
    max_per_experiment: int = 20
    max_per_customer: int = 3


@dataclass(frozen=True)
class RefundRatioRule:
    enabled: bool = True
    max_ratio: Decimal = Decimal("0.30")
    min_charges: int = 10


@dataclass(frozen=True)
class CurrencyMismatchRule:
    enabled: bool = True
    min_previous: int = 3


@dataclass(frozen=True)
class FraudRules:
    amount_outlier: AmountOutlierRule = field(default_factory=AmountOutlierRule)
    velocity: VelocityRule = field(default_factory=VelocityRule)
    refund_ratio: RefundRatioRule = field(default_factory=RefundRatioRule)
    currency_mismatch: CurrencyMismatchRule = field(default_factory=CurrencyMismatchRule)
    history_days: int = 180
    hold_days: int = 14
    origin: str = "defaults"

    @classmethod
    def disabled(cls) -> "FraudRules":
        """No rule holds anything (imports that must book everything, e.g. a ledger rebuild)."""
        return cls(
            AmountOutlierRule(False),
            VelocityRule(False),
            RefundRatioRule(False),
            CurrencyMismatchRule(False),
            origin="disabled",
        )


def _section(document: Mapping[str, Any], name: str, path: Path, allowed: set[str]) -> dict[str, Any]:
    section = document.get(name) or {}
    if not isinstance(section, Mapping):
        raise FraudRulesError(f"{path}: {name} must be a mapping, got {section!r}")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise FraudRulesError(f"{path}: {name} has unknown keys {unknown}; allowed: {sorted(allowed)}")
    return dict(section)


def _positive_int(value: Any, where: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FraudRulesError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, float):
        raise FraudRulesError(f'{where} is the float {value}; quote it ("{value}") so it is read exactly')
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise FraudRulesError(f"{where} is {value!r}, not a decimal number") from None
    if not number.is_finite() or number <= 0:
        raise FraudRulesError(f"{where} must be a positive number, got {value!r}")
    return number


def _enabled(section: Mapping[str, Any], where: str) -> bool:
    value = section.get("enabled", True)
    if not isinstance(value, bool):
        raise FraudRulesError(f"{where}.enabled must be true or false, got {value!r}")
    return value


def _ceilings(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    """{CURRENCY: "10000.00"} in major units, read exactly, as (currency, minor units) pairs."""
    if value is None:
        return DEFAULT_NEW_SOURCE_CEILING
    if not isinstance(value, Mapping) or not value:
        raise FraudRulesError(f'{where} must map currencies to amounts in major units, e.g. {{USD: "10000.00"}}')
    pairs = []
    for currency, amount in value.items():
        if isinstance(amount, (float, bool)) or not isinstance(amount, (int, str)):
            raise FraudRulesError(f'{where}.{currency} is {amount!r}; give a quoted decimal ("10000.00")')
        try:
            minor = to_minor(str(amount), str(currency))
        except MoneyError as error:
            raise FraudRulesError(f"{where}.{currency}: {error}") from None
        if minor <= 0:
            raise FraudRulesError(f"{where}.{currency} must be positive, got {amount!r}")
        pairs.append((str(currency), minor))
    return tuple(sorted(pairs))


def load_rules(path: Path | str | None = None) -> FraudRules:
    """Read and validate the rules file; every mistake names the file and the key."""
    path = Path(path or DEFAULT_RULES_PATH)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise FraudRulesError(f"cannot read fraud rules {path}: {error}") from None
    top = {"history_days", "hold_days", "amount_outlier", "velocity", "refund_ratio", "currency_mismatch"}
    unknown = sorted(set(document) - top)
    if unknown:
        raise FraudRulesError(f"{path}: unknown keys {unknown}; allowed: {sorted(top)}")
    amount = _section(document, "amount_outlier", path, {"enabled", "multiple", "min_previous", "new_source_ceiling"})
    velocity = _section(
        document, "velocity", path, {"enabled", "window_minutes", "max_per_experiment", "max_per_customer"}
    )
    refunds = _section(document, "refund_ratio", path, {"enabled", "max_ratio", "min_charges"})
    currency = _section(document, "currency_mismatch", path, {"enabled", "min_previous"})
    return FraudRules(
        amount_outlier=AmountOutlierRule(
            _enabled(amount, f"{path}: amount_outlier"),
            _decimal(amount.get("multiple", "10"), f"{path}: amount_outlier.multiple"),
            _positive_int(amount.get("min_previous", 5), f"{path}: amount_outlier.min_previous"),
            _ceilings(amount.get("new_source_ceiling"), f"{path}: amount_outlier.new_source_ceiling"),
        ),
        velocity=VelocityRule(
            _enabled(velocity, f"{path}: velocity"),
            timedelta(minutes=_positive_int(velocity.get("window_minutes", 10), f"{path}: velocity.window_minutes")),
            _positive_int(velocity.get("max_per_experiment", 20), f"{path}: velocity.max_per_experiment"),
            _positive_int(velocity.get("max_per_customer", 3), f"{path}: velocity.max_per_customer"),
        ),
        refund_ratio=RefundRatioRule(
            _enabled(refunds, f"{path}: refund_ratio"),
            _decimal(refunds.get("max_ratio", "0.30"), f"{path}: refund_ratio.max_ratio"),
            _positive_int(refunds.get("min_charges", 10), f"{path}: refund_ratio.min_charges"),
        ),
        currency_mismatch=CurrencyMismatchRule(
            _enabled(currency, f"{path}: currency_mismatch"),
            _positive_int(currency.get("min_previous", 3), f"{path}: currency_mismatch.min_previous"),
        ),
        history_days=_positive_int(document.get("history_days", 180), f"{path}: history_days"),
        hold_days=_positive_int(document.get("hold_days", 14), f"{path}: hold_days"),
        origin=str(path),
    )


@cache
def default_rules() -> FraudRules:
    return load_rules()


def median(sorted_amounts: Sequence[int]) -> Fraction:
    """Exact median of a sorted, non-empty list (the mean of the middle two when even)."""
    n = len(sorted_amounts)
    middle = n // 2
    if n % 2:
        return Fraction(sorted_amounts[middle])
    return Fraction(sorted_amounts[middle - 1] + sorted_amounts[middle], 2)


def amount_outlier(
    amount_minor: int, currency: str, source: str, previous_sorted: Sequence[int], rule: AmountOutlierRule
) -> str | None:
    """> multiple x the median of the source's previous revenue amounts in this currency; while
    there are fewer than min_previous of them, above the rule's new-source ceiling instead."""
    if not rule.enabled:
        return None
    if len(previous_sorted) < rule.min_previous:
        return _above_new_source_ceiling(amount_minor, currency, source, len(previous_sorted), rule)
    mid = median(previous_sorted)
    if amount_minor <= Fraction(rule.multiple) * mid:
        return None
    times = Fraction(amount_minor) / mid if mid else None
    shown = format_minor(round(mid), currency)
    return (
        f"amount_outlier: {format_minor(amount_minor, currency)} is "
        f"{f'{float(times):.1f}x' if times is not None else 'far above'} the median {shown} of "
        f"{len(previous_sorted)} previous {source} revenue amounts in {currency} (limit {rule.multiple}x)"
    )


def _above_new_source_ceiling(
    amount_minor: int, currency: str, source: str, previous: int, rule: AmountOutlierRule
) -> str | None:
    history = f"{source} has {previous} previous revenue amounts in {currency}, fewer than {rule.min_previous}"
    ceiling = rule.ceiling(currency)
    if ceiling is None:
        return (
            f"amount_outlier: {format_minor(amount_minor, currency)} from a new source ({history}) and no "
            f"new_source_ceiling for {currency} in the fraud rules: add one to hold only large amounts"
        )
    if amount_minor <= ceiling:
        return None
    return (
        f"amount_outlier: {format_minor(amount_minor, currency)} is above the new-source ceiling "
        f"{format_minor(ceiling, currency)} ({history})"
    )


def _in_window(times_sorted: Sequence[datetime], at: datetime, window: timedelta) -> int:
    # (at - window, at]: an event exactly one window earlier no longer counts.
    return bisect.bisect_right(times_sorted, at) - bisect.bisect_right(times_sorted, at - window)


def velocity_burst(
    times_sorted: Sequence[datetime], at: datetime, limit: int, window: timedelta, what: str
) -> str | None:
    """More than `limit` events (earlier ones in `times_sorted`, plus this one) within `window`."""
    count = _in_window(times_sorted, at, window) + 1
    if count <= limit:
        return None
    minutes = int(window.total_seconds() // 60)
    return f"velocity: {count} revenue events for {what} within {minutes} minutes (limit {limit})"


def refund_ratio(
    charged_minor: int, refunded_minor: int, charges: int, scope: str, currency: str, rule: RefundRatioRule
) -> str | None:
    """Refunded / charged amount of the scope in this currency above the limit."""
    if not rule.enabled or charges < rule.min_charges or charged_minor <= 0:
        return None
    ratio = Fraction(refunded_minor, charged_minor)
    if ratio <= Fraction(rule.max_ratio):
        return None
    return (
        f"refund_ratio: refunds are {float(ratio):.0%} of charges for {scope} in {currency} "
        f"({format_minor(refunded_minor, currency)} of {format_minor(charged_minor, currency)} over "
        f"{charges} charges; limit {float(rule.max_ratio):.0%})"
    )


def currency_mismatch(seen: Mapping[str, int], currency: str, scope: str, rule: CurrencyMismatchRule) -> str | None:
    """A currency the scope has never received, once it has enough history to know its currencies."""
    previous = sum(seen.values())
    if not rule.enabled or previous < rule.min_previous or currency in seen:
        return None
    return (
        f"currency_mismatch: {scope} has received only {', '.join(sorted(seen))} in {previous} previous "
        f"revenue events, never {currency}"
    )


# -- the fold --------------------------------------------------------------------------------------


@dataclass
class _State:
    amounts: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    scope_times: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    customer_times: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    charged: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    refunded: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    currencies: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    @classmethod
    def from_history(cls, history: Iterable[RevenueEvent]) -> "_State":
        """Built in bulk (append, then sort once): insort per event would be quadratic in the history."""
        state = cls()
        for event in history:
            if event.is_refund:
                state.refunded[(event.scope, event.currency)] += event.amount_minor
                continue
            state.scope_times[event.scope].append(event.occurred_at)
            if event.customer:
                state.customer_times[event.customer].append(event.occurred_at)
            state.amounts[(event.source, event.currency)].append(event.amount_minor)
            totals = state.charged[(event.scope, event.currency)]
            totals[0] += event.amount_minor
            totals[1] += 1
            state.currencies[event.scope][event.currency] += 1
        for lists in (state.scope_times, state.customer_times, state.amounts):
            for values in lists.values():
                values.sort()
        return state

    def attempt(self, event: RevenueEvent) -> None:
        """Velocity counts every revenue event, held or not: a burst of attempts is the signal."""
        bisect.insort(self.scope_times[event.scope], event.occurred_at)
        if event.customer:
            bisect.insort(self.customer_times[event.customer], event.occurred_at)

    def accept(self, event: RevenueEvent) -> None:
        if event.is_refund:
            self.refunded[(event.scope, event.currency)] += event.amount_minor
            return
        bisect.insort(self.amounts[(event.source, event.currency)], event.amount_minor)
        totals = self.charged[(event.scope, event.currency)]
        totals[0] += event.amount_minor
        totals[1] += 1
        self.currencies[event.scope][event.currency] += 1

    def reasons(self, event: RevenueEvent, rules: FraudRules) -> list[str]:
        found = [
            amount_outlier(
                event.amount_minor,
                event.currency,
                event.source,
                self.amounts.get((event.source, event.currency), []),
                rules.amount_outlier,
            )
        ]
        velocity = rules.velocity
        if velocity.enabled:
            found.append(
                velocity_burst(
                    self.scope_times.get(event.scope, []),
                    event.occurred_at,
                    velocity.max_per_experiment,
                    velocity.window,
                    event.scope,
                )
            )
            if event.customer:
                found.append(
                    velocity_burst(
                        self.customer_times.get(event.customer, []),
                        event.occurred_at,
                        velocity.max_per_customer,
                        velocity.window,
                        f"customer {event.customer}",
                    )
                )
        charged, charges = self.charged.get((event.scope, event.currency), (0, 0))
        found.append(
            refund_ratio(
                charged,
                self.refunded.get((event.scope, event.currency), 0),
                charges,
                event.scope,
                event.currency,
                rules.refund_ratio,
            )
        )
        found.append(
            currency_mismatch(
                self.currencies.get(event.scope, {}), event.currency, event.scope, rules.currency_mismatch
            )
        )
        return [reason for reason in found if reason]


def evaluate(
    history: Iterable[RevenueEvent], incoming: Sequence[RevenueEvent], rules: FraudRules
) -> list[tuple[str, ...]]:
    """The reasons to hold each incoming event (empty: book it), aligned with `incoming`.

    History and incoming events are taken in time order; refunds are never held but feed the
    refund ratio, and a revenue event that is held does not become history for later ones."""
    state = _State.from_history(history)
    verdicts: list[tuple[str, ...]] = [()] * len(incoming)
    for position in sorted(range(len(incoming)), key=lambda i: incoming[i].occurred_at):
        event = incoming[position]
        if event.is_refund:
            state.accept(event)
            continue
        reasons = state.reasons(event, rules)
        state.attempt(event)
        if reasons:
            verdicts[position] = tuple(reasons)
        else:
            state.accept(event)
    return verdicts


# -- events from ledger content --------------------------------------------------------------------


def event_from_content(content: Mapping[str, Any]) -> RevenueEvent | None:
    """The rules' view of a transaction (core.ledger content), or None if it is not revenue/refund."""
    kind = content.get("kind")
    if kind not in REVENUE_KINDS and kind not in REFUND_KINDS:
        return None
    lines = [
        (account, currency, int(amount))
        for account, currency, amount in content["postings"]
        if account.startswith("revenue:")
    ]
    if not lines:
        return None
    account, currency, _amount = max(lines, key=lambda line: abs(line[2]))
    metadata = content.get("metadata") or {}
    occurred = content["occurred_at"]
    return RevenueEvent(
        key=content["idempotency_key"],
        kind=kind,
        source=content["source"],
        scope=content.get("experiment_id") or account,
        currency=currency,
        amount_minor=max(abs(line[2]) for line in lines if line[1] == currency),
        occurred_at=occurred if isinstance(occurred, datetime) else datetime.fromisoformat(occurred),
        customer=metadata.get("customer_id") or metadata.get("counterparty"),
    )


def load_history(warehouse: Warehouse, since: datetime) -> list[RevenueEvent]:
    """Booked revenue and refund events since `since` (one query; reversals excluded)."""
    kinds = sorted(REVENUE_KINDS | REFUND_KINDS)
    frame = warehouse.query(
        "SELECT t.idempotency_key, t.kind, t.source, t.experiment_id, t.occurred_at, t.metadata, "
        "min(p.account_id) AS account_id, p.currency, max(abs(p.amount_minor)) AS gross "
        "FROM ledger.transactions t JOIN ledger.postings p ON p.transaction_id = t.transaction_id "
        f"WHERE t.kind IN ({', '.join(['%s'] * len(kinds))}) AND t.occurred_at >= %s "
        "AND t.reverses_transaction_id IS NULL AND p.account_id LIKE 'revenue:%%' "
        "GROUP BY t.idempotency_key, t.kind, t.source, t.experiment_id, t.occurred_at, t.metadata, p.currency",
        [*kinds, since],
    )
    events = []
    for row in frame.itertuples(index=False):
        metadata = json.loads(row.metadata) if isinstance(row.metadata, str) else {}
        occurred = row.occurred_at
        occurred = occurred.to_pydatetime() if hasattr(occurred, "to_pydatetime") else occurred
        experiment = row.experiment_id if isinstance(row.experiment_id, str) else None
        events.append(
            RevenueEvent(
                key=row.idempotency_key,
                kind=row.kind,
                source=row.source,
                scope=experiment or row.account_id,
                currency=row.currency,
                amount_minor=int(row.gross),
                occurred_at=occurred.astimezone(UTC),
                customer=metadata.get("customer_id") or metadata.get("counterparty"),
            )
        )
    return events
