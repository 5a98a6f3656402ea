"""The greedy fill in UCB order: integer amounts that never pass a cap, a category's or the global
headroom, money never skipping a higher rank for a lower one sharing its limits, nothing for a
claim whose UCB is not positive, and the worked examples."""

from hypothesis import given
from hypothesis import strategies as st

from core.experiments.allocation import Claim, fill, greedy_fill, ranked, spend_category
from core.experiments.playbook import default_playbook


def test_the_highest_ucb_is_funded_first_up_to_its_request():
    claims = [Claim("a", 0.1, 600), Claim("b", 0.9, 600), Claim("c", 0.5, 600)]
    # b takes its 600, c the 400 left, a nothing: not a proportional split.
    assert greedy_fill(claims, 1_000, {}) == {"a": 0, "b": 600, "c": 400}
    assert [t.claim.key for t in fill(claims, 1_000, {})] == ["b", "c", "a"]
    assert [(t.rank, t.total_left) for t in fill(claims, 1_000, {})] == [(1, 1_000), (2, 400), (3, 0)]


def test_ties_in_ucb_go_by_experiment_id():
    claims = [Claim("e2", 0.5, 100), Claim("e1", 0.5, 100), Claim("e0", 0.7, 100)]
    assert [c.key for c in ranked(claims)] == ["e0", "e1", "e2"]
    assert greedy_fill(claims, 150, {}) == {"e0": 100, "e1": 50, "e2": 0}


def test_a_full_category_passes_its_turn_to_lower_ranks_in_other_categories():
    claims = [Claim("a", 0.9, 100, "ads"), Claim("b", 0.8, 1_000, "ads"), Claim("c", 0.5, 50)]
    turns = {t.claim.key: t for t in fill(claims, 200, {"ads": 77})}
    # a reaches the ads headroom (77) before its request; b finds ads empty; c gets its 50.
    assert {k: t.amount for k, t in turns.items()} == {"a": 77, "b": 0, "c": 50}
    assert (turns["b"].group_left, turns["c"].group_left, turns["c"].total_left) == (0, None, 123)


def test_a_non_positive_ucb_gets_nothing_whatever_the_headroom():
    claims = [Claim("a", 0.5, 70), Claim("b", 0.0, 100), Claim("c", -0.2, 100), Claim("d", 0.2, 0)]
    assert greedy_fill(claims, None, {}) == {"a": 70, "b": 0, "c": 0, "d": 0}
    assert greedy_fill(claims, 0, {}) == {"a": 0, "b": 0, "c": 0, "d": 0}


def test_spend_category_is_the_playbooks_spend_account():
    assert spend_category(default_playbook("saas", 5_000)) == "ads"
    assert spend_category(default_playbook("freelance_gig", 5_000)) == "outreach"
    assert spend_category([{"id": "x", "type": "command", "params": {"argv": ["true"]}}]) is None


GROUPS = st.sampled_from([None, "ads", "outreach", "hosting"])


@st.composite
def problems(draw):
    ucbs = st.floats(-1, 3, allow_nan=False).map(lambda s: round(s, 2))  # rounded: ties happen
    claims = [
        Claim(f"e{i:02d}", draw(ucbs), draw(st.integers(0, 200_000)), draw(GROUPS))
        for i in range(draw(st.integers(1, 12)))
    ]
    total = draw(st.none() | st.integers(0, 1_000_000))
    caps = draw(st.dictionaries(st.sampled_from(["ads", "outreach", "hosting"]), st.integers(0, 300_000)))
    return claims, total, caps


def feasible(claims, total, caps):
    """The most any allocation can distribute: positive-UCB claims at their caps, within group caps and total."""
    by_group = {}
    free = 0
    for c in claims:
        if c.priority <= 0:
            continue
        if c.group in caps:
            by_group[c.group] = by_group.get(c.group, 0) + c.cap_minor
        else:
            free += c.cap_minor
    most = free + sum(min(amount, caps[g]) for g, amount in by_group.items())
    return most if total is None else min(total, most)


@given(problems())
def test_amounts_are_integers_within_every_limit_and_distribute_all_that_can_be(problem):
    claims, total, caps = problem
    given_ = greedy_fill(claims, total, caps)
    # Nested limits (claim within category within total): filling greedily loses nothing.
    assert sum(given_.values()) == feasible(claims, total, caps)
    for c in claims:
        assert isinstance(given_[c.key], int) and 0 <= given_[c.key] <= c.cap_minor
        assert c.priority > 0 or given_[c.key] == 0
    for group, cap in caps.items():
        assert sum(given_[c.key] for c in claims if c.group == group) <= cap
    assert total is None or sum(given_.values()) <= total


@given(problems())
def test_money_never_skips_a_higher_rank_for_a_lower_one_sharing_its_limits(problem):
    claims, total, caps = problem
    given_ = greedy_fill(claims, total, caps)
    order = ranked(claims)
    for i, high in enumerate(order):
        for low in order[i + 1 :]:
            if given_[low.key] == 0 or high.priority <= 0:
                continue
            # low got money, so the global headroom was not gone at high's turn: only high's own
            # category (one low does not share) may have stopped it short of its cap.
            shares_limits = high.group not in caps or high.group == low.group
            if shares_limits:
                assert given_[high.key] == high.cap_minor, (high, low, given_)


@given(problems(), st.integers(1, 50_000))
def test_more_headroom_never_takes_from_anyone(problem, more):
    claims, total, caps = problem
    if total is None:
        return
    before, after = greedy_fill(claims, total, caps), greedy_fill(claims, total + more, caps)
    assert all(after[c.key] >= before[c.key] for c in claims)
