"""core.text_patterns answers exactly what `re.search` answers, on text built to stress word
boundaries: keywords glued to Unicode letters, digits and punctuation, odd whitespace."""

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core import features
from core.text_patterns import KeywordPatterns, contains_each, keyword_strings, required_literals, search

FRAGMENTS = [
    "api", "apis", "saas", "web", " ", "  ", "app", "open", "source", "-", "/", "mo", "month", "$", "29", "4.2", "k",
    "mrr", "arr", "é", "用", "_", "\x0b", "\xa0", "\u2013", "[", "]", "for", "hire", "budget", ":", "looking", "a",
    "an", "developer", "next", ".", "js", "per", "user", "seat", "making", "from", "plan", "in", "of", "react",
    "native", "self", "hosted", "mit", "license", "github", "com", "fine", "tune", "\n", "٣", "１", ",", "to",
]
TEXTS = st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join)
KEYWORD_PATTERNS = {
    **features._type_patterns(),
    **features._capability_patterns(features.CapabilityProfile.load()),
    "income": features.INCOME_WORDS,
}
MATCHER = KeywordPatterns(KEYWORD_PATTERNS)
OTHER_PATTERNS = [features.PRICE_WORDS, *(p for patterns in features.REVENUE_PATTERNS.values() for p in patterns)]


def test_every_feature_keyword_pattern_is_answered_by_word_runs():
    assert all(KeywordPatterns.accepts(p) for p in KEYWORD_PATTERNS.values())
    assert not any(KeywordPatterns.accepts(p) for p in OTHER_PATTERNS)


@settings(max_examples=600, deadline=None)
@given(TEXTS)
@example("budget: $500")  # "budget:" needs a word right after the colon (\b after a non-word character)
@example("budget:500")
@example("x[for hire]y")
@example("$29/mo")
@example("react native app")
@example("使用api")
@example("naïve api")
def test_keyword_patterns_match_re_search(text):
    found = MATCHER.matches([text])
    for name, pattern in KEYWORD_PATTERNS.items():
        assert bool(found[name][0]) == bool(re.search(pattern, text)), (name, text)


@settings(max_examples=400, deadline=None)
@given(TEXTS)
@example("making $1.2k mrr")
@example("arr of $120k")
@example("budget $500 – $1,000")
def test_search_matches_re_search(text):
    for pattern in OTHER_PATTERNS:
        ours, theirs = search([text], pattern)[0], re.search(pattern, text)
        ours_found = (ours.group(0), ours.groups()) if ours else None
        assert ours_found == ((theirs.group(0), theirs.groups()) if theirs else None), (pattern, text)


def test_contains_each_mixes_both_kinds():
    texts = ["we hit $4.2k mrr with our api", "from $29/month", ""]
    patterns = {"api": features.TYPE_RULES[3][1], "price": features.PRICE_WORDS}
    found = contains_each(texts, patterns)
    assert found["api"].tolist() == [True, False, False]
    assert found["price"].tolist() == [False, True, False]


@pytest.mark.parametrize(("pattern", "strings"), [
    (r"\b(?:open[- ]source|mit licen[cs]e)\b", {"open-source", "open source", "mit licence", "mit license"}),
    (r"\b(?:webhooks?)\b", {"webhook", "webhooks"}),
    (r"\b(?:a+)\b", None),  # unbounded: not a finite set
    (r"(?:api)\b", None),  # no leading boundary
    (r"(?i)\b(?:api)\b", None),  # flags change what a literal means
])
def test_keyword_strings(pattern, strings):
    assert keyword_strings(pattern) == strings


def test_required_literals_are_the_top_level_runs():
    assert required_literals(r"\$\s?(\d+)\s*mrr\b") == ["$", "mrr"]
    assert required_literals(r"(?i)mrr") == []
