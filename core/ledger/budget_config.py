"""Budgets as configuration: a YAML file of limits, applied through core.ledger.budgets.set_budget so
every creation and change is versioned and audited like one made by hand."""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml

from core.ledger.budgets import GLOBAL_KEY, Budget, SpendWindow, set_budget
from core.platform.warehouse import Warehouse

DEFAULT_FILE = Path(__file__).parent / "config" / "budgets.yaml"


@dataclass(frozen=True)
class BudgetLine:
    scope: str
    scope_key: str
    period: str
    currency: str
    limit_minor: int


def load(path: Path) -> list[BudgetLine]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    lines = []
    for index, entry in enumerate(data.get("budgets", [])):
        where = f"{path}: budgets[{index}]"
        missing = {"scope", "period", "currency", "limit_minor"} - set(entry)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}")
        if not isinstance(entry["limit_minor"], int) or isinstance(entry["limit_minor"], bool):
            raise ValueError(
                f"{where}: limit_minor must be an integer number of minor units, got {entry['limit_minor']!r}"
            )
        lines.append(
            BudgetLine(
                entry["scope"],
                str(entry.get("scope_key", GLOBAL_KEY)),
                entry["period"],
                entry["currency"],
                entry["limit_minor"],
            )
        )
    return lines


def load_spend_window(path: Path | None = None) -> SpendWindow:
    """The file's spend_window ({past_days, future_minutes}); a missing key keeps SpendWindow's default."""
    path = path or DEFAULT_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    section = data.get("spend_window") or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: spend_window must be a mapping of past_days and future_minutes, got {section!r}")
    unknown = sorted(set(section) - {"past_days", "future_minutes"})
    if unknown:
        raise ValueError(f"{path}: spend_window has unknown keys {unknown}; allowed: ['future_minutes', 'past_days']")
    default = SpendWindow()
    values = {}
    for name, unit, fallback in (("past_days", "days", default.past), ("future_minutes", "minutes", default.future)):
        value = section.get(name)
        if value is None:
            values[name] = fallback
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{path}: spend_window.{name} must be a whole number >= 0, got {value!r}")
        values[name] = timedelta(**{unit: value})
    return SpendWindow(values["past_days"], values["future_minutes"])


def apply(warehouse: Warehouse, path: Path | None = None) -> list[Budget]:
    path = path or DEFAULT_FILE
    return [
        set_budget(
            warehouse,
            scope=line.scope,
            scope_key=line.scope_key,
            period=line.period,
            currency=line.currency,
            limit_minor=line.limit_minor,
            changed_by=f"config:{path.name}",
            reason=f"applied from {path}",
        )
        for line in load(path)
    ]
