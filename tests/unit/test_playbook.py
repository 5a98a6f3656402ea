"""Playbook validation: every rejection names the step and what is wrong; the defaults validate."""

import copy

import pytest

from core.discovery.features import TYPES
from core.experiments.playbook import PlaybookError, default_playbook, step_ids, validate_playbook

GOOD = [
    {"id": "hook", "type": "http", "params": {"url": "https://example.com/hook", "method": "POST"}},
    {"id": "build", "type": "command", "params": {"argv": ["make", "site"]}, "after": ["hook"]},
    {
        "id": "ads",
        "type": "spend",
        "params": {"account": "expenses:ads", "amount_minor": 1250, "currency": "USD"},
        "after": ["hook"],
    },
    {"id": "traffic", "type": "wait_until", "params": {"metric": "visits", "at_least": 100}, "after": ["ads"]},
    {"id": "later", "type": "wait_until", "params": {"after_hours": 24}, "after": ["build"]},
    {"id": "gate", "type": "manual_gate", "params": {"prompt": "go on?"}, "after": ["traffic", "later"]},
    {"id": "outcome", "type": "collect_outcome", "params": {"window_days": 30}, "after": ["gate"]},
]


def changed(index: int, **step) -> list[dict]:
    steps = copy.deepcopy(GOOD)
    steps[index] = {**steps[index], **step}
    return steps


def test_a_valid_playbook_comes_back_in_dependency_order():
    assert step_ids(validate_playbook(GOOD)) == ["hook", "build", "ads", "traffic", "later", "gate", "outcome"]
    reversed_order = list(reversed(copy.deepcopy(GOOD)))
    ordered = step_ids(validate_playbook(reversed_order))
    for step in GOOD:
        for dependency in step.get("after", []):
            assert ordered.index(dependency) < ordered.index(step["id"])


@pytest.mark.parametrize("category", TYPES)
def test_every_category_has_a_default_playbook_that_validates(category):
    steps = default_playbook(category, 5_000)
    assert step_ids(validate_playbook(steps))[-1] == "outcome"
    spend = next(s for s in steps if s["type"] == "spend")
    # The launch share (5%) of the budget; the rest is the channel's running cost.
    assert spend["params"]["amount_minor"] == 250 and spend["params"]["currency"] == "USD"
    assert default_playbook(category, 19)[1]["params"]["amount_minor"] == 1  # never a zero spend


def test_default_playbook_refuses_an_unknown_category_and_a_bad_budget():
    with pytest.raises(PlaybookError, match="no default playbook for category 'crypto'"):
        default_playbook("crypto", 5_000)
    with pytest.raises(PlaybookError, match="budget_minor must be a positive integer, got 12.5"):
        default_playbook("saas", 12.5)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "a playbook is a non-empty list of steps"),
        ({"id": "x"}, "a playbook is a non-empty list of steps, got dict"),
        (["hook"], "playbook step 0 is a str, not a mapping"),
        (changed(0, id=""), "playbook step 0 has no id"),
        (changed(1, id="hook"), "playbook step 'hook': duplicate step id"),
        (changed(1, type="email"), "playbook step 'build': unknown step type 'email'; the types are http, command"),
        (changed(1, retries=3), r"playbook step 'build': unknown keys \['retries'\]"),
        (changed(1, params=["make"]), r"playbook step 'build' \(command\): params must be a mapping, got list"),
        (changed(0, params={"url": "https://example.com"}), r"'hook' \(http\): missing parameters \['method'\]"),
        (
            changed(0, params={"url": "ftp://example.com", "method": "POST"}),
            r"'hook' \(http\): parameter url must be an http\(s\) URL, got 'ftp://example.com'",
        ),
        (
            changed(0, params={"url": "https://example.com", "method": "FETCH"}),
            r"'hook' \(http\): parameter method must be one of GET, POST",
        ),
        (changed(1, params={"argv": "make site"}), r"'build' \(command\): parameter argv must be a non-empty list"),
        (changed(1, params={"argv": []}), r"'build' \(command\): parameter argv must be a non-empty list"),
        (
            changed(1, params={"argv": ["make"], "shell": True}),
            r"'build' \(command\): unknown parameters \['shell'\]; it takes \['argv'\]",
        ),
        (
            changed(2, params={"account": "expenses:ads", "amount_minor": 12.5, "currency": "USD"}),
            r"'ads' \(spend\): parameter amount_minor must be a positive integer of minor units, got 12.5",
        ),
        (
            changed(2, params={"account": "expenses:ads", "amount_minor": True, "currency": "USD"}),
            r"'ads' \(spend\): parameter amount_minor must be a positive integer",
        ),
        (
            changed(2, params={"account": "expenses:ads", "amount_minor": 100, "currency": "usd"}),
            r"'ads' \(spend\): parameter currency must be an ISO 4217 code, got 'usd'",
        ),
        (
            changed(
                2, params={"account": "expenses:ads", "amount_minor": 100, "currency": "USD", "on_refusal": "skip"}
            ),
            r"'ads' \(spend\): parameter on_refusal must be pause or fail",
        ),
        (
            changed(2, params={"amount_minor": 100, "currency": "USD"}),
            r"'ads' \(spend\): missing parameters \['account'\]",
        ),
        (changed(3, params={}), r"'traffic' \(wait_until\): give either after_hours, or metric with at_least"),
        (
            changed(3, params={"after_hours": 2, "metric": "visits", "at_least": 1}),
            r"'traffic' \(wait_until\): give either after_hours, or metric with at_least",
        ),
        (changed(3, params={"metric": "visits"}), r"'traffic' \(wait_until\): missing parameters \['at_least'\]"),
        (
            changed(3, params={"metric": "visits", "at_least": "100"}),
            r"'traffic' \(wait_until\): parameter at_least must be a number, got '100'",
        ),
        (changed(4, params={"after_hours": 0}), r"'later' \(wait_until\): parameter after_hours must be a positive"),
        (changed(5, params={"prompt": "  "}), r"'gate' \(manual_gate\): parameter prompt must be a non-empty string"),
        (
            changed(6, params={"window_days": "30"}),
            r"'outcome' \(collect_outcome\): parameter window_days must be a positive integer, got '30'",
        ),
        (changed(1, after="hook"), r"playbook step 'build': after must be a list of step ids, got 'hook'"),
        (changed(1, after=["deploy"]), "playbook step 'build' runs after 'deploy', which is not a step"),
        (changed(0, after=["outcome"]), "playbook steps form a cycle: 'hook' -> 'outcome' -> 'gate' -> "),
        (changed(0, after=["hook"]), "playbook steps form a cycle: 'hook' -> 'hook'"),
    ],
)
def test_every_rejection_names_the_step_and_the_fault(steps, message):
    with pytest.raises(PlaybookError, match=message):
        validate_playbook(steps)
