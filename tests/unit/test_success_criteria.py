"""evaluate() on the criteria proposals write: each rule's threshold and window, the ROI without
cost, and the shapes it refuses, naming the criteria."""

import pytest

from core.experiments.outcomes import CriteriaError, Totals, evaluate, longest_window_days
from core.experiments.proposals import success_criteria

BUDGET = 10_000
CRITERIA = success_criteria(BUDGET)  # revenue >= 20_000 USD minor units, or ROI >= 0.5, within 30 days


def test_totals_net_and_roi():
    totals = Totals(revenue_minor=15_000, cost_minor=10_000, currency="USD")
    assert (totals.net_minor, totals.roi) == (5_000, 0.5)
    assert Totals(100, 0, "USD").roi is None


@pytest.mark.parametrize(
    ("revenue", "cost", "days", "succeeded", "met"),
    [
        (20_000, 10_000, 30, True, "met: revenue_minor 20000 USD >= 20000"),  # revenue exactly at the threshold
        (19_998, 13_332, 29.5, True, "met: roi 0.500000 >= 0.5"),  # ROI carries it
        (19_999, 13_333, 30, False, "not met: roi 0.499962 < 0.5"),
        (50_000, 10_000, 30.01, False, "but over 30.01 days > 30"),  # too late for both rules
        (0, 0, 3, False, "not met: roi undefined (no cost)"),
    ],
)
def test_each_rule_against_its_threshold_and_window(revenue, cost, days, succeeded, met):
    ok, reason = evaluate(CRITERIA, Totals(revenue, cost, "USD"), days)
    assert ok is succeeded
    assert met in reason
    assert reason.startswith("succeeded" if succeeded else "did not succeed")


def test_revenue_alone_meets_the_revenue_rule_when_roi_fails():
    ok, reason = evaluate(CRITERIA, Totals(25_000, 50_000, "USD"), 10)
    assert ok
    assert "met: revenue_minor 25000 USD >= 20000" in reason and "not met: roi -0.500000 < 0.5" in reason


def test_longest_window():
    assert longest_window_days(CRITERIA) == 30
    two = {"any_of": [{"metric": "roi", "at_least": 1, "within_days": 7}, CRITERIA["any_of"][0]]}
    assert longest_window_days(two) == 30


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ({"all_of": []}, "expected a mapping with one key, any_of"),
        ({"any_of": []}, "any_of must be a non-empty list"),
        ({"any_of": ["revenue"]}, "rule 0: a rule is a mapping"),
        ({"any_of": [{"metric": "profit", "at_least": 1, "within_days": 3}]}, "unknown metric 'profit'"),
        ({"any_of": [{"metric": "roi", "at_least": 1}]}, "missing keys ['within_days']"),
        ({"any_of": [{"metric": "roi", "at_least": 1, "within_days": 3, "by": "x"}]}, "unknown keys ['by']"),
        ({"any_of": [{"metric": "roi", "at_least": "1", "within_days": 3}]}, "at_least must be a finite number"),
        ({"any_of": [{"metric": "roi", "at_least": 1, "within_days": 0}]}, "within_days must be a positive integer"),
        ({"any_of": [{"metric": "revenue_minor", "at_least": 5, "within_days": 3}]}, "needs a currency"),
        ({"any_of": [{"metric": "revenue_minor", "at_least": 5.5, "currency": "USD", "within_days": 3}]}, "integer"),
        ({"any_of": [{"metric": "roi", "at_least": 1, "currency": "USD", "within_days": 3}]}, "takes no currency"),
    ],
)
def test_unknown_shapes_are_refused_naming_the_criteria(criteria, message):
    with pytest.raises(CriteriaError) as refused:
        evaluate(criteria, Totals(1, 1, "USD"), 1)
    assert message in str(refused.value)
    assert str(refused.value).startswith("success criteria {")  # the criteria themselves, as JSON


def test_a_rule_in_another_currency_is_refused_not_compared():
    with pytest.raises(CriteriaError, match="a revenue_minor rule in USD cannot be judged on totals in EUR"):
        evaluate(CRITERIA, Totals(1, 1, "EUR"), 1)
