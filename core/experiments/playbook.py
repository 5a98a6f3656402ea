"""Playbooks: the steps an experiment runs, as data, validated when the experiment is proposed.

A playbook is a list of steps `{id, type, params, after?}`; `after` lists the ids of the steps
that must complete first (none: it may start at once). Each step type has its own parameters:

    http             url (str), method (str); optional body (dict)
    command          argv (list of str, not empty)
    wait_until       either after_hours (int > 0) or metric (str) with at_least (number)
    manual_gate      prompt (str)
    spend            account (str), amount_minor (int > 0, minor units), currency (3 letters);
                     optional on_refusal ("pause" or "fail")
    collect_outcome  window_days (int > 0)

An unknown step type, a missing, unknown or ill-typed parameter, a duplicate id, a dependency on
an unknown step and a cycle are each refused with a PlaybookError naming the step.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

STEP_KEYS = frozenset({"id", "type", "params", "after"})
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class PlaybookError(ValueError):
    pass


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


# name -> (check, what it must be); a parameter is required unless it is in OPTIONAL.
Check = tuple[Callable[[Any], bool], str]
PARAMS: Mapping[str, Mapping[str, Check]] = {
    "http": {
        "url": (lambda v: isinstance(v, str) and bool(re.match(r"^https?://\S+$", v)), "an http(s) URL"),
        "method": (lambda v: v in HTTP_METHODS, f"one of {', '.join(HTTP_METHODS)}"),
        "body": (lambda v: isinstance(v, dict), "a mapping"),
    },
    "command": {
        "argv": (
            lambda v: isinstance(v, list) and bool(v) and all(isinstance(a, str) for a in v),
            "a non-empty list of strings",
        ),
    },
    "wait_until": {
        "after_hours": (lambda v: _is_int(v) and v > 0, "a positive integer"),
        "metric": (_text, "a non-empty string"),
        "at_least": (lambda v: (_is_int(v) or isinstance(v, float)) and v == v, "a number"),
    },
    "manual_gate": {"prompt": (_text, "a non-empty string")},
    "spend": {
        "account": (_text, "a non-empty string (an expense account)"),
        "amount_minor": (lambda v: _is_int(v) and v > 0, "a positive integer of minor units"),
        "currency": (lambda v: isinstance(v, str) and bool(re.fullmatch(r"[A-Z]{3}", v)), "an ISO 4217 code"),
        "on_refusal": (lambda v: v in ("pause", "fail"), "pause or fail"),
    },
    "collect_outcome": {"window_days": (lambda v: _is_int(v) and v > 0, "a positive integer")},
}
OPTIONAL: Mapping[str, frozenset[str]] = {
    "http": frozenset({"body"}),
    "spend": frozenset({"on_refusal"}),
    # wait_until takes one of two forms, checked in _check_params.
    "wait_until": frozenset({"after_hours", "metric", "at_least"}),
}
STEP_TYPES: tuple[str, ...] = tuple(PARAMS)


def validate_playbook(steps: Any) -> list[dict[str, Any]]:
    """Return the steps in an order that respects `after` (ties in the order written), or raise
    PlaybookError naming the first step that is wrong and what to change."""
    if not isinstance(steps, list) or not steps:
        raise PlaybookError(f"a playbook is a non-empty list of steps, got {type(steps).__name__}")
    seen: dict[str, dict[str, Any]] = {}
    for index, step in enumerate(steps):
        where = f"playbook step {index}"
        if not isinstance(step, dict):
            raise PlaybookError(f"{where} is a {type(step).__name__}, not a mapping of id, type, params, after")
        step_id = step.get("id")
        if not _text(step_id):
            raise PlaybookError(f"{where} has no id (a non-empty string)")
        where = f"playbook step {step_id!r}"
        if step_id in seen:
            raise PlaybookError(f"{where}: duplicate step id; ids must be unique within a playbook")
        unknown = sorted(set(step) - STEP_KEYS)
        if unknown:
            raise PlaybookError(f"{where}: unknown keys {unknown}; a step has {sorted(STEP_KEYS)}")
        step_type = step.get("type")
        if step_type not in PARAMS:
            raise PlaybookError(f"{where}: unknown step type {step_type!r}; the types are {', '.join(STEP_TYPES)}")
        _check_params(where, step_type, step.get("params"))
        after = step.get("after", [])
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise PlaybookError(f"{where}: after must be a list of step ids, got {after!r}")
        seen[step_id] = step
    for step_id, step in seen.items():
        for dependency in step.get("after", []):
            if dependency not in seen:
                raise PlaybookError(
                    f"playbook step {step_id!r} runs after {dependency!r}, which is not a step of this playbook"
                )
    return _ordered(seen)


def _check_params(where: str, step_type: str, params: Any) -> None:
    if not isinstance(params, dict):
        raise PlaybookError(f"{where} ({step_type}): params must be a mapping, got {type(params).__name__}")
    spec = PARAMS[step_type]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise PlaybookError(f"{where} ({step_type}): unknown parameters {unknown}; it takes {sorted(spec)}")
    required = [name for name in spec if name not in OPTIONAL.get(step_type, frozenset())]
    if step_type == "wait_until":
        if ("after_hours" in params) == ("metric" in params):
            raise PlaybookError(f"{where} (wait_until): give either after_hours, or metric with at_least")
        required = ["after_hours"] if "after_hours" in params else ["metric", "at_least"]
    missing = [name for name in required if name not in params]
    if missing:
        raise PlaybookError(f"{where} ({step_type}): missing parameters {missing}")
    for name, value in params.items():
        check, what = spec[name]
        if not check(value):
            raise PlaybookError(f"{where} ({step_type}): parameter {name} must be {what}, got {value!r}")


def _ordered(steps: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Kahn's algorithm, taking ready steps in the order written; what is left over is a cycle."""
    waiting = {step_id: set(step.get("after", [])) for step_id, step in steps.items()}
    order: list[dict[str, Any]] = []
    while waiting:
        ready = [step_id for step_id, deps in waiting.items() if not deps]
        if not ready:
            cycle = _cycle(waiting)
            raise PlaybookError(f"playbook steps form a cycle: {' -> '.join(repr(s) for s in cycle)}")
        for step_id in ready:
            order.append(steps[step_id])
            del waiting[step_id]
        for deps in waiting.values():
            deps.difference_update(ready)
    return order


def _cycle(waiting: Mapping[str, set[str]]) -> list[str]:
    """One cycle among steps that all wait on each other: follow the first dependency until a
    step repeats."""
    path: list[str] = []
    step_id = next(iter(waiting))
    while step_id not in path:
        path.append(step_id)
        step_id = sorted(waiting[step_id])[0]
    return [*path[path.index(step_id) :], step_id]


# The launch campaign's share of an experiment's budget, booked at once by its spend step. Small,
# so that it fits the hourly channel budgets (core/ledger/config/budgets.yaml) beside the launches
# of other experiments.
LAUNCH_SHARE_PERCENT = 5


def launch_spend_minor(budget_minor: int) -> int:
    return max(budget_minor * LAUNCH_SHARE_PERCENT // 100, 1)


def default_playbook(category: str, budget_minor: int, currency: str = "USD") -> list[dict[str, Any]]:
    """The starting playbook of a category: announce, spend a launch share of the budget on its
    channel, wait for signal, gate on a person where the category needs one, collect the outcome.
    The rest of the budget is the channel's running cost (ad spend day by day), which the channel
    books as it is incurred (the market simulator does so in the demo), capped by the allocation."""
    if category not in CATEGORY_CHANNELS:
        raise PlaybookError(
            f"no default playbook for category {category!r}: the categories are {sorted(CATEGORY_CHANNELS)}"
        )
    if not _is_int(budget_minor) or budget_minor <= 0:
        raise PlaybookError(f"category {category}: budget_minor must be a positive integer, got {budget_minor!r}")
    channel, gated = CATEGORY_CHANNELS[category]
    steps: list[dict[str, Any]] = [
        {
            "id": "launch",
            "type": "http",
            "params": {
                "url": "https://hooks.ventureloop.invalid/launch",
                "method": "POST",
                "body": {"category": category},
            },
        },
        {
            "id": "spend",
            "type": "spend",
            "params": {
                "account": f"expenses:{channel}",
                "amount_minor": launch_spend_minor(budget_minor),
                "currency": currency,
                "on_refusal": "pause",
            },
            "after": ["launch"],
        },
        {"id": "wait", "type": "wait_until", "params": {"after_hours": 72}, "after": ["spend"]},
    ]
    last = "wait"
    if gated:
        steps.append(
            {
                "id": "review",
                "type": "manual_gate",
                "params": {"prompt": f"Review the first {category} results before collecting the outcome"},
                "after": ["wait"],
            }
        )
        last = "review"
    steps.append({"id": "outcome", "type": "collect_outcome", "params": {"window_days": 30}, "after": [last]})
    validate_playbook(steps)
    return steps


# category (the opportunity_type of core.discovery.features) -> (expense channel, manual gate?).
# A gate where a person's work or a third party's terms decide the result.
CATEGORY_CHANNELS: Mapping[str, tuple[str, bool]] = {
    "saas": ("ads", False),
    "api": ("ads", False),
    "freelance_gig": ("outreach", True),
    "affiliate": ("ads", False),
    "content": ("content", False),
    "marketplace": ("listing_fees", True),
    "open_source_tool": ("hosting", False),
    "other": ("ads", True),
}


def step_ids(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(step["id"]) for step in steps]
