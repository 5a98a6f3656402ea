"""The water-filled, largest-remainder shares: exact sums, caps never passed, monotone in score,
and the worked examples that show a capped claim's leftover going to the others."""

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from core.experiments.allocation import Claim, shares, spend_category, water_fill
from core.experiments.playbook import default_playbook


def test_proportional_to_score_when_nothing_caps():
    claims = [Claim("a", 0.6, 10_000), Claim("b", 0.3, 10_000), Claim("c", 0.1, 10_000)]
    assert shares(claims, 1_000, {}) == {"a": 600, "b": 300, "c": 100}


def test_a_capped_claim_leaves_the_rest_to_the_others():
    # a would get 0.9/1.7*200 = 105.9 but asked for 100; c reaches its 50; b takes what is left.
    claims = [Claim("a", 0.9, 100), Claim("b", 0.3, 1_000), Claim("c", 0.5, 50)]
    assert water_fill(claims, 200, {}) == {"a": 100, "b": 50, "c": 50}
    assert shares(claims, 200, {}) == {"a": 100, "b": 50, "c": 50}


def test_a_category_cap_is_shared_by_its_claims_and_the_rest_goes_elsewhere():
    claims = [Claim("a", 0.9, 100, "ads"), Claim("b", 0.3, 1_000, "ads"), Claim("c", 0.5, 50)]
    assert water_fill(claims, 200, {"ads": 77}) == {"a": Fraction(231, 4), "b": Fraction(77, 4), "c": 50}
    assert shares(claims, 200, {"ads": 77}) == {"a": 58, "b": 19, "c": 50}  # 57.75 -> 58, 19.25 -> 19


def test_largest_remainder_gives_the_odd_unit_to_the_largest_fraction():
    claims = [Claim("a", 0.5, 100), Claim("b", 0.3, 100), Claim("c", 0.2, 100)]
    # exact 5.5, 3.3, 2.2: floors 5, 3, 2 and the one unit left goes to a's .5
    assert shares(claims, 11, {}) == {"a": 6, "b": 3, "c": 2}


def test_no_limit_gives_every_claim_its_cap_and_zero_score_gets_nothing():
    claims = [Claim("a", 0.5, 70), Claim("b", 0.0, 100), Claim("c", 0.2, 0)]
    assert shares(claims, None, {}) == {"a": 70, "b": 0, "c": 0}
    assert shares(claims, 0, {}) == {"a": 0, "b": 0, "c": 0}


def test_spend_category_is_the_playbooks_spend_account():
    assert spend_category(default_playbook("saas", 5_000)) == "ads"
    assert spend_category(default_playbook("freelance_gig", 5_000)) == "outreach"
    assert spend_category([{"id": "x", "type": "command", "params": {"argv": ["true"]}}]) is None


GROUPS = st.sampled_from([None, "ads", "outreach", "hosting"])


@st.composite
def problems(draw):
    scores = st.floats(0, 1, allow_nan=False).map(lambda s: round(s, 6))
    claims = [
        Claim(f"e{i:02d}", draw(scores), draw(st.integers(0, 200_000)), draw(GROUPS))
        for i in range(draw(st.integers(1, 12)))
    ]
    total = draw(st.none() | st.integers(0, 1_000_000))
    caps = draw(st.dictionaries(st.sampled_from(["ads", "outreach", "hosting"]), st.integers(0, 300_000)))
    return claims, total, caps


def feasible(claims, total, caps):
    """The most any allocation can distribute: positive-score claims at their caps, within group caps and total."""
    by_group = {}
    free = 0
    for c in claims:
        if c.score <= 0:
            continue
        if c.group in caps:
            by_group[c.group] = by_group.get(c.group, 0) + c.cap_minor
        else:
            free += c.cap_minor
    most = free + sum(min(amount, caps[g]) for g, amount in by_group.items())
    return most if total is None else min(total, most)


@given(problems())
def test_shares_sum_to_what_is_distributed_and_never_pass_a_cap(problem):
    claims, total, caps = problem
    given_ = shares(claims, total, caps)
    assert sum(given_.values()) == feasible(claims, total, caps)
    for c in claims:
        assert 0 <= given_[c.key] <= c.cap_minor
        assert c.score > 0 or given_[c.key] == 0
    for group, cap in caps.items():
        assert sum(given_[c.key] for c in claims if c.group == group) <= cap


@given(problems())
def test_a_higher_score_never_gets_less_in_the_same_group(problem):
    claims, total, caps = problem
    given_ = shares(claims, total, caps)
    for a in claims:
        for b in claims:
            same_pool = a.group == b.group or (a.group not in caps and b.group not in caps)
            if same_pool and a.score > b.score and a.cap_minor >= b.cap_minor:
                assert given_[a.key] >= given_[b.key], (a, b, given_)


@given(problems(), st.integers(1, 50_000))
def test_more_headroom_never_takes_from_anyone(problem, more):
    claims, total, caps = problem
    if total is None:
        return
    before, after = water_fill(claims, total, caps), water_fill(claims, total + more, caps)
    assert all(after[c.key] >= before[c.key] for c in claims)
