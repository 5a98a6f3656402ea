"""core.text_patterns answers exactly what `re.search` answers, on text built to stress word
boundaries (keywords glued to Unicode letters, digits and punctuation, odd whitespace) and the
split between the vectorized paths and Python's `re`: each example is a batch of texts, some plain,
some not, so that runs and literals at the edges of neighbouring texts are exercised too."""

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.discovery import features
from core.discovery.text_patterns import KeywordPatterns, Texts, keyword_strings, required_literals

FRAGMENTS = [
    "api",
    "apis",
    "saas",
    "web",
    " ",
    "  ",
    "app",
    "open",
    "source",
    "-",
    "/",
    "mo",
    "month",
    "$",
    "29",
    "4.2",
    "k",
    "mrr",
    "arr",
    "é",
    "用",
    "_",
    "\x0b",
    "\xa0",
    "\u2013",
    "[",
    "]",
    "for",
    "hire",
    "budget",
    ":",
    "looking",
    "a",
    "an",
    "developer",
    "next",
    ".",
    "js",
    "per",
    "user",
    "seat",
    "making",
    "from",
    "plan",
    "in",
    "of",
    "react",
    "native",
    "self",
    "hosted",
    "mit",
    "license",
    "github",
    "com",
    "fine",
    "tune",
    "\n",
    "٣",
    "１",
    ",",
    "to",
    # Non-word, non-space characters for Python and RE2 alike (the text stays on the vectorized paths) ...
    "€",
    "🚀",
    "\u0301",
    "’",
    "\t",
    "1,000",
    # ... and characters only Python's \w or \s matches (the text goes to Python): superscript two,
    # an information separator, a thin space.
    "²",
    "\x1c",
    "\u2009",
]
TEXTS = st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join)
BATCHES = st.lists(TEXTS, min_size=1, max_size=6)
KEYWORD_PATTERNS = {
    **features._type_patterns(),
    **features._capability_patterns(features.CapabilityProfile.load()),
    "income": features.INCOME_WORDS,
}
OTHER_PATTERNS = [features.PRICE_WORDS, *(p for patterns in features.REVENUE_PATTERNS.values() for p in patterns)]


def test_every_feature_keyword_pattern_is_answered_by_word_runs():
    assert all(KeywordPatterns.accepts(p) for p in KEYWORD_PATTERNS.values())
    assert not any(KeywordPatterns.accepts(p) for p in OTHER_PATTERNS)


@settings(max_examples=6 * settings().max_examples, deadline=None)
@given(BATCHES)
@example(["budget: $500"])  # "budget:" needs a word right after the colon (\b after a non-word character)
@example(["budget:500", "budget:", "x[for hire]y", "[for hire]"])
@example(["$29/mo", "react native app", "使用api", "naïve api", "api–sdk", "🚀api🚀"])
@example(["open", " source", "open source"])  # a string never spans two texts
@example(["", "open source", "", "", "looking for a developer"])
@example(["x/mo", "/mo", "next.js", "next.js.", "a next.jsx"])
@example(["budget:\x1cx", "budget:\u2009x", "api\u0301", "api²"])
def test_keyword_patterns_match_re_search(texts):
    found = Texts(texts).contains_each(KEYWORD_PATTERNS)
    for name, pattern in KEYWORD_PATTERNS.items():
        assert found[name].tolist() == [bool(re.search(pattern, t)) for t in texts], name


@settings(max_examples=4 * settings().max_examples, deadline=None)
@given(BATCHES)
@example(["making $1.2k mrr", "arr of $120k", "budget $500 – $1,000"])
@example(["from $29/month", "from\x1c$29/month", "from\u2009$29/month", "$٣k mrr", "$3\u2009k mrr"])
@example(["mrr\x0b$5", "mrr\t$5", "$5 /\xa0mo", "$5 / mo", "budget €20 or $30", "budget²$30"])
@example(["$5\x1cmrr", "$5\x1fk mrr", "$5\x0bmrr", "$5\u2009mrr", "$5\u3000mrr", "$5\tmrr"])
def test_contains_and_extract_match_re_search(texts):
    prepared = Texts(texts)
    for pattern in OTHER_PATTERNS:
        expected = [re.search(pattern, t) for t in texts]
        assert prepared.contains(pattern).tolist() == [m is not None for m in expected], pattern
        if not re.compile(pattern).groups:
            continue
        extracted = prepared.extract(pattern)
        assert extracted.index.tolist() == [i for i, m in enumerate(expected) if m is not None], pattern
        for i, m in enumerate(expected):
            if m is not None:
                assert [None if pd.isna(v) else v for v in extracted.loc[i]] == list(m.groups()), (pattern, texts[i])


def test_texts_outside_the_shared_classes_go_to_python():
    texts = Texts(["plain – with 🚀 and €", "café api", "no\xa0break", "vertical\x0btab", "٣", "", "tab\tand\nnewline"])
    assert texts.python_rows.tolist() == [1, 2, 3, 4]


def test_contains_each_mixes_both_kinds():
    texts = Texts(pd.Series(["we hit $4.2k mrr with our api", "from $29/month", "", None], dtype="str"))
    patterns = {"api": features.TYPE_RULES[3][1], "price": features.PRICE_WORDS}
    found = texts.contains_each(patterns)
    assert found["api"].tolist() == [True, False, False, False]
    assert found["price"].tolist() == [False, True, False, False]


def test_extract_of_no_texts_and_of_no_matches():
    assert Texts([]).extract(r"\$(\d+)").empty
    extracted = Texts(["nothing", "here"]).extract(r"\$(\d+)(k)?")
    assert extracted.empty and list(extracted.columns) == [0, 1]


def test_extract_refuses_groups_that_can_match_empty():
    with pytest.raises(ValueError, match="empty"):
        Texts(["$5"]).extract(r"\$(\d*)")
    with pytest.raises(ValueError, match="groups"):
        Texts(["$5"]).extract(r"\$\d")


def test_many_keyword_patterns_take_several_masks():
    patterns = {f"p{i}": rf"\b(?:w{i}|x y{i})\b" for i in range(70)}
    found = Texts(["w3 and x y68", "w69", "x  y1"]).contains_each(patterns)
    hits = {name for name, rows in found.items() if rows.any()}
    assert hits == {"p3", "p68", "p69"}
    assert np.array_equal(found["p68"], [True, False, False])


@pytest.mark.parametrize(
    ("pattern", "strings"),
    [
        (r"\b(?:open[- ]source|mit licen[cs]e)\b", {"open-source", "open source", "mit licence", "mit license"}),
        (r"\b(?:webhooks?)\b", {"webhook", "webhooks"}),
        (r"\b(?:a+)\b", None),  # unbounded: not a finite set
        (r"(?:api)\b", None),  # no leading boundary
        (r"(?i)\b(?:api)\b", None),  # flags change what a literal means
    ],
)
def test_keyword_strings(pattern, strings):
    assert keyword_strings(pattern) == strings


def test_required_literals_are_the_top_level_runs():
    assert required_literals(r"\$\s?(\d+)\s*mrr\b") == ["$", "mrr"]
    assert required_literals(r"(?i)mrr") == []
